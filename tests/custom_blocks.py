"""Small Transformers written the way zennit users write their own, with blocks bilrp has no rule for.

Each model takes the embedding output ``(batch, seq, dim)`` (what zennit's attributors call a model with) and
returns one score per example: pre-norm residual blocks, a final norm, mean pooling and a linear read-out.
:func:`custom_transformer` swaps in one hand-written block that computes a non-linearity no bilrp rule covers:

- ``"softmax"``: self-attention with ``scores.softmax(-1)`` written inline (:class:`SoftmaxAttention`);
- ``"rmsnorm"``: a home-made RMS norm class (:class:`RMSNorm`, not ``nn.RMSNorm``);
- ``"swiglu"``: a gated feed-forward block ``down(silu(gate(x)) * up(x))`` (:class:`SwiGLU`);
- ``"alibi"``: attention with ALiBi's linear distance biases (:class:`ALiBiAttention`).

:data:`CULPRITS` names the module the certificate must blame in each. ``"supported"`` uses only blocks bilrp
covers (``nn.LayerNorm``, ``nn.GELU`` in an MLP, and a mean over tokens instead of attention).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DIM, HEADS, SEQ = 16, 2, 6

__all__ = [
    "DIM",
    "SEQ",
    "CULPRITS",
    "BLOCKS",
    "SoftmaxAttention",
    "ALiBiAttention",
    "RMSNorm",
    "SwiGLU",
    "custom_transformer",
    "embeddings",
]


class SoftmaxAttention(nn.Module):
    """Multi-head self-attention with the softmax written inline."""

    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, seq, dim = x.shape
        q, k, v = self.qkv(x).view(batch, seq, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split(x)
        probabilities = self.scores(q, k).softmax(-1)
        return self.out((probabilities @ v).transpose(1, 2).flatten(2))


class ALiBiAttention(SoftmaxAttention):
    """Causal attention with ALiBi: a per-head linear penalty on the query-key distance, no positions."""

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        seq = q.shape[-2]
        slopes = 2.0 ** (-8.0 * torch.arange(1, self.heads + 1, dtype=q.dtype) / self.heads)
        distance = torch.arange(seq, dtype=q.dtype)[None, :] - torch.arange(seq, dtype=q.dtype)[:, None]
        bias = slopes[:, None, None] * distance.clamp_max(0)
        causal = torch.ones(seq, seq, dtype=torch.bool).triu(1)
        return (super().scores(q, k) + bias).masked_fill(causal, torch.finfo(q.dtype).min)


class RMSNorm(nn.Module):
    """A home-made RMS norm (the class users copy from LLaMA code), unknown to bilrp."""

    def __init__(self, dim: int = DIM, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SwiGLU(nn.Module):
    """Gated feed-forward block ``down(silu(gate(x)) * up(x))``, written inline."""

    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(dim, 2 * dim), nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class TokenMean(nn.Module):
    """Mixes tokens by their mean: linear in the input, needs no rule."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1, keepdim=True).expand_as(x)


class MLP(nn.Sequential):
    """``Linear -> GELU -> Linear``: covered by bilrp's rules."""

    def __init__(self, dim: int = DIM) -> None:
        super().__init__(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))


class Block(nn.Module):
    """Pre-norm residual block: ``x + mixer(norm1(x))``, then ``x + feed_forward(norm2(x))``."""

    def __init__(self, mixer: type[nn.Module], norm: type[nn.Module], feed_forward: type[nn.Module]) -> None:
        super().__init__()
        self.norm1, self.mixer = norm(DIM), mixer() if mixer is TokenMean else mixer(DIM)
        self.norm2, self.feed_forward = norm(DIM), feed_forward(DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.feed_forward(self.norm2(x))


class CustomTransformer(nn.Module):
    """Two blocks, a final norm, mean pooling and a linear read-out: one score per example."""

    def __init__(self, mixer: type[nn.Module], norm: type[nn.Module], feed_forward: type[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(Block(mixer, norm, feed_forward) for _ in range(2)))
        self.norm = norm(DIM)
        self.readout = nn.Linear(DIM, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.norm(self.blocks(x)).mean(1)).squeeze(-1)


BLOCKS: dict[str, tuple[type[nn.Module], type[nn.Module], type[nn.Module]]] = {
    "supported": (TokenMean, nn.LayerNorm, MLP),
    "softmax": (SoftmaxAttention, nn.LayerNorm, MLP),
    "rmsnorm": (TokenMean, RMSNorm, MLP),
    "swiglu": (TokenMean, nn.LayerNorm, SwiGLU),
    "alibi": (ALiBiAttention, nn.LayerNorm, MLP),
}
"""Model name -> (token mixer, norm, feed-forward block)."""

CULPRITS: dict[str, tuple[str, str]] = {
    "softmax": ("blocks.0.mixer", "SoftmaxAttention"),
    "rmsnorm": ("blocks.0.norm1", "RMSNorm"),
    "swiglu": ("blocks.0.feed_forward", "SwiGLU"),
    "alibi": ("blocks.0.mixer", "ALiBiAttention"),
}
"""Model name -> (module name, class name) that the certificate must blame: the first non-affine module."""


def custom_transformer(name: str, seed: int = 0, dtype: torch.dtype = torch.float64, biases: bool = True) -> nn.Module:
    """The model ``name`` of :data:`BLOCKS` (random weights, eval mode); ``biases=False`` zeroes every bias."""
    torch.manual_seed(seed)
    model = CustomTransformer(*BLOCKS[name]).to(dtype).eval()
    with torch.no_grad():
        for parameter_name, parameter in model.named_parameters():
            if parameter_name.endswith("bias"):
                parameter.normal_(0.0, 0.1) if biases else parameter.zero_()
            elif parameter_name.endswith("weight") and parameter.dim() == 1:
                parameter.uniform_(0.5, 1.5)  # norm scales away from the identity
    return model


def embeddings(batch: int = 2, seed: int = 1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Random embedding outputs ``(batch, SEQ, DIM)``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, SEQ, DIM, generator=generator, dtype=dtype)
