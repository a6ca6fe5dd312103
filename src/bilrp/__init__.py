"""bilrp: explain why a Transformer similarity model finds two texts similar (BiLRP token-pair relevance).

The public names are imported on first use (``bilrp.explain``, ``from bilrp import BiLRP``), so ``import
bilrp`` and ``bilrp --help`` do not import torch.
"""

from typing import TYPE_CHECKING

from ._catalog import lazy_exports
from ._display import register_loader

# The imports below are for type checkers and the API docs, which cannot run __getattr__.
# ruff: noqa: F401
if TYPE_CHECKING:  # the names of _EXPORTS, statically (tests/test_startup.py checks that they match)
    from ._catalog import VERSION as __version__
    from .attr import (
        LRP,
        BiLRP,
        EmbeddingInteraction,
        HessianXProduct,
        IntegratedJacobians,
        NonFiniteError,
        RandomInteraction,
    )
    from .composites import TransformerComposite, UnsupportedModuleError
    from .engine import CertificateError, NonlinearityError
    from .explainer import METHODS, explain, explain_batch
    from .explanation import Explanation
    from .models import DEFAULT_MODEL, ModelLoadError, SimilarityModel
    from .ranking import DocumentIndex, ScoreMismatchError, explain_difference, explain_ranking

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
    "NonFiniteError": ".attr:NonFiniteError",
    "ScoreMismatchError": ".ranking:ScoreMismatchError",
    "ModelLoadError": ".models:ModelLoadError",
    "DocumentIndex": ".ranking:DocumentIndex",
    "explain_ranking": ".ranking:explain_ranking",
    "explain_difference": ".ranking:explain_difference",
    "__version__": "._catalog:VERSION",
}
"""Public name -> ``"module:attribute"``: the one list of what ``bilrp`` exports, imported on first use."""

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def _load_notebook_display() -> None:
    """Register the pictures' renderers (:mod:`bilrp.plotting.notebook`) on the first rich display in Jupyter.

    The result objects ask :mod:`bilrp._display` for their HTML and PNG forms; this top layer hands it the
    pictures, so nothing below them imports them and ``import bilrp`` imports no matplotlib.
    """
    from .plotting.notebook import register

    register()


register_loader(_load_notebook_display)
