"""Gemma 3 text models (EmbeddingGemma: bidirectional attention, mean pooling, Dense projections, prompts).

Gemma scales its embeddings by ``sqrt(hidden)`` inside the embedding module, so the embedding output
(what relevance is computed on) is the scaled one; its RMS norms scale by ``1 + weight``.
"""

from __future__ import annotations

from ..gated_mlp import GatedMLP
from .llama import GQA
from .registry import Architecture, ArchitectureCanonizer, register_architecture
from .tiny import tiny_model

_GEMMA3 = "transformers.models.gemma3.modeling_gemma3"

GEMMA = register_architecture(
    Architecture(
        name="gemma",
        models=("transformers:Gemma3TextModel",),
        attention=(f"{_GEMMA3}:Gemma3Attention",),
        rms_norms=(f"{_GEMMA3}:Gemma3RMSNorm",),
        rms_weight_offset=1.0,
        gated_mlp=GatedMLP(classes=(f"{_GEMMA3}:Gemma3MLP",)),
        embedding="embed_tokens",
        pooling="mean",
        prompts={"query": "task: search result | query: ", "document": "title: none | text: "},
        checkpoints=("google/embeddinggemma-300m",),
        norm="RMSNorm (1 + weight)",
        mlp="GeGLU (tanh GELU)",
        tiny=lambda: tiny_model(
            "Gemma3TextConfig", "Gemma3TextModel", use_bidirectional_attention=True, sliding_window=4, **GQA
        ),
    )
)


class GemmaCanonizer(ArchitectureCanonizer):
    """The rules for Gemma 3 text encoders."""

    families = ("gemma",)


__all__ = ["GEMMA", "GemmaCanonizer"]
