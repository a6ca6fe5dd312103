"""Model differences (paper section 5.3): error by gold-similarity level, and the strongest token interactions
in the pairs a model finds most and least similar.

Pairs are ranked by the model's similarity; the top and bottom ``fraction`` (a quarter by default) form the
"highest" and "lowest" groups. Within a group, word-pair relevance (subtokens summed into words, words
lower-cased, special tokens kept; ``(a, b)`` and ``(b, a)`` are one interaction) is summed over the pairs,
and the ``k`` largest positive and negative sums are the group's top interactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._io import markdown_table, save_figure, write_csv, write_json, write_markdown
from .._validation import fraction as fraction_check
from .corpus import CorpusRecord
from .metrics import LevelError, error_by_level, spearman

__all__ = [
    "TokenInteraction",
    "quantile_groups",
    "top_interactions",
    "ModelDifferences",
    "ModelComparison",
    "compare_models",
    "GROUPS",
    "SIGNS",
]

GROUPS = ("highest", "lowest")
SIGNS = ("positive", "negative")


@dataclass(frozen=True)
class TokenInteraction:
    """A word-pair interaction summed over a group of pairs."""

    word_a: str
    word_b: str
    relevance: float
    occurrences: int

    @property
    def label(self) -> str:
        """``"word_a – word_b"``."""
        return f"{self.word_a} – {self.word_b}"


def quantile_groups(records: Sequence[CorpusRecord], fraction: float = 0.25) -> dict[str, list[CorpusRecord]]:
    """The ``fraction`` of pairs with the highest and with the lowest predicted similarity.

    Each group holds ``max(1, round(fraction * len(records)))`` pairs; ties keep corpus order.
    """
    fraction = fraction_check("fraction", fraction, 0.0, 0.5, "right")  # the CLI's --fraction rule
    if not records:
        raise ValueError("no records to split into quantiles")
    size = max(1, round(fraction * len(records)))
    ranked = sorted(records, key=lambda r: (-r.score, r.index))
    return {"highest": ranked[:size], "lowest": ranked[::-1][:size]}


def top_interactions(records: Sequence[CorpusRecord], k: int = 5, sign: str = "positive") -> list[TokenInteraction]:
    """The ``k`` word-pair interactions with the largest positive (or most negative) summed relevance."""
    if sign not in SIGNS:
        raise ValueError(f"sign must be 'positive' or 'negative', not {sign!r}")
    totals: dict[tuple[str, str], list] = {}
    for record in records:
        explanation = record.explanation
        special = {t for t, w in zip(explanation.tokens_a, explanation.word_ids_a or [], strict=False) if w is None}
        special |= {t for t, w in zip(explanation.tokens_b, explanation.word_ids_b or [], strict=False) if w is None}
        words = explanation.to_words()
        relevance = words.relevance.numpy()
        names_a = [w if w in special else w.lower() for w in words.tokens_a]
        names_b = [w if w in special else w.lower() for w in words.tokens_b]
        for i, word_a in enumerate(names_a):
            for j, word_b in enumerate(names_b):
                key = tuple(sorted((word_a, word_b)))
                entry = totals.setdefault(key, [0.0, 0])
                entry[0] += float(relevance[i, j])
                entry[1] += 1
    direction = 1.0 if sign == "positive" else -1.0
    ranked = sorted(totals.items(), key=lambda item: (-direction * item[1][0], item[0]))
    return [TokenInteraction(a, b, total, n) for (a, b), (total, n) in ranked[:k] if direction * total > 0]


@dataclass
class ModelDifferences:
    """One model's agreement with the gold scores and its top interactions per group and sign."""

    label: str
    n_pairs: int
    spearman: float
    levels: list[LevelError]
    top: dict[str, dict[str, list[TokenInteraction]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict form."""
        return {
            "label": self.label,
            "n_pairs": self.n_pairs,
            "spearman": self.spearman,
            "levels": [level.to_dict() for level in self.levels],
            "top": {g: {s: [asdict(t) for t in ts] for s, ts in signs.items()} for g, signs in self.top.items()},
        }


@dataclass
class ModelComparison:
    """Model differences on one dataset (see :func:`compare_models`)."""

    dataset: str
    fraction: float
    models: list[ModelDifferences]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict form (the raw aggregates)."""
        return {"dataset": self.dataset, "fraction": self.fraction, "models": [m.to_dict() for m in self.models]}

    def level_rows(self) -> list[dict[str, Any]]:
        """Table rows: model, gold level, pairs, mean error, mean absolute error, std."""
        return [
            {
                "model": m.label,
                "gold level": f"[{level.low:g}, {level.high:g}" + ("]" if level is m.levels[-1] else ")"),
                "pairs": level.count,
                "mean error": level.mean_error,
                "mean |error|": level.mean_absolute_error,
                "std error": level.std_error,
            }
            for m in self.models
            for level in m.levels
        ]

    def interaction_rows(self) -> list[dict[str, Any]]:
        """Table rows: model, group, sign, rank, interaction, summed relevance, occurrences."""
        return [
            {
                "model": m.label,
                "group": f"{group} {self.fraction:.0%}",
                "sign": sign,
                "rank": rank,
                "interaction": t.label,
                "relevance": t.relevance,
                "occurrences": t.occurrences,
            }
            for m in self.models
            for group in GROUPS
            for sign in SIGNS
            for rank, t in enumerate(m.top[group][sign], start=1)
        ]

    def save(self, out: str | Path) -> list[Path]:
        """Write ``quantiles.json``, ``quantiles_errors.csv``, ``quantiles_interactions.csv``, ``quantiles.md``,
        ``quantiles_errors.png`` and ``quantiles_interactions.png`` to ``out``.
        """
        from .figures import plot_level_errors, plot_quantile_interactions

        out = Path(out)
        summary = [{"model": m.label, "pairs": m.n_pairs, "Spearman x100": 100 * m.spearman} for m in self.models]
        positive = [row for row in self.interaction_rows() if row["sign"] == "positive"]
        return [
            write_json(out / "quantiles.json", self.to_dict()),
            write_csv(out / "quantiles_errors.csv", self.level_rows()),
            write_csv(out / "quantiles_interactions.csv", self.interaction_rows()),
            write_markdown(
                out / "quantiles.md",
                f"Model differences on {self.dataset}",
                [
                    ("Spearman", markdown_table(summary)),
                    ("Error of predicted vs gold similarity by gold level", markdown_table(self.level_rows())),
                    ("Top positive interactions in the highest and lowest quantiles", markdown_table(positive)),
                ],
            ),
            save_figure(plot_level_errors(self), out / "quantiles_errors.png"),
            save_figure(plot_quantile_interactions(self), out / "quantiles_interactions.png"),
        ]


def compare_models(
    records_by_model: dict[str, Sequence[CorpusRecord]],
    dataset: str,
    gold_range: tuple[float, float],
    fraction: float = 0.25,
    k: int = 5,
    levels: int | None = None,
) -> ModelComparison:
    """Compare models on the same pairs.

    Parameters
    ----------
    records_by_model
        Explained pairs per model label (e.g. from :func:`bilrp.analysis.corpus.run_dataset`).
    dataset
        Dataset name, for the report.
    gold_range
        Gold-score scale ``(low, high)`` (see :func:`bilrp.analysis.metrics.gold_range`).
    fraction
        Share of pairs in the highest and in the lowest group.
    k
        Interactions per group and sign.
    levels
        Gold-similarity levels (see :func:`bilrp.analysis.metrics.error_by_level`).

    """
    models = []
    for label, records in records_by_model.items():
        groups = quantile_groups(records, fraction)
        models.append(
            ModelDifferences(
                label,
                len(records),
                spearman(records),
                error_by_level(records, gold_range, levels),
                {group: {sign: top_interactions(groups[group], k, sign) for sign in SIGNS} for group in GROUPS},
            )
        )
    return ModelComparison(dataset, fraction, models)
