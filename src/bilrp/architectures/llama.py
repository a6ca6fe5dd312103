"""Llama and Mistral (LLM-based embedders: e5-mistral, LLM2Vec): RMSNorm, SwiGLU, RoPE, GQA, causal masks.

RoPE rotates only queries and keys, which rule AH holds constant, so it needs no rule of its own; grouped-
query attention and sliding windows are part of the eager attention path the rule sees.
"""

from __future__ import annotations

from ..gated_mlp import GatedMLP
from .registry import Architecture, ArchitectureCanonizer, register_architecture
from .tiny import tiny_model

_LLAMA = "transformers.models.llama.modeling_llama"
_MISTRAL = "transformers.models.mistral.modeling_mistral"
GQA = dict(num_hidden_layers=2, num_key_value_heads=1, pad_token_id=0, head_dim=16)

LLAMA = register_architecture(
    Architecture(
        name="llama",
        models=("transformers:LlamaModel", "transformers:MistralModel"),
        attention=(f"{_LLAMA}:LlamaAttention", f"{_MISTRAL}:MistralAttention"),
        rms_norms=(f"{_LLAMA}:LlamaRMSNorm", f"{_MISTRAL}:MistralRMSNorm"),
        gated_mlp=GatedMLP(classes=(f"{_LLAMA}:LlamaMLP", f"{_MISTRAL}:MistralMLP")),
        embedding="embed_tokens",
        pooling="last_token",
        prompts={
            "query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "
        },
        checkpoints=("intfloat/e5-mistral-7b-instruct", "McGill-NLP/LLM2Vec-Meta-Llama-3-8B-Instruct-mntp"),
        norm="RMSNorm",
        mlp="SwiGLU",
        tiny=lambda: tiny_model("MistralConfig", "MistralModel", sliding_window=4, **GQA),
    )
)


class LlamaCanonizer(ArchitectureCanonizer):
    """The rules for Llama and Mistral encoders."""

    families = ("llama",)


__all__ = ["LLAMA", "LlamaCanonizer", "GQA"]
