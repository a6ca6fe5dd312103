"""bilrp: explain why a Transformer similarity model finds two texts similar (BiLRP token-pair relevance)."""

from .attr import LRP, BiLRP, EmbeddingInteraction, HessianXProduct, IntegratedJacobians, RandomInteraction
from .composites import TransformerComposite, UnsupportedModuleError
from .explanation import METHODS, Explanation, explain, explain_batch
from .models import DEFAULT_MODEL, SimilarityModel

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "METHODS",
    "SimilarityModel",
    "TransformerComposite",
    "UnsupportedModuleError",
    "LRP",
    "BiLRP",
    "HessianXProduct",
    "EmbeddingInteraction",
    "RandomInteraction",
    "IntegratedJacobians",
    "Explanation",
    "explain",
    "explain_batch",
    "__version__",
]
