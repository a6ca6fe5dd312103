"""Refuse inputs that cannot be what the model runs from at the attribution's input point.

Two mix-ups explain another function with no error, so they are refused, in one line, when they are certain:

- HuggingFace's ``inputs_embeds`` (the word embeddings) given where the embedding output is expected: every real
  token of the first text is a row of the word-embedding matrix (an embedding output, after position embeddings
  and a LayerNorm, is not);
- embedding outputs given as ``inputs_embeds``: every real token of the first text carries the fingerprint of the
  embedding layer's final LayerNorm, ``(z - beta) / gamma`` with mean 0 and mean square ``var / (var + eps)``
  close to 1, to float precision (word embeddings do not).

Anything else passes: a perturbed or interpolated input (Captum's metrics, Integrated Gradients' path) is a valid
input of the explained function. Checks that cannot be certain (an embedding that is not a plain ``nn.Embedding``,
a LayerNorm with a zero scale) are skipped, never guessed.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import torch
from torch import nn

from ..explaining import explaining
from .encoder_parts import word_embedding_module
from .input_points import InputsEmbedsModel
from .similarity_model import SimilarityModel

__all__ = ["check_pair_inputs"]

_PROFILES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""SimilarityModel -> its :class:`_Profile` (or ``None`` when it could not be measured)."""
_FINGERPRINT_SQUARE = 1e-3
"""How far from 1 the mean square of a LayerNorm output's normalised values may be for the fingerprint."""


def check_pair_inputs(model, inputs: tuple[torch.Tensor, ...], masks: tuple[torch.Tensor, ...], who: str) -> None:
    """Refuse, in one line naming the input, inputs that cannot be what ``model`` runs from.

    Parameters
    ----------
    model
        The attribution's ``forward_func``: a :class:`SimilarityModel` (inputs are embedding outputs), an
        :class:`InputsEmbedsModel` (inputs are ``inputs_embeds``); other models are not checked.
    inputs, masks
        ``(batch, seq, width)`` inputs and their 0/1 masks, one per text side.
    who
        The attribution's name, for the message.

    """
    for index, (tensor, mask) in enumerate(zip(inputs, masks, strict=True)):
        name = f"inputs[{index}]"
        if isinstance(model, InputsEmbedsModel):
            _check_inputs_embeds(model, tensor, mask, name, who)
        elif isinstance(model, SimilarityModel):
            _check_embedding_output(model, tensor, mask, name, who)


def _check_embedding_output(model: SimilarityModel, tensor, mask, name: str, who: str) -> None:
    profile = _profile(model)
    if profile is None:
        return
    if tensor.shape[-1] != profile.width:
        raise ValueError(
            f"{name} has width {tensor.shape[-1]}, but the embedding output of {model.name} has width "
            f"{profile.width}: give embedding outputs from model.embed(input_ids, attention_mask)"
        )
    word = word_embedding_module(model.encoder)
    if profile.same_points or word is None or not _plain_embedding(word):
        return  # the two input points coincide, or the rows cannot be read
    if _all_rows(word.weight, _real_tokens(tensor, mask)):
        raise ValueError(
            f"{name} holds rows of the word-embedding matrix (HuggingFace's inputs_embeds), not the embedding output "
            f"{who} takes by default (after position embeddings and {type(model.embedding_layer).__name__}): pass "
            f"attribute_to='inputs_embeds' to {who}, or inputs from model.embed(input_ids, attention_mask)"
        )


def _check_inputs_embeds(model: InputsEmbedsModel, tensor, mask, name: str, who: str) -> None:
    word = model.word_embeddings
    width = getattr(word, "embedding_dim", None)
    if isinstance(width, int) and tensor.shape[-1] != width:
        raise ValueError(
            f"{name} has width {tensor.shape[-1]}, but the inputs_embeds of {model.name} have width {width}: give "
            "encoder.get_input_embeddings()(input_ids)"
        )
    profile = _profile(model.model)
    if profile is None or profile.same_points or profile.final_norm is None:
        return
    tokens = _real_tokens(tensor, mask)
    if _plain_embedding(word) and _all_rows(word.weight, tokens[:1]):
        return  # a word embedding: certainly inputs_embeds
    if _normalised_by(profile.final_norm, tokens):
        raise ValueError(
            f"{name} holds embedding outputs (every token normalised by the embedding layer's final LayerNorm), not "
            f"the inputs_embeds {who} takes with attribute_to='inputs_embeds': pass "
            "encoder.get_input_embeddings()(input_ids), or attribute_to='embedding_output'"
        )


def _plain_embedding(module: nn.Module) -> bool:
    """An ``nn.Embedding`` whose output is a row of its weight (no scaled or overridden forward)."""
    return isinstance(module, nn.Embedding) and type(module).forward is nn.Embedding.forward


def _real_tokens(tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The real tokens ``(n, width)`` of the first text of the batch."""
    return tensor[0][mask[0].to(torch.bool).to(tensor.device)].detach()


def _all_rows(weight: torch.Tensor, tokens: torch.Tensor) -> bool:
    """Whether every token equals a row of ``weight`` to the precision of the tokens' dtype (first token first)."""
    if tokens.numel() == 0 or tokens.shape[-1] != weight.shape[-1]:
        return False
    eps = torch.finfo(tokens.dtype).eps if tokens.dtype.is_floating_point else 0.0
    with torch.no_grad():
        table = weight.detach().to(device=tokens.device, dtype=torch.float32)
        for start in (0, 1):  # the first token alone, then (only if it matched) all the others
            chunk = tokens[start:] if start else tokens[:1]
            if chunk.numel() == 0:
                continue
            chunk = chunk.to(torch.float32)
            nearest = table[torch.cdist(chunk, table).argmin(-1)]
            scale = 8 * max(eps, torch.finfo(torch.float32).eps) * nearest.abs().amax(-1).clamp_min(1)
            if not bool(((nearest - chunk).abs().amax(-1) <= scale).all()):
                return False
    return True


def _normalised_by(norm: nn.LayerNorm, tokens: torch.Tensor) -> bool:
    """Whether every token is, to float precision, an output of ``norm`` (the LayerNorm fingerprint)."""
    if tokens.numel() == 0 or tokens.shape[-1] != norm.normalized_shape[-1] or len(norm.normalized_shape) != 1:
        return False
    values = tokens.to(torch.float64)
    gamma = torch.ones_like(values[0]) if norm.weight is None else norm.weight.detach().to(values)
    beta = torch.zeros_like(values[0]) if norm.bias is None else norm.bias.detach().to(values)
    if not bool((gamma != 0).all()):
        return False  # a zero scale loses a dimension: no certainty
    eps = torch.finfo(tokens.dtype).eps if tokens.dtype.is_floating_point else 0.0
    normalised = (values - beta) / gamma
    bound = 64 * eps * (normalised.abs() + (beta / gamma).abs()).mean(-1) + 1e-12
    mean, square = normalised.mean(-1), normalised.pow(2).mean(-1)
    return bool(((mean.abs() <= bound) & ((square - 1).abs() <= _FINGERPRINT_SQUARE)).all())


class _Profile(NamedTuple):
    """What one run of the embedding layer on three ids shows about ``model``'s input points."""

    width: int
    """Width of the embedding output."""
    final_norm: nn.LayerNorm | None
    """The LayerNorm whose output the embedding output is (``None``: none is)."""
    same_points: bool
    """Whether the embedding output is the word embedding itself (Llama-like, T5): the input points coincide."""


def _profile(model: SimilarityModel) -> _Profile | None:
    """``model``'s :class:`_Profile`, measured once; ``None`` when it cannot be (then nothing is checked)."""
    if model in _PROFILES:
        return _PROFILES[model]
    norms = [m for m in model.embedding_layer.modules() if isinstance(m, nn.LayerNorm)]
    outputs: dict[nn.Module, torch.Tensor] = {}
    handles = [norm.register_forward_hook(_keeper(outputs, norm)) for norm in norms]
    try:
        with explaining(model), torch.no_grad():
            ids = torch.arange(3, device=model.device)[None]
            made = model.embed(ids, torch.ones_like(ids))
            word = word_embedding_module(model.encoder)
            words = None if word is None else word(ids)
        final = next((norm for norm in norms if norm in outputs and torch.equal(outputs[norm], made)), None)
        same = word is model.embedding_layer or (words is not None and _equal(words, made))
        profile = _Profile(made.shape[-1], final, same)
    except Exception:  # a best-effort check: a model it cannot run is simply not checked
        profile = None
    finally:
        for handle in handles:
            handle.remove()
    _PROFILES[model] = profile
    return profile


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.equal(a.to(b.dtype), b)


def _keeper(outputs: dict, norm: nn.Module):
    def keep(module, inputs, output):
        outputs[norm] = output.detach()

    return keep
