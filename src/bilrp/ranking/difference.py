"""``explain_difference``: why document A scores above document B for a query.

Both scores are explained against the same query tokens, so their difference splits over the query tokens:
``score_A - score_B = sum_i (R_A[i].sum() - R_B[i].sum()) + (bias_A - bias_B)``. :class:`Difference` holds both
explanations, that per-query-token difference and a picture of the two side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from .._io import json_text, write_text
from ..explanation import Explanation
from ..models import SimilarityModel
from ..plotting import NEGATIVE_COLOR, POSITIVE_COLOR, display_token, is_special_token
from .index import DocumentIndex
from .ranking import explain_ranking

__all__ = ["Difference", "explain_difference", "plot_difference"]


@dataclass
class Difference:
    """Why document A scores above (or below) document B for one query.

    Attributes
    ----------
    explanation_a, explanation_b
        The two explanations (text A: the query, text B: the document).
    query_relevance
        Per query token, ``R_A.sum(1) - R_B.sum(1)`` (float64): how much more the token draws from A than from B.
    score, bias
        ``score_A - score_B`` and ``bias_A - bias_B``; ``query_relevance.sum() + bias == score``.

    """

    explanation_a: Explanation
    explanation_b: Explanation
    query_relevance: torch.Tensor
    score: float
    bias: float

    @property
    def query(self) -> str:
        """The query."""
        return self.explanation_a.text_a

    @property
    def tokens(self) -> list[str]:
        """The query's tokens (one per entry of :attr:`query_relevance`)."""
        return list(self.explanation_a.tokens_a)

    @property
    def id_a(self) -> str | None:
        """The id of document A (``None`` for a text not in an index)."""
        return self.explanation_a.document_id

    @property
    def id_b(self) -> str | None:
        """The id of document B."""
        return self.explanation_b.document_id

    def top(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The ``k`` query tokens with the largest ``|query_relevance|``: ``(position, token, difference)``."""
        order = torch.argsort(self.query_relevance.abs(), descending=True, stable=True)[:k]
        return [(int(i), self.tokens[int(i)], float(self.query_relevance[int(i)])) for i in order]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: query, its tokens, ``query_relevance``, ``score``, ``bias`` and both explanations."""
        return {
            "query": self.query,
            "tokens": self.tokens,
            "query_relevance": self.query_relevance.tolist(),
            "score": self.score,
            "bias": self.bias,
            "a": {"id": self.id_a, **self.explanation_a.to_dict()},
            "b": {"id": self.id_b, **self.explanation_b.to_dict()},
        }

    def to_json(self, path: str | Path | None = None, indent: int | None = 2) -> str:
        """The JSON text of :meth:`to_dict`; also written (atomically) to ``path`` when given."""
        text = json_text(self.to_dict(), indent=indent)
        if path is not None:
            write_text(path, text)
        return text

    def plot(self, **kwargs: Any) -> Figure:
        """Both relevance matrices side by side and the query tokens' difference (see :func:`plot_difference`)."""
        return plot_difference(self, **kwargs)

    def to_html(self, k: int = 5, full_page: bool = False) -> str:
        """A self-contained HTML view (see :func:`bilrp.ranking.html.difference_html`)."""
        from .html import difference_html

        return difference_html(self, k=k, full_page=full_page)

    def _repr_html_(self) -> str:
        return self.to_html()


def explain_difference(
    model: SimilarityModel | Any,
    query: str,
    doc_a: str,
    doc_b: str,
    index: DocumentIndex | None = None,
    **options: Any,
) -> Difference:
    """Explain why ``doc_a`` scores above (or below) ``doc_b`` for ``query``.

    Parameters
    ----------
    model
        The similarity model.
    query
        The query text.
    doc_a, doc_b
        The two documents: texts, or with ``index`` their ids.
    index
        The index holding the documents (their stored factors are used).
    **options
        Passed to :func:`explain_ranking` (``rules=``, ``query_prompt=``, ``internal_batch_size=``, ...).

    Returns
    -------
    Difference
        Both explanations and the per-query-token difference, with ``query_relevance.sum() + bias == score``.

    """
    if index is not None:
        ranking = explain_ranking(model, query, index, ids=[doc_a, doc_b], **options)
    else:
        ranking = explain_ranking(model, query, documents=[doc_a, doc_b], **options)
    a, b = ranking.explanations
    query_relevance = a.relevance.double().sum(1) - b.relevance.double().sum(1)
    return Difference(a, b, query_relevance.cpu(), a.score - b.score, a.bias - b.bias)


def _label_inches(labels: list[str], fontsize: float) -> float:
    return max((len(label) for label in labels), default=1) * fontsize * 0.55 / 72 + 0.2


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
    width = _label_inches(rows, fontsize) + cell * (len(columns[0]) + len(columns[1])) + 4.2
    height = cell * len(rows) + max(_label_inches(c, fontsize) for c in columns) + 1.4
    figure = Figure(figsize=(width, max(height, 2.8)), layout="constrained")
    bars_width = max(6, (len(columns[0]) + len(columns[1])) // 3)
    axes = figure.subplots(
        1, 3, sharey=True, gridspec_kw={"width_ratios": [len(columns[0]), len(columns[1]), bars_width]}
    )
    for ax, matrix, labels, explanation, name in zip(axes[:2], matrices, columns, (a, b), "AB", strict=True):
        image = ax.imshow(matrix, cmap=cmap, vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=fontsize)
        ax.xaxis.tick_top()
        for label, token in zip(ax.get_xticklabels(), explanation.tokens_b, strict=True):
            label.set_color("#8a8a8a" if is_special_token(token) else "black")
        shown = f" ({explanation.document_id})" if explanation.document_id is not None else ""
        ax.set_xlabel(f"document {name}{shown}: score {explanation.score:.3f}", fontsize=fontsize + 1)
    axes[0].set_yticks(range(len(rows)), rows, fontsize=fontsize)
    for label, token in zip(axes[0].get_yticklabels(), difference.tokens, strict=True):
        label.set_color("#8a8a8a" if is_special_token(token) else "black")
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
