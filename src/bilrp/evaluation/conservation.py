"""Conservation (paper appendix C): how much of the similarity score the token-pair relevance accounts for.

Three explanations are compared on the same pairs: H x P and BiLRP of the model as it is, and BiLRP of a copy
of the model whose biases are all set to zero. BiLRP's relevance plus its bias term is the score; with the
biases zeroed the bias term vanishes and ``R.sum()`` equals the (zero-bias model's) score up to rounding.
H x P has no such guarantee.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._io import csv_text, figure_bytes, json_text, markdown_table
from ..corpus_runs import RayOptions, RunReport
from ..datasets import SimilarityPair
from ..models import SimilarityModel
from .data import as_pairs
from .errors import EvaluationError, check_positive
from .runs import run_evaluation, run_files
from .units import ConservePairs, pair_records

__all__ = ["ConservationResult", "evaluate_conservation", "zero_biases", "VARIANTS"]

VARIANTS = {
    "hxp": "HxP",
    "bilrp": "BiLRP",
    "bilrp_zero_bias": "BiLRP (biases zeroed)",
}


def zero_biases(model: SimilarityModel) -> SimilarityModel:
    """A copy of ``model`` with every bias parameter (Linear, LayerNorm, pooling) set to zero."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for name, parameter in copied.named_parameters():
            if name.split(".")[-1] == "bias":
                parameter.zero_()
    return copied


@dataclass
class ConservationResult:
    """Per variant, the model score and the summed relevance of every pair.

    Attributes
    ----------
    scores
        Per variant, the similarity score of each pair (the zero-bias variant's scores are those of the
        zero-bias model).
    sums
        Per variant, ``R.sum()`` of each pair.

    """

    scores: dict[str, np.ndarray] = field(repr=False)
    sums: dict[str, np.ndarray] = field(repr=False)
    pairs: list[SimilarityPair] = field(repr=False, default_factory=list)
    config: dict = field(default_factory=dict)
    run: RunReport | None = field(default=None, repr=False, compare=False)

    def statistics(self) -> dict[str, dict[str, float]]:
        """Per variant: Pearson r of sum and score, mean and max ``|score - sum|``, mean ``|score|``."""
        result = {}
        for variant in self.scores:
            score, total = self.scores[variant], self.sums[variant]
            gap = np.abs(score - total)
            pearson = float(np.corrcoef(score, total)[0, 1]) if len(score) > 1 else float("nan")
            result[variant] = {
                "pearson": pearson,
                "mean_abs_gap": float(gap.mean()),
                "max_abs_gap": float(gap.max()),
                "mean_abs_score": float(np.abs(score).mean()),
            }
        return result

    def markdown(self) -> str:
        """The statistics as a markdown table."""
        rows = [
            [VARIANTS[v], s["pearson"], s["mean_abs_gap"], s["max_abs_gap"], s["mean_abs_score"]]
            for v, s in self.statistics().items()
        ]
        header = ["explanation", "Pearson r (sum R, score)", "mean abs(score − sum R)", "max abs(score − sum R)"]
        header.append("mean abs(score)")
        return (
            f"# Conservation\n\n{len(self.pairs)} pairs, {self.config.get('dataset', '')}, "
            f"model {self.config.get('model', '')}\n\n{markdown_table(rows, header)}"
        )

    def figure(self):
        """Three panels: summed relevance against the score for each variant, with the diagonal."""
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(1, len(self.scores), figsize=(4 * len(self.scores), 3.8), squeeze=False)
        for axis, variant in zip(axes[0], self.scores, strict=True):
            score, total = self.scores[variant], self.sums[variant]
            axis.scatter(score, total, s=6, alpha=0.5)
            low, high = min(score.min(), total.min()), max(score.max(), total.max())
            axis.plot([low, high], [low, high], color="black", linewidth=0.8, linestyle="--")
            axis.set_title(VARIANTS[variant])
            axis.set_xlabel("model score")
            axis.set_ylabel("sum of relevance")
        figure.tight_layout()
        return figure

    def files(self) -> dict[str, str | bytes]:
        """``results.md``, ``summary.json``, ``conservation.csv`` (per pair) and ``conservation.png``."""
        header = ["text_a", "text_b"] + [f"{v}_{kind}" for v in self.scores for kind in ("score", "sum")]
        rows = [
            [pair.text_a, pair.text_b]
            + [float(values[k]) for v in self.scores for values in (self.scores[v], self.sums[v])]
            for k, pair in enumerate(self.pairs)
        ]
        return {
            "results.md": self.markdown(),
            "summary.json": json_text({"statistics": self.statistics(), "n": len(self.pairs), **self.config}),
            "conservation.csv": csv_text(rows, header),
            "conservation.png": figure_bytes(self.figure()),
            **run_files(self.run),
        }


def evaluate_conservation(
    model: SimilarityModel,
    pairs: Iterable[SimilarityPair | Sequence],
    batch_size: int = 32,
    progress: bool = True,
    config: dict | None = None,
    rules: str = "paper",
    ray: RayOptions | None = None,
    shards: str | Path | None = None,
) -> ConservationResult:
    """Summed relevance against the score for H x P, BiLRP and BiLRP with the model's biases zeroed.

    Parameters
    ----------
    model
        The similarity model.
    pairs
        :class:`~bilrp.datasets.SimilarityPair` objects or ``(text_a, text_b[, gold])`` tuples.
    batch_size
        Texts per explanation batch.
    progress
        Show progress bars.
    config
        Extra fields stored with the result.
    ray, shards
        Run on Ray (docs/scaling.md), with the Parquet shards in ``shards``; ``None``: in this process.
    rules
        BiLRP's rule set (:mod:`bilrp.rule_sets`); the paper's by default. With the biases zeroed, relevance
        adds up to the score only under rules without a stabiliser (``paper``, not ``epsilon``/``gamma``, whose
        absorbed share goes to the bias term, nor AttnLRP, whose softmax rule is not conservative).

    """
    pairs = as_pairs(pairs)
    check_positive("batch_size", batch_size)
    unit = ConservePairs(batch_size, rules)
    report = run_evaluation(unit, model, pair_records(pairs), ray, shards, progress=progress)
    results = report.results(unit)
    if not results:
        raise EvaluationError("no pair could be explained: every pair has an empty text (see failures.json)")
    scores = {variant: np.array([r[variant][0] for r in results.values()]) for variant in VARIANTS}
    sums = {variant: np.array([r[variant][1] for r in results.values()]) for variant in VARIANTS}
    kept = [pairs[key] for key in results]
    config = {"model": model.name, "rules": rules, **(config or {})}
    return ConservationResult(scores, sums, kept, config, run=report)
