"""Perturbation analysis (paper section 4.3, appendix B): do the most relevant tokens rebuild the embedding.

For each pair and method, the tokens of each text are ranked by their sum-pooled interaction relevance (row
sums of ``R`` for text A, column sums for text B). Starting from the text with every token replaced by a
filler (the mask token; special tokens stay), tokens are put back in that order in steps of a fixed fraction
of the length (0.04: 26 points from all-filler to the full text). At each point the Euclidean distance of the
perturbed text's embedding to the unperturbed one is measured. A faithful explanation puts back the tokens
that matter first, so the distance falls fast: a lower area under the perturbation curve (AUPC) is better.

The Random baseline puts tokens back in a uniformly random order (one seeded permutation per text).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import csv_text, figure_bytes, json_text, markdown_table
from ..corpus_runs import RayOptions, RunReport
from ..datasets import SimilarityPair
from ..models import SimilarityModel
from .data import as_pairs
from .errors import EvaluationError, check_choices, check_positive
from .perturbation_curves import (
    aupc,
    filler_token_id,
    kept_counts,
    perturbation_curves,
    perturbation_fractions,
    perturbed_sequences,
    token_order,
)
from .runs import run_evaluation, run_files
from .significance import PairedTest, compare_to_reference, format_p
from .units import PerturbPairs, pair_records

__all__ = [
    "PerturbationResult",
    "evaluate_perturbation",
    "perturbation_fractions",
    "kept_counts",
    "token_order",
    "perturbed_sequences",
    "perturbation_curves",
    "filler_token_id",
    "aupc",
    "METHOD_LABELS",
    "DEFAULT_METHODS",
    "REFERENCE_METHOD",
]

METHOD_LABELS = {
    "random": "Random",
    "embedding": "Embedding",
    "hxp": "HxP",
    "bilrp": "BiLRP",
    "ij": "IntegratedJacobians",
}
DEFAULT_METHODS = ("random", "embedding", "hxp", "bilrp", "ij")
REFERENCE_METHOD = "bilrp"


@dataclass
class PerturbationResult:
    """Perturbation curves and AUPC of several explanation methods on the texts of a set of pairs.

    Attributes
    ----------
    methods
        Method names (keys of :data:`METHOD_LABELS`).
    fractions
        Fractions of tokens put back, ``(points,)``.
    curves
        Per method, ``(texts, points)`` distances; texts are ``pair 0 A, pair 0 B, pair 1 A, ...``.
    texts
        ``(pair index, side, text)`` of each row of the curves.
    tests
        Wilcoxon signed-rank tests of BiLRP's per-text AUPC against each other method (Holm-corrected).
    config
        The settings of the run.
    run
        What the engine did (refused pairs, shards computed); not part of the results.

    """

    methods: list[str]
    fractions: np.ndarray
    curves: dict[str, np.ndarray] = field(repr=False)
    texts: list[tuple[int, str, str]] = field(repr=False)
    tests: list[PairedTest] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    run: RunReport | None = field(default=None, repr=False, compare=False)

    @property
    def aupc(self) -> dict[str, np.ndarray]:
        """Per method, the AUPC of every text (lower is better)."""
        return {method: aupc(curve, self.fractions) for method, curve in self.curves.items()}

    def summary(self) -> dict[str, Any]:
        """AUPC mean and std per method, the tests, and the configuration, for JSON."""
        values = self.aupc
        return {
            "aupc": {
                method: {"mean": float(values[method].mean()), "std": float(values[method].std(ddof=1))}
                for method in self.methods
            },
            "texts": len(self.texts),
            "tests": [test.to_dict() for test in self.tests],
            **self.config,
        }

    def markdown(self) -> str:
        """Table 2-style AUPC table (mean ± std, lower is better) with BiLRP's paired tests."""
        values = self.aupc
        tests = {test.other: test for test in self.tests}
        rows = []
        for method in self.methods:
            test = tests.get(method)
            rows.append(
                [
                    METHOD_LABELS.get(method, method),
                    f"{values[method].mean():.4f} ± {values[method].std(ddof=1):.4f}",
                    "(reference)" if test is None else f"{test.mean_difference:+.4f}",
                    "" if test is None else format_p(test.p_value),
                    "" if test is None else format_p(test.p_holm),
                ]
            )
        header = ["method", "AUPC (mean ± std)", "BiLRP − method", "p (Wilcoxon)", "p (Holm)"]
        settings = ", ".join(f"{key}={value}" for key, value in self.config.items())
        return (
            "# Perturbation analysis (AUPC, lower is better)\n\n"
            f"{len(self.texts)} texts ({len(self.texts) // 2} pairs). {settings}\n\n"
            f"{markdown_table(rows, header)}"
        )

    def figure(self):
        """Mean perturbation curve of each method (shaded: ± one standard error)."""
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(5, 3.8))
        for method in self.methods:
            curve = self.curves[method]
            mean, error = curve.mean(0), curve.std(0, ddof=1) / np.sqrt(len(curve))
            label = f"{METHOD_LABELS.get(method, method)} ({aupc(mean, self.fractions):.3f})"
            axis.plot(self.fractions, mean, label=label)
            axis.fill_between(self.fractions, mean - error, mean + error, alpha=0.2)
        axis.set_xlabel("fraction of tokens put back (most relevant first)")
        axis.set_ylabel("distance to unperturbed embedding")
        axis.set_title(f"{self.config.get('dataset', '')} perturbation curves (AUPC)")
        axis.legend(fontsize=8)
        return figure

    def files(self) -> dict[str, str | bytes]:
        """``results.md``, ``summary.json``, ``aupc.csv`` (per text), ``curves.csv`` (means), ``curves.png``."""
        values = self.aupc
        per_text = [
            [pair, side, text] + [float(values[m][row]) for m in self.methods]
            for row, (pair, side, text) in enumerate(self.texts)
        ]
        means = [
            [float(fraction)] + [float(self.curves[m][:, k].mean()) for m in self.methods]
            for k, fraction in enumerate(self.fractions)
        ]
        return {
            "results.md": self.markdown(),
            "summary.json": json_text(self.summary()),
            "aupc.csv": csv_text(per_text, ["pair", "side", "text", *self.methods]),
            "curves.csv": csv_text(means, ["fraction", *self.methods]),
            "curves.png": figure_bytes(self.figure()),
            **run_files(self.run),
        }


def evaluate_perturbation(
    model: SimilarityModel,
    pairs: Iterable[SimilarityPair | Sequence],
    methods: Sequence[str] = DEFAULT_METHODS,
    step: float = 0.04,
    filler: str | None = None,
    normalize: bool | None = None,
    batch_size: int = 32,
    seed: int = 0,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    config: dict | None = None,
    ray: RayOptions | None = None,
    shards: str | Path | None = None,
) -> PerturbationResult:
    """Perturbation curves and AUPC per method, with BiLRP's paired Wilcoxon tests against the others.

    Parameters
    ----------
    model
        The similarity model.
    pairs
        :class:`~bilrp.datasets.SimilarityPair` objects or ``(text_a, text_b[, gold])`` tuples.
    methods
        Any of ``"random"``, ``"embedding"``, ``"hxp"``, ``"bilrp"``, ``"ij"``.
    step
        Fraction of each text's perturbable tokens put back per step.
    filler
        Token that replaces removed tokens; default the tokenizer's mask token (required when it has none).
    normalize
        Measure distances between unit-length embeddings; default ``True`` for cosine models (whose
        similarity ignores the length) and ``False`` for dot-product models.
    batch_size
        Texts per explanation batch and sequences per forward batch.
    seed
        Seed of the Random baseline's token orders.
    method_options
        Options per method passed to :func:`bilrp.explain_batch`, e.g. ``{"ij": {"n_steps": 10}}``.
    progress
        Show progress bars.
    config
        Extra fields stored with the result.
    ray
        Run on Ray with these options (docs/scaling.md); ``None`` runs in this process. Both give the same result.
    shards
        Folder of the run's Parquet shards (needed with ``ray``): an interrupted run resumes from it.

    """
    pairs = as_pairs(pairs)
    methods = check_choices("methods", methods, METHOD_LABELS)
    check_positive("batch_size", batch_size)
    fractions = perturbation_fractions(step)
    filler_id = filler_token_id(model.tokenizer, filler)
    normalize = model.similarity == "cosine" if normalize is None else normalize
    unknown = set(method_options or {}) - set(methods)
    if unknown:
        raise EvaluationError(f"method_options given for methods not evaluated: {', '.join(sorted(unknown))}")
    options = {method: dict(given) for method, given in (method_options or {}).items()}
    unit = PerturbPairs(
        tuple(methods), tuple(float(f) for f in fractions), filler_id, normalize, batch_size, seed, options
    )
    report = run_evaluation(unit, model, pair_records(pairs), ray, shards, progress=progress)
    texts, curves = _collect(unit, report, pairs)
    settings = {
        "model": model.name,
        "step": step,
        "filler": model.tokenizer.convert_ids_to_tokens(filler_id),
        "normalize": normalize,
        "seed": seed,
        **{f"{method}_options": given for method, given in options.items()},
        **(config or {}),
    }
    result = PerturbationResult(list(methods), fractions, curves, texts, config=settings, run=report)
    if REFERENCE_METHOD in methods:
        result.tests = compare_to_reference(result.aupc, REFERENCE_METHOD)
    return result


def _collect(unit: PerturbPairs, report, pairs) -> tuple[list[tuple[int, str, str]], dict[str, np.ndarray]]:
    """The rows ``(pair, side, text)`` and per method the curves, of every computed pair in pair order."""
    texts, rows = [], {method: [] for method in unit.methods}
    for key, result in report.results(unit).items():
        for side, text in (("a", pairs[key].text_a), ("b", pairs[key].text_b)):
            texts.append((key, side, text))
            for method in unit.methods:
                rows[method].append(result[side][method])
    if not texts:
        raise EvaluationError("no pair could be evaluated: every pair has an empty text (see failures.json)")
    width = len(unit.fractions)
    return texts, {method: np.array(values, dtype=float).reshape(-1, width) for method, values in rows.items()}
