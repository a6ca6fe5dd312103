"""Relevance accumulated over pairs of POS tags (paper section 5.1, Figure 3 and appendix E).

Every token pair ``(i, j)`` of every explanation adds its relevance ``R[i, j]`` to the tag pair
``(tag_a[i], tag_b[j])``: positive and negative relevance separately, and one occurrence to the count.
Tags come from :mod:`bilrp.analysis.alignment` (special tokens are their own tag). Rows are the tags of
text A, columns those of text B.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import markdown_table, save_figure, write_csv, write_json, write_markdown
from ..explanation import Explanation
from .alignment import tag_explanation
from .tagging import UPOS_TAGS, Tagger

__all__ = ["PosInteractions", "pos_interactions", "order_tags", "save_pos"]


def order_tags(tags: Iterable[str]) -> list[str]:
    """Tags in UPOS order (nouns, verbs, adjectives, ... punctuation), then the special tokens sorted."""
    tags = set(tags)
    return [t for t in UPOS_TAGS if t in tags] + sorted(tags - set(UPOS_TAGS))


@dataclass
class PosInteractions:
    """Summed relevance and occurrences per pair of POS tags.

    Attributes
    ----------
    tags_a, tags_b
        Row tags (text A) and column tags (text B).
    positive, negative
        ``(len(tags_a), len(tags_b))`` sums of the positive and of the negative relevance (``negative <= 0``).
    count
        Token pairs per tag pair (occurrences).
    n_pairs
        Explanations accumulated.

    """

    tags_a: list[str]
    tags_b: list[str]
    positive: np.ndarray
    negative: np.ndarray
    count: np.ndarray
    n_pairs: int

    @property
    def scale(self) -> float:
        """The largest absolute total of any tag pair, of either sign (1 where all are zero)."""
        largest = max(float(np.abs(self.positive).max(initial=0)), float(np.abs(self.negative).max(initial=0)))
        return largest or 1.0

    def normalised(self) -> tuple[np.ndarray, np.ndarray]:
        """Positive and negative sums divided by :attr:`scale` (the largest absolute total is 1)."""
        return self.positive / self.scale, self.negative / self.scale

    def mean(self) -> tuple[np.ndarray, np.ndarray]:
        """Positive and negative relevance per occurrence (NaN where a tag pair never occurs)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return (
                np.where(self.count > 0, self.positive / self.count, np.nan),
                np.where(self.count > 0, self.negative / self.count, np.nan),
            )

    def shares(self) -> tuple[np.ndarray, np.ndarray]:
        """Each tag pair's fraction of all positive, and of all negative, relevance."""
        positive, negative = self.positive.sum() or 1.0, self.negative.sum() or -1.0
        return self.positive / positive, self.negative / negative

    def lookup(self) -> dict[tuple[str, str], dict[str, float]]:
        """Per occurring tag pair: ``count``, ``positive``, ``negative`` and their normalised, mean and share forms."""
        normalised, means, shares = self.normalised(), self.mean(), self.shares()
        table = {}
        for i, j in zip(*np.nonzero(self.count), strict=True):
            table[(self.tags_a[i], self.tags_b[j])] = {
                "count": int(self.count[i, j]),
                "positive": float(self.positive[i, j]),
                "negative": float(self.negative[i, j]),
                "positive_normalised": float(normalised[0][i, j]),
                "negative_normalised": float(normalised[1][i, j]),
                "positive_mean": float(means[0][i, j]),
                "negative_mean": float(means[1][i, j]),
                "positive_share": float(shares[0][i, j]),
                "negative_share": float(shares[1][i, j]),
            }
        return table

    def rows(self) -> list[dict[str, Any]]:
        """Table rows, one per occurring tag pair, strongest positive sum first."""
        rows = [{"tag_a": a, "tag_b": b, **values} for (a, b), values in self.lookup().items()]
        return sorted(rows, key=lambda row: -row["positive"])

    def top(self, k: int = 10, sign: str = "positive", by: str = "sum", min_count: int = 1) -> list[dict[str, Any]]:
        """The ``k`` tag pairs with the largest positive (or most negative) ``sum`` or ``mean`` relevance,
        among tag pairs occurring at least ``min_count`` times.
        """
        if sign not in ("positive", "negative") or by not in ("sum", "mean"):
            raise ValueError(f"sign must be 'positive' or 'negative' and by 'sum' or 'mean', not {sign!r}, {by!r}")
        key = sign if by == "sum" else f"{sign}_mean"
        rows = [row for row in self.rows() if row["count"] >= min_count]
        return sorted(rows, key=lambda row: -abs(row[key]))[:k]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (sums and counts; normalised and mean forms follow from them)."""
        return {
            "tags_a": self.tags_a,
            "tags_b": self.tags_b,
            "positive": self.positive.tolist(),
            "negative": self.negative.tolist(),
            "count": self.count.tolist(),
            "n_pairs": self.n_pairs,
            "scale": self.scale,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PosInteractions:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            list(data["tags_a"]),
            list(data["tags_b"]),
            np.asarray(data["positive"], dtype=float),
            np.asarray(data["negative"], dtype=float),
            np.asarray(data["count"], dtype=np.int64),
            int(data["n_pairs"]),
        )


def _one_hot(tags: Sequence[str]) -> tuple[list[str], np.ndarray]:
    names, index = np.unique(np.asarray(tags, dtype=object).astype(str), return_inverse=True)
    matrix = np.zeros((len(names), len(tags)))
    matrix[index, np.arange(len(tags))] = 1.0
    return list(names), matrix


def pos_interactions(
    explanations: Iterable[Explanation], tagger_a: Tagger, tagger_b: Tagger | None = None
) -> PosInteractions:
    """Accumulate token-pair relevance over POS-tag pairs.

    Parameters
    ----------
    explanations
        Explanations with texts, word ids and offsets (from :func:`bilrp.explain_batch` or a corpus run).
    tagger_a
        Tagger for the texts A (see :func:`~bilrp.analysis.tagging.load_tagger`).
    tagger_b
        Tagger for the texts B (default ``tagger_a``; differs for mixed-language pairs).

    """
    explanations = list(explanations)
    tagger_b = tagger_b or tagger_a
    tagger_a.tag_many(e.text_a for e in explanations)  # tag all texts in batches; tag_explanation hits the cache
    tagger_b.tag_many(e.text_b for e in explanations)
    totals: dict[tuple[str, str], np.ndarray] = {}
    for e in explanations:
        token_tags_a, token_tags_b = tag_explanation(e, tagger_a, tagger_b)
        names_a, one_hot_a = _one_hot(token_tags_a)
        names_b, one_hot_b = _one_hot(token_tags_b)
        relevance = e.relevance.double().numpy()
        positive = one_hot_a @ np.clip(relevance, 0, None) @ one_hot_b.T
        negative = one_hot_a @ np.clip(relevance, None, 0) @ one_hot_b.T
        count = np.outer(one_hot_a.sum(1), one_hot_b.sum(1))
        for i, tag_a in enumerate(names_a):
            for j, tag_b in enumerate(names_b):
                totals.setdefault((tag_a, tag_b), np.zeros(3))
                totals[(tag_a, tag_b)] += (positive[i, j], negative[i, j], count[i, j])
    tags_a = order_tags(a for a, _ in totals)
    tags_b = order_tags(b for _, b in totals)
    stacked = np.zeros((3, len(tags_a), len(tags_b)))
    for (tag_a, tag_b), values in totals.items():
        stacked[:, tags_a.index(tag_a), tags_b.index(tag_b)] = values
    return PosInteractions(tags_a, tags_b, stacked[0], stacked[1], stacked[2].astype(np.int64), len(explanations))


_TOP_COLUMNS = (
    "tag_a",
    "tag_b",
    "count",
    "positive_normalised",
    "negative_normalised",
    "positive_mean",
    "negative_mean",
)


def save_pos(
    interactions: PosInteractions,
    out: str | Path,
    title: str,
    summary: dict[str, Any] | None = None,
    k: int = 10,
    min_count: int = 20,
) -> list[Path]:
    """Write ``pos.json`` (raw aggregates), ``pos.csv`` (every tag pair), ``pos.md`` (top tables) and
    ``pos.png`` (heatmaps) to ``out``.

    Parameters
    ----------
    interactions
        The aggregates.
    out
        Output folder.
    title
        Report and figure title.
    summary
        Extra facts for the report (dataset, model, Spearman, ...).
    k
        Rows per top table.
    min_count
        Least occurrences for the tables ranked by mean relevance (rare pairs have noisy means).

    """
    from .figures import plot_pos_interactions

    out = Path(out)
    summary = dict(summary or {}, pairs=interactions.n_pairs)
    sections = [("Summary", markdown_table([summary]))]
    for by, note in (("sum", ""), ("mean", f" (tag pairs with at least {min_count} occurrences)")):
        for sign in ("positive", "negative"):
            rows = interactions.top(k, sign, by, min_count if by == "mean" else 1)
            sections.append((f"Top {k} {sign} by {by}{note}", markdown_table(rows, _TOP_COLUMNS)))
    return [
        write_json(out / "pos.json", {"summary": summary, "interactions": interactions.to_dict()}),
        write_csv(out / "pos.csv", interactions.rows()),
        write_markdown(out / "pos.md", title, sections),
        save_figure(plot_pos_interactions(interactions, title, min_count), out / "pos.png"),
    ]
