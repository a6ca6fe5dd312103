"""Pooling of token states into one embedding.

Every pooling is a module ``pool(hidden, mask) -> embedding`` with ``hidden`` of shape
``(batch, seq, dim)`` and ``mask`` of shape ``(batch, seq)`` (1 for real tokens, 0 for padding). Positions
(the first or last real token, the position weights) come from the mask alone, so right and left padding
give the same embedding, as in sentence-transformers' ``Pooling`` module. The one data-dependent choice,
the per-dimension argmax of :class:`MaxPooling`, is a rule constant (:func:`bilrp.constants.constant`):
recorded once and replayed by the engine, which makes max pooling piecewise linear and its relevance exact.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._catalog import POOLING_NAMES
from ..architectures import Architecture, register_architecture
from ..constants import constant

__all__ = [
    "CLSPooling",
    "MeanPooling",
    "WeightedMeanPooling",
    "QKVPooling",
    "LastTokenPooling",
    "MaxPooling",
    "MeanSqrtLenPooling",
    "make_pooling",
    "pooling_name",
    "POOLINGS",
    "POOLING_CLASSES",
]


def _first_real(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first real token of every row, ``(batch,)`` (0 for a row without real tokens)."""
    return mask.to(torch.int32).argmax(dim=1)


def _last_real(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of every row, ``(batch,)`` (the last position for a row without any)."""
    length = mask.shape[1]
    values, flipped = mask.to(torch.int32).flip(1).max(dim=1)
    return torch.where(values == 0, length - 1, length - 1 - flipped)


def _token_at(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``hidden[b, index[b]]`` for every row ``b``, ``(batch, dim)``."""
    return hidden.gather(1, index.to(hidden.device)[:, None, None].expand(-1, 1, hidden.shape[-1])).squeeze(1)


class CLSPooling(nn.Module):
    """The state of the first real token (``[CLS]`` for BERT-like models; after any left padding)."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _token_at(hidden, _first_real(mask))


class LastTokenPooling(nn.Module):
    """The state of the last real token (decoder embedders: Qwen3-Embedding, e5-mistral); right or left padding."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _token_at(hidden * mask[..., None].to(hidden.dtype), _last_real(mask))


class MeanPooling(nn.Module):
    """The mean over the real (unpadded) tokens."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.to(hidden.dtype)
        return (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1e-9)


class MeanSqrtLenPooling(nn.Module):
    """The sum over the real tokens divided by the square root of their number (``mean * sqrt(n)``)."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.to(hidden.dtype)
        return (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1e-9).sqrt()


class WeightedMeanPooling(nn.Module):
    """Position-weighted mean as in SGPT: the ``i``-th real token (counting from 1) gets weight ``i``.

    Positions count from the first real token, so left padding does not shift them (as sentence-transformers).
    """

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(1, hidden.size(1) + 1, device=hidden.device, dtype=hidden.dtype)
        positions = positions[None, :] - _first_real(mask).to(hidden.device, hidden.dtype)[:, None]
        weights = mask.to(hidden.dtype) * positions
        return (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1e-9)


class MaxPooling(nn.Module):
    """Per dimension, the largest value over the real tokens.

    The argmax positions are rule constants (recorded in the explained pass and replayed), so the pooling
    is a gather of fixed positions: piecewise linear, and each dimension's relevance goes to its argmax token.
    """

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        def positions() -> torch.Tensor:
            masked = hidden.detach().masked_fill(mask[..., None] == 0, float("-inf"))
            return masked.argmax(dim=1, keepdim=True)  # (batch, 1, dim): its batch dimension comes first

        return hidden.gather(1, constant(positions, like=hidden)).squeeze(1)


class QKVPooling(nn.Module):
    """Learnable attention pooling (paper section 4.2): a learned query attends over the token states.

    ``embedding = sum_i p_i * W_v h_i`` with ``p = softmax(q . W_k h_i / sqrt(dim))`` over real tokens.
    Under the AH rule the probabilities ``p`` are constants; under AttnLRP ``p . W_v h`` is a matrix product
    with the uniform rule (the learned query is a parameter, so ``W_k h . q`` stays linear).

    Parameters
    ----------
    dim
        Hidden size of the token states.

    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(dim) / math.sqrt(dim))
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.key(hidden) @ self.query / math.sqrt(hidden.size(-1))
        scores = scores.masked_fill(mask == 0, torch.finfo(scores.dtype).min)
        probabilities = torch.softmax(scores, dim=-1)
        return (probabilities[:, None, :] @ self.value(hidden)).squeeze(1)  # a product AttnLRP sees


QKV_POOLING = register_architecture(
    Architecture(
        name="qkv-pooling",
        attention=(QKVPooling,),
        embedding="",
        pooling="qkv",
        norm="-",
        mlp="- (bilrp's learnable attention pooling: rule AH on its softmax)",
    )
)
"""The rule of :class:`QKVPooling` (AH on its probabilities), registered like a model family's."""

POOLINGS = POOLING_NAMES
"""The poolings :func:`make_pooling` builds, by name."""

POOLING_CLASSES: dict[str, type[nn.Module]] = dict(
    zip(
        POOLINGS,
        (CLSPooling, MeanPooling, WeightedMeanPooling, QKVPooling, LastTokenPooling, MaxPooling, MeanSqrtLenPooling),
        strict=True,
    )
)
"""The pooling class of every name in :data:`POOLINGS`."""


def make_pooling(name: str, dim: int) -> nn.Module:
    """Build the pooling module called ``name`` (one of :data:`POOLINGS`) for hidden size ``dim``."""
    kind = POOLING_CLASSES.get(name)
    if kind is None:
        raise ValueError(f"unknown pooling {name!r}: choose one of {', '.join(POOLINGS)}")
    return kind(dim) if kind is QKVPooling else kind()


def pooling_name(pooling: nn.Module) -> str:
    """The name of a pooling module (one of :data:`POOLINGS`), or its class name for other modules."""
    for name, kind in POOLING_CLASSES.items():
        if type(pooling) is kind:
            return name
    return type(pooling).__name__
