"""``explain_ranking``: why did these documents come first for a query? One engine pass for the query, then a
matrix product per document (:class:`~bilrp.ranking.index.DocumentIndex` holds the documents' factors).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import _display
from .._io import json_text, write_text
from .._validation import optional_positive_int, positive_int, positive_number
from ..attr import BiLRP
from ..explainer import PromptNames, PromptTexts, TextFactor, explanation_from_factors, keywords_listed, text_factors
from ..explanation import Explanation
from ..models import SimilarityModel, as_similarity_model
from ..models.encode_options import EncodeOptions, side_values
from .documents import RetrievedDocument, as_documents
from .index import DocumentIndex
from .score_check import SCORE_TOLERANCE, check_scores

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

    def __repr__(self) -> str:
        """The query and settings, then one line per result (the first ten): rank, id, score = sum R + bias."""
        how = "ranked by score" if self.order == "score" else "in the order given"
        head = (
            f"Ranking(query={_display.quoted(self.query)}, results={len(self)} of {self.ranked}, {how}, "
            f"rules={self.rules!r}, model={self.model!r})"
        )
        lines = [
            f"  {rank}. {'' if e.document_id is None else e.document_id + '  '}score {e.score:.4f} = "
            f"sum R {float(e.relevance.detach().double().sum()):.4f} + bias {e.bias:.4f}  {_display.quoted(e.text_b)}"
            for rank, e in enumerate(self.explanations[:10], start=1)
        ]
        more = [f"  ... {len(self) - 10} more"] if len(self) > 10 else []
        return "\n".join([head, *lines, *more])

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any] | None:
        """Jupyter: :func:`bilrp.plotting.ranking_html` and :func:`bilrp.plotting.plot_ranking` as PNG."""
        return _display.mimebundle(self, include, exclude)

    def _repr_html_(self) -> str | None:
        """The HTML page of :func:`bilrp.plotting.ranking_html`, for tools that ask for HTML only."""
        return _display.html(self)

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


def _checked_index(index: Any) -> DocumentIndex | None:
    """``index`` if it is a :class:`DocumentIndex` or ``None``, else a one-line ``TypeError`` saying what to pass."""
    if index is None or isinstance(index, DocumentIndex):
        return index
    if isinstance(index, Sequence) and not isinstance(index, str | bytes):
        raise TypeError(
            f"index= (the third argument) is a {type(index).__name__}, not a bilrp.DocumentIndex: pass the "
            "documents as documents=[...] (texts or your retriever's results)"
        )
    raise TypeError(
        f"index= is a {type(index).__module__}.{type(index).__qualname__}: give a bilrp.DocumentIndex "
        "(DocumentIndex.build or .open), or the documents as documents=[...]"
    )


def _like(factor: TextFactor, reference: TextFactor) -> TextFactor:
    """``factor`` with its tensors in the dtype and on the device of ``reference`` (a stored factor, for pairing)."""
    moved = dict(factor)
    for key in ("contributions", "phi", "bias_vector"):
        if moved.get(key) is not None:
            moved[key] = moved[key].to(reference["contributions"])
    return moved  # type: ignore[return-value]


def _prompt_names(prompt_name: Any, query_prompt: str | None, document_prompt: str | None) -> tuple[Any, Any]:
    """``prompt_name`` per side, with the older ``query_prompt`` / ``document_prompt`` spelling merged in."""
    names = list(side_values(prompt_name, "prompt_name"))
    for side, (older, label) in enumerate(((query_prompt, "query_prompt"), (document_prompt, "document_prompt"))):
        if older is not None:
            if names[side] is not None and names[side] != older:
                raise ValueError(f"{label}={older!r} and prompt_name {names[side]!r} disagree: give one of them")
            names[side] = older
    return names[0], names[1]


def _document_prompt(index: DocumentIndex | None, options: EncodeOptions, model: SimilarityModel) -> str:
    """The documents' literal prompt: the one given, else the index's (which a given one must equal)."""
    given = options.prompts[1]
    if index is None:
        return options.prompt(model, 1)
    stored = index.manifest["prompt"]
    if given is not None and given != stored:
        raise ValueError(
            f"index {index.path} was built with the document prompt {index.prompt_name!r} ({stored!r}), not "
            f"{given!r}: explain with the index's prompt, or build an index with this one"
        )
    return stored


Candidate = tuple[str | None, str, TextFactor | None]
"""``(id, text, stored factor or None)`` of one document to explain."""


def _given_candidates(index, given: list[RetrievedDocument], ids) -> list[Candidate]:
    """The documents given, each with its id (``ids``, its own, or the index's) and its stored factor if any."""
    known = {} if index is None else {text: name for name, text in zip(index.ids, index.texts, strict=True)}
    candidates = []
    for position, document in enumerate(given):
        stored = known.get(document.text)
        name = str(ids[position]) if ids is not None else document.id if document.id is not None else stored
        candidates.append((name, document.text, None if stored is None else index.factor(stored)))
    return candidates


def _index_candidates(index, names, query_factor, top_k, options: EncodeOptions) -> list[Candidate]:
    """The index's documents named by ``names``, else its ``top_k`` by the score the options give."""
    if names is None:
        phi = query_factor["phi"]
        if options.changes_score:
            stored = index.phi.to(device=phi.device, dtype=torch.promote_types(phi.dtype, torch.float32))
            scores = options.scores(phi.to(stored.dtype)[None], stored)
        else:
            scores = index.scores(phi)
        order = torch.argsort(scores, descending=True, stable=True)[: len(index) if top_k is None else top_k]
        names = [index.ids[int(position)] for position in order]
    return [(name, index.text(name), index.factor(name)) for name in names]


def _expected(expected_scores, given, count: int, ranked_by_score: bool) -> list[float | None] | None:
    """The retriever's scores to check, in result order: ``expected_scores``, else those the documents carry."""
    if expected_scores is None:
        found = [] if given is None else [document.score for document in given]
        return found if any(score is not None for score in found) else None
    if ranked_by_score:
        raise ValueError("expected_scores= are a retriever's scores of its results: give them with ids= or documents=")
    scores = list(expected_scores)
    if len(scores) != count:
        raise ValueError(f"got {len(scores)} expected_scores for {count} documents: give one score per document")
    for position, score in enumerate(scores):
        if score is not None and (isinstance(score, bool) or not isinstance(score, numbers.Real)):
            raise ValueError(f"expected_scores[{position}] is {score!r}: give a number (or None)")
    return [None if score is None else float(score) for score in scores]


@keywords_listed
def explain_ranking(
    model: SimilarityModel | Any,
    query: str,
    index: DocumentIndex | None = None,
    top_k: int | None = 10,
    *,
    ids: Sequence[Any] | None = None,
    documents: Sequence[Any] | None = None,
    expected_scores: Sequence[float | None] | None = None,
    score_tolerance: float = SCORE_TOLERANCE,
    rules: str | None = None,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    prompt: PromptTexts = None,
    prompt_name: PromptNames = None,
    truncate_dim: int | None = None,
    normalize_embeddings: bool | tuple[bool, bool] = False,
    similarity_fn_name: str | None = None,
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
        The similarity model the index was built with (or a ``SentenceTransformer``, a name, a folder).
    query
        The query text.
    index
        The documents' factors (:meth:`DocumentIndex.build <bilrp.DocumentIndex.build>`).
    top_k
        How many of the best-scored documents to explain (``None``: all); not used with ``ids`` or
        ``documents``.
    ids
        Explain these documents of ``index`` instead, in this order: the ranking of your own retriever (FAISS,
        a vector database). Unknown ids raise :class:`~bilrp.ranking.index.UnknownDocumentError`. With
        ``documents``: their ids (no index needed).
    documents
        Explain these documents instead, in this order (with or without an index; a text the index holds uses
        its stored factor). Texts, or your retriever's results as they are (:mod:`bilrp.ranking.documents`):
        LangChain ``Document`` s and ``(Document, score)`` pairs, LlamaIndex nodes and ``NodeWithScore`` (the
        text they embedded, metadata included), Haystack ``Document`` s, dicts with ``"text"``. Their ids and
        scores are used when they carry them.
    expected_scores
        Your retriever's scores of these documents (``None`` entries: unknown); by default those the documents
        carry. When bilrp's score of a document differs beyond ``score_tolerance`` (relative to ``max(1,
        |score|)``), :class:`~bilrp.ranking.score_check.ScoreMismatchError` says what probably differs (metadata,
        a prompt, truncation, normalisation, a distance rather than a similarity) instead of explaining another
        number.
    score_tolerance
        How far bilrp's and the retriever's scores may differ (float rounding: ``1e-4``).
    rules
        BiLRP's rule set. With an index: ``None`` or the rules it was built with (others are refused);
        without: as for :func:`bilrp.explain`.
    query_prompt, document_prompt
        The model's prompt names for the query and for texts not in the index (with an index, the documents'
        prompt is the one it was built with); the same as ``prompt_name=(query_prompt, document_prompt)``.
    prompt, prompt_name, truncate_dim, normalize_embeddings, similarity_fn_name
        sentence-transformers' ``encode()`` options, as for :func:`bilrp.explain` (pairs: ``(for the query, for
        the documents)``), so that each score is ``st.similarity(st.encode(query, ...), st.encode(document,
        ...))``; the ranking of an index follows that score.
    batch_size, internal_batch_size, truncate
        As for :func:`bilrp.explain_batch`.

    Returns
    -------
    Ranking
        The explanations, in result order, each with its ``document_id``.

    """
    index = _checked_index(index)
    model = as_similarity_model(model)
    query = _checked_query(query)
    optional_positive_int("top_k", top_k)
    positive_int("batch_size", batch_size)
    positive_number("score_tolerance", score_tolerance)
    given = None if documents is None else as_documents(documents)
    if ids is not None and index is None and given is None:
        raise ValueError("ids= name documents of an index, or label the documents= given: give index= or documents=")
    if index is None and given is None:
        raise ValueError("nothing to rank: give an index, or the documents to explain with documents=")
    if ids is not None and given is not None and len(ids) != len(given):
        raise ValueError(f"got {len(ids)} ids for {len(given)} documents: give one id per document")
    names = _prompt_names(prompt_name, query_prompt, document_prompt)
    options = EncodeOptions.resolve(model, prompt, names, truncate_dim, normalize_embeddings, similarity_fn_name)
    if index is not None:
        index.check_model(model, rules)
        rules = index.rules
    chosen = None if ids is None or given is not None else [index.ids[index.position(name)] for name in ids]
    attribution = BiLRP(model, rules=rules)
    prompted = options.prompt(model, 0)
    (query_factor,) = text_factors(model, attribution, [query], None, 1, internal_batch_size, truncate, prompt=prompted)
    if given is not None:
        candidates = _given_candidates(index, given, ids)
    else:
        candidates = _index_candidates(index, chosen, query_factor, top_k, options)
    ranked_by_score = ids is None and given is None
    expected = _expected(expected_scores, given, len(candidates), ranked_by_score)
    explanations, phis = _explained(
        model, attribution, query, query_factor, candidates, options, _document_prompt(index, options, model),
        (batch_size, internal_batch_size, truncate),
    )
    if expected is not None:
        labels = [_label(position, name, text) for position, (name, text, _) in enumerate(candidates)]
        raw = (query_factor["phi"], torch.stack(phis))
        seen = (options.embeddings(raw[0], 0), options.embeddings(raw[1], 1))
        before = raw if options.output.normalized else None
        check_scores([e.score for e in explanations], expected, labels, seen, score_tolerance, before)
    ranked = len(index) if ranked_by_score else len(candidates)
    return Ranking(query, explanations, model.name, attribution.rules, ranked, "score" if ranked_by_score else "given")


def _explained(model, attribution, query, query_factor, candidates, options, document_prompt, settings):
    """One explanation per candidate (documents not stored are computed here), and each document's ``phi``."""
    batch_size, internal_batch_size, truncate = settings
    missing = [text for _, text, factor in candidates if factor is None]
    computed = iter(
        text_factors(
            model, attribution, missing, None, batch_size, internal_batch_size, truncate, prompt=document_prompt
        )
        if missing
        else []
    )
    combined = options if options.changes_score else None
    explanations, phis = [], []
    for name, text, factor in candidates:
        factor = _like(factor, query_factor) if factor is not None else next(computed)
        explanation = explanation_from_factors(
            model, attribution, query_factor, factor, query, text, "bilrp", combined
        )
        explanation.document_id = name
        explanations.append(explanation)
        phis.append(factor["phi"].to(query_factor["phi"]))
    return explanations, phis


def _label(position: int, name: str | None, text: str) -> str:
    shown = " ".join(text.split())
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"document {position}" + (f" (id {name!r})" if name is not None else "") + f" {shown!r}"
