"""Explaining search results: why this document came first, and why this one and not that one.

BiLRP factorises (``R = C_q C_d^T``, divided by ``|phi_q| |phi_d|`` for cosine), so every document's factor is
computed once and stored in a :class:`~bilrp.ranking.index.DocumentIndex`; explaining a query against any
number of documents then costs one engine pass for the query plus a matrix product per document.

Modules: :mod:`~bilrp.ranking.index` (the index), :mod:`~bilrp.ranking.storage` (its files),
:mod:`~bilrp.ranking.fingerprint` (what it depends on), :mod:`~bilrp.ranking.ranking` (``explain_ranking``),
:mod:`~bilrp.ranking.difference` (``explain_difference``) and :mod:`~bilrp.ranking.cli` (``bilrp index`` and
``bilrp rank``). The package sits above ``bilrp.explainer`` and ``bilrp.explanation``; nothing below imports it.
Its pictures (``ranking_html``, ``difference_html``, ``plot_difference``) are in :mod:`bilrp.plotting`.
"""

from typing import TYPE_CHECKING

from .._catalog import lazy_exports

# The imports below are for type checkers and the API docs, which cannot run __getattr__.
# ruff: noqa: F401
if TYPE_CHECKING:  # the names of _EXPORTS, statically
    from .difference import Difference, explain_difference
    from .index import DocumentIndex, IndexMismatchError, UnknownDocumentError
    from .ranking import Ranking, explain_ranking
    from .score_check import ScoreMismatchError
    from .storage import DamagedIndexError

_EXPORTS = {
    "DocumentIndex": ".index:DocumentIndex",
    "IndexMismatchError": ".index:IndexMismatchError",
    "UnknownDocumentError": ".index:UnknownDocumentError",
    "DamagedIndexError": ".storage:DamagedIndexError",
    "Ranking": ".ranking:Ranking",
    "explain_ranking": ".ranking:explain_ranking",
    "Difference": ".difference:Difference",
    "explain_difference": ".difference:explain_difference",
    "ScoreMismatchError": ".score_check:ScoreMismatchError",
}
"""Public name -> ``"module:attribute"``; each module is imported when one of its names is first used."""

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
