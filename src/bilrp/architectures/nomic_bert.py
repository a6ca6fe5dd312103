"""NomicBERT (nomic-embed-text): RoPE, SwiGLU, LayerNorm."""

from __future__ import annotations

from ..gated_mlp import GatedMLP
from .registry import Architecture, ArchitectureCanonizer, register_architecture
from .tiny import tiny_model

_NOMIC = "transformers.models.nomic_bert.modeling_nomic_bert"

NOMIC_BERT = register_architecture(
    Architecture(
        name="nomic-bert",
        models=("transformers:NomicBertModel",),
        attention=(f"{_NOMIC}:NomicBertAttention",),
        gated_mlp=GatedMLP(classes=(f"{_NOMIC}:NomicBertMLP",)),
        pooling="mean",
        prompts={"query": "search_query: ", "document": "search_document: "},
        checkpoints=("nomic-ai/nomic-embed-text-v1.5",),
        mlp="SwiGLU",
        tiny=lambda: tiny_model("NomicBertConfig", "NomicBertModel", num_hidden_layers=2, pad_token_id=0),
    )
)


class NomicBertCanonizer(ArchitectureCanonizer):
    """The rules for NomicBERT encoders."""

    families = ("nomic-bert",)


__all__ = ["NOMIC_BERT", "NomicBertCanonizer"]
