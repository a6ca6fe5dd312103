"""Corpus-level analyses of explanations (paper section 5): POS-tag interactions, multilingual comparison and
model differences, on top of a resumable corpus runner.

Modules: :mod:`~bilrp.analysis.tagging` (POS taggers), :mod:`~bilrp.analysis.alignment` (subtoken to tag),
:mod:`~bilrp.analysis.corpus` (resumable runs), :mod:`~bilrp.analysis.pos`,
:mod:`~bilrp.analysis.multilingual`, :mod:`~bilrp.analysis.metrics`, :mod:`~bilrp.analysis.quantiles`,
:mod:`~bilrp.analysis.figures` and :mod:`~bilrp.analysis.cli` (``bilrp analyze``).
"""

from .alignment import Alignment, align, tag_explanation
from .corpus import CorpusMismatchError, CorpusRecord, load_corpus, run_corpus, run_dataset
from .metrics import error_by_level, gold_range, spearman
from .multilingual import LanguageSetting, compare_settings, relevance_changes, settings_for
from .pos import PosInteractions, pos_interactions, save_pos
from .quantiles import compare_models, quantile_groups, top_interactions
from .specs import ModelSpec, describe
from .tagging import TaggedSpan, Tagger, TaggerUnavailableError, load_tagger

__all__ = [
    "Alignment",
    "align",
    "tag_explanation",
    "CorpusRecord",
    "CorpusMismatchError",
    "run_corpus",
    "run_dataset",
    "load_corpus",
    "spearman",
    "error_by_level",
    "gold_range",
    "PosInteractions",
    "pos_interactions",
    "save_pos",
    "LanguageSetting",
    "settings_for",
    "relevance_changes",
    "compare_settings",
    "compare_models",
    "quantile_groups",
    "top_interactions",
    "ModelSpec",
    "describe",
    "TaggedSpan",
    "Tagger",
    "TaggerUnavailableError",
    "load_tagger",
]
