"""Pictures of an :class:`~bilrp.explanation.Explanation`: the pair plot, the matrix heatmap and an HTML view.

The figures are built without ``pyplot`` (no global state, no GUI backend, nothing to close): each
function returns a :class:`matplotlib.figure.Figure` that Jupyter displays (as a PNG) and ``savefig``
writes, or draws into an ``ax`` you pass. Token labels are shown as the tokenizer writes them, except that
the word-start markers of byte-level BPE and SentencePiece (``Ġ``, ``▁``) are dropped; special tokens
(``[CLS]``, ``</s>``, ...) are drawn in grey.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

if TYPE_CHECKING:  # annotations only: plotting sits above explanation, which calls it for its pictures
    from .explanation import Explanation, TokenPair

__all__ = [
    "plot_pairs",
    "plot_heatmap",
    "to_html",
    "display_token",
    "is_special_token",
    "POSITIVE_COLOR",
    "NEGATIVE_COLOR",
]

POSITIVE_COLOR = "#c0272d"
"""Colour of pairs that raise the similarity (``R > 0``)."""
NEGATIVE_COLOR = "#1f5fa8"
"""Colour of pairs that lower the similarity (``R < 0``)."""

_SPECIAL_COLOR = "#8a8a8a"
_SPECIAL_PATTERN = re.compile(r"^(\[[A-Za-z_]+\]|<\|?/?[A-Za-z_]+\|?>)$")
_WORD_START_MARKERS = ("Ġ", "▁")
_ROW_INCHES = 0.24
_CELL_INCHES = 0.3
_CHAR_INCHES_PER_POINT = 0.55 / 72


def display_token(token: str) -> str:
    r"""The label shown for a token: word-start markers (``Ġ``, ``▁``) dropped, a newline shown as ``\n``."""
    shown = token.replace("\n", "\\n").replace("Ċ", "\\n")
    for marker in _WORD_START_MARKERS:
        shown = shown.removeprefix(marker)
    shown = shown.replace(_WORD_START_MARKERS[0], " ").replace(_WORD_START_MARKERS[1], " ") or "␣"
    return shown if len(shown) <= _LABEL_CHARACTERS else shown[: _LABEL_CHARACTERS - 1] + "…"  # a sentence


_LABEL_CHARACTERS = 48
"""Longer labels (sentences, spans) are cut to this many characters in the pictures."""
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


def is_special_token(token: str) -> bool:
    """Whether a token looks like a tokenizer's special token (``[CLS]``, ``[SEP]``, ``<s>``, ``<|endoftext|>``)."""
    return bool(_SPECIAL_PATTERN.match(token))


def _special_mask(tokens: Sequence[str], word_ids: Sequence[int | None] | None) -> list[bool]:
    if word_ids is not None and len(word_ids) == len(tokens):
        return [word is None for word in word_ids]
    return [is_special_token(token) for token in tokens]


def _token_labels(explanation: Explanation) -> tuple[list[str], list[str], list[bool], list[bool]]:
    """Display labels of the tokens of A and of B, and whether each is a special token."""
    return (
        [display_token(t) for t in explanation.tokens_a],
        [display_token(t) for t in explanation.tokens_b],
        _special_mask(explanation.tokens_a, explanation.word_ids_a),
        _special_mask(explanation.tokens_b, explanation.word_ids_b),
    )


def _relevance(explanation: Explanation) -> np.ndarray:
    relevance = explanation.relevance.detach().cpu().double().numpy()
    expected = (len(explanation.tokens_a), len(explanation.tokens_b))
    if relevance.shape != expected:
        raise ValueError(
            f"relevance of shape {tuple(relevance.shape)} does not match {expected[0]} tokens of A and "
            f"{expected[1]} of B: build the Explanation with one row per token of A and one column per token of B"
        )
    return relevance


def _summary(explanation: Explanation) -> str:
    total = float(_relevance(explanation).sum())
    return (
        f"score {explanation.score:.3f} = ΣR {total:.3f} + bias {explanation.bias:.3f} "
        f"(bias share {explanation.bias_share:.0%})"
    )


def _label_inches(labels: Sequence[str], fontsize: float) -> float:
    return max((len(label) for label in labels), default=1) * fontsize * _CHAR_INCHES_PER_POINT


class _Figure(Figure):
    """A figure that Jupyter shows as a PNG even when ``pyplot`` (and its inline backend) was never imported."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def _new_axes(
    ax: Axes | None, width: float, height: float, margins: tuple[float, float, float, float]
) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure of ``width`` x ``height`` inches with ``margins`` (l, r, t, b)."""
    if ax is not None:
        return ax.figure, ax
    left, right, top, bottom = margins
    figure = _Figure(figsize=(width, height))
    figure.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height)
    return figure, figure.add_subplot()


def _column_positions(count: int) -> np.ndarray:
    """Vertical positions of ``count`` tokens, one unit apart, top to bottom, centred on zero."""
    return (count - 1) / 2.0 - np.arange(count)


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
    relevance = _relevance(explanation)
    labels_a, labels_b, special_a, special_b = _token_labels(explanation)
    rows = max(len(labels_a), len(labels_b))
    label_a, label_b = _label_inches(labels_a, fontsize), _label_inches(labels_b, fontsize)
    curve_inches = max(3.0, 0.08 * rows)
    width = label_a + curve_inches + label_b + 0.4
    height = rows * _ROW_INCHES * fontsize / 10.0 + 1.4
    figure, ax = _new_axes(ax, width, height, (label_a + 0.2, label_b + 0.2, 0.8, 0.6))

    y_a = _column_positions(len(labels_a))
    y_b = _column_positions(len(labels_b))
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
                color=_SPECIAL_COLOR if grey else "black",
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
        f"{explanation.method} · {_summary(explanation)}" if title is None else title,
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
    relevance = _relevance(explanation)
    labels_a, labels_b, special_a, special_b = _token_labels(explanation)
    if explanation.has_decomposition if show_bias is None else show_bias:
        relevance = explanation.decomposition().numpy()  # a one-line error when there is none
        labels_a, labels_b = [*labels_a, "(bias of A)"], [*labels_b, "(bias of B)"]
        special_a, special_b = [*special_a, True], [*special_b, True]
    rows, columns = relevance.shape
    label_a, label_b = _label_inches(labels_a, fontsize), _label_inches(labels_b, fontsize)
    width = label_a + columns * _CELL_INCHES + 1.6
    height = label_b + rows * _CELL_INCHES + 1.0
    figure, ax = _new_axes(ax, width, height, (label_a + 0.2, 1.3, label_b + 0.7, 0.2))
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
                label.set_color(_SPECIAL_COLOR)
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
        f"{explanation.method} · {_summary(explanation)}" if title is None else title,
        fontsize=fontsize + 1,
        pad=12,
    )
    for spine in ax.spines.values():
        spine.set_visible(False)
    return figure


def _svg(figure: Figure) -> str:
    """The figure as an inline ``<svg>`` element: no XML prologue, doctype or metadata (no URLs)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    text = re.sub(r"<svg ", '<svg style="max-width:100%;height:auto" ', text, count=1)
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _ascii(text: str) -> str:
    return html.escape(text).encode("ascii", "xmlcharrefreplace").decode("ascii")


def _highlighted_tokens(labels: Sequence[str], totals: np.ndarray, special: Sequence[bool], largest: float) -> str:
    """Tokens as spans shaded by their total relevance relative to ``largest`` (red raises, blue lowers)."""
    spans = []
    for label, total, grey in zip(labels, totals, special, strict=True):
        strength = abs(total) / largest if largest > 0 else 0.0
        red, green, blue = (int(255 * c) for c in to_rgb(POSITIVE_COLOR if total > 0 else NEGATIVE_COLOR))
        style = f"background:rgba({red},{green},{blue},{0.6 * strength:.3f})" + (";color:#777" if grey else "")
        spans.append(f'<span class="tok" style="{style}" title="total R {total:+.4f}">{_ascii(label)}</span>')
    return " ".join(spans)


def _pair_table(pairs: Sequence[TokenPair], sign: str, effect: str) -> str:
    rows = "".join(
        f"<tr><td class=num>{p.relevance:+.4f}</td><td>{_ascii(display_token(p.token_a))} <small>[{p.i}]</small>"
        f"</td><td>{_ascii(display_token(p.token_b))} <small>[{p.j}]</small></td></tr>"
        for p in pairs
    )
    rows = rows or '<tr><td colspan="3" class="none">none</td></tr>'
    return (
        f'<table class="{sign[:3]}"><caption>{sign} pairs ({effect} the similarity)</caption>'
        f"<tr><th>R</th><th>token A [i]</th><th>token B [j]</th></tr>{rows}</table>"
    )


_STYLE = """<style>
.bilrp{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;font-size:14px;line-height:1.45;max-width:60em}
.bilrp h3{margin:.2em 0}.bilrp .meta{color:#555;margin:0 0 .6em}
.bilrp .text{margin:.25em 0}.bilrp .tok{padding:0 2px;border-radius:3px}
.bilrp .tables{display:flex;flex-wrap:wrap;gap:1.5em;margin-top:.6em}
.bilrp table{border-collapse:collapse}.bilrp th,.bilrp td{padding:2px 8px;text-align:left}
.bilrp th{border-bottom:1px solid #999}.bilrp td.num{font-family:monospace;text-align:right}
.bilrp .pos caption{color:#c0272d}.bilrp .neg caption{color:#1f5fa8}.bilrp td.none{color:#888}
.bilrp small{color:#888}.bilrp caption{text-align:left;font-weight:bold}
</style>"""


def to_html(explanation: Explanation, k: int = 10, threshold: float = 0.02, full_page: bool = False) -> str:
    """A self-contained HTML view: summary, both texts shaded by token relevance, the pair plot, top pairs.

    Everything is inline (SVG drawn with glyph outlines, a scoped ``<style>``, no script): it works offline
    and makes no network request. The fragment is pure ASCII, so it displays correctly whatever encoding
    the page around it declares; Jupyter shows it through ``Explanation._repr_html_``.

    Parameters
    ----------
    explanation
        The explanation to show.
    k
        Number of strongest positive and negative pairs listed.
    threshold
        Passed to :func:`plot_pairs`.
    full_page
        Return a complete HTML document (``<!DOCTYPE html>``...) instead of a ``<div>`` fragment.

    Returns
    -------
    str
        The HTML text.

    """
    relevance = _relevance(explanation)
    top = explanation.top(k)
    labels_a, labels_b, special_a, special_b = _token_labels(explanation)
    totals_a, totals_b = relevance.sum(axis=1), relevance.sum(axis=0)
    largest = max(float(np.abs(totals_a).max(initial=0.0)), float(np.abs(totals_b).max(initial=0.0)))
    meta = " · ".join(part for part in (explanation.model, explanation.method) if part)
    body = (
        f'<div class="bilrp">{_STYLE}'
        f"<h3>{_ascii(_summary(explanation))}</h3>"
        f'<p class="meta">{_ascii(meta)}. Red raises the similarity, blue lowers it; '
        f"a token is shaded by its relevance summed over the other text.</p>"
        f'<p class="text"><b>A</b> {_highlighted_tokens(labels_a, totals_a, special_a, largest)}</p>'
        f'<p class="text"><b>B</b> {_highlighted_tokens(labels_b, totals_b, special_b, largest)}</p>'
        f"{_svg(plot_pairs(explanation, threshold=threshold))}"
        '<div class="tables">'
        f"{_pair_table(top['positive'], 'positive', 'raise')}{_pair_table(top['negative'], 'negative', 'lower')}"
        "</div></div>"
    )
    if not full_page:
        return body
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>bilrp: {_ascii(_summary(explanation))}</title></head><body>{body}</body></html>\n"
    )
