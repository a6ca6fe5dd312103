"""The maximum number of tokens per text: checks of the values given, and the limits of an encoder.

One definition of each rule, used by :class:`~bilrp.models.SimilarityModel` and its loaders.
"""

from __future__ import annotations

import warnings

from torch import nn

from .._validation import optional_positive_int, positive_int
from .errors import ModelLoadError

__all__ = ["check_max_length", "check_seq_length", "position_limit", "capped_max_length", "default_max_length"]

# model types whose position ids start after the padding index (RoBERTa-style: 2 positions reserved)
_POSITION_OFFSET_TYPES = {"roberta", "xlm-roberta", "mpnet", "camembert", "longformer", "data2vec-text"}
_FALLBACK_MAX_LENGTH = 512
"""The maximum length when neither the tokenizer nor the encoder's config gives one."""


def check_max_length(max_length) -> int | None:
    """``max_length`` (``None`` or a positive whole number) as given to a model; else :class:`ValueError`."""
    try:
        return optional_positive_int("max_length", max_length)
    except ValueError:
        raise ValueError(f"max_length must be a positive integer (tokens per text), got {max_length!r}") from None


def check_seq_length(value, what: str, hint: str) -> int:
    """A ``max_seq_length`` read from ``what`` (a file or module); else :class:`ModelLoadError` with ``hint``."""
    try:
        return positive_int(what, value)
    except ValueError:
        raise ModelLoadError(f"{what} must be a positive integer, got {value!r}: {hint}") from None


def position_limit(encoder: nn.Module) -> int | None:
    """The most tokens ``encoder``'s position embeddings can take (``None``: no such limit known).

    RoBERTa-style models (RoBERTa, XLM-R, MPNet, CamemBERT, ...) number positions from after the padding
    index, so two of their ``max_position_embeddings`` are never used by tokens.
    """
    config = getattr(encoder, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, bool) or not isinstance(positions, int) or positions <= 0:
        return None
    offset = 2 if getattr(config, "model_type", "") in _POSITION_OFFSET_TYPES else 0
    position_embeddings = getattr(getattr(encoder, "embeddings", None), "position_embeddings", None)
    padding_idx = getattr(position_embeddings, "padding_idx", None)
    if isinstance(padding_idx, int):
        offset = max(offset, padding_idx + 1)
    return max(positions - offset, 1)


def capped_max_length(max_length: int, encoder: nn.Module, source: str, stacklevel: int = 4) -> int:
    """``max_length``, capped with a warning to :func:`position_limit` (``source`` names where it came from).

    ``stacklevel`` is as for :func:`warnings.warn`, counted from this function: the default 4 points at the
    code that called ``SimilarityModel.from_pretrained`` (which calls a loader, which calls this function).
    """
    limit = position_limit(encoder)
    if limit is not None and max_length > limit:
        warnings.warn(
            f"{source} {max_length} exceeds the {limit} tokens the model's position embeddings support: "
            f"capped to {limit}",
            stacklevel=stacklevel,
        )
        return limit
    return max_length


def default_max_length(encoder: nn.Module, tokenizer) -> int:
    """The maximum length when none is given: the least of the tokenizer's and the position embeddings'."""
    limits = []
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int | float) and 0 < model_max < 1_000_000:
        limits.append(int(model_max))
    limit = position_limit(encoder)
    if limit is not None:
        limits.append(limit)
    return min(limits) if limits else _FALLBACK_MAX_LENGTH
