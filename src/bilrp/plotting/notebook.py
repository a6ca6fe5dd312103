"""Rich display in Jupyter: the renderers of the result objects, handed to :mod:`bilrp._display`.

An :class:`~bilrp.Explanation`, a :class:`~bilrp.ranking.Ranking` or a :class:`~bilrp.ranking.Difference` as the
last expression of a cell shows its HTML view (:func:`~bilrp.plotting.to_html`,
:func:`~bilrp.plotting.ranking_html`, :func:`~bilrp.plotting.difference_html`), a PNG of its picture
(:func:`~bilrp.plotting.plot_pairs`, :func:`~bilrp.plotting.plot_ranking`, :func:`~bilrp.plotting.plot_difference`)
for front ends that show no HTML, and a short text. The result classes sit below the pictures and never import
them: they ask :mod:`bilrp._display`, which holds the renderers this module registers. The top package ``bilrp``
registers :func:`register` as a loader, so this module is imported on the first rich display, not by
``import bilrp``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from matplotlib.figure import Figure

from .._display import Renderer, register_display
from .html import to_html
from .layout import figure_png
from .pairs import plot_pairs
from .search import difference_html, plot_difference, plot_ranking, ranking_html

__all__ = ["register", "DISPLAYS"]

DISPLAYS: dict[str, tuple[Callable[[Any], str], Callable[[Any], Figure]]] = {
    "bilrp.explanation.Explanation": (to_html, plot_pairs),
    "bilrp.ranking.ranking.Ranking": (ranking_html, plot_ranking),
    "bilrp.ranking.difference.Difference": (difference_html, plot_difference),
}
"""Result class (``module.Name``) -> its HTML view and its picture."""


def renderer(html: Callable[[Any], str], picture: Callable[[Any], Figure]) -> Renderer:
    """A :data:`bilrp._display.Renderer` giving ``html(obj)`` as ``text/html`` and ``picture(obj)`` as a PNG."""

    def render(obj: Any, wanted: frozenset[str]) -> dict[str, str]:
        bundle = {}
        if "text/html" in wanted:
            bundle["text/html"] = str(html(obj))
        if "image/png" in wanted:
            bundle["image/png"] = base64.b64encode(figure_png(picture(obj))).decode("ascii")
        return bundle

    return render


def register() -> None:
    """Register the renderers of :data:`DISPLAYS` with :mod:`bilrp._display` (again: replaces them)."""
    for name, (html, picture) in DISPLAYS.items():
        register_display(name, renderer(html, picture))
