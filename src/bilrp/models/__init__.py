"""Similarity models: encoder + pooling + similarity."""

from .pooling import POOLINGS, CLSPooling, MeanPooling, QKVPooling, WeightedMeanPooling, make_pooling
from .similarity_model import (
    DEFAULT_MODEL,
    SIMILARITIES,
    ModelLoadError,
    SimilarityModel,
    TextTooLongError,
    resolve_model_path,
)

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
]
