"""RoBERTa, XLM-RoBERTa and CamemBERT."""

from __future__ import annotations

from .registry import Architecture, ArchitectureCanonizer, register_architecture
from .tiny import tiny_model

ROBERTA = register_architecture(
    Architecture(
        name="roberta",
        models=("transformers:RobertaModel", "transformers:XLMRobertaModel", "transformers:CamembertModel"),
        attention=(
            "transformers.models.roberta.modeling_roberta:RobertaSelfAttention",
            "transformers.models.xlm_roberta.modeling_xlm_roberta:XLMRobertaSelfAttention",
            "transformers.models.camembert.modeling_camembert:CamembertSelfAttention",
        ),
        checkpoints=("sentence-transformers/all-roberta-large-v1", "intfloat/multilingual-e5-base"),
        tiny=lambda: tiny_model(
            "RobertaConfig", "RobertaModel", num_hidden_layers=2, pad_token_id=0, add_pooling_layer=False
        ),
    )
)


class RobertaCanonizer(ArchitectureCanonizer):
    """The rules for RoBERTa-family encoders."""

    families = ("roberta",)


__all__ = ["ROBERTA", "RobertaCanonizer"]
