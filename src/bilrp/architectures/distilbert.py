"""DistilBERT."""

from __future__ import annotations

from .registry import Architecture, ArchitectureCanonizer, register_architecture
from .tiny import HIDDEN, VOCAB, tiny_model

DISTILBERT = register_architecture(
    Architecture(
        name="distilbert",
        models=("transformers:DistilBertModel",),
        attention=("transformers.models.distilbert.modeling_distilbert:DistilBertSelfAttention",),
        checkpoints=("sentence-transformers/msmarco-distilbert-base-v4",),
        tiny=lambda: tiny_model(
            "DistilBertConfig",
            "DistilBertModel",
            common=False,
            vocab_size=VOCAB,
            dim=HIDDEN,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=128,
            pad_token_id=0,
        ),
    )
)


class DistilBertCanonizer(ArchitectureCanonizer):
    """The rules for DistilBERT encoders."""

    families = ("distilbert",)


__all__ = ["DISTILBERT", "DistilBertCanonizer"]
