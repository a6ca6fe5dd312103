"""The self-contained HTML view of one explanation: summary, shaded texts, the pair plot and the top pairs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import to_rgb

from ..token_display import NEGATIVE_COLOR, POSITIVE_COLOR, display_token
from .layout import HTMLText, ascii_html, inline_svg, relevance_array, summary_line, token_labels
from .pairs import plot_pairs

if TYPE_CHECKING:
    from ..explanation import Explanation, TokenPair

__all__ = ["to_html"]


def _highlighted_tokens(labels: Sequence[str], totals: np.ndarray, special: Sequence[bool], largest: float) -> str:
    """Tokens as spans shaded by their total relevance relative to ``largest`` (red raises, blue lowers)."""
    spans = []
    for label, total, grey in zip(labels, totals, special, strict=True):
        strength = abs(total) / largest if largest > 0 else 0.0
        red, green, blue = (int(255 * c) for c in to_rgb(POSITIVE_COLOR if total > 0 else NEGATIVE_COLOR))
        style = f"background:rgba({red},{green},{blue},{0.6 * strength:.3f})" + (";color:#777" if grey else "")
        spans.append(f'<span class="tok" style="{style}" title="total R {total:+.4f}">{ascii_html(label)}</span>')
    return " ".join(spans)


def _pair_table(pairs: Sequence[TokenPair], sign: str, effect: str) -> str:
    rows = "".join(
        f"<tr><td class=num>{p.relevance:+.4f}</td><td>{ascii_html(display_token(p.token_a))} <small>[{p.i}]</small>"
        f"</td><td>{ascii_html(display_token(p.token_b))} <small>[{p.j}]</small></td></tr>"
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


def to_html(explanation: Explanation, k: int = 10, threshold: float = 0.02, full_page: bool = False) -> HTMLText:
    """A self-contained HTML view: summary, both texts shaded by token relevance, the pair plot, top pairs.

    Everything is inline (SVG drawn with glyph outlines, a scoped ``<style>``, no script): it works offline
    and makes no network request. The fragment is pure ASCII, so it displays correctly whatever encoding
    the page around it declares. An :class:`~bilrp.Explanation` shown in Jupyter displays this view (and the
    pair plot as a PNG fallback: :mod:`bilrp.plotting.notebook`); the returned text displays itself the same way.

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
    HTMLText
        The HTML text (a ``str``; Jupyter displays it as HTML).

    """
    relevance = relevance_array(explanation)
    top = explanation.top(k)
    labels_a, labels_b, special_a, special_b = token_labels(explanation)
    totals_a, totals_b = relevance.sum(axis=1), relevance.sum(axis=0)
    largest = max(float(np.abs(totals_a).max(initial=0.0)), float(np.abs(totals_b).max(initial=0.0)))
    meta = " · ".join(part for part in (explanation.model, explanation.method) if part)
    body = (
        f'<div class="bilrp">{_STYLE}'
        f"<h3>{ascii_html(summary_line(explanation))}</h3>"
        f'<p class="meta">{ascii_html(meta)}. Red raises the similarity, blue lowers it; '
        f"a token is shaded by its relevance summed over the other text.</p>"
        f'<p class="text"><b>A</b> {_highlighted_tokens(labels_a, totals_a, special_a, largest)}</p>'
        f'<p class="text"><b>B</b> {_highlighted_tokens(labels_b, totals_b, special_b, largest)}</p>'
        f"{inline_svg(plot_pairs(explanation, threshold=threshold))}"
        '<div class="tables">'
        f"{_pair_table(top['positive'], 'positive', 'raise')}{_pair_table(top['negative'], 'negative', 'lower')}"
        "</div></div>"
    )
    if full_page:
        body = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>bilrp: {ascii_html(summary_line(explanation))}</title></head><body>{body}</body></html>\n"
        )
    return HTMLText(body, lambda: plot_pairs(explanation, threshold=threshold))
