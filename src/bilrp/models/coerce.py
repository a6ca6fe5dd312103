""":func:`as_similarity_model`: a :class:`~bilrp.models.SimilarityModel` for whatever model is given."""

from __future__ import annotations

import os
import weakref

from torch import nn

from .errors import type_name
from .similarity_model import SimilarityModel
from .st_objects import is_sentence_transformer, same_signature, st_signature

__all__ = ["as_similarity_model"]

_WRAPPERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""``SentenceTransformer`` -> ``(signature, wrapper)``: the wrapper built for it, while it is unchanged."""


def as_similarity_model(model_or_name) -> SimilarityModel:
    """A ``SimilarityModel`` for ``model_or_name``.

    A ``SimilarityModel`` is returned as it is; a ``sentence_transformers.SentenceTransformer`` is wrapped
    with ``SimilarityModel.from_sentence_transformer`` (once: the wrapper is cached on the object, and
    rebuilt only when its modules or settings change); a str or path is loaded with
    ``SimilarityModel.from_pretrained``. Anything else (a function, a bare encoder) raises a one-line ``TypeError``
    saying to wrap the encoder as ``SimilarityModel(encoder, tokenizer)``.
    """
    if isinstance(model_or_name, SimilarityModel):
        return model_or_name
    if is_sentence_transformer(model_or_name):
        key = st_signature(model_or_name)
        cached = _WRAPPERS.get(model_or_name)
        if cached is not None and same_signature(cached[0], key):
            return cached[1]
        wrapper = SimilarityModel.from_sentence_transformer(model_or_name)
        _WRAPPERS[model_or_name] = (key, wrapper)
        return wrapper
    if isinstance(model_or_name, str | os.PathLike):
        return SimilarityModel.from_pretrained(model_or_name)
    raise TypeError(
        f"cannot make a SimilarityModel from {_why_not(model_or_name)}: wrap your encoder as "
        "bilrp.SimilarityModel(encoder, tokenizer, pooling=..., similarity=...), or give a SentenceTransformer, a "
        "model folder or a hub name"
    )


def _why_not(obj) -> str:
    """What ``obj`` is and why it is no similarity model, for the message."""
    if isinstance(obj, nn.Module):
        return f"an object of type {type_name(obj)}: an encoder alone has no pooling and no similarity"
    name = getattr(obj, "__qualname__", None)
    if callable(obj) and not isinstance(obj, type) and isinstance(name, str):
        return (
            f"the function {name}: bilrp explains a model through its steps (embed, represent, compare), not a "
            "function's output"
        )
    return f"an object of type {type_name(obj)}"
