"""Pictures of explanations: the pair plot, the matrix heatmap, HTML views, and the pictures of a search.

The figures are built without ``pyplot`` (no global state, no GUI backend, nothing to close): each
function returns a :class:`matplotlib.figure.Figure` that Jupyter displays (as a PNG) and ``savefig``
writes, or draws into an ``ax`` you pass; the HTML views are ``str`` that Jupyter displays as HTML. Token
labels are shown as :mod:`bilrp.token_display` writes them (special tokens in grey). This package is the top
layer with the command line and the explorer: it takes explanations, rankings and differences and never builds
them, and nothing below it imports it.

Modules: :mod:`~bilrp.plotting.pairs` (``plot_pairs``), :mod:`~bilrp.plotting.heatmap` (``plot_heatmap``),
:mod:`~bilrp.plotting.html` (``to_html``), :mod:`~bilrp.plotting.search` (``ranking_html``,
``difference_html``, ``plot_difference``, ``plot_ranking``), :mod:`~bilrp.plotting.notebook` (how the result
objects display themselves in Jupyter) and :mod:`~bilrp.plotting.layout` (what they share).
"""

from ..token_display import NEGATIVE_COLOR, POSITIVE_COLOR, display_token, is_special_token
from .heatmap import plot_heatmap
from .html import to_html
from .layout import SENTENCES_OVER, HTMLText, readable
from .pairs import plot_pairs
from .search import difference_html, plot_difference, plot_ranking, ranking_html

__all__ = [
    "plot_pairs",
    "plot_heatmap",
    "to_html",
    "ranking_html",
    "difference_html",
    "plot_difference",
    "plot_ranking",
    "HTMLText",
    "readable",
    "SENTENCES_OVER",
    "display_token",
    "is_special_token",
    "POSITIVE_COLOR",
    "NEGATIVE_COLOR",
]
