"""Qwen2 and Qwen3 (Qwen3-Embedding): RMSNorm (also on queries and keys), SwiGLU, RoPE, GQA, causal masks."""

from __future__ import annotations

from ..gated_mlp import GatedMLP
from .llama import GQA
from .registry import Architecture, ArchitectureCanonizer, register_architecture
from .tiny import tiny_model

_QWEN2 = "transformers.models.qwen2.modeling_qwen2"
_QWEN3 = "transformers.models.qwen3.modeling_qwen3"

QWEN = register_architecture(
    Architecture(
        name="qwen",
        models=("transformers:Qwen2Model", "transformers:Qwen3Model"),
        attention=(f"{_QWEN2}:Qwen2Attention", f"{_QWEN3}:Qwen3Attention"),
        rms_norms=(f"{_QWEN2}:Qwen2RMSNorm", f"{_QWEN3}:Qwen3RMSNorm"),
        gated_mlp=GatedMLP(classes=(f"{_QWEN2}:Qwen2MLP", f"{_QWEN3}:Qwen3MLP")),
        embedding="embed_tokens",
        pooling="last_token",
        prompts={
            "query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
        },
        checkpoints=("Qwen/Qwen3-Embedding-0.6B", "Alibaba-NLP/gte-Qwen2-1.5B-instruct"),
        norm="RMSNorm",
        mlp="SwiGLU",
        tiny=lambda: tiny_model("Qwen3Config", "Qwen3Model", **GQA),
    )
)


class QwenCanonizer(ArchitectureCanonizer):
    """The rules for Qwen2 and Qwen3 encoders."""

    families = ("qwen",)


__all__ = ["QWEN", "QwenCanonizer"]
