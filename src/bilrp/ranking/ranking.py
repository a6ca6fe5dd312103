"""``explain_ranking``: why did these documents come first for a query? One engine pass for the query, then a
matrix product per document (:class:`~bilrp.ranking.index.DocumentIndex` holds the documents' factors).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._io import json_text, write_text
from .._validation import optional_positive_int, positive_int
from ..attr import BiLRP
from ..explainer import TextFactor, explanation_from_factors, text_factors
from ..explanation import Explanation
from ..models import SimilarityModel, as_similarity_model
from .index import DocumentIndex

__all__ = ["Ranking", "explain_ranking"]


@dataclass
class Ranking:
    """Explained search results for one query, best first (or in the order a retriever gave them).

    Attributes
    ----------
    query
        The query (text A of every explanation).
    explanations
        One :class:`~bilrp.Explanation` per result (text B: the document, ``document_id``: its id, ``None`` for a
        text that is not in an index); each one's ``relevance.sum() + bias`` is its score.
    model, rules
        The model's name and the rule set.
    ranked
        How many documents the results were chosen from (the index size, or the number given).
    order
        ``"score"``: ranked by the model's score; ``"given"``: in the order of the ids or texts given.

    """

    query: str
    explanations: list[Explanation] = field(default_factory=list)
    model: str = ""
    rules: str = ""
    ranked: int = 0
    order: str = "score"

    @property
    def ids(self) -> list[str | None]:
        """The document ids, in result order."""
        return [e.document_id for e in self.explanations]

    @property
    def scores(self) -> list[float]:
        """The model's scores, in result order."""
        return [e.score for e in self.explanations]

    def __len__(self) -> int:
        return len(self.explanations)

    def __iter__(self) -> Iterator[Explanation]:
        return iter(self.explanations)

    def __getitem__(self, rank: int) -> Explanation:
        return self.explanations[rank]

    def to_records(self) -> list[dict[str, Any]]:
        """The JSON form: one dict per result, ``{rank, id, score, bias, tokens_a, tokens_b, relevance, ...}``
        (the rest of :meth:`Explanation.to_dict <bilrp.Explanation.to_dict>`).
        """
        return [{"rank": rank, "id": e.document_id, **e.to_dict()} for rank, e in enumerate(self, start=1)]

    def to_json(self, path: str | Path | None = None, indent: int | None = 2) -> str:
        """The JSON text of :meth:`to_records`; also written (atomically) to ``path`` when given."""
        text = json_text(self.to_records(), indent=indent)
        if path is not None:
            write_text(path, text)
        return text

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]], order: str = "score") -> Ranking:
        """Rebuild a ranking from :meth:`to_records` output."""
        explanations = [Explanation.from_dict({**r, "document_id": r.get("id")}) for r in records]
        first = explanations[0] if explanations else None
        return cls(
            query=first.text_a if first else "",
            explanations=explanations,
            model=first.model if first else "",
            rules=first.rules if first else "",
            ranked=len(explanations),
            order=order,
        )


def _checked_query(query: Any) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"the query is {query!r}: give a text with at least one non-space character")
    return query


def _like(factor: TextFactor, reference: TextFactor) -> TextFactor:
    """``factor`` with its tensors in the dtype and on the device of ``reference`` (a stored factor, for pairing)."""
    moved = dict(factor)
    for key in ("contributions", "phi", "bias_vector"):
        if moved.get(key) is not None:
            moved[key] = moved[key].to(reference["contributions"])
    return moved  # type: ignore[return-value]


def _document_prompt(index: DocumentIndex | None, document_prompt: str | None) -> str | None:
    if index is None or document_prompt is None:
        return index.prompt_name if index is not None else document_prompt
    if document_prompt != index.prompt_name:
        raise ValueError(
            f"index {index.path} was built with the document prompt {index.prompt_name!r}, not {document_prompt!r}"
        )
    return document_prompt


def _candidates(index, names, documents, query_factor, top_k) -> list[tuple[str | None, str, TextFactor | None]]:
    """``(id, text, stored factor or None)`` of each document to explain, in result order."""
    if documents is not None:
        known = {} if index is None else {text: name for name, text in zip(index.ids, index.texts, strict=True)}
        chosen = [(known.get(text), text) for text in documents]
        return [(name, text, None if name is None else index.factor(name)) for name, text in chosen]
    if names is None:
        scores = index.scores(query_factor["phi"])
        order = torch.argsort(scores, descending=True, stable=True)[: len(index) if top_k is None else top_k]
        names = [index.ids[int(position)] for position in order]
    return [(name, index.text(name), index.factor(name)) for name in names]


def explain_ranking(
    model: SimilarityModel | Any,
    query: str,
    index: DocumentIndex | None = None,
    top_k: int | None = 10,
    *,
    ids: Sequence[Any] | None = None,
    documents: Sequence[str] | None = None,
    rules: str | None = None,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    batch_size: int = 32,
    internal_batch_size: int | None = None,
    truncate: bool = True,
) -> Ranking:
    """Explain a query's top documents: rank the index by the model's score and explain the best ``top_k``.

    The query's factor costs one engine pass; each document's explanation is then a matrix product with its
    stored factor, equal to ``bilrp.explain(model, query, document)`` (to float rounding; to the storage
    rounding for a half-precision index).

    Parameters
    ----------
    model
        The similarity model the index was built with.
    query
        The query text.
    index
        The documents' factors (:meth:`DocumentIndex.build <bilrp.DocumentIndex.build>`).
    top_k
        How many of the best-scored documents to explain (``None``: all); not used with ``ids`` or
        ``documents``.
    ids
        Explain these documents of ``index`` instead, in this order: the ranking of your own retriever (FAISS,
        a vector database). Unknown ids raise :class:`~bilrp.ranking.index.UnknownDocumentError`.
    documents
        Explain these texts instead, in this order (with or without an index; a text the index holds uses its
        stored factor and id, the others are computed here).
    rules
        BiLRP's rule set. With an index: ``None`` or the rules it was built with (others are refused);
        without: as for :func:`bilrp.explain`.
    query_prompt, document_prompt
        The model's prompt names for the query and for texts not in the index (with an index, the documents'
        prompt is the one it was built with).
    batch_size, internal_batch_size, truncate
        As for :func:`bilrp.explain_batch`.

    Returns
    -------
    Ranking
        The explanations, in result order, each with its ``document_id``.

    """
    model = as_similarity_model(model)
    query = _checked_query(query)
    optional_positive_int("top_k", top_k)
    positive_int("batch_size", batch_size)
    if index is None and documents is None:
        raise ValueError("nothing to rank: give an index, or the texts to explain with documents=")
    if ids is not None and (index is None or documents is not None):
        raise ValueError("ids= name documents of an index: give index= and no documents=")
    if index is not None:
        index.check_model(model, rules)
        rules = index.rules
    names = None if ids is None else [index.ids[index.position(name)] for name in ids]  # unknown ids fail now
    document_prompt = _document_prompt(index, document_prompt)
    attribution = BiLRP(model, rules=rules)
    (query_factor,) = text_factors(model, attribution, [query], query_prompt, 1, internal_batch_size, truncate)
    candidates = _candidates(index, names, documents, query_factor, top_k)
    missing = [text for _, text, factor in candidates if factor is None]
    computed = iter(
        text_factors(model, attribution, missing, document_prompt, batch_size, internal_batch_size, truncate)
        if missing
        else []
    )
    explanations = []
    for name, text, factor in candidates:
        factor = _like(factor, query_factor) if factor is not None else next(computed)
        explanation = explanation_from_factors(model, attribution, query_factor, factor, query, text, "bilrp")
        explanation.document_id = name
        explanations.append(explanation)
    ranked = len(index) if ids is None and documents is None else len(candidates)
    order = "score" if ids is None and documents is None else "given"
    return Ranking(query, explanations, model.name, attribution.rules, ranked, order)
