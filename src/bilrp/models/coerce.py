""":func:`as_similarity_model`: a :class:`~bilrp.models.SimilarityModel` for whatever model is given."""

from __future__ import annotations

import os
import weakref

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
    ``SimilarityModel.from_pretrained``. Anything else raises ``TypeError``.
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
        f"cannot make a SimilarityModel from an object of type {type_name(model_or_name)}: give a SimilarityModel, a "
        "sentence_transformers.SentenceTransformer, a model folder or a hub name"
    )
