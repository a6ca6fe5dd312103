"""EuroBERT: a bidirectional Llama-style encoder (RMSNorm, SwiGLU, RoPE)."""

from __future__ import annotations

from ..gated_mlp import GatedMLP
from .llama import GQA
from .registry import Architecture, ArchitectureCanonizer, register_architecture
from .tiny import tiny_model

_EUROBERT = "transformers.models.eurobert.modeling_eurobert"

EUROBERT = register_architecture(
    Architecture(
        name="eurobert",
        models=("transformers:EuroBertModel",),
        attention=(f"{_EUROBERT}:EuroBertAttention",),
        rms_norms=(f"{_EUROBERT}:EuroBertRMSNorm",),
        gated_mlp=GatedMLP(classes=(f"{_EUROBERT}:EuroBertMLP",)),
        embedding="embed_tokens",
        pooling="mean",
        checkpoints=("EuroBERT/EuroBERT-210m",),
        norm="RMSNorm",
        mlp="SwiGLU",
        tiny=lambda: tiny_model("EuroBertConfig", "EuroBertModel", **GQA),
    )
)


class EuroBertCanonizer(ArchitectureCanonizer):
    """The rules for EuroBERT encoders."""

    families = ("eurobert",)


__all__ = ["EUROBERT", "EuroBertCanonizer"]
