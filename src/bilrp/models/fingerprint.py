"""A model's fingerprint: a digest of everything in a similarity model that changes what it computes.

A stored result (an index's factors, a corpus run's shards) is valid only for the model that computed it:
its weights, tokenizer, pooling, head (Dense/Normalize modules), similarity, maximum length and prompts.
:func:`model_fingerprint` digests each of these apart, so that a store opened with another model is refused
with a message naming what differs (:func:`fingerprint_difference`). The index (:mod:`bilrp.ranking`) and the
corpus runs (:mod:`bilrp.corpus_runs`) share it; it lives here, below both.

The weights digest reads every parameter and buffer once (about 0.2 s for all-MiniLM-L6-v2's 90 MB); it is
kept with the model and computed again only when a tensor was replaced or changed in place (torch's version
counter of each tensor is part of the key).
"""

from __future__ import annotations

import functools
import hashlib
import json
import weakref
from itertools import chain
from typing import Any

import torch

from ..explaining import exclusive

__all__ = ["FINGERPRINT_PARTS", "model_fingerprint", "fingerprint_difference", "digest"]

FINGERPRINT_PARTS = {
    "weights": "weights",
    "tokenizer": "tokenizer",
    "pooling": "pooling",
    "head": "head (Dense/Normalize modules)",
    "similarity": "similarity",
    "max_length": "maximum length",
    "prompts": "prompts",
}
"""The parts of a model fingerprint and how an error message names them."""

SHOWN_AS_VALUES = ("pooling", "similarity", "max_length")
"""Parts whose stored value is readable (shown in a message), not a digest."""

_WEIGHTS: weakref.WeakKeyDictionary[Any, tuple[tuple, str]] = weakref.WeakKeyDictionary()
"""model -> (state key of its tensors, weights digest): the digest is reused while no tensor changed."""


def digest(*parts: str | bytes | memoryview) -> str:
    """A short hex digest (BLAKE2b, 128 bits) of ``parts``, each length-prefixed so that no two lists collide."""
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "little"))
        hasher.update(data)
    return hasher.hexdigest()


def _parameters_used(model: Any) -> set[int] | None:
    """The ids of the parameters the representation depends on; ``None`` when the probe cannot run.

    Found by autograd on one short text: a parameter outside the graph of ``phi`` (a checkpoint's missing BERT
    pooler, initialised at random on every load and never read by the pooling) must not change the fingerprint.
    """
    parameters = list(model.parameters())
    flags = [parameter.requires_grad for parameter in parameters]
    with exclusive():  # no other thread runs the model while its flags are changed
        try:
            for parameter in parameters:
                parameter.requires_grad_(True)
            with torch.enable_grad():
                batch = model.tokenize(["fingerprint"])
                mask = batch["attention_mask"]
                phi = model.represent(model.embed(batch["input_ids"], mask), mask)
                grads = torch.autograd.grad(phi.sum(), parameters, allow_unused=True)
        except Exception:  # a model that cannot run the probe is digested whole
            return None
        finally:
            for parameter, flag in zip(parameters, flags, strict=True):
                parameter.requires_grad_(flag)
    return {id(parameter) for parameter, grad in zip(parameters, grads, strict=True) if grad is not None}


def _state_key(model: Any) -> tuple:
    """What identifies the tensors of ``model`` now: names, storage, version counters, dtypes, shapes."""
    return tuple(
        (name, id(tensor), tensor.data_ptr(), tensor._version, tensor.dtype, tuple(tensor.shape), tensor.device)
        for name, tensor in chain(model.named_parameters(), model.named_buffers())
    )


def _weights_digest(model: Any) -> str:
    """Digest of the parameters the representation depends on and of every buffer (names, dtypes, shapes, bytes)."""
    key = _state_key(model)
    try:
        cached = _WEIGHTS.get(model)
    except TypeError:  # not weakly referable
        cached = None
    if cached is not None and cached[0] == key:
        return cached[1]
    used = _parameters_used(model)
    hasher = hashlib.blake2b(digest_size=16)
    for name, tensor in chain(model.named_parameters(), model.named_buffers()):
        if used is not None and isinstance(tensor, torch.nn.Parameter) and id(tensor) not in used:
            continue
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        hasher.update(f"{name}|{data.dtype}|{tuple(tensor.shape)}|".encode())
        hasher.update(data.view(torch.uint8).numpy())
    result = hasher.hexdigest()
    try:
        _WEIGHTS[model] = (key, result)
    except TypeError:
        pass
    return result


def _tokenizer_digest(tokenizer: Any) -> str:
    """Digest of a tokenizer: its class, special tokens and, for a fast tokenizer, its whole definition.

    The truncation and padding settings of a fast tokenizer's definition are left out: they change with every
    call (``truncation=...``), not with what the tokenizer does to a text.
    """
    if tokenizer is None:
        return "none"
    special = json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return _fast_tokenizer_digest(type(tokenizer).__name__, special, backend.to_str())
    definition = json.dumps(sorted(tokenizer.get_vocab().items()), sort_keys=True, ensure_ascii=False)
    return digest(type(tokenizer).__name__, special, definition)


@functools.lru_cache(maxsize=8)
def _fast_tokenizer_digest(kind: str, special: str, serialized: str) -> str:
    """The digest of a fast tokenizer from its serialized definition (kept: the same text, the same digest)."""
    data: Any = json.loads(serialized)
    data.pop("truncation", None)
    data.pop("padding", None)
    return digest(kind, special, json.dumps(data, sort_keys=True, ensure_ascii=False))


def model_fingerprint(model: Any) -> dict[str, str]:
    """The fingerprint of everything in ``model`` that changes its results, one entry per :data:`FINGERPRINT_PARTS`.

    Parameters
    ----------
    model
        The similarity model (:class:`~bilrp.SimilarityModel`).

    Returns
    -------
    dict of str to str
        Digests for the weights, tokenizer, head and prompts; the pooling and similarity names and the
        maximum length as they are.

    """
    prompts = json.dumps({"prompts": dict(model.prompts or {}), "default": model.default_prompt_name}, sort_keys=True)
    return {
        "weights": _weights_digest(model),
        "tokenizer": _tokenizer_digest(model.tokenizer),
        "pooling": model.pooling_name,
        "head": digest(repr(model.head)),
        "similarity": model.similarity,
        "max_length": str(model.max_length),
        "prompts": digest(prompts),
    }


def fingerprint_difference(stored: dict[str, Any] | None, current: dict[str, Any]) -> str | None:
    """What differs between two fingerprints, in words (``"other weights"``, ``"pooling 'cls', not 'mean'"``).

    ``None`` when they are the same; a missing or malformed ``stored`` fingerprint is "no model fingerprint".
    """
    if not isinstance(stored, dict):
        return "no model fingerprint (written by an older bilrp)"
    for part, shown in FINGERPRINT_PARTS.items():
        if stored.get(part) != current.get(part):
            if part in SHOWN_AS_VALUES:
                return f"{shown} {stored.get(part)!r}, not {current.get(part)!r}"
            return f"other {shown}"
    return None
