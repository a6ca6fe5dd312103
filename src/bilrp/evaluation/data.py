"""Which pairs an evaluation runs on: a dataset (or given pairs), cut to the first ``limit``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from .. import datasets
from ..datasets import SimilarityPair
from .errors import EvaluationError, check_positive

__all__ = ["select_pairs", "as_pairs"]


def select_pairs(
    dataset: str, split: str = "test", limit: int | None = None, data_dir: str | Path | None = None
) -> list[SimilarityPair]:
    """The first ``limit`` pairs (all when ``None``) of a dataset from :func:`bilrp.datasets.load`."""
    check_positive("limit", limit, allow_none=True)
    return datasets.load(dataset, split=split, data_dir=data_dir)[:limit]


def as_pairs(pairs: Iterable[SimilarityPair | Sequence]) -> list[SimilarityPair]:
    """Normalise ``SimilarityPair`` objects or ``(text_a, text_b, gold)`` tuples to ``SimilarityPair``.

    ``(text_a, text_b)`` tuples get a gold score of NaN (enough for evaluations that need no gold score).
    """
    result = []
    for number, pair in enumerate(pairs):
        if isinstance(pair, SimilarityPair):
            result.append(pair)
        elif isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) in (2, 3):
            gold = float(pair[2]) if len(pair) == 3 else float("nan")
            result.append(SimilarityPair(str(pair[0]), str(pair[1]), gold))
        else:
            raise EvaluationError(
                f"pair {number} is {type(pair).__name__}: give SimilarityPair objects or (text_a, text_b[, gold])"
            )
    if not result:
        raise EvaluationError("no pairs to evaluate: give at least one pair (is --limit 0 or the dataset empty?)")
    return result
