"""Agreement of a model's similarity with the gold scores: Spearman, and the error by gold-similarity level."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import spearmanr

from .corpus import CorpusRecord

__all__ = ["spearman", "LevelError", "error_by_level", "gold_range", "GOLD_RANGES"]

GOLD_RANGES = {"stsb": (0.0, 5.0), "mstsb": (0.0, 5.0), "sick": (1.0, 5.0), "biosses": (0.0, 4.0)}


def gold_range(dataset: str) -> tuple[float, float]:
    """The gold-score scale of a dataset (``mstsb-*`` share STSb's); ``ValueError`` for an unknown one."""
    family = dataset.split("-")[0]
    if family not in GOLD_RANGES:
        raise ValueError(f"no known gold-score range for dataset {dataset!r}: pass gold_range=(low, high)")
    return GOLD_RANGES[family]


def _gold(records: Sequence[CorpusRecord]) -> np.ndarray:
    if any(r.gold is None for r in records):
        raise ValueError("every record needs a gold score for this metric")
    return np.array([r.gold for r in records], dtype=float)


def spearman(records: Sequence[CorpusRecord]) -> float:
    """Spearman correlation of the model's similarity with the gold scores."""
    if len(records) < 2:
        raise ValueError(f"Spearman needs at least 2 pairs, got {len(records)}")
    return float(spearmanr([r.score for r in records], _gold(records)).statistic)


@dataclass(frozen=True)
class LevelError:
    """Error of predicted against gold similarity (both on [0, 1]) for pairs with gold in ``[low, high)``."""

    low: float
    high: float
    count: int
    mean_error: float
    mean_absolute_error: float
    std_error: float

    def to_dict(self) -> dict[str, float]:
        """Plain dict form."""
        return asdict(self)


def error_by_level(
    records: Sequence[CorpusRecord], gold_range: tuple[float, float], levels: int | None = None
) -> list[LevelError]:
    """Error of the predicted similarity against the gold similarity, per gold-similarity level.

    Gold scores are mapped to ``[0, 1]`` by ``(gold - low) / (high - low)``; the error is the predicted
    similarity (cosine, on ``[-1, 1]``) minus that. Pairs are binned by their gold score into ``levels``
    equal-width levels (default: one per unit of the gold scale); the top level includes its upper edge.

    Parameters
    ----------
    records
        Explained pairs with gold scores.
    gold_range
        ``(low, high)`` of the gold scale (see :func:`gold_range`).
    levels
        Number of levels.

    """
    low, high = gold_range
    if not high > low:
        raise ValueError(f"gold_range must have high > low, not {gold_range}")
    levels = levels or max(1, round(high - low))
    gold = _gold(records)
    error = np.array([r.score for r in records]) - (gold - low) / (high - low)
    edges = np.linspace(low, high, levels + 1)
    level = np.clip(np.searchsorted(edges, gold, side="right") - 1, 0, levels - 1)
    results = []
    for k in range(levels):
        chosen = error[level == k]
        nan = math.nan
        results.append(
            LevelError(
                float(edges[k]),
                float(edges[k + 1]),
                int(chosen.size),
                float(chosen.mean()) if chosen.size else nan,
                float(np.abs(chosen).mean()) if chosen.size else nan,
                float(chosen.std()) if chosen.size else nan,
            )
        )
    return results
