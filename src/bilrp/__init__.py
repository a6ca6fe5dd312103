"""bilrp: explain why a Transformer similarity model finds two texts similar (BiLRP token-pair relevance).

The public names are imported on first use (``bilrp.explain``, ``from bilrp import BiLRP``), so ``import
bilrp`` and ``bilrp --help`` do not import torch.
"""

from typing import TYPE_CHECKING

from ._catalog import lazy_exports

# The imports below are for type checkers and the API docs, which cannot run __getattr__.
# ruff: noqa: F401
if TYPE_CHECKING:  # the names of _EXPORTS, statically (tests/test_startup.py checks that they match)
    from ._catalog import VERSION as __version__
    from .attr import LRP, BiLRP, EmbeddingInteraction, HessianXProduct, IntegratedJacobians, RandomInteraction
    from .composites import TransformerComposite, UnsupportedModuleError
    from .engine import CertificateError, NonlinearityError
    from .explainer import METHODS, explain, explain_batch
    from .explanation import Explanation
    from .models import DEFAULT_MODEL, ModelLoadError, SimilarityModel
    from .ranking import DocumentIndex, explain_difference, explain_ranking

_EXPORTS = {
    "DEFAULT_MODEL": ".models:DEFAULT_MODEL",
    "METHODS": ".explainer:METHODS",
    "SimilarityModel": ".models:SimilarityModel",
    "TransformerComposite": ".composites:TransformerComposite",
    "UnsupportedModuleError": ".composites:UnsupportedModuleError",
    "LRP": ".attr:LRP",
    "BiLRP": ".attr:BiLRP",
    "HessianXProduct": ".attr:HessianXProduct",
    "EmbeddingInteraction": ".attr:EmbeddingInteraction",
    "RandomInteraction": ".attr:RandomInteraction",
    "IntegratedJacobians": ".attr:IntegratedJacobians",
    "Explanation": ".explanation:Explanation",
    "explain": ".explainer:explain",
    "explain_batch": ".explainer:explain_batch",
    "NonlinearityError": ".engine:NonlinearityError",
    "CertificateError": ".engine:CertificateError",
    "ModelLoadError": ".models:ModelLoadError",
    "DocumentIndex": ".ranking:DocumentIndex",
    "explain_ranking": ".ranking:explain_ranking",
    "explain_difference": ".ranking:explain_difference",
    "__version__": "._catalog:VERSION",
}
"""Public name -> ``"module:attribute"``: the one list of what ``bilrp`` exports, imported on first use."""

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
