"""Paired significance tests: one method's per-item scores against each other method's (Wilcoxon signed-rank)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from .errors import EvaluationError

__all__ = ["PairedTest", "wilcoxon_signed_rank", "holm", "compare_to_reference", "format_p"]


@dataclass(frozen=True)
class PairedTest:
    """A two-sided Wilcoxon signed-rank test of ``reference`` against ``other`` on paired items.

    Attributes
    ----------
    reference, other
        Method names; differences are ``reference - other``.
    n
        Number of paired items (items with a zero difference count here but are dropped from the ranks).
    statistic
        scipy's statistic: the smaller of the positive and negative rank sums.
    p_value
        Two-sided p-value.
    p_holm
        The p-value after Holm's step-down correction over all comparisons made together.
    mean_difference, median_difference
        Mean and median of ``reference - other``.
    fraction_lower
        Share of items where ``reference`` is strictly lower than ``other``.

    """

    reference: str
    other: str
    n: int
    statistic: float
    p_value: float
    p_holm: float
    mean_difference: float
    median_difference: float
    fraction_lower: float

    def to_dict(self) -> dict:
        """The fields as a plain dict."""
        return asdict(self)


def format_p(p_value: float) -> str:
    """A p-value for a table: two significant digits, and ``<1e-300`` where it underflowed to 0."""
    return "<1e-300" if p_value == 0 else f"{p_value:.1e}"


def wilcoxon_signed_rank(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Statistic and two-sided p-value of the Wilcoxon signed-rank test of paired samples ``x`` and ``y``.

    Zero differences are dropped (scipy's ``"wilcox"`` treatment); when every difference is zero the
    samples are indistinguishable and the result is ``(0.0, 1.0)``.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise EvaluationError(f"paired samples must be 1-d and of equal length, got shapes {x.shape} and {y.shape}")
    if len(x) == 0:
        raise EvaluationError("paired samples are empty: the test needs at least one pair")
    if np.all(x == y):
        return 0.0, 1.0
    result = stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in the order given.

    The ``k``-th smallest of ``m`` p-values is multiplied by ``m - k`` (``k`` counting from 0), then the
    adjusted values are made non-decreasing in that order and capped at 1.
    """
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, p[index] * (len(p) - rank)))
        adjusted[index] = running
    return adjusted.tolist()


def compare_to_reference(scores: Mapping[str, Sequence[float]], reference: str) -> list[PairedTest]:
    """Test ``scores[reference]`` against every other method's scores on the same items (Holm-corrected).

    Parameters
    ----------
    scores
        Per-item scores of each method (e.g. AUPC per text), all the same length and item order.
    reference
        The method compared with the others (e.g. ``"bilrp"``).

    """
    if reference not in scores:
        raise EvaluationError(f"reference method {reference!r} has no scores: choose one of {', '.join(scores)}")
    others = [name for name in scores if name != reference]
    base = np.asarray(scores[reference], dtype=float)
    raw = []
    for other in others:
        values = np.asarray(scores[other], dtype=float)
        statistic, p_value = wilcoxon_signed_rank(base, values)
        difference = base - values
        raw.append((other, statistic, p_value, difference))
    adjusted = holm([p for _, _, p, _ in raw]) if raw else []
    return [
        PairedTest(
            reference=reference,
            other=other,
            n=len(difference),
            statistic=statistic,
            p_value=p_value,
            p_holm=p_holm,
            mean_difference=float(difference.mean()),
            median_difference=float(np.median(difference)),
            fraction_lower=float((difference < 0).mean()),
        )
        for (other, statistic, p_value, difference), p_holm in zip(raw, adjusted, strict=True)
    ]
