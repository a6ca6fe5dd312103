"""ModernBERT (gte-modernbert, modernbert-embed): RoPE, GeGLU, alternating local/global attention.

Its unpadded attention path is for fused kernels; under the eager path the rules see, it runs padded,
and the composite restores the implementation afterwards.
"""

from __future__ import annotations

from ..gated_mlp import GatedMLP
from .registry import Architecture, ArchitectureCanonizer, register_architecture
from .tiny import tiny_model

_MODERNBERT = "transformers.models.modernbert.modeling_modernbert"

MODERNBERT = register_architecture(
    Architecture(
        name="modernbert",
        models=("transformers:ModernBertModel",),
        attention=(f"{_MODERNBERT}:ModernBertAttention",),
        gated_mlp=GatedMLP(classes=(f"{_MODERNBERT}:ModernBertMLP",), fused="Wi", down="Wo", act="act", dropout="drop"),
        pooling="mean",
        prompts={"query": "search_query: ", "document": "search_document: "},
        checkpoints=("Alibaba-NLP/gte-modernbert-base", "nomic-ai/modernbert-embed-base"),
        norm="LayerNorm (no bias)",
        mlp="GeGLU",
        tiny=lambda: tiny_model(
            "ModernBertConfig",
            "ModernBertModel",
            num_hidden_layers=2,
            global_attn_every_n_layers=2,
            local_attention=4,
            pad_token_id=0,
        ),
    )
)


class ModernBertCanonizer(ArchitectureCanonizer):
    """The rules for ModernBERT encoders."""

    families = ("modernbert",)


__all__ = ["MODERNBERT", "ModernBertCanonizer"]
