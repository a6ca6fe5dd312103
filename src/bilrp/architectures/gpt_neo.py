"""GPT-Neo as used by SGPT: global and local attention layers, no 1/sqrt(d) scaling, position-weighted mean."""

from __future__ import annotations

from ..canonizers import EAGER_BASES, import_classes
from .registry import Architecture, ArchitectureCanonizer, register_architecture
from .tiny import HIDDEN, VOCAB, tiny_model

_EAGER = "transformers.models.gpt_neo.modeling_gpt_neo:GPTNeoSelfAttention"
_FUSED = "transformers.models.gpt_neo.modeling_gpt_neo:GPTNeoFlashAttention2"
_classes = import_classes((_FUSED, _EAGER))
if len(_classes) == 2:  # the flash-attention class is explained through its eager base class's forward
    EAGER_BASES[_classes[0]] = _classes[1]

GPT_NEO = register_architecture(
    Architecture(
        name="gpt-neo",
        models=("transformers:GPTNeoModel",),
        attention=(_EAGER,),
        embedding="drop",
        pooling="weighted_mean",
        checkpoints=("Muennighoff/SGPT-125M-weightedmean-nli-bitfit",),
        tiny=lambda: tiny_model(
            "GPTNeoConfig",
            "GPTNeoModel",
            common=False,
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            num_layers=2,
            num_heads=2,
            attention_types=[[["global", "local"], 1]],
            window_size=4,
            max_position_embeddings=128,
            intermediate_size=64,
            activation_function="gelu_new",
            bos_token_id=101,
            eos_token_id=102,
        ),
    )
)


class GPTNeoCanonizer(ArchitectureCanonizer):
    """The rules for GPT-Neo encoders."""

    families = ("gpt-neo",)


__all__ = ["GPT_NEO", "GPTNeoCanonizer"]
