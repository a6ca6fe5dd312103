"""Rule sets compared on real pairs: perturbation AUPC, bias shares and cost (``bilrp evaluate rules``).

For every rule set (:mod:`bilrp.rule_sets`) BiLRP explains the same pairs. Per rule set this measures

- the perturbation AUPC of every text (as in :mod:`~bilrp.evaluation.perturbation`; lower is better), with a
  paired Wilcoxon test of each rule set against the reference rule set (``paper``), Holm-corrected;
- the bias share ``|bias| / (|bias| + sum |R|)`` of every pair, and ``|bias| / |score|`` on all pairs and on
  those with ``score > 0.3`` (where a ratio to the score is meaningful);
- the explanation time per pair (seconds, on the machine of the run).

The table says which rules give readable explanations (small bias) without losing faithfulness (AUPC).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._io import csv_text, figure_bytes, json_text, markdown_table
from ..datasets import SimilarityPair
from ..explainer import explain_batch
from ..models import SimilarityModel
from ..rule_sets import parse_rule_set
from .data import as_pairs
from .errors import EvaluationError, check_positive
from .perturbation import aupc, filler_token_id, perturbation_curves, perturbation_fractions
from .significance import PairedTest, compare_to_reference, format_p

__all__ = ["RuleComparisonResult", "evaluate_rules", "DEFAULT_RULE_SETS", "SCORE_FLOOR"]

DEFAULT_RULE_SETS = (
    "paper",
    "epsilon=0.01",
    "epsilon=0.1",
    "epsilon=1",
    "gamma=0.25",
    "attnlrp",
    "attnlrp-epsilon=0.1",
)
SCORE_FLOOR = 0.3
"""``|bias| / |score|`` is also reported on the pairs whose score exceeds this."""


@dataclass
class RuleComparisonResult:
    """Per rule set: per-text AUPC, per-pair bias and score, and the explanation time.

    Attributes
    ----------
    rules
        Rule-set specs, the first is the reference of the paired tests.
    fractions, curves, texts
        As in :class:`~bilrp.evaluation.perturbation.PerturbationResult`.
    scores
        ``(pairs,)`` similarity scores (equal under every rule set: the rules do not change the model).
    bias, total_abs
        Per rule set, ``(pairs,)`` arrays of the bias and of ``sum |R|``.
    seconds
        Per rule set, the explanation time per pair.

    """

    rules: list[str]
    fractions: np.ndarray
    curves: dict[str, np.ndarray] = field(repr=False)
    texts: list[tuple[int, str, str]] = field(repr=False)
    scores: np.ndarray = field(repr=False)
    bias: dict[str, np.ndarray] = field(repr=False)
    total_abs: dict[str, np.ndarray] = field(repr=False)
    seconds: dict[str, float] = field(default_factory=dict)
    tests: list[PairedTest] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    @property
    def aupc(self) -> dict[str, np.ndarray]:
        """Per rule set, the AUPC of every text."""
        return {spec: aupc(curve, self.fractions) for spec, curve in self.curves.items()}

    def bias_share(self, spec: str) -> np.ndarray:
        """``|bias| / (|bias| + sum |R|)`` per pair."""
        bias = np.abs(self.bias[spec])
        return bias / np.maximum(bias + self.total_abs[spec], 1e-300)

    def bias_to_score(self, spec: str, floor: float | None = None) -> np.ndarray:
        """``|bias| / |score|`` per pair (only pairs with ``score > floor`` when ``floor`` is given)."""
        keep = np.ones_like(self.scores, dtype=bool) if floor is None else self.scores > floor
        return np.abs(self.bias[spec][keep]) / np.maximum(np.abs(self.scores[keep]), 1e-300)

    def rows(self) -> list[dict[str, Any]]:
        """One summary row per rule set (the JSON form of the table)."""
        values, tests = self.aupc, {test.other: test for test in self.tests}
        rows = []
        for spec in self.rules:
            test = tests.get(spec)
            rows.append(
                {
                    "rules": spec,
                    "aupc_mean": float(values[spec].mean()),
                    "aupc_std": float(values[spec].std(ddof=1)) if len(values[spec]) > 1 else 0.0,
                    "aupc_vs_reference": None if test is None else test.mean_difference,
                    "p_holm": None if test is None else test.p_holm,
                    "median_bias_share": float(np.median(self.bias_share(spec))),
                    "median_bias_to_score": float(np.median(self.bias_to_score(spec))),
                    "median_bias_to_score_above_floor": _median(self.bias_to_score(spec, SCORE_FLOOR)),
                    "seconds_per_pair": self.seconds.get(spec),
                }
            )
        return rows

    def markdown(self) -> str:
        """The rule-comparison table (AUPC with the paired test, bias shares, time)."""
        reference = self.rules[0]
        table = []
        for row in self.rows():
            delta = "(reference)" if row["aupc_vs_reference"] is None else f"{-row['aupc_vs_reference']:+.4f}"
            table.append(
                [
                    f"`{row['rules']}`",
                    f"{row['aupc_mean']:.4f} ± {row['aupc_std']:.4f}",
                    delta,
                    "" if row["p_holm"] is None else format_p(row["p_holm"]),
                    f"{row['median_bias_share']:.3f}",
                    f"{row['median_bias_to_score']:.3f}",
                    f"{row['median_bias_to_score_above_floor']:.3f}",
                    f"{row['seconds_per_pair']:.3f}",
                ]
            )
        header = [
            "rules",
            "AUPC (mean ± std)",
            f"AUPC − {reference}",
            "p (Holm)",
            "median bias share",
            "median |bias|/|score|",
            f"… score > {SCORE_FLOOR}",
            "s / pair",
        ]
        above = int((self.scores > SCORE_FLOOR).sum())
        settings = ", ".join(f"{key}={value}" for key, value in self.config.items())
        return (
            "# Rule sets compared (AUPC lower is better; bias share = |bias| / (|bias| + sum |R|))\n\n"
            f"{len(self.scores)} pairs ({above} with score > {SCORE_FLOOR}), {len(self.texts)} texts. {settings}\n\n"
            f"{markdown_table(table, header)}"
        )

    def figure(self):
        """AUPC against median bias share, one point per rule set."""
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(5, 3.8))
        for row in self.rows():
            axis.scatter(row["median_bias_share"], row["aupc_mean"])
            axis.annotate(row["rules"], (row["median_bias_share"], row["aupc_mean"]), fontsize=7)
        axis.set_xlabel("median bias share |bias| / (|bias| + Σ|R|)")
        axis.set_ylabel("mean AUPC (lower is better)")
        axis.set_title(f"{self.config.get('model', '')} on {self.config.get('dataset', '')}", fontsize=9)
        return figure

    def files(self) -> dict[str, str | bytes]:
        """``results.md``, ``summary.json``, ``pairs.csv`` (per pair and rule set), ``rules.png``."""
        per_pair = [
            [index, float(self.scores[index])]
            + [float(values[index]) for spec in self.rules for values in (self.bias[spec], self.total_abs[spec])]
            for index in range(len(self.scores))
        ]
        header = ["pair", "score"] + [f"{kind}[{spec}]" for spec in self.rules for kind in ("bias", "sum_abs_R")]
        summary = {"rules": self.rows(), "tests": [t.to_dict() for t in self.tests], **self.config}
        return {
            "results.md": self.markdown(),
            "summary.json": json_text(summary),
            "pairs.csv": csv_text(per_pair, header),
            "rules.png": figure_bytes(self.figure()),
        }


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def evaluate_rules(
    model: SimilarityModel,
    pairs: Iterable[SimilarityPair | Sequence],
    rules: Sequence[str] = DEFAULT_RULE_SETS,
    step: float = 0.04,
    filler: str | None = None,
    batch_size: int = 32,
    progress: bool = True,
    config: dict | None = None,
) -> RuleComparisonResult:
    """Explain ``pairs`` with BiLRP under every rule set and compare AUPC, bias shares and time.

    Parameters
    ----------
    model
        The similarity model.
    pairs
        :class:`~bilrp.datasets.SimilarityPair` objects or ``(text_a, text_b[, gold])`` tuples.
    rules
        Rule-set specs (:mod:`bilrp.rule_sets`); the first is the reference of the paired tests.
    step, filler
        As for :func:`~bilrp.evaluation.perturbation.evaluate_perturbation`.
    batch_size
        Texts per explanation batch and sequences per forward batch.
    progress
        Show progress bars.
    config
        Extra fields stored with the result.

    """
    pairs = as_pairs(pairs)
    rules = list(dict.fromkeys(rules))
    if not rules:
        raise EvaluationError("give at least one rule set")
    for spec in rules:
        parse_rule_set(spec)  # a bad spec fails before any work
    check_positive("batch_size", batch_size)
    fractions = perturbation_fractions(step)
    filler_id = filler_token_id(model.tokenizer, filler)
    text_pairs = [(pair.text_a, pair.text_b) for pair in pairs]
    relevance, bias, total_abs, seconds, scores = {}, {}, {}, {}, None
    for spec in rules:
        start = time.perf_counter()
        explanations = explain_batch(model, text_pairs, "bilrp", batch_size=batch_size, progress=progress, rules=spec)
        seconds[spec] = (time.perf_counter() - start) / max(1, len(text_pairs))
        relevance[spec] = [e.relevance for e in explanations]
        bias[spec] = np.array([e.bias for e in explanations])
        total_abs[spec] = np.array([float(e.relevance.abs().sum()) for e in explanations])
        scores = np.array([e.score for e in explanations]) if scores is None else scores
    normalize = model.similarity == "cosine"
    texts, curves = perturbation_curves(
        model, text_pairs, relevance, rules, fractions, filler_id, normalize, batch_size, progress=progress
    )
    settings = {"model": model.name, "step": step, "normalize": normalize, **(config or {})}
    result = RuleComparisonResult(rules, fractions, curves, texts, scores, bias, total_abs, seconds, config=settings)
    if len(rules) > 1:
        result.tests = compare_to_reference(result.aupc, rules[0])
    return result
