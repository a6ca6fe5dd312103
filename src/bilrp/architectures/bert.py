"""BERT, MiniLM and SBERT checkpoints (and ELECTRA, which copies BERT's attention)."""

from __future__ import annotations

from .registry import Architecture, ArchitectureCanonizer, register_architecture
from .tiny import HIDDEN, tiny_model

BERT = register_architecture(
    Architecture(
        name="bert",
        models=("transformers:BertModel", "transformers:ElectraModel"),
        attention=(
            "transformers.models.bert.modeling_bert:BertSelfAttention",
            "transformers.models.electra.modeling_electra:ElectraSelfAttention",
        ),
        checkpoints=("sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/stsb-bert-base"),
        rules="epsilon=0.01",  # docs/results.md: the paper's AUPC, |bias|/|score| 0.16 instead of 0.40, cheapest
        tiny=lambda: tiny_model("BertConfig", "BertModel", num_hidden_layers=2, add_pooling_layer=False),
    )
)


class BertCanonizer(ArchitectureCanonizer):
    """The rules for BERT-family encoders."""

    families = ("bert",)


__all__ = ["BERT", "BertCanonizer", "HIDDEN"]
