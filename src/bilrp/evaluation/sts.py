"""STS evaluation: Spearman correlation of a model's similarity with gold scores (paper Table 1)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from .._io import csv_text, figure_bytes, json_text, markdown_table
from ..corpus_runs import RayOptions, RunReport
from ..datasets import SimilarityPair
from ..models import SimilarityModel
from .data import as_pairs
from .errors import EvaluationError, check_positive
from .runs import run_evaluation, run_files
from .units import TEXTS_PER_SHARD, EncodeTexts, text_records

__all__ = ["STSResult", "evaluate_sts", "model_scores"]


@dataclass
class STSResult:
    """Correlation of model similarities with gold scores.

    Attributes
    ----------
    spearman, pearson
        Correlations x 100.
    predictions, gold
        Model similarity and gold score per pair.

    """

    spearman: float
    pearson: float
    predictions: np.ndarray = field(repr=False)
    gold: np.ndarray = field(repr=False)
    pairs: list[SimilarityPair] = field(repr=False, default_factory=list)
    config: dict = field(default_factory=dict)
    run: RunReport | None = field(default=None, repr=False, compare=False)

    @property
    def n(self) -> int:
        """Number of pairs."""
        return len(self.gold)

    def summary(self) -> dict:
        """Correlations, pair count and configuration, for JSON."""
        return {"spearman": self.spearman, "pearson": self.pearson, "n": self.n, **self.config}

    def markdown(self) -> str:
        """The result as a markdown section."""
        name = self.config.get("dataset", "pairs")
        header = ["model", "dataset", "pairs", "Spearman x100", "Pearson x100"]
        row = [self.config.get("model", ""), name, self.n, round(self.spearman, 2), round(self.pearson, 2)]
        return f"# STS correlation\n\n{markdown_table([row], header)}"

    def figure(self):
        """Scatter plot of model similarity against gold score."""
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(4.5, 4))
        axis.scatter(self.gold, self.predictions, s=6, alpha=0.5)
        axis.set_xlabel("gold score")
        axis.set_ylabel("model similarity")
        axis.set_title(f"{self.config.get('dataset', '')}: Spearman {self.spearman:.2f}")
        return figure

    def files(self) -> dict[str, str | bytes]:
        """Output files: ``results.md``, ``summary.json``, ``scores.csv`` and ``scatter.png``."""
        rows = [
            [pair.text_a, pair.text_b, float(gold), float(prediction)]
            for pair, gold, prediction in zip(self.pairs, self.gold, self.predictions, strict=True)
        ]
        return {
            "results.md": self.markdown(),
            "summary.json": json_text(self.summary()),
            "scores.csv": csv_text(rows, ["text_a", "text_b", "gold", "prediction"]),
            "scatter.png": figure_bytes(self.figure()),
            **run_files(self.run),
        }


def model_scores(
    model: SimilarityModel, pairs: Sequence[tuple[str, str]], batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    """The model's similarity of every pair; each distinct text is encoded once, in length-sorted batches."""
    scores, report = _scores(model, pairs, batch_size, progress)
    if report.failures:
        raise EvaluationError(f"cannot score pairs with an empty text ({report.failures[0].error}): drop them")
    return scores


def _scores(
    model: SimilarityModel,
    pairs: Sequence[tuple[str, str]],
    batch_size: int,
    progress: bool,
    ray: RayOptions | None = None,
    shards: str | Path | None = None,
) -> tuple[np.ndarray, RunReport]:
    """The similarity of every pair whose texts could be encoded (NaN for the others), and the run's report."""
    check_positive("batch_size", batch_size)
    texts = sorted({text for pair in pairs for text in pair}, key=len)
    unit, size = EncodeTexts(batch_size), TEXTS_PER_SHARD * batch_size
    report = run_evaluation(unit, model, text_records(texts), ray, shards, shard_size=size, progress=progress)
    embeddings = {texts[key]: phi for key, phi in report.results(unit).items()}
    scores = np.full(len(pairs), np.nan)
    kept = [k for k, (a, b) in enumerate(pairs) if a in embeddings and b in embeddings]
    if kept:
        phi_a = torch.stack([embeddings[pairs[k][0]] for k in kept]).to(model.device)
        phi_b = torch.stack([embeddings[pairs[k][1]] for k in kept]).to(model.device)
        with torch.no_grad():
            scores[kept] = model.compare(phi_a, phi_b).double().cpu().numpy()
    return scores, report


def evaluate_sts(
    model: SimilarityModel,
    pairs: Iterable[SimilarityPair | Sequence],
    batch_size: int = 64,
    progress: bool = True,
    config: dict | None = None,
    ray: RayOptions | None = None,
    shards: str | Path | None = None,
) -> STSResult:
    """Spearman and Pearson correlation (x 100) of the model's similarity with the gold scores.

    Parameters
    ----------
    model
        The similarity model.
    pairs
        :class:`~bilrp.datasets.SimilarityPair` objects or ``(text_a, text_b, gold)`` tuples.
    batch_size
        Texts per forward batch.
    progress
        Show a progress bar.
    config
        Extra fields stored with the result (dataset name, model name, ...).
    ray, shards
        Run on Ray (docs/scaling.md), with the Parquet shards in ``shards``; ``None``: in this process. A pair
        with an empty text is left out and listed in ``failures.json``.

    """
    pairs = as_pairs(pairs)
    gold = np.array([pair.score for pair in pairs], dtype=float)
    if len(pairs) < 2 or np.isnan(gold).any():
        raise EvaluationError("STS needs at least two pairs, each with a gold score")
    scores, report = _scores(model, [(p.text_a, p.text_b) for p in pairs], batch_size, progress, ray, shards)
    kept = ~np.isnan(scores)
    if kept.sum() < 2:
        raise EvaluationError("STS needs at least two pairs without an empty text (see failures.json)")
    predictions, gold, pairs = scores[kept], gold[kept], [pair for pair, keep in zip(pairs, kept, strict=True) if keep]
    spearman = 100 * float(stats.spearmanr(predictions, gold).statistic)
    pearson = 100 * float(stats.pearsonr(predictions, gold).statistic)
    config = {"model": model.name, **(config or {})}
    return STSResult(spearman, pearson, predictions, gold, pairs, config, run=report)
