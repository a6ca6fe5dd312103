"""Similarity models: encoder + pooling + head + similarity."""

from .._catalog import DEFAULT_MODEL
from .coerce import as_similarity_model
from .errors import ModelLoadError
from .heads import DenseLayer, L2Normalize, TruncateDim
from .loading import resolve_model_path
from .pooling import (
    POOLINGS,
    CLSPooling,
    LastTokenPooling,
    MaxPooling,
    MeanPooling,
    MeanSqrtLenPooling,
    QKVPooling,
    WeightedMeanPooling,
    make_pooling,
)
from .quiet_loading import load_quietly
from .similarity_model import SIMILARITIES, SimilarityModel, TextTooLongError

__all__ = [
    "POOLINGS",
    "SIMILARITIES",
    "DEFAULT_MODEL",
    "CLSPooling",
    "MeanPooling",
    "WeightedMeanPooling",
    "QKVPooling",
    "LastTokenPooling",
    "MaxPooling",
    "MeanSqrtLenPooling",
    "DenseLayer",
    "L2Normalize",
    "TruncateDim",
    "make_pooling",
    "SimilarityModel",
    "ModelLoadError",
    "TextTooLongError",
    "resolve_model_path",
    "as_similarity_model",
    "load_quietly",
]
