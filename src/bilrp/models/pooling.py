"""Pooling of token states into one embedding: CLS, mean, position-weighted mean (SGPT) and QKV attention.

Every pooling is a module ``pool(hidden, mask) -> embedding`` with ``hidden`` of shape
``(batch, seq, dim)`` and ``mask`` of shape ``(batch, seq)`` (1 for real tokens, 0 for padding).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._catalog import POOLING_NAMES

__all__ = ["CLSPooling", "MeanPooling", "WeightedMeanPooling", "QKVPooling", "make_pooling", "POOLINGS"]


class CLSPooling(nn.Module):
    """The state of the first token (``[CLS]`` for BERT-like models)."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return hidden[:, 0]


class MeanPooling(nn.Module):
    """The mean over the real (unpadded) tokens."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.to(hidden.dtype)
        return (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1e-9)


class WeightedMeanPooling(nn.Module):
    """Position-weighted mean as in SGPT: token ``i`` (counting from 1) gets weight ``i``."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(1, hidden.size(1) + 1, device=hidden.device, dtype=hidden.dtype)
        weights = mask.to(hidden.dtype) * positions
        return (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1e-9)


class QKVPooling(nn.Module):
    """Learnable attention pooling (paper section 4.2): a learned query attends over the token states.

    ``embedding = sum_i p_i * W_v h_i`` with ``p = softmax(q . W_k h_i / sqrt(dim))`` over real tokens.
    Under the AH rule the probabilities ``p`` are constants.

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
        return (probabilities[..., None] * self.value(hidden)).sum(1)


POOLINGS = POOLING_NAMES
"""The poolings :func:`make_pooling` builds, by name."""


def make_pooling(name: str, dim: int) -> nn.Module:
    """Build the pooling module called ``name`` (one of :data:`POOLINGS`) for hidden size ``dim``."""
    if name == "cls":
        return CLSPooling()
    if name == "mean":
        return MeanPooling()
    if name == "weighted_mean":
        return WeightedMeanPooling()
    if name == "qkv":
        return QKVPooling(dim)
    raise ValueError(f"unknown pooling {name!r}: choose one of {', '.join(POOLINGS)}")
