"""What the explorer computes: explanations (with a small cache), their files, rankings and contrasts.

:class:`Explorer` holds the models, the optional document index and the settings. Its methods are plain
synchronous calls into bilrp, run by :class:`~bilrp.server.runner.WorkRunner` in worker threads; each gives
exactly what the command line writes for the same input (``bilrp explain --out x.json``, ``--plot``,
``bilrp rank --out r.json``, ``bilrp rank --versus A B --out d.json``). Recent explanations, search results
and contrasts are kept (:class:`RecentCache`), so that a download draws exactly what the page shows.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._catalog import DEFAULT_MODEL, METHOD_NAMES, RULE_SET_NAMES, VERSION
from .._io import figure_bytes, json_text
from .api import (
    GRANULARITY_CHOICES,
    ApiError,
    ContrastFigureRequest,
    ContrastRequest,
    ExplainRequest,
    FigureRequest,
    RankFigureRequest,
    RankRequest,
)
from .settings import ServerSettings

if TYPE_CHECKING:
    from ..explanation import Explanation
    from ..models import SimilarityModel
    from ..ranking import Difference, DocumentIndex, Ranking

__all__ = ["Explorer", "CachedExplanation", "RankedResult", "RecentCache", "named_models", "draw", "NO_INDEX"]

NO_INDEX = "no document index loaded: start the server with bilrp serve --index INDEX"
"""The 404 message of ``/api/rank`` and ``/api/contrast`` on a server without an index."""
PAIRS_THRESHOLD = 0.02
"""The pair plot's threshold: ``bilrp explain --threshold``'s default."""
_PLOT_LOCK = threading.Lock()
"""matplotlib's pyplot is not thread-safe: one figure is drawn at a time."""


@dataclass(frozen=True)
class CachedExplanation:
    """An explanation and the notes (warnings) computing it gave."""

    explanation: Explanation
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RankedResult:
    """One search result as ``/api/rank`` answered it: its explanation, its rank (``None``: explained alone,
    in no recent answer) and the notes computing it gave.
    """

    explanation: Explanation
    rank: int | None
    notes: list[str] = field(default_factory=list)


class RecentCache:
    """The ``size`` most recently used entries of a mapping (thread-safe): what a download reuses.

    Parameters
    ----------
    size
        Entries kept; the least recently used one goes first.

    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """The entry of ``key`` (marked most recent), or ``None``."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: Hashable, entry: Any) -> None:
        """Keep ``entry`` as the most recent, dropping the oldest past ``size``."""
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


def named_models(models: Any) -> dict[str, SimilarityModel]:
    """``{name: model}`` of a model or a mapping of names to models (the first is the default)."""
    from ..models import as_similarity_model

    if isinstance(models, Mapping):
        if not models:
            raise ValueError("models is empty: give a SimilarityModel or a mapping of names to models")
        named = {}
        for name, model in models.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"model names must be non-empty strings, not {name!r}")
            named[name] = as_similarity_model(model)
        return named
    model = as_similarity_model(models)
    return {model.name or DEFAULT_MODEL: model}


class Explorer:
    """The models, the index and the computations the API routes run.

    Parameters
    ----------
    models
        ``{name: model}``; the first is the default.
    index
        The document index of ``/api/rank`` and ``/api/contrast``, or ``None``.
    settings
        The server's limits.

    """

    def __init__(
        self, models: dict[str, SimilarityModel], index: DocumentIndex | None, settings: ServerSettings
    ) -> None:
        self.models, self.index, self.settings = models, index, settings
        self.names = list(models)
        self._explanations = RecentCache(settings.cache_size)  # ExplainRequest -> CachedExplanation
        self._rankings = RecentCache(settings.cache_size)  # query -> {document id: RankedResult}
        self._rankings_lock = threading.Lock()  # one read-modify-write of a query's results at a time
        self._contrasts = RecentCache(settings.cache_size)  # ContrastRequest -> (Difference, notes)

    # ------------------------------------------------------------------ health
    def health(self) -> dict[str, Any]:
        """The ``/api/health`` answer: what the server holds and accepts."""
        index = None
        if self.index is not None:
            manifest = self.index.manifest
            index = {"documents": len(self.index), "rules": self.index.rules, "model": manifest.get("model")}
        return {
            "status": "ok",
            "version": VERSION,
            "models": self.names,
            "default_model": self.names[0],
            "methods": list(METHOD_NAMES),
            "granularities": list(GRANULARITY_CHOICES),
            "rule_sets": list(RULE_SET_NAMES),
            "index": index,
            "limits": self.settings.limits(),
            "auto_word_from": self.settings.auto_word_from,
            "auto_sentence_from": self.settings.auto_sentence_from,
        }

    # ------------------------------------------------------------------ explanations
    def cached(self, request: ExplainRequest) -> CachedExplanation | None:
        """The cached explanation of ``request`` (marked most recent), or ``None``."""
        return self._explanations.get(request)

    def remember(self, request: ExplainRequest, entry: CachedExplanation) -> None:
        """Keep ``entry`` as the most recent explanation, dropping the oldest past ``cache_size``."""
        self._explanations.put(request, entry)

    def explain(self, request: ExplainRequest) -> Explanation:
        """Compute the explanation of ``request`` with :func:`bilrp.explain` (truncating over-long texts)."""
        from ..explainer import explain

        options = {} if request.rules is None else {"rules": request.rules}
        return explain(
            self.models[request.model],
            request.text_a,
            request.text_b,
            method=request.method,
            granularity=request.granularity,
            **options,
        )

    @staticmethod
    def explain_payload(entry: CachedExplanation, request: ExplainRequest, elapsed_s: float, cached: bool) -> str:
        """The ``/api/explain`` answer: the CLI's JSON plus granularity, notes, elapsed_s and cached."""
        payload = entry.explanation.to_dict()
        payload.update(granularity=request.granularity, notes=entry.notes, elapsed_s=elapsed_s, cached=cached)
        return json_text(payload, indent=None)

    @staticmethod
    def figure(explanation: Explanation, request: FigureRequest) -> bytes:
        """The bytes ``bilrp explain --plot KIND --out explanation.FORMAT`` writes."""
        if request.format == "json":
            return json_text(explanation.to_dict()).encode("utf-8")
        return draw(explanation, request.kind, request.format)

    # ------------------------------------------------------------------ search
    def require_index(self) -> DocumentIndex:
        """The index, or a 404 :class:`ApiError` saying how to load one."""
        if self.index is None:
            raise ApiError(404, NO_INDEX)
        return self.index

    def rank(self, request: RankRequest) -> Ranking:
        """The ranking ``bilrp rank QUERY --index INDEX --top K --out r.json`` writes (``.to_json()``)."""
        from ..ranking import explain_ranking

        index = self.require_index()
        return explain_ranking(index.model, request.query, index, top_k=request.top_k)

    def remember_ranking(self, query: str, ranking: Ranking, notes: list[str]) -> None:
        """Keep the results of a ``/api/rank`` answer for ``/api/rank/figure`` (a later answer adds to them)."""
        for rank, explanation in enumerate(ranking, start=1):
            self.remember_result(query, RankedResult(explanation, rank, notes))

    def remember_result(self, query: str, result: RankedResult) -> None:
        """Keep one search result of ``query`` (replacing the one of its document)."""
        with self._rankings_lock:
            results = dict(self._rankings.get(query) or {})
            results[result.explanation.document_id] = result
            self._rankings.put(query, results)

    def ranked(self, request: RankFigureRequest) -> RankedResult | None:
        """The result of ``request``'s document in a recent ``/api/rank`` answer of its query, or ``None``."""
        return (self._rankings.get(request.query) or {}).get(request.document_id)

    def rank_one(self, request: RankFigureRequest) -> Explanation:
        """The explanation ``/api/rank`` gives for one document: ``explain_ranking(..., ids=[document_id])``."""
        from ..ranking import explain_ranking

        index = self.require_index()
        (explanation,) = explain_ranking(index.model, request.query, index, ids=[request.document_id])
        return explanation

    @staticmethod
    def ranked_file(result: RankedResult, request: RankFigureRequest) -> bytes:
        """A search result's file: its ``/api/rank`` record (JSON), or its pair plot or heatmap."""
        if request.format != "json":
            return draw(result.explanation, request.kind, request.format)
        from ..ranking import Ranking

        record = Ranking(request.query, [result.explanation]).to_records()[0]
        record["rank"] = result.rank  # its rank in the /api/rank answer, not in this one-result ranking
        return json_text(record).encode("utf-8")

    def check_documents(self, *names: str) -> None:
        """Refuse an unknown document id with 404 (before any work is queued)."""
        from ..ranking import UnknownDocumentError

        index = self.require_index()
        for name in names:
            try:
                index.position(name)
            except UnknownDocumentError as error:
                raise ApiError(404, str(error)) from None

    def contrast(self, request: ContrastRequest) -> Difference:
        """The difference ``bilrp rank QUERY --index INDEX --versus A B --out d.json`` writes (``.to_json()``)."""
        from ..ranking import explain_difference

        index = self.require_index()
        return explain_difference(index.model, request.query, request.a, request.b, index=index)

    def contrasted(self, request: ContrastRequest) -> tuple[Difference, list[str]] | None:
        """A recent ``/api/contrast`` answer of ``request`` and its notes, or ``None``."""
        return self._contrasts.get(request)

    def remember_contrast(self, request: ContrastRequest, difference: Difference, notes: list[str]) -> None:
        """Keep a ``/api/contrast`` answer for ``/api/contrast/figure``."""
        self._contrasts.put(request, (difference, notes))

    @staticmethod
    def contrast_file(difference: Difference, request: ContrastFigureRequest) -> bytes:
        """A contrast's file: the ``/api/contrast`` JSON, or ``bilrp.plotting.plot_difference`` as PNG or SVG."""
        if request.format == "json":
            return difference.to_json().encode("utf-8")
        from .. import plotting

        with _PLOT_LOCK:
            return figure_bytes(plotting.plot_difference(difference), request.format)


def draw(explanation: Explanation, kind: str, format_: str) -> bytes:
    """The pair plot (``kind="pairs"``, ``bilrp explain --plot pairs``) or heatmap of ``explanation`` as PNG or SVG."""
    from .. import plotting

    with _PLOT_LOCK:
        if kind == "pairs":
            figure = plotting.plot_pairs(explanation, threshold=PAIRS_THRESHOLD)
        else:
            figure = plotting.plot_heatmap(explanation)
        return figure_bytes(figure, format_)
