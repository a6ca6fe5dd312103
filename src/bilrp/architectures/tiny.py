"""Tiny random encoders of the registered families (2 layers, 32 dims, BERT's vocabulary), for tests."""

from __future__ import annotations

import importlib

from torch import nn

__all__ = ["VOCAB", "HIDDEN", "COMMON", "tiny_model"]

VOCAB = 30522
HIDDEN = 32
COMMON = dict(
    vocab_size=VOCAB, hidden_size=HIDDEN, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128
)
"""The configuration keys most families share."""


def tiny_model(
    config_class: str, model_class: str, common: bool = True, add_pooling_layer: bool | None = None, **config
):
    """``transformers.<model_class>(<config_class>(**COMMON, **config))`` in eval mode.

    Parameters
    ----------
    config_class, model_class
        Names in ``transformers``.
    common
        Start from :data:`COMMON` (families with other key names pass ``False``).
    add_pooling_layer
        Passed to the model when given (BERT-style models have an optional pooler).
    **config
        Further configuration keys.

    """
    transformers = importlib.import_module("transformers")
    settings = {**(COMMON if common else {}), **config}
    kwargs = {} if add_pooling_layer is None else {"add_pooling_layer": add_pooling_layer}
    model: nn.Module = getattr(transformers, model_class)(getattr(transformers, config_class)(**settings), **kwargs)
    return model.eval()
