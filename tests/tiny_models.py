"""Tiny randomly initialised models of every supported architecture, for tests and examples.

All use the real all-MiniLM-L6-v2 tokenizer (BERT WordPiece) so texts can be tokenized; only the
encoder weights are random.
"""

from __future__ import annotations

import functools

import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    DistilBertConfig,
    DistilBertModel,
    GPTNeoConfig,
    GPTNeoModel,
    MPNetConfig,
    MPNetModel,
    RobertaConfig,
    RobertaModel,
    XLMRobertaConfig,
    XLMRobertaModel,
)

from bilrp import SimilarityModel
from bilrp.models import resolve_model_path

ARCHITECTURES = ("bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "gpt-neo")
VOCAB = 30522
HIDDEN = 32


@functools.cache
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))


def tiny_encoder(architecture: str, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    """A 2-layer, 32-dim randomly initialised encoder of ``architecture`` (eval mode, given dtype)."""
    torch.manual_seed(seed)
    common = dict(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128
    )
    if architecture == "bert":
        model = BertModel(BertConfig(num_hidden_layers=2, hidden_act="gelu", **common), add_pooling_layer=False)
    elif architecture == "roberta":
        model = RobertaModel(RobertaConfig(num_hidden_layers=2, pad_token_id=0, **common), add_pooling_layer=False)
    elif architecture == "xlm-roberta":
        model = XLMRobertaModel(
            XLMRobertaConfig(num_hidden_layers=2, pad_token_id=0, hidden_act="gelu_new", **common),
            add_pooling_layer=False,
        )
    elif architecture == "mpnet":
        model = MPNetModel(MPNetConfig(num_hidden_layers=2, pad_token_id=0, **common), add_pooling_layer=False)
    elif architecture == "distilbert":
        model = DistilBertModel(
            DistilBertConfig(
                vocab_size=VOCAB,
                dim=HIDDEN,
                n_layers=2,
                n_heads=2,
                hidden_dim=64,
                max_position_embeddings=128,
                pad_token_id=0,
            )
        )
    elif architecture == "gpt-neo":
        model = GPTNeoModel(
            GPTNeoConfig(
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
            )
        )
    else:
        raise ValueError(architecture)
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
