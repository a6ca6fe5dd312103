"""Tiny randomly initialised models of every supported architecture, for tests and examples.

All use the real all-MiniLM-L6-v2 tokenizer (BERT WordPiece) so texts can be tokenized; only the
encoder weights are random.
"""

from __future__ import annotations

import functools

import torch
from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

from bilrp import SimilarityModel
from bilrp.architectures import ARCHITECTURES as REGISTRY
from bilrp.architectures.tiny import COMMON, HIDDEN, VOCAB
from bilrp.models import resolve_model_path

ARCHITECTURES = ("bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "gpt-neo")
"""The classic families, with hand-written references in reference_models.py (the newer ones are in
tests/test_architectures.py and tests/test_modern_references.py)."""
__all__ = ["ARCHITECTURES", "VOCAB", "HIDDEN", "tokenizer", "tiny_encoder", "tiny_similarity_model", "zero_biases"]


@functools.cache
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))


def tiny_encoder(architecture: str, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    """A 2-layer, 32-dim randomly initialised encoder of ``architecture`` (eval mode, given dtype).

    Registered families come from their registry entry's ``tiny`` model; ``xlm-roberta`` is RoBERTa's entry
    with XLM-R's class and ``gelu_new``.
    """
    torch.manual_seed(seed)
    if architecture == "xlm-roberta":
        model = XLMRobertaModel(
            XLMRobertaConfig(num_hidden_layers=2, pad_token_id=0, hidden_act="gelu_new", **COMMON),
            add_pooling_layer=False,
        )
    else:
        model = REGISTRY[architecture].tiny()
    # random LayerNorm affine parameters so the LN rule is exercised beyond the identity
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
    return model.to(dtype).eval()


def save_tiny_bert(folder) -> str:
    """Save a float32 tiny random BERT encoder and the MiniLM tokenizer as a HuggingFace folder."""
    tiny_encoder("bert", dtype=torch.float32).save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return str(folder)


def tiny_similarity_model(
    architecture: str = "bert",
    pooling: str = "mean",
    similarity: str = "dot",
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> SimilarityModel:
    model = SimilarityModel(
        tiny_encoder(architecture, seed, dtype),
        tokenizer(),
        pooling=pooling,
        similarity=similarity,
        max_length=64,
        name=f"tiny-{architecture}",
    )
    return model.to(dtype).eval()


def zero_biases(module: torch.nn.Module) -> torch.nn.Module:
    """Set every bias (Linear, LayerNorm, pooling) to zero, in place."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
    return module
