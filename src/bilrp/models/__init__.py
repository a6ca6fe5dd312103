"""Similarity models: encoder + pooling + similarity."""

from .._catalog import DEFAULT_MODEL
from .coerce import as_similarity_model
from .errors import ModelLoadError
from .loading import resolve_model_path
from .pooling import POOLINGS, CLSPooling, MeanPooling, QKVPooling, WeightedMeanPooling, make_pooling
from .similarity_model import SIMILARITIES, SimilarityModel, TextTooLongError

__all__ = [
    "POOLINGS",
    "SIMILARITIES",
    "DEFAULT_MODEL",
    "CLSPooling",
    "MeanPooling",
    "WeightedMeanPooling",
    "QKVPooling",
    "make_pooling",
    "SimilarityModel",
    "ModelLoadError",
    "TextTooLongError",
    "resolve_model_path",
    "as_similarity_model",
]
