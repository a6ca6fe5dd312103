"""Captum attributions of bilrp: first-order LRP and token-pair methods with one ``attribute`` signature."""

from ..models.input_points import INPUT_POINTS, InputsEmbedsModel
from ._core.bilrp import BiLRP
from ._core.embedding_interaction import EmbeddingInteraction
from ._core.hessian_x_product import HessianXProduct
from ._core.integrated_jacobians import IntegratedJacobians
from ._core.lrp import LRP
from ._core.nonfinite import NonFiniteError
from ._core.pair_attribution import (
    InteractionAttribution,
    PairAttribution,
    PairSimilarityModel,
    pair_decomposition,
)
from ._core.per_text import PER_TEXT, TokenRemoval, per_text
from ._core.random_interaction import RandomInteraction

__all__ = [
    "BiLRP",
    "HessianXProduct",
    "EmbeddingInteraction",
    "RandomInteraction",
    "IntegratedJacobians",
    "LRP",
    "PairAttribution",
    "InteractionAttribution",
    "PairSimilarityModel",
    "pair_decomposition",
    "per_text",
    "PER_TEXT",
    "TokenRemoval",
    "INPUT_POINTS",
    "InputsEmbedsModel",
    "NonFiniteError",
]
