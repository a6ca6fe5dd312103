"""Self-contained HTML pages of a :class:`~bilrp.ranking.ranking.Ranking` and a
:class:`~bilrp.ranking.difference.Difference`.

Each result shows its score (``sum R + bias``), the document with every token shaded by its relevance summed over
the query, and its strongest query-document token pairs; a ``<details>`` element opens the full view of
:func:`bilrp.plotting.to_html`. Everything is inline (SVG, a scoped ``<style>``, no script), works offline and is
pure ASCII, so Jupyter shows it through ``_repr_html_``.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import to_rgb

from ..explanation import Explanation
from ..plotting import NEGATIVE_COLOR, POSITIVE_COLOR, display_token, is_special_token

if TYPE_CHECKING:
    from .difference import Difference
    from .ranking import Ranking

__all__ = ["ranking_html", "difference_html"]

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


def _ascii(text: str) -> str:
    return html.escape(text).encode("ascii", "xmlcharrefreplace").decode("ascii")


def _svg(figure) -> str:
    """A matplotlib figure as an inline ``<svg>`` element (no prologue, no metadata, pure ASCII)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text[text.index("<svg") :], flags=re.DOTALL)
    text = re.sub(r"<svg ", '<svg style="max-width:100%;height:auto" ', text, count=1)
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _shaded(tokens: Sequence[str], totals: np.ndarray, largest: float) -> str:
    """Tokens as spans shaded by their total relevance (red raises the score, blue lowers it)."""
    spans = []
    for token, total in zip(tokens, totals, strict=True):
        strength = abs(float(total)) / largest if largest > 0 else 0.0
        red, green, blue = (int(255 * c) for c in to_rgb(POSITIVE_COLOR if total > 0 else NEGATIVE_COLOR))
        grey = ";color:#777" if is_special_token(token) else ""
        style = f"background:rgba({red},{green},{blue},{0.6 * strength:.3f}){grey}"
        title = f"total R {float(total):+.4f}"
        spans.append(f'<span class="tok" style="{style}" title="{title}">{_ascii(display_token(token))}</span>')
    return " ".join(spans)


def _pairs_table(explanation: Explanation, k: int) -> str:
    """The ``k`` strongest pairs by ``|R|``: query token, document token, relevance."""
    flat = explanation.relevance.detach().double().cpu().flatten()
    columns = explanation.relevance.shape[1]
    order = [int(n) for n in flat.abs().nan_to_num(0.0).argsort(descending=True, stable=True)[:k]]
    rows = "".join(
        f'<tr><td class="num">{float(flat[n]):+.4f}</td>'
        f"<td>{_ascii(display_token(explanation.tokens_a[n // columns]))}</td>"
        f"<td>{_ascii(display_token(explanation.tokens_b[n % columns]))}</td></tr>"
        for n in order
    )
    return f"<table><tr><th>R</th><th>query token</th><th>document token</th></tr>{rows}</table>"


def _result(rank: int, explanation: Explanation, k: int, details: bool) -> str:
    relevance = explanation.relevance.detach().double().cpu().numpy()
    totals = relevance.sum(axis=0)
    largest = float(np.abs(totals).max(initial=0.0))
    shown_id = "" if explanation.document_id is None else f" <code>{_ascii(explanation.document_id)}</code>"
    full = f"<details><summary>full explanation</summary>{explanation.to_html(k=10)}</details>" if details else ""
    return (
        f'<div class="result"><div class="head">{rank}.{shown_id} score {explanation.score:.4f} '
        f"= &#931;R {float(relevance.sum()):.4f} + bias {explanation.bias:.4f}</div>"
        f'<p class="doc">{_shaded(explanation.tokens_b, totals, largest)}</p>'
        f"{_pairs_table(explanation, k)}{full}</div>"
    )


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>bilrp: {_ascii(title)}</title></head><body>{body}</body></html>\n"
    )


def ranking_html(ranking: Ranking, k: int = 3, full_page: bool = False, details: bool = True) -> str:
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
    str
        The HTML text.

    """
    how = "ranked by the model's score" if ranking.order == "score" else "in the order given (your retriever's)"
    meta = (
        f"{_ascii(ranking.model)} &#183; rules {_ascii(ranking.rules)} &#183; top {len(ranking)} of "
        f"{ranking.ranked} documents, {how}. Each score is the sum of the token-pair relevance R plus the bias; "
        "a document token is shaded by its relevance summed over the query (red raises the score, blue lowers it)."
    )
    results = "".join(_result(rank, e, k, details) for rank, e in enumerate(ranking, start=1))
    body = (
        f'<div class="bilrp-rank">{_STYLE}<h2>Query: {_ascii(ranking.query)}</h2>'
        f'<p class="meta">{meta}</p>{results or "<p class=none>no results</p>"}</div>'
    )
    return _page(f"ranking for {ranking.query}", body) if full_page else body


def difference_html(difference: Difference, k: int = 5, full_page: bool = False) -> str:
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
    str
        The HTML text.

    """
    a, b = difference.explanation_a, difference.explanation_b
    rows = "".join(
        f'<tr><td class="num">{value:+.4f}</td><td>{_ascii(display_token(token))} <small>[{i}]</small></td></tr>'
        for i, token, value in difference.top(k)
    )
    names = [_ascii(str(e.document_id if e.document_id is not None else name)) for e, name in ((a, "A"), (b, "B"))]
    body = (
        f'<div class="bilrp-rank">{_STYLE}<h2>Query: {_ascii(difference.query)}</h2>'
        f'<p class="meta">Why {names[0]} (score {a.score:.4f}) and not {names[1]} (score {b.score:.4f}): '
        f"score A - score B = {difference.score:+.4f} = query tokens "
        f"{float(difference.query_relevance.sum()):+.4f} + bias {difference.bias:+.4f}.</p>"
        f"{_svg(difference.plot())}"
        f"<table><tr><th>R_A - R_B</th><th>query token [i]</th></tr>{rows}</table>"
        f"<details><summary>full explanation of A</summary>{a.to_html(k=10)}</details>"
        f"<details><summary>full explanation of B</summary>{b.to_html(k=10)}</details></div>"
    )
    return _page(f"{names[0]} versus {names[1]}", body) if full_page else body
