"""The matrix heatmap: rows are the tokens of text A, columns those of text B, with the bias row and column."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..token_display import SPECIAL_COLOR
from .layout import CELL_INCHES, label_inches, new_axes, relevance_array, summary_line, token_labels

if TYPE_CHECKING:
    from ..explanation import Explanation

__all__ = ["plot_heatmap"]


def plot_heatmap(
    explanation: Explanation,
    ax: Axes | None = None,
    cmap: str = "RdBu_r",
    annotate: bool | None = None,
    fontsize: float = 9.0,
    title: str | None = None,
    show_bias: bool | None = None,
) -> Figure:
    """The relevance matrix as a heatmap: tokens of A down the side, tokens of B across the top.

    The colour map is diverging and centred at zero (symmetric limits ``±max|R|``): red raises the
    similarity, blue lowers it, white is neutral. A colour bar gives the scale.

    Parameters
    ----------
    explanation
        The explanation to draw (token or word level).
    ax
        Axes to draw into; by default a new figure sized to the matrix.
    cmap
        A diverging matplotlib colour map.
    annotate
        Write each cell's value into it; by default only when the matrix has at most 150 cells.
    fontsize
        Font size of the token labels, in points.
    title
        Axes title; by default the method, the score, the summed relevance, the bias and its share.
    show_bias
        Add the bias column and row of :meth:`~bilrp.Explanation.decomposition` (each token with the other
        text's bias part, and the bias with the bias), so that the drawn matrix sums to the score; by default
        whenever the explanation has the decomposition (BiLRP, Integrated Jacobians).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (``ax.figure`` when ``ax`` is given).

    """
    relevance = relevance_array(explanation)
    labels_a, labels_b, special_a, special_b = token_labels(explanation)
    if explanation.has_decomposition if show_bias is None else show_bias:
        relevance = explanation.decomposition().numpy()  # a one-line error when there is none
        labels_a, labels_b = [*labels_a, "(bias of A)"], [*labels_b, "(bias of B)"]
        special_a, special_b = [*special_a, True], [*special_b, True]
    rows, columns = relevance.shape
    label_a, label_b = label_inches(labels_a, fontsize), label_inches(labels_b, fontsize)
    width = label_a + columns * CELL_INCHES + 1.6
    height = label_b + rows * CELL_INCHES + 1.0
    figure, ax = new_axes(ax, width, height, (label_a + 0.2, 1.3, label_b + 0.7, 0.2))
    limit = float(np.abs(relevance).max()) if relevance.size else 0.0
    limit = limit if limit > 0 else 1.0
    image = ax.imshow(relevance, cmap=cmap, vmin=-limit, vmax=limit, aspect="equal", interpolation="nearest")
    ax.xaxis.tick_top()
    ax.set_xticks(range(columns), labels_b, rotation=90, fontsize=fontsize, parse_math=False)
    ax.set_yticks(range(rows), labels_a, fontsize=fontsize, parse_math=False)
    for labels, special in (
        (ax.get_xticklabels(), special_b),
        (ax.get_yticklabels(), special_a),
    ):
        for label, grey in zip(labels, special, strict=True):
            if grey:
                label.set_color(SPECIAL_COLOR)
                label.set_fontstyle("italic")
    ax.tick_params(length=0)
    ax.set_xticks(np.arange(columns + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("text B", fontsize=fontsize, fontweight="bold")
    ax.xaxis.set_label_position("top")
    ax.set_ylabel("text A", fontsize=fontsize, fontweight="bold")
    if annotate if annotate is not None else rows * columns <= 150:
        for (i, j), value in np.ndenumerate(relevance):
            if abs(value) < 0.005:
                continue
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=fontsize * 0.75,
                color="white" if abs(value) > 0.6 * limit else "black",
            )
    colourbar = figure.colorbar(image, ax=ax, fraction=min(0.5, 0.35 / max(width, 1.0)), pad=0.03)
    colourbar.set_label("relevance R[i, j]", fontsize=fontsize)
    colourbar.ax.tick_params(labelsize=fontsize * 0.85)
    ax.set_title(
        f"{explanation.method} · {summary_line(explanation)}" if title is None else title,
        fontsize=fontsize + 1,
        pad=12,
    )
    for spine in ax.spines.values():
        spine.set_visible(False)
    return figure
