"""What the pictures share: token labels, the relevance array, the summary line, figure sizing and inline SVG."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..token_display import display_token, is_special_token

if TYPE_CHECKING:  # annotations only: the pictures take an explanation, they never build one
    from ..explanation import Explanation

__all__ = [
    "SENTENCES_OVER",
    "ROW_INCHES",
    "CELL_INCHES",
    "readable",
    "token_labels",
    "relevance_array",
    "summary_line",
    "label_inches",
    "InlineFigure",
    "figure_png",
    "HTMLText",
    "new_axes",
    "column_positions",
    "inline_svg",
    "ascii_html",
]

ROW_INCHES = 0.24
"""Height of one token row of the pair plot at font size 10."""
CELL_INCHES = 0.3
"""Side of one heatmap cell."""
_CHAR_INCHES_PER_POINT = 0.55 / 72
SENTENCES_OVER = 64
"""The pair plot draws a text with more tokens than this as sentences (exact sums of its tokens)."""


def readable(explanation: Explanation, sentences_over: int | None = SENTENCES_OVER) -> Explanation:
    """``explanation`` with each text longer than ``sentences_over`` tokens summed into sentences.

    A 600-token document drawn token by token is a hairball; drawn as query tokens x document sentences it can be
    read. The sums are exact (:meth:`~bilrp.Explanation.regroup`). Explanations without token-level word ids
    (already grouped, or read from JSON) are returned as they are.
    """
    if sentences_over is None or explanation.word_ids_a is None or explanation.word_ids_b is None:
        return explanation
    long_a, long_b = (len(tokens) > sentences_over for tokens in (explanation.tokens_a, explanation.tokens_b))
    if not (long_a or long_b):
        return explanation
    return explanation.regroup("sentence" if long_a else "token", "sentence" if long_b else "token")


def _special_mask(tokens: Sequence[str], word_ids: Sequence[int | None] | None) -> list[bool]:
    if word_ids is not None and len(word_ids) == len(tokens):
        return [word is None for word in word_ids]
    return [is_special_token(token) for token in tokens]


def token_labels(explanation: Explanation) -> tuple[list[str], list[str], list[bool], list[bool]]:
    """Display labels of the tokens of A and of B, and whether each is a special token."""
    return (
        [display_token(t) for t in explanation.tokens_a],
        [display_token(t) for t in explanation.tokens_b],
        _special_mask(explanation.tokens_a, explanation.word_ids_a),
        _special_mask(explanation.tokens_b, explanation.word_ids_b),
    )


def relevance_array(explanation: Explanation) -> np.ndarray:
    """``explanation.relevance`` as a float64 array, checked against the numbers of tokens."""
    relevance = explanation.relevance.detach().cpu().double().numpy()
    expected = (len(explanation.tokens_a), len(explanation.tokens_b))
    if relevance.shape != expected:
        raise ValueError(
            f"relevance of shape {tuple(relevance.shape)} does not match {expected[0]} tokens of A and "
            f"{expected[1]} of B: build the Explanation with one row per token of A and one column per token of B"
        )
    return relevance


def summary_line(explanation: Explanation) -> str:
    """``score ... = ΣR ... + bias ... (bias share ...)``."""
    total = float(relevance_array(explanation).sum())
    return (
        f"score {explanation.score:.3f} = ΣR {total:.3f} + bias {explanation.bias:.3f} "
        f"(bias share {explanation.bias_share:.0%})"
    )


def label_inches(labels: Sequence[str], fontsize: float) -> float:
    """The width in inches of the longest of ``labels`` at ``fontsize`` points."""
    return max((len(label) for label in labels), default=1) * fontsize * _CHAR_INCHES_PER_POINT


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes (tight bounding box, the figure's own resolution)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


class InlineFigure(Figure):
    """A figure that Jupyter shows as a PNG even when ``pyplot`` (and its inline backend) was never imported."""

    def _repr_png_(self) -> bytes:
        return figure_png(self)


class HTMLText(str):
    """HTML text that Jupyter displays as HTML (with a PNG of its picture as the fallback), and is a ``str``.

    Everything a ``str`` does works as before (write it to a file, search it; what str methods return is a plain
    ``str``), and a pickled copy is a plain ``str``. IPython's plain-text form names it instead of printing
    hundreds of kilobytes of markup; ``print`` or ``str`` give the text.
    """

    _picture: Callable[[], Figure] | None

    def __new__(cls, text: str, picture: Callable[[], Figure] | None = None) -> HTMLText:
        made = super().__new__(cls, text)
        made._picture = picture
        return made

    def _repr_html_(self) -> str:
        return str(self)

    def _repr_png_(self) -> bytes | None:
        return None if self._picture is None else figure_png(self._picture())

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(f"<bilrp HTML, {len(self):,} characters: shown as HTML in Jupyter; print() gives the text>")

    def __reduce__(self):
        return (str, (str(self),))


def new_axes(
    ax: Axes | None, width: float, height: float, margins: tuple[float, float, float, float]
) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure of ``width`` x ``height`` inches with ``margins`` (l, r, t, b)."""
    if ax is not None:
        return ax.figure, ax
    left, right, top, bottom = margins
    figure = InlineFigure(figsize=(width, height))
    figure.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height)
    return figure, figure.add_subplot()


def column_positions(count: int) -> np.ndarray:
    """Vertical positions of ``count`` tokens, one unit apart, top to bottom, centred on zero."""
    return (count - 1) / 2.0 - np.arange(count)


def inline_svg(figure: Figure) -> str:
    """The figure as an inline ``<svg>`` element: no XML prologue, doctype or metadata (no URLs)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    text = re.sub(r"<svg ", '<svg style="max-width:100%;height:auto" ', text, count=1)
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")


def ascii_html(text: str) -> str:
    """``text`` escaped for HTML, with every non-ASCII character as a character reference."""
    return html.escape(text).encode("ascii", "xmlcharrefreplace").decode("ascii")
