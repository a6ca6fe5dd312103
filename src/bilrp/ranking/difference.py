"""``explain_difference``: why document A scores above document B for a query.

Both scores are explained against the same query tokens, so their difference splits over the query tokens:
``score_A - score_B = sum_i (R_A[i].sum() - R_B[i].sum()) + (bias_A - bias_B)``. :class:`Difference` holds both
explanations and that per-query-token difference; :func:`bilrp.plotting.plot_difference` draws it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import _display
from .._io import json_text, write_text
from ..explainer import check_keywords
from ..explanation import Explanation
from ..models import SimilarityModel
from ..token_display import display_token
from .index import DocumentIndex
from .ranking import explain_ranking

__all__ = ["Difference", "explain_difference"]


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

    def __repr__(self) -> str:
        """One line: the two documents and scores, the split of the difference, the strongest query tokens."""
        pair = (self.explanation_a, self.explanation_b)
        names = [_display.quoted(e.text_b, 24) if e.document_id is None else repr(e.document_id) for e in pair]
        top = ", ".join(f"{display_token(token)} {value:+.4f}" for _, token, value in self.top(3))
        return (
            f"Difference(query={_display.quoted(self.query)}, a={names[0]} ({self.explanation_a.score:.4f}), "
            f"b={names[1]} ({self.explanation_b.score:.4f}), score={self.score:+.4f} = query tokens "
            f"{float(self.query_relevance.sum()):+.4f} + bias {self.bias:+.4f}, top=[{top}])"
        )

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any] | None:
        """Jupyter: :func:`bilrp.plotting.difference_html` and :func:`bilrp.plotting.plot_difference` as PNG."""
        return _display.mimebundle(self, include, exclude)

    def _repr_html_(self) -> str | None:
        """The HTML page of :func:`bilrp.plotting.difference_html`, for tools that ask for HTML only."""
        return _display.html(self)

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


def explain_difference(
    model: SimilarityModel | Any,
    query: str,
    doc_a: Any,
    doc_b: Any,
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
        The two documents: texts (with ``index``: their ids), or your retriever's results as they are (LangChain
        ``Document`` s, LlamaIndex nodes, Haystack ``Document`` s, dicts with ``"text"``; see
        :func:`explain_ranking`'s ``documents``), whose scores are then checked against bilrp's.
    index
        The index holding the documents (their stored factors are used).
    **options
        Passed to :func:`explain_ranking` (``rules=``, ``expected_scores=``, the ``encode()`` options
        ``prompt=``, ``prompt_name=``, ``truncate_dim=``, ``normalize_embeddings=``, ``similarity_fn_name=``,
        ``internal_batch_size=``, ...); any other keyword is a ``TypeError`` listing the valid ones.

    Returns
    -------
    Difference
        Both explanations and the per-query-token difference, with ``query_relevance.sum() + bias == score``.

    """
    check_keywords("explain_difference", options, _RANKING_OPTIONS)
    if index is not None and all(isinstance(doc, str | int) for doc in (doc_a, doc_b)):
        ranking = explain_ranking(model, query, index, ids=[doc_a, doc_b], **options)
    else:
        ranking = explain_ranking(model, query, index, documents=[doc_a, doc_b], **options)
    a, b = ranking.explanations
    query_relevance = a.relevance.double().sum(1) - b.relevance.double().sum(1)
    return Difference(a, b, query_relevance.cpu(), a.score - b.score, a.bias - b.bias)


_RANKING_OPTIONS = [
    name
    for name in inspect.signature(explain_ranking).parameters
    if name not in ("model", "query", "index", "top_k", "ids", "documents")
]
"""The keywords :func:`explain_difference` passes on to :func:`explain_ranking`."""
