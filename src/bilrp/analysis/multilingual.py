"""Multilingual comparison (paper section 5.2): monolingual and mixed-language pairs of multilingual STSb.

The same mSTSb rows are explained as, e.g., EN-EN, DE-DE and EN-DE (text A in English, text B in German).
Per setting: Spearman against the gold scores, and the POS-interaction aggregates of
:mod:`bilrp.analysis.pos`. The mixed setting is then compared with each monolingual one: per sign, each tag
pair's share of all positive (or negative) relevance, and the ``k`` tag pairs whose share changes most
(Figures 4c and 7). Shares rather than raw sums, because a mixed-language pair typically gets a lower score
and so less relevance overall.

Tags come from different taggers per language (spaCy for English, HanTa for German, see
:mod:`bilrp.analysis.tagging`): part of any difference between settings is a difference between taggers.
A language without a tagger keeps its Spearman; its POS analyses are reported as unavailable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._io import markdown_table, save_figure, write_csv, write_json, write_markdown
from .corpus import CorpusRecord
from .metrics import spearman
from .pos import PosInteractions, pos_interactions
from .tagging import Tagger, TaggerUnavailableError

__all__ = [
    "LanguageSetting",
    "settings_for",
    "Change",
    "relevance_changes",
    "SettingResult",
    "MultilingualComparison",
    "compare_settings",
]


@dataclass(frozen=True)
class LanguageSetting:
    """Text A in ``lang_a``, text B in ``lang_b`` (same mSTSb rows)."""

    lang_a: str
    lang_b: str

    @property
    def name(self) -> str:
        """``"EN-DE"``."""
        return f"{self.lang_a}-{self.lang_b}".upper()

    @property
    def dataset(self) -> str:
        """The dataset name for :func:`bilrp.datasets.load` (``mstsb-en`` or ``mstsb-en-de``)."""
        return f"mstsb-{self.lang_a}" if self.mono else f"mstsb-{self.lang_a}-{self.lang_b}"

    @property
    def mono(self) -> bool:
        """Both texts in one language."""
        return self.lang_a == self.lang_b


def settings_for(lang_a: str, lang_b: str) -> list[LanguageSetting]:
    """The two monolingual settings and the mixed one: ``A-A``, ``B-B``, ``A-B``."""
    if lang_a == lang_b:
        raise ValueError(f"two different languages are needed, got {lang_a!r} twice")
    return [LanguageSetting(lang_a, lang_a), LanguageSetting(lang_b, lang_b), LanguageSetting(lang_a, lang_b)]


@dataclass(frozen=True)
class Change:
    """A tag pair's share of one sign's relevance in the mixed and in a monolingual setting."""

    tag_a: str
    tag_b: str
    mixed: float
    mono: float

    @property
    def change(self) -> float:
        """``mixed - mono``."""
        return self.mixed - self.mono


def relevance_changes(mixed: PosInteractions, mono: PosInteractions, k: int = 10) -> dict[str, list[Change]]:
    """Per sign, the ``k`` tag pairs whose share of that sign's relevance changes most from ``mono`` to ``mixed``.

    Tag pairs missing from one setting count as share 0 there. Ordered by absolute change, largest first.
    """
    result = {}
    for sign, index in (("positive", 0), ("negative", 1)):
        shares = []
        for interactions in (mixed, mono):
            values = interactions.shares()[index]
            shares.append(
                {
                    (a, b): float(values[i, j])
                    for i, a in enumerate(interactions.tags_a)
                    for j, b in enumerate(interactions.tags_b)
                    if interactions.count[i, j]
                }
            )
        keys = sorted(set(shares[0]) | set(shares[1]))
        changes = [Change(a, b, shares[0].get((a, b), 0.0), shares[1].get((a, b), 0.0)) for a, b in keys]
        result[sign] = sorted(changes, key=lambda c: -abs(c.change))[:k]
    return result


@dataclass
class SettingResult:
    """One language setting: Spearman, and the POS aggregates unless a tagger is missing."""

    setting: LanguageSetting
    n_pairs: int
    spearman: float
    interactions: PosInteractions | None
    unavailable: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict form."""
        return {
            "setting": self.setting.name,
            "dataset": self.setting.dataset,
            "n_pairs": self.n_pairs,
            "spearman": self.spearman,
            "pos_interactions": None if self.interactions is None else self.interactions.to_dict(),
            "unavailable": self.unavailable,
        }


@dataclass
class MultilingualComparison:
    """Results per setting and the changes from each monolingual setting to the mixed one."""

    model: str
    results: list[SettingResult]
    changes: dict[str, dict[str, list[Change]]]
    taggers: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict form (the raw aggregates)."""
        return {
            "model": self.model,
            "taggers": self.taggers,
            "settings": [r.to_dict() for r in self.results],
            "changes": {
                mono: {sign: [{**asdict(c), "change": c.change} for c in cs] for sign, cs in signs.items()}
                for mono, signs in self.changes.items()
            },
        }

    def change_rows(self) -> list[dict[str, Any]]:
        """Table rows: comparison, sign, rank, tag pair, shares and change."""
        mixed = next(r.setting.name for r in self.results if not r.setting.mono)
        return [
            {
                "comparison": f"{mixed} vs {mono}",
                "sign": sign,
                "rank": rank,
                "tag pair": f"{c.tag_a} – {c.tag_b}",
                f"share {mixed}": c.mixed,
                "share mono": c.mono,
                "change": c.change,
            }
            for mono, signs in self.changes.items()
            for sign, changes in signs.items()
            for rank, c in enumerate(changes, start=1)
        ]

    def save(self, out: str | Path) -> list[Path]:
        """Write ``multilingual.json``, ``multilingual.md``, ``multilingual_changes.csv``, one POS heatmap per
        setting (``multilingual_pos_<setting>.png``), ``multilingual_shares.png`` and ``multilingual_changes.png``.
        """
        from .figures import plot_changes, plot_pos_interactions, plot_shares

        out = Path(out)
        summary = [
            {
                "setting": r.setting.name,
                "dataset": r.setting.dataset,
                "pairs": r.n_pairs,
                "Spearman x100": 100 * r.spearman,
                "POS analysis": r.unavailable or "yes",
            }
            for r in self.results
        ]
        taggers = [{"language": lang, "tagger": name} for lang, name in self.taggers.items()]
        written = [
            write_json(out / "multilingual.json", self.to_dict()),
            write_csv(out / "multilingual_changes.csv", self.change_rows()),
            write_markdown(
                out / "multilingual.md",
                f"Multilingual comparison ({self.model})",
                [
                    ("Settings", markdown_table(summary)),
                    ("Taggers", markdown_table(taggers)),
                    ("Largest changes of relevance share, mixed vs monolingual", markdown_table(self.change_rows())),
                ],
            ),
        ]
        tagged = [r for r in self.results if r.interactions is not None]
        for r in tagged:
            figure = plot_pos_interactions(r.interactions, title=f"{self.model}, {r.setting.name}")
            written.append(save_figure(figure, out / f"multilingual_pos_{r.setting.name.lower()}.png"))
        if tagged:
            figure = plot_shares({r.setting.name: r.interactions for r in tagged})
            written.append(save_figure(figure, out / "multilingual_shares.png"))
        if self.changes:
            written.append(save_figure(plot_changes(self.changes), out / "multilingual_changes.png"))
        return written


def compare_settings(
    records_by_setting: dict[LanguageSetting, Sequence[CorpusRecord]],
    tagger_for: Callable[[str], Tagger],
    model: str = "",
    k: int = 10,
) -> MultilingualComparison:
    """Spearman and POS aggregates per setting, and the top-``k`` changes of the mixed vs each monolingual one.

    Parameters
    ----------
    records_by_setting
        Explained pairs per language setting (see :func:`settings_for`).
    tagger_for
        Language code to tagger, e.g. :func:`bilrp.analysis.tagging.load_tagger`; may raise
        :class:`~bilrp.analysis.tagging.TaggerUnavailableError`.
    model
        Model label for the report.
    k
        Tag pairs per sign and comparison.

    """
    results, taggers = [], {}
    for setting, records in records_by_setting.items():
        interactions, unavailable = None, None
        try:
            tagger_a, tagger_b = tagger_for(setting.lang_a), tagger_for(setting.lang_b)
            taggers.update({setting.lang_a: tagger_a.name, setting.lang_b: tagger_b.name})
            interactions = pos_interactions([r.explanation for r in records], tagger_a, tagger_b)
        except TaggerUnavailableError as error:
            unavailable = f"unavailable: {error}"
        results.append(SettingResult(setting, len(records), spearman(records), interactions, unavailable))
    mixed = [r for r in results if not r.setting.mono and r.interactions is not None]
    changes = {
        mono.setting.name: relevance_changes(mixed[0].interactions, mono.interactions, k)
        for mono in results
        if mixed and mono.setting.mono and mono.interactions is not None
    }
    for lang in {lang for s in records_by_setting for lang in (s.lang_a, s.lang_b)} - set(taggers):
        taggers[lang] = "none (POS analyses unavailable)"
    return MultilingualComparison(model, results, changes, dict(sorted(taggers.items())))
