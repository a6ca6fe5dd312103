"""STS evaluation: Spearman correlation of a model's similarity with gold scores (paper Table 1)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from .._io import csv_text, figure_bytes, json_text, markdown_table
from ..datasets import SimilarityPair
from ..models import SimilarityModel
from .data import as_pairs
from .errors import EvaluationError, check_positive

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
        }


@torch.no_grad()
def model_scores(
    model: SimilarityModel, pairs: Sequence[tuple[str, str]], batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    """The model's similarity of every pair; each distinct text is encoded once, in length-sorted batches."""
    check_positive("batch_size", batch_size)
    texts = sorted({text for pair in pairs for text in pair}, key=len)
    embeddings = {}
    for start in tqdm(range(0, len(texts), batch_size), desc="encoding", disable=not progress, unit="batch"):
        chunk = texts[start : start + batch_size]
        embeddings.update(zip(chunk, model.encode(chunk, batch_size=batch_size), strict=True))
    phi_a = torch.stack([embeddings[a] for a, _ in pairs])
    phi_b = torch.stack([embeddings[b] for _, b in pairs])
    return model.compare(phi_a, phi_b).double().cpu().numpy()


def evaluate_sts(
    model: SimilarityModel,
    pairs: Iterable[SimilarityPair | Sequence],
    batch_size: int = 64,
    progress: bool = True,
    config: dict | None = None,
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

    """
    pairs = as_pairs(pairs)
    gold = np.array([pair.score for pair in pairs], dtype=float)
    if len(pairs) < 2 or np.isnan(gold).any():
        raise EvaluationError("STS needs at least two pairs, each with a gold score")
    predictions = model_scores(model, [(p.text_a, p.text_b) for p in pairs], batch_size, progress)
    spearman = 100 * float(stats.spearmanr(predictions, gold).statistic)
    pearson = 100 * float(stats.pearsonr(predictions, gold).statistic)
    return STSResult(spearman, pearson, predictions, gold, pairs, {"model": model.name, **(config or {})})
