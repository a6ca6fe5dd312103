"""The T5 encoder (GTR, sentence-T5): RMS-style norm, relative attention bias, gated-GELU.

The relative attention bias depends on positions only: a constant under rule AH.
"""

from __future__ import annotations

from ..gated_mlp import GatedMLP
from .registry import Architecture, ArchitectureCanonizer, register_architecture
from .tiny import HIDDEN, VOCAB, tiny_model

_T5 = "transformers.models.t5.modeling_t5"

T5 = register_architecture(
    Architecture(
        name="t5",
        models=("transformers:T5EncoderModel",),
        attention=(f"{_T5}:T5Attention",),
        rms_norms=(f"{_T5}:T5LayerNorm",),
        gated_mlp=GatedMLP(
            classes=(f"{_T5}:T5DenseGatedActDense",), gate="wi_0", up="wi_1", down="wo", act="act", dropout="dropout"
        ),
        embedding="encoder.embed_tokens",
        pooling="mean",
        checkpoints=("sentence-transformers/gtr-t5-base", "sentence-transformers/sentence-t5-base"),
        norm="RMS norm (T5LayerNorm)",
        mlp="gated-GELU or ReLU",
        tiny=lambda: tiny_model(
            "T5Config",
            "T5EncoderModel",
            common=False,
            vocab_size=VOCAB,
            d_model=HIDDEN,
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_heads=2,
            feed_forward_proj="gated-gelu",
            pad_token_id=0,
        ),
    )
)


class T5Canonizer(ArchitectureCanonizer):
    """The rules for T5 encoders."""

    families = ("t5",)


__all__ = ["T5", "T5Canonizer"]
