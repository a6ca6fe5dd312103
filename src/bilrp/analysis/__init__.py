"""Corpus-level analyses of explanations (paper section 5): POS-tag interactions, multilingual comparison and
model differences, on top of a resumable corpus runner.

Modules: :mod:`~bilrp.analysis.tagging` (POS taggers), :mod:`~bilrp.analysis.alignment` (subtoken to tag),
:mod:`~bilrp.analysis.corpus` (resumable runs), :mod:`~bilrp.analysis.pos`,
:mod:`~bilrp.analysis.multilingual`, :mod:`~bilrp.analysis.metrics`, :mod:`~bilrp.analysis.quantiles`,
:mod:`~bilrp.analysis.figures` and :mod:`~bilrp.analysis.cli` (``bilrp analyze``).
"""

from typing import TYPE_CHECKING

from .._catalog import lazy_exports

# The imports below are for type checkers and the API docs, which cannot run __getattr__.
# ruff: noqa: F401
if TYPE_CHECKING:  # the names of _EXPORTS, statically (tests/test_startup.py checks that they match)
    from .alignment import Alignment, align, tag_explanation
    from .corpus import CorpusMismatchError, CorpusRecord, DamagedRunError, load_corpus, run_corpus, run_dataset
    from .metrics import error_by_level, gold_range, spearman
    from .multilingual import LanguageSetting, compare_settings, relevance_changes, settings_for
    from .pos import PosInteractions, pos_interactions, save_pos
    from .quantiles import compare_models, quantile_groups, top_interactions
    from .specs import ModelSpec, describe
    from .tagging import TaggedSpan, Tagger, TaggerUnavailableError, load_tagger

_EXPORTS = {
    "Alignment": ".alignment:Alignment",
    "align": ".alignment:align",
    "tag_explanation": ".alignment:tag_explanation",
    "CorpusRecord": ".corpus:CorpusRecord",
    "CorpusMismatchError": ".corpus:CorpusMismatchError",
    "DamagedRunError": ".corpus:DamagedRunError",
    "run_corpus": ".corpus:run_corpus",
    "run_dataset": ".corpus:run_dataset",
    "load_corpus": ".corpus:load_corpus",
    "spearman": ".metrics:spearman",
    "error_by_level": ".metrics:error_by_level",
    "gold_range": ".metrics:gold_range",
    "PosInteractions": ".pos:PosInteractions",
    "pos_interactions": ".pos:pos_interactions",
    "save_pos": ".pos:save_pos",
    "LanguageSetting": ".multilingual:LanguageSetting",
    "settings_for": ".multilingual:settings_for",
    "relevance_changes": ".multilingual:relevance_changes",
    "compare_settings": ".multilingual:compare_settings",
    "compare_models": ".quantiles:compare_models",
    "quantile_groups": ".quantiles:quantile_groups",
    "top_interactions": ".quantiles:top_interactions",
    "ModelSpec": ".specs:ModelSpec",
    "describe": ".specs:describe",
    "TaggedSpan": ".tagging:TaggedSpan",
    "Tagger": ".tagging:Tagger",
    "TaggerUnavailableError": ".tagging:TaggerUnavailableError",
    "load_tagger": ".tagging:load_tagger",
}
"""Public name -> ``"module:attribute"``; each module is imported when one of its names is first used."""

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
