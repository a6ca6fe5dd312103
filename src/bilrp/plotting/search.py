"""The pictures of a search: the HTML page and the bar chart of a :class:`~bilrp.ranking.Ranking` and, for a
:class:`~bilrp.ranking.Difference`, the side-by-side figure and its HTML page.

Each result shows its score (``sum R + bias``), the document with every token shaded by its relevance summed over
the query, and its strongest query-document token pairs; a ``<details>`` element opens the full view of
:func:`bilrp.plotting.to_html`. Everything is inline (SVG, a scoped ``<style>``, no script), works offline and is
pure ASCII. The pages are :class:`~bilrp.plotting.layout.HTMLText`: a ``str`` that Jupyter displays as HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from ..token_display import NEGATIVE_COLOR, POSITIVE_COLOR, SPECIAL_COLOR, display_token, is_special_token
from .html import to_html
from .layout import HTMLText, InlineFigure, ascii_html, inline_svg, label_inches

if TYPE_CHECKING:
    from ..explanation import Explanation
    from ..ranking import Difference, Ranking

__all__ = ["ranking_html", "difference_html", "plot_difference", "plot_ranking"]

_STYLE = """<style>
.bilrp-rank{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;font-size:14px;line-height:1.45;max-width:64em}
.bilrp-rank h2{margin:.2em 0 .1em}.bilrp-rank .meta{color:#555;margin:0 0 .8em}
.bilrp-rank .result{border-top:1px solid #ddd;padding:.5em 0}
.bilrp-rank .head{font-weight:bold}.bilrp-rank .head code{font-weight:normal;background:#f2f2f2;padding:0 4px}
.bilrp-rank .tok{padding:0 2px;border-radius:3px}.bilrp-rank .doc{margin:.3em 0}
.bilrp-rank table{border-collapse:collapse;margin:.3em 0}.bilrp-rank th,.bilrp-rank td{padding:1px 8px;text-align:left}
.bilrp-rank th{border-bottom:1px solid #999}.bilrp-rank td.num{font-family:monospace;text-align:right}
.bilrp-rank summary{cursor:pointer;color:#1f5fa8}.bilrp-rank .none{color:#888}
</style>"""


def _shaded(tokens: Sequence[str], totals: np.ndarray, largest: float) -> str:
    """Tokens as spans shaded by their total relevance (red raises the score, blue lowers it)."""
    spans = []
    for token, total in zip(tokens, totals, strict=True):
        strength = abs(float(total)) / largest if largest > 0 else 0.0
        red, green, blue = (int(255 * c) for c in to_rgb(POSITIVE_COLOR if total > 0 else NEGATIVE_COLOR))
        grey = ";color:#777" if is_special_token(token) else ""
        style = f"background:rgba({red},{green},{blue},{0.6 * strength:.3f}){grey}"
        title = f"total R {float(total):+.4f}"
        spans.append(f'<span class="tok" style="{style}" title="{title}">{ascii_html(display_token(token))}</span>')
    return " ".join(spans)


def _pairs_table(explanation: Explanation, k: int) -> str:
    """The ``k`` strongest pairs by ``|R|``: query token, document token, relevance."""
    flat = explanation.relevance.detach().double().cpu().flatten()
    columns = explanation.relevance.shape[1]
    order = [int(n) for n in flat.abs().nan_to_num(0.0).argsort(descending=True, stable=True)[:k]]
    rows = "".join(
        f'<tr><td class="num">{float(flat[n]):+.4f}</td>'
        f"<td>{ascii_html(display_token(explanation.tokens_a[n // columns]))}</td>"
        f"<td>{ascii_html(display_token(explanation.tokens_b[n % columns]))}</td></tr>"
        for n in order
    )
    return f"<table><tr><th>R</th><th>query token</th><th>document token</th></tr>{rows}</table>"


def _result(rank: int, explanation: Explanation, k: int, details: bool) -> str:
    relevance = explanation.relevance.detach().double().cpu().numpy()
    totals = relevance.sum(axis=0)
    largest = float(np.abs(totals).max(initial=0.0))
    shown_id = "" if explanation.document_id is None else f" <code>{ascii_html(explanation.document_id)}</code>"
    full = f"<details><summary>full explanation</summary>{to_html(explanation, k=10)}</details>" if details else ""
    return (
        f'<div class="result"><div class="head">{rank}.{shown_id} score {explanation.score:.4f} '
        f"= &#931;R {float(relevance.sum()):.4f} + bias {explanation.bias:.4f}</div>"
        f'<p class="doc">{_shaded(explanation.tokens_b, totals, largest)}</p>'
        f"{_pairs_table(explanation, k)}{full}</div>"
    )


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>bilrp: {ascii_html(title)}</title></head><body>{body}</body></html>\n"
    )


def ranking_html(ranking: Ranking, k: int = 3, full_page: bool = False, details: bool = True) -> HTMLText:
    """The ranking as HTML: per result its score, the shaded document and its ``k`` strongest token pairs.

    Parameters
    ----------
    ranking
        The explained results.
    k
        Token pairs listed per result (the strongest by ``|R|``).
    full_page
        A complete HTML document instead of a ``<div>`` fragment.
    details
        Add each result's full view (:func:`bilrp.plotting.to_html`: pair plot, top pairs) in a ``<details>``.

    Returns
    -------
    HTMLText
        The HTML text: a ``str`` (write it to a file as it is) that Jupyter displays as HTML, with
        :func:`plot_ranking` as its PNG fallback.

    """
    how = "ranked by the model's score" if ranking.order == "score" else "in the order given (your retriever's)"
    meta = (
        f"{ascii_html(ranking.model)} &#183; rules {ascii_html(ranking.rules)} &#183; top {len(ranking)} of "
        f"{ranking.ranked} documents, {how}. Each score is the sum of the token-pair relevance R plus the bias; "
        "a document token is shaded by its relevance summed over the query (red raises the score, blue lowers it)."
    )
    results = "".join(_result(rank, e, k, details) for rank, e in enumerate(ranking, start=1))
    body = (
        f'<div class="bilrp-rank">{_STYLE}<h2>Query: {ascii_html(ranking.query)}</h2>'
        f'<p class="meta">{meta}</p>{results or "<p class=none>no results</p>"}</div>'
    )
    page = _page(f"ranking for {ranking.query}", body) if full_page else body
    return HTMLText(page, lambda: plot_ranking(ranking))


def difference_html(difference: Difference, k: int = 5, full_page: bool = False) -> HTMLText:
    """Why A scores above B, as HTML: the side-by-side picture, the strongest query tokens, both full views.

    Parameters
    ----------
    difference
        The contrast to show.
    k
        Query tokens listed (largest ``|R_A - R_B|``).
    full_page
        A complete HTML document instead of a ``<div>`` fragment.

    Returns
    -------
    HTMLText
        The HTML text (a ``str``; Jupyter displays it as HTML, with :func:`plot_difference` as its PNG fallback).

    """
    a, b = difference.explanation_a, difference.explanation_b
    rows = "".join(
        f'<tr><td class="num">{value:+.4f}</td><td>{ascii_html(display_token(token))} <small>[{i}]</small></td></tr>'
        for i, token, value in difference.top(k)
    )
    raw = [str(e.document_id if e.document_id is not None else name) for e, name in ((a, "A"), (b, "B"))]
    names = [ascii_html(name) for name in raw]  # escaped once: the title below escapes the raw names itself
    body = (
        f'<div class="bilrp-rank">{_STYLE}<h2>Query: {ascii_html(difference.query)}</h2>'
        f'<p class="meta">Why {names[0]} (score {a.score:.4f}) and not {names[1]} (score {b.score:.4f}): '
        f"score A - score B = {difference.score:+.4f} = query tokens "
        f"{float(difference.query_relevance.sum()):+.4f} + bias {difference.bias:+.4f}.</p>"
        f"{inline_svg(plot_difference(difference))}"
        f"<table><tr><th>R_A - R_B</th><th>query token [i]</th></tr>{rows}</table>"
        f"<details><summary>full explanation of A</summary>{to_html(a, k=10)}</details>"
        f"<details><summary>full explanation of B</summary>{to_html(b, k=10)}</details></div>"
    )
    page = _page(f"{raw[0]} versus {raw[1]}", body) if full_page else body
    return HTMLText(page, lambda: plot_difference(difference))


def plot_difference(difference: Difference, fontsize: float = 9.0, cmap: str = "RdBu_r") -> Figure:
    """Document A's and B's relevance matrices on one colour scale, and the query tokens' difference.

    Rows are the query tokens in all three panels: the two heatmaps (columns: each document's tokens, red raises
    the score, blue lowers it) and, on the right, ``R_A.sum(1) - R_B.sum(1)`` per query token as bars (red:
    the token draws more from A). The title gives ``score_A - score_B = sum of the bars + bias_A - bias_B``.

    Parameters
    ----------
    difference
        What to draw.
    fontsize
        Font size of the token labels, in points.
    cmap
        A diverging matplotlib colour map.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.

    """
    a, b = difference.explanation_a, difference.explanation_b
    matrices = [a.relevance.double().cpu().numpy(), b.relevance.double().cpu().numpy()]
    columns = [[display_token(t) for t in e.tokens_b] for e in (a, b)]
    rows = [display_token(t) for t in difference.tokens]
    limit = max(float(np.nanmax(np.abs(m), initial=0.0)) for m in matrices) or 1.0
    cell = 0.28
    width = (label_inches(rows, fontsize) + 0.2) + cell * (len(columns[0]) + len(columns[1])) + 4.2
    height = cell * len(rows) + max(label_inches(c, fontsize) + 0.2 for c in columns) + 1.4
    figure = InlineFigure(figsize=(width, max(height, 2.8)), layout="constrained")
    bars_width = max(6, (len(columns[0]) + len(columns[1])) // 3)
    axes = figure.subplots(
        1, 3, sharey=True, gridspec_kw={"width_ratios": [len(columns[0]), len(columns[1]), bars_width]}
    )
    for ax, matrix, labels, explanation, name in zip(axes[:2], matrices, columns, (a, b), "AB", strict=True):
        image = ax.imshow(matrix, cmap=cmap, vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=fontsize)
        ax.xaxis.tick_top()
        for label, token in zip(ax.get_xticklabels(), explanation.tokens_b, strict=True):
            label.set_color(SPECIAL_COLOR if is_special_token(token) else "black")
        shown = f" ({explanation.document_id})" if explanation.document_id is not None else ""
        ax.set_xlabel(f"document {name}{shown}: score {explanation.score:.3f}", fontsize=fontsize + 1)
    axes[0].set_yticks(range(len(rows)), rows, fontsize=fontsize)
    for label, token in zip(axes[0].get_yticklabels(), difference.tokens, strict=True):
        label.set_color(SPECIAL_COLOR if is_special_token(token) else "black")
    values = difference.query_relevance.cpu().numpy()
    axes[2].barh(range(len(values)), values, color=[POSITIVE_COLOR if v > 0 else NEGATIVE_COLOR for v in values])
    axes[2].axvline(0.0, color="#444444", linewidth=0.8)
    axes[2].set_xlabel("per query token: R_A - R_B", fontsize=fontsize + 1)
    axes[2].tick_params(axis="y", left=False)
    figure.colorbar(image, ax=list(axes[:2]), location="bottom", shrink=0.5, aspect=30, label="token-pair relevance R")
    figure.suptitle(
        f"score A - score B = {difference.score:+.4f} = query tokens {float(values.sum()):+.4f} "
        f"+ bias {difference.bias:+.4f}",
        fontsize=fontsize + 2,
    )
    return figure


def plot_ranking(ranking: Ranking, fontsize: float = 9.0) -> Figure:
    """The ranking at a glance: one row per result, best on top, its score split into ``sum R`` and the bias.

    Each row is labelled with the rank, the document id and the start of the document. A bar runs from 0 to the
    summed token-pair relevance (red if positive, blue if negative), a hatched bar from there to the score (the
    bias), and a black tick marks the score, so ``sum R + bias == score`` can be read off.

    Parameters
    ----------
    ranking
        The explained results.
    fontsize
        Font size of the labels, in points.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.

    """
    results = list(ranking)
    labels = [
        f"{rank}. {'' if e.document_id is None else f'[{e.document_id}] '}{_cut(' '.join(e.text_b.split()), 40)}"
        for rank, e in enumerate(results, start=1)
    ]
    totals = np.array([float(e.relevance.detach().double().sum()) for e in results])
    biases = np.array([e.bias for e in results], dtype=float)
    figure = InlineFigure(figsize=(label_inches(labels, fontsize) + 5.5, 1.2 + 0.32 * max(len(results), 1)))
    figure.set_layout_engine("constrained")
    ax = figure.add_subplot()
    rows = np.arange(len(results))
    colors = [POSITIVE_COLOR if t > 0 else NEGATIVE_COLOR for t in totals]
    ax.barh(rows, totals, height=0.6, color=colors, label="sum of R")
    ax.barh(rows, biases, left=totals, height=0.6, facecolor="none", edgecolor="#666666", hatch="////", label="bias")
    ax.scatter(totals + biases, rows, marker="|", s=260, color="black", zorder=3, label="score")
    ax.axvline(0.0, color="#444444", linewidth=0.8)
    ends = np.concatenate([[0.0], totals, totals + biases])
    low, high = float(np.nanmin(ends)), float(np.nanmax(ends))
    pad = 0.05 * (high - low) or 1.0
    ax.set_xlim(low - (pad if low < 0 else 0.0), high + pad)
    ax.set_yticks(rows, labels, fontsize=fontsize)
    ax.set_ylim(max(len(results), 1) - 0.5, -0.5)
    ax.set_xlabel("score = sum of the token-pair relevance R + bias", fontsize=fontsize)
    ax.set_title(f"query: {_cut(' '.join(ranking.query.split()), 70)}", fontsize=fontsize + 1)
    if results:
        ax.legend(fontsize=fontsize - 1, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax.text(0.5, 0.5, "no results", transform=ax.transAxes, ha="center", va="center", color=SPECIAL_COLOR)
    return figure


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
