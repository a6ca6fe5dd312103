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

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._io import csv_text, figure_bytes, json_text, markdown_table
from ..datasets import SimilarityPair
from ..explainer import explain_batch
from ..models import SimilarityModel
from .data import as_pairs
from .errors import EvaluationError, check_choices, check_fraction, check_positive
from .significance import PairedTest, compare_to_reference, format_p

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
_PAIRS_PER_CHUNK = 128  # perturbed embeddings are kept in memory for this many pairs at a time


def perturbation_fractions(step: float = 0.04) -> np.ndarray:
    """Fractions of tokens put back: ``0, step, 2 step, ...`` up to and including 1."""
    check_fraction("step", step)
    count = math.ceil(1 / step - 1e-9)
    return np.minimum(np.arange(count + 1) * step, 1.0)


def kept_counts(length: int, fractions: np.ndarray) -> np.ndarray:
    """Tokens put back at each fraction of a text of ``length`` perturbable tokens (rounded half up)."""
    return np.floor(np.asarray(fractions) * length + 0.5).astype(int)


def token_order(token_relevance: Sequence[float], candidates: Sequence[int]) -> np.ndarray:
    """Positions of ``candidates`` from most to least relevant (ties keep text order).

    Parameters
    ----------
    token_relevance
        One relevance value per position of the text (e.g. a row sum of the pair matrix).
    candidates
        The positions that may be perturbed (special tokens excluded).

    """
    candidates = np.asarray(candidates, dtype=int)
    values = np.asarray(token_relevance, dtype=float)[candidates]
    return candidates[np.argsort(-values, kind="stable")]


def perturbed_sequences(
    input_ids: Sequence[int], order: Sequence[int], counts: Sequence[int], filler_id: int
) -> list[tuple[int, ...]]:
    """Token ids with all ``order`` positions set to ``filler_id`` except the first ``counts[k]`` of ``order``."""
    masked = list(input_ids)
    for position in order:
        masked[position] = filler_id
    sequences = []
    for count in counts:
        ids = list(masked)
        for position in order[:count]:
            ids[position] = input_ids[position]
        sequences.append(tuple(ids))
    return sequences


def filler_token_id(tokenizer, filler: str | None = None) -> int:
    """Id of the filler token: ``filler`` if given, else the tokenizer's mask token."""
    if filler is None:
        if getattr(tokenizer, "mask_token_id", None) is None:
            raise EvaluationError(
                f"tokenizer {type(tokenizer).__name__} has no mask token: pass a filler token from its vocabulary "
                f"(e.g. filler={tokenizer.unk_token!r}, --filler on the command line)"
            )
        return int(tokenizer.mask_token_id)
    token_id = tokenizer.convert_tokens_to_ids(filler)
    if token_id is None or (token_id == tokenizer.unk_token_id and filler != tokenizer.unk_token):
        raise EvaluationError(f"filler {filler!r} is not a token of the tokenizer's vocabulary: give one that is")
    return int(token_id)


def aupc(curves: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Area under each perturbation curve (trapezoid rule over ``fractions``); ``curves`` is ``(..., points)``."""
    return np.trapezoid(np.asarray(curves, dtype=float), np.asarray(fractions, dtype=float), axis=-1)


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

    """

    methods: list[str]
    fractions: np.ndarray
    curves: dict[str, np.ndarray] = field(repr=False)
    texts: list[tuple[int, str, str]] = field(repr=False)
    tests: list[PairedTest] = field(default_factory=list)
    config: dict = field(default_factory=dict)

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
    text_pairs = [(pair.text_a, pair.text_b) for pair in pairs]
    options = {method: dict(given) for method, given in (method_options or {}).items()}
    relevance = {
        method: [
            explanation.relevance
            for explanation in explain_batch(
                model, text_pairs, method, batch_size=batch_size, progress=progress, **options.get(method, {})
            )
        ]
        for method in methods
        if method != "random"  # random orders are drawn directly, one permutation per text
    }
    texts, curves = perturbation_curves(
        model, text_pairs, relevance, methods, fractions, filler_id, normalize, batch_size, seed, progress
    )
    settings = {
        "model": model.name,
        "step": step,
        "filler": model.tokenizer.convert_ids_to_tokens(filler_id),
        "normalize": normalize,
        "seed": seed,
        **{f"{method}_options": given for method, given in options.items()},
        **(config or {}),
    }
    result = PerturbationResult(list(methods), fractions, curves, texts, config=settings)
    if REFERENCE_METHOD in methods:
        result.tests = compare_to_reference(result.aupc, REFERENCE_METHOD)
    return result


def perturbation_curves(
    model: SimilarityModel,
    text_pairs: Sequence[tuple[str, str]],
    relevance: Mapping[str, Sequence[torch.Tensor]],
    orders: Sequence[str],
    fractions: np.ndarray,
    filler_id: int,
    normalize: bool,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = False,
) -> tuple[list[tuple[int, str, str]], dict[str, np.ndarray]]:
    """The perturbation curve of every text under every token order.

    Parameters
    ----------
    model, text_pairs
        The similarity model and the ``(text_a, text_b)`` pairs.
    relevance
        Per order name, one relevance matrix per pair (the tokens are put back by its row or column sums).
    orders
        The order names: keys of ``relevance``, or ``"random"`` (one seeded permutation per text).
    fractions, filler_id, normalize
        Fractions of tokens put back, the filler token, unit-length embeddings (see
        :func:`evaluate_perturbation`).
    batch_size, seed, progress
        Sequences per forward batch, the seed of the random orders, a progress bar.

    Returns
    -------
    texts, curves
        ``(pair index, side, text)`` per row, and per order the ``(texts, points)`` distances.

    """
    tokenized = _token_ids(model, sorted({t for pair in text_pairs for t in pair}), batch_size)
    generator = np.random.default_rng(seed)
    texts: list[tuple[int, str, str]] = []
    chunks: dict[str, list[np.ndarray]] = {order: [] for order in orders}
    bar = tqdm(total=len(text_pairs), desc="perturbation", disable=not progress, unit="pair")
    for start in range(0, len(text_pairs), _PAIRS_PER_CHUNK):
        indices = range(start, min(start + _PAIRS_PER_CHUNK, len(text_pairs)))
        chunk_texts, sequences = _perturbations(
            model, text_pairs, indices, tokenized, relevance, orders, fractions, filler_id, generator
        )
        for order, curve in _distances(model, tokenized, chunk_texts, sequences, normalize, batch_size).items():
            chunks[order].append(curve)
        texts += chunk_texts
        bar.update(len(indices))
    bar.close()
    return texts, {order: np.concatenate(parts) for order, parts in chunks.items()}


def _perturbations(model, text_pairs, indices, tokenized, relevance, methods, fractions, filler_id, generator):
    """The texts of the pairs at ``indices`` and, per method, each text's perturbed token-id sequences."""
    special = set(model.tokenizer.all_special_ids)
    texts, sequences = [], {method: [] for method in methods}
    for index in indices:
        for side, text in zip("ab", text_pairs[index], strict=True):
            ids = tokenized[text]
            candidates = [position for position, token in enumerate(ids) if token not in special]
            counts = kept_counts(len(candidates), fractions)
            for method in methods:
                if method == "random":
                    order = generator.permutation(candidates)
                else:
                    matrix = relevance[method][index]
                    sums = matrix.sum(1) if side == "a" else matrix.sum(0)
                    if len(sums) != len(ids):
                        raise RuntimeError(f"explanation has {len(sums)} tokens but the text has {len(ids)}")
                    order = token_order(sums.double().numpy(), candidates)
                sequences[method].append(perturbed_sequences(ids, order, counts, filler_id))
            texts.append((index, side, text))
    return texts, sequences


def _token_ids(model: SimilarityModel, texts: list[str], batch_size: int) -> dict[str, list[int]]:
    """Token ids (special tokens included, no padding) of each text, as ``explain_batch`` tokenizes them."""
    ids = {}
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        batch = model.tokenize(chunk)
        for row, text in enumerate(chunk):
            keep = batch["attention_mask"][row].bool()
            ids[text] = batch["input_ids"][row][keep].tolist()
    return ids


@torch.no_grad()
def _distances(model, tokenized, texts, sequences, normalize, batch_size) -> dict[str, np.ndarray]:
    """Distance of each perturbed sequence's embedding to its text's embedding; repeated sequences run once."""
    unique = {tuple(tokenized[text]): None for _, _, text in texts}
    for per_text in sequences.values():
        for steps in per_text:
            unique.update(dict.fromkeys(steps))
    ordered = sorted(unique, key=len)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    for start in range(0, len(ordered), batch_size):
        chunk = ordered[start : start + batch_size]
        width = max(len(ids) for ids in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, ids in enumerate(chunk):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        input_ids, mask = input_ids.to(model.device), mask.to(model.device)
        phi = model.represent(model.embed(input_ids, mask), mask).double()
        if normalize:
            phi = phi / phi.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        unique.update(zip(chunk, phi.cpu(), strict=True))
    curves = {}
    for method, per_text in sequences.items():
        rows = []
        for (_, _, text), steps in zip(texts, per_text, strict=True):
            reference = unique[tuple(tokenized[text])]
            rows.append(torch.stack([unique[ids] for ids in steps]).sub(reference).norm(dim=-1).numpy())
        curves[method] = np.stack(rows)
    return curves
