"""Small encoders written the way users write their own, for the certificate and input-path tests.

Each has an ``embeddings`` module and ``forward(input_ids, attention_mask, inputs_embeds=None)``; the
token mixer and feed-forward block are chosen per test. None of their classes is known to bilrp.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 30522


class MHA(nn.Module):
    """Self-attention with a hand-written softmax."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.q(x) @ self.k(x).transpose(-1, -2) / math.sqrt(x.shape[-1])
        scores = scores.masked_fill(mask[:, None, :] == 0, torch.finfo(x.dtype).min)
        return scores.softmax(-1) @ self.v(x)


class TokenMixer(nn.Module):
    """Self-attention through ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, :].bool())


class FlashMixer(TokenMixer):
    """Causal self-attention through ``F.scaled_dot_product_attention``."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


class MeanMixer(nn.Module):
    """Token mixing by a masked mean: linear in the input, needs no rule."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask[..., None].to(x.dtype)
        return (x * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True) + 0 * x


class Scaler(nn.Module):
    """Scales each token by a function of itself: a product of two input-dependent tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(x.mean(-1, keepdim=True))


class GeGLU(nn.Module):
    """Gated feed-forward block ``gelu(x W1) * (x W2)``: GELU has a rule, the product has none."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(dim, 2 * dim), nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.gate(x)) * self.up(x))


class FeedForward(nn.Sequential):
    """``Linear -> GELU -> Linear``."""

    def __init__(self, dim: int) -> None:
        super().__init__(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))


class Block(nn.Module):
    def __init__(self, dim: int, mixer: type[nn.Module], feed_forward: type[nn.Module], scaler: bool) -> None:
        super().__init__()
        self.mixer = mixer(dim) if mixer is not MeanMixer else MeanMixer()
        self.norm = nn.LayerNorm(dim)
        self.feed_forward = feed_forward(dim)
        self.scaler = Scaler() if scaler else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm(x + self.mixer(x, mask))
        return x + self.scaler(self.feed_forward(x))


class OwnEncoder(nn.Module):
    """Embedding + blocks; ``inputs_embeds`` are run through ``embeddings.project`` like HF models do.

    ``idiom="inputs_embeds"`` writes the common ``x = inputs_embeds`` instead (skipping the embedding
    module); ``idiom="ids_only"`` takes no ``inputs_embeds`` at all.
    """

    def __init__(
        self,
        mixer: type[nn.Module] = MeanMixer,
        feed_forward: type[nn.Module] = FeedForward,
        scaler: bool = False,
        dim: int = 16,
        layers: int = 2,
        idiom: str = "hf",
        seed: int = 0,
    ) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embeddings = nn.Embedding(VOCAB, dim)
        self.blocks = nn.ModuleList(Block(dim, mixer, feed_forward, scaler) for _ in range(layers))
        self.idiom = idiom
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    module.bias.normal_(0, 0.1)

    def encode(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, attention_mask)
        return x

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None) -> tuple[torch.Tensor]:
        if self.idiom == "ids_only" and inputs_embeds is not None:
            raise AssertionError("ids_only encoders are never given inputs_embeds")
        if inputs_embeds is not None and self.idiom == "inputs_embeds":
            x = inputs_embeds
        else:
            x = self.embeddings(input_ids)
        return (self.encode(x, attention_mask),)


class IdsOnlyEncoder(OwnEncoder):
    """``forward(input_ids, attention_mask)``: no ``inputs_embeds`` argument at all."""

    def __init__(self, **options) -> None:
        super().__init__(idiom="ids_only", **options)

    def forward(self, input_ids, attention_mask):  # noqa: D102
        return super().forward(input_ids, attention_mask)
