"""What a document's stored factor depends on, as a fingerprint: the model and the rule set it was computed with.

A factor ``C_d`` is valid only for the model that computed it (weights, tokenizer, pooling, head, similarity,
maximum length, prompts) and for its rules. :func:`model_fingerprint` digests each of these apart, so that an
index opened with another model is refused with a message naming what differs (:func:`mismatch_message`).
"""

from __future__ import annotations

import hashlib
import json
from itertools import chain
from typing import Any

import torch

from ..explaining import exclusive
from ..models import SimilarityModel
from ..rule_sets import parse_rule_set

__all__ = ["FINGERPRINT_PARTS", "model_fingerprint", "canonical_rules", "mismatch_message", "digest"]

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

_SHOWN_AS_VALUES = ("pooling", "similarity", "max_length")
"""Parts whose stored value is readable (shown in the error), not a digest."""


def digest(*parts: str | bytes) -> str:
    """A short hex digest (BLAKE2b, 128 bits) of ``parts``, each length-prefixed so that no two lists collide."""
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "little"))
        hasher.update(data)
    return hasher.hexdigest()


def _parameters_used(model: SimilarityModel) -> set[int] | None:
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


def _weights_digest(model: SimilarityModel) -> str:
    """Digest of the parameters the representation depends on and of every buffer (names, dtypes, shapes, bytes)."""
    used = _parameters_used(model)
    hasher = hashlib.blake2b(digest_size=16)
    for name, tensor in chain(model.named_parameters(), model.named_buffers()):
        if used is not None and isinstance(tensor, torch.nn.Parameter) and id(tensor) not in used:
            continue
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        hasher.update(f"{name}|{data.dtype}|{tuple(tensor.shape)}|".encode())
        hasher.update(data.view(torch.uint8).numpy())
    return hasher.hexdigest()


def _tokenizer_digest(tokenizer) -> str:
    """Digest of a tokenizer: its class, special tokens and, for a fast tokenizer, its whole definition.

    The truncation and padding settings of a fast tokenizer's definition are left out: they change with every
    call (``truncation=...``), not with what the tokenizer does to a text.
    """
    if tokenizer is None:
        return "none"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        data: Any = json.loads(backend.to_str())
        data.pop("truncation", None)
        data.pop("padding", None)
    else:
        data = sorted(tokenizer.get_vocab().items())
    definition = json.dumps(data, sort_keys=True, ensure_ascii=False)
    special = json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str)
    return digest(type(tokenizer).__name__, special, definition)


def model_fingerprint(model: SimilarityModel) -> dict[str, str]:
    """The fingerprint of everything in ``model`` that changes a factor, one entry per :data:`FINGERPRINT_PARTS`.

    Parameters
    ----------
    model
        The similarity model.

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


def canonical_rules(spec: str) -> str:
    """A rule-set spec in one spelling (``"epsilon"`` and ``"epsilon=0.1"`` are the same rules)."""
    rule_set, value = parse_rule_set(spec)
    if rule_set.default is None:
        return rule_set.name
    return f"{rule_set.name}={float(rule_set.default if value is None else value)!r}"


def mismatch_message(
    where: str, stored: dict[str, str], current: dict[str, str], built_with: str, advice: str
) -> str | None:
    """The one-line refusal when fingerprint ``current`` differs from ``stored``, else ``None``.

    Parameters
    ----------
    where
        How the index is named in the message (its folder).
    stored, current
        The fingerprint the index was built with and that of the model at hand.
    built_with
        The name of the model the index was built with.
    advice
        What to do, the end of the message.

    """
    for part, shown in FINGERPRINT_PARTS.items():
        if stored.get(part) != current.get(part):
            detail = (
                f"{shown} {stored.get(part)!r}, not {current.get(part)!r}"
                if part in _SHOWN_AS_VALUES
                else f"other {shown}"
            )
            return f"index {where} was built with another model ({detail}; built with {built_with!r}): {advice}"
    return None
