"""GTE (``GteModel``: gte-base-en-v1.5, gte-multilingual): RoPE, gated GELU feed-forward, LayerNorm."""

from __future__ import annotations

from ..gated_mlp import GatedMLP
from .registry import Architecture, ArchitectureCanonizer, register_architecture
from .tiny import tiny_model

_GTE = "transformers.models.gte.modeling_gte"

GTE = register_architecture(
    Architecture(
        name="gte",
        models=("transformers:GteModel",),
        attention=(f"{_GTE}:GteAttention",),
        gated_mlp=GatedMLP(classes=(f"{_GTE}:GteMLP",), dropout="dropout"),
        pooling="cls",
        checkpoints=("Alibaba-NLP/gte-base-en-v1.5", "Alibaba-NLP/gte-multilingual-base"),
        mlp="GLU (GELU gate)",
        tiny=lambda: tiny_model("GteConfig", "GteModel", num_hidden_layers=2, pad_token_id=0),
    )
)


class GteCanonizer(ArchitectureCanonizer):
    """The rules for GTE encoders."""

    families = ("gte",)


__all__ = ["GTE", "GteCanonizer"]
