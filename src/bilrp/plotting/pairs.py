"""The pair plot of the BiLRP paper: the tokens of the two texts in two columns, each pair joined by a curve."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..token_display import NEGATIVE_COLOR, POSITIVE_COLOR, SPECIAL_COLOR
from .layout import (
    ROW_INCHES,
    SENTENCES_OVER,
    column_positions,
    label_inches,
    new_axes,
    readable,
    relevance_array,
    summary_line,
    token_labels,
)

if TYPE_CHECKING:
    from ..explanation import Explanation

__all__ = ["plot_pairs"]


def plot_pairs(
    explanation: Explanation,
    ax: Axes | None = None,
    threshold: float = 0.02,
    max_pairs: int | None = None,
    fontsize: float = 10.0,
    title: str | None = None,
    sentences_over: int | None = SENTENCES_OVER,
) -> Figure:
    """The pair plot of the BiLRP paper: each token pair joined by a curve, red if it raises the score.

    The tokens of text A form the left column and those of text B the right one, read top to bottom. The
    curve joining token ``i`` of A and token ``j`` of B is red for ``R[i, j] > 0`` and blue for
    ``R[i, j] < 0``; its opacity and width grow with ``|R[i, j]|`` relative to the largest ``|R|``, and the
    strongest pairs are drawn on top. The figure grows with the number of tokens, so 40+ tokens per text
    stay readable.

    Parameters
    ----------
    explanation
        The explanation to draw (token or word level).
    ax
        Axes to draw into; by default a new figure sized to the texts.
    threshold
        Hide pairs whose ``|R|`` is below this fraction of the largest ``|R|`` (0 shows every pair).
    max_pairs
        Draw at most this many pairs (the strongest); ``None`` draws all above ``threshold``.
    fontsize
        Font size of the token labels, in points.
    title
        Figure title; by default the method, the score, the summed relevance and the bias.
    sentences_over
        Draw a text with more tokens than this as its sentences (:func:`readable`; ``None``: always tokens).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (``ax.figure`` when ``ax`` is given).

    Examples
    --------
    >>> figure = bilrp.plotting.plot_pairs(explanation, threshold=0.05)
    >>> figure.savefig("pairs.png", bbox_inches="tight")

    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold={threshold} is not a fraction in [0, 1): give e.g. 0.02 to hide pairs below 2%")
    explanation = readable(explanation, sentences_over)
    relevance = relevance_array(explanation)
    labels_a, labels_b, special_a, special_b = token_labels(explanation)
    rows = max(len(labels_a), len(labels_b))
    label_a, label_b = label_inches(labels_a, fontsize), label_inches(labels_b, fontsize)
    curve_inches = max(3.0, 0.08 * rows)
    width = label_a + curve_inches + label_b + 0.4
    height = rows * ROW_INCHES * fontsize / 10.0 + 1.4
    figure, ax = new_axes(ax, width, height, (label_a + 0.2, label_b + 0.2, 0.8, 0.6))

    y_a = column_positions(len(labels_a))
    y_b = column_positions(len(labels_b))
    largest = float(np.abs(relevance).max()) if relevance.size else 0.0
    strength = np.abs(relevance) / largest if largest > 0 else np.zeros_like(relevance)
    shown_i, shown_j = np.nonzero((strength >= threshold) & (strength > 0))
    order = np.argsort(strength[shown_i, shown_j], kind="stable")
    if max_pairs is not None:
        order = order[len(order) - min(max_pairs, len(order)) :]
    shown_i, shown_j = shown_i[order], shown_j[order]

    t = np.linspace(0.0, 1.0, 32)
    ease = t * t * (3.0 - 2.0 * t)
    segments = [np.column_stack([t, y_a[i] + (y_b[j] - y_a[i]) * ease]) for i, j in zip(shown_i, shown_j, strict=True)]
    fractions = strength[shown_i, shown_j]
    colours = np.array(
        [
            (*to_rgb(POSITIVE_COLOR if relevance[i, j] > 0 else NEGATIVE_COLOR), 0.08 + 0.92 * f)
            for i, j, f in zip(shown_i, shown_j, fractions, strict=True)
        ]
    ).reshape(-1, 4)
    ax.add_collection(
        LineCollection(segments, colors=colours, linewidths=0.5 + 3.0 * fractions, capstyle="round", zorder=2)
    )

    for x, ys, labels, special, align, shift in (
        (0.0, y_a, labels_a, special_a, "right", -5),
        (1.0, y_b, labels_b, special_b, "left", 5),
    ):
        ax.scatter(np.full(len(ys), x), ys, s=6, color="#444444", zorder=3, linewidths=0)
        for y, label, grey in zip(ys, labels, special, strict=True):
            ax.annotate(
                label,
                (x, y),
                xytext=(shift, 0),
                textcoords="offset points",
                ha=align,
                va="center",
                fontsize=fontsize,
                color=SPECIAL_COLOR if grey else "black",
                fontstyle="italic" if grey else "normal",
                annotation_clip=False,
                parse_math=False,
            )
    top = (rows - 1) / 2.0 + 0.6
    for x, first, text, align in ((0.0, y_a[0], "text A", "right"), (1.0, y_b[0], "text B", "left")):
        ax.annotate(
            text,
            (x, first + 0.6),
            xytext=(-5 if align == "right" else 5, 0),
            textcoords="offset points",
            ha=align,
            va="bottom",
            fontsize=fontsize,
            fontweight="bold",
            annotation_clip=False,
        )
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(-(rows - 1) / 2.0 - 0.6, top)
    ax.set_axis_off()
    hidden = int(np.count_nonzero(strength > 0)) - len(shown_i)
    note = f"{len(shown_i)} pairs shown" + (f"; {hidden} with |R| < {threshold:.0%} of max hidden" if hidden else "")
    ax.set_title(
        f"{explanation.method} · {summary_line(explanation)}" if title is None else title,
        fontsize=fontsize,
        pad=2.2 * fontsize,
    )
    handles = [
        Line2D([], [], color=POSITIVE_COLOR, lw=2.5, label="raises similarity (R > 0)"),
        Line2D([], [], color=NEGATIVE_COLOR, lw=2.5, label="lowers similarity (R < 0)"),
    ]
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=2,
        frameon=False,
        fontsize=fontsize * 0.8,
        title=note,
        title_fontsize=fontsize * 0.8,
        handlelength=1.5,
        columnspacing=1.0,
    )
    return figure
