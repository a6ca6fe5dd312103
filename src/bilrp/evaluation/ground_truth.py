"""Ground-truth interactions (paper section 4.3, Figure 1): a task whose token interactions are known.

The noun-matching task: the target similarity of two sentences is the number of noun lemmas they share
(spaCy NOUN and PROPN tags). A model fine-tuned on it should base its score on exactly those noun pairs, so
the ground-truth interaction matrix holds 1 for every pair of subtokens (one from each sentence) that belong
to two nouns with the same shared lemma, and 0 elsewhere (special tokens included). An explanation is scored
by its cosine similarity with that matrix, averaged over held-out pairs that share at least one noun (ACS).

The encoder (all-MiniLM-L6-v2 by default) gets a fresh QKV attention pooling and a dot-product similarity and
is fine-tuned with a mean-squared error on a seeded random part of the pairs; only the pooling and the top
Transformer layers are trained, which keeps training to minutes on a CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn
from tqdm.auto import tqdm

from .._io import csv_text, figure_bytes, json_text, markdown_table
from ..datasets import SimilarityPair
from ..explainer import explain_batch
from ..models import DEFAULT_MODEL, SimilarityModel
from ..nlp import load_spacy
from .data import as_pairs
from .errors import (
    EvaluationError,
    check_choices,
    check_fraction,
    check_non_negative,
    check_positive,
    check_positive_number,
)
from .significance import PairedTest, compare_to_reference, format_p
from .sts import model_scores

__all__ = [
    "NOUN_TAGS",
    "ACS_METHODS",
    "noun_lemmas",
    "shared_nouns",
    "noun_matching_target",
    "interaction_matrix",
    "noun_matching_pairs",
    "finetune",
    "cosine_similarity",
    "GroundTruthResult",
    "evaluate_ground_truth",
]

NOUN_TAGS = ("NOUN", "PROPN")
ACS_METHODS = ("random", "embedding", "hxp", "bilrp")
_LABELS = {"random": "Random", "embedding": "Embedding", "hxp": "HxP", "bilrp": "BiLRP"}


def noun_lemmas(doc) -> set[str]:
    """Lower-cased lemmas of the NOUN and PROPN tokens of a spaCy ``Doc``."""
    return {token.lemma_.lower() for token in doc if token.pos_ in NOUN_TAGS}


def shared_nouns(doc_a, doc_b) -> set[str]:
    """Noun lemmas that occur in both documents."""
    return noun_lemmas(doc_a) & noun_lemmas(doc_b)


def noun_matching_target(doc_a, doc_b) -> int:
    """The noun-matching target: how many distinct noun lemmas the two documents share."""
    return len(shared_nouns(doc_a, doc_b))


def interaction_matrix(
    doc_a, doc_b, offsets_a: Sequence[tuple[int, int]], offsets_b: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Ground-truth interactions between the model tokens of two texts: 1 for subtokens of matched nouns.

    Parameters
    ----------
    doc_a, doc_b
        spaCy documents of the two texts.
    offsets_a, offsets_b
        Character span of every model token in its text (``SimilarityModel.tokenize(...)["offsets"]``);
        empty spans (special tokens) never match.

    Returns
    -------
    numpy.ndarray
        ``(len(offsets_a), len(offsets_b))``: ``G[i, j] = 1`` when token ``i`` lies in a noun of text A and
        token ``j`` in a noun of text B with the same lemma, that lemma being shared.

    """
    shared = shared_nouns(doc_a, doc_b)
    lemmas_a = _token_lemmas(doc_a, offsets_a, shared)
    lemmas_b = _token_lemmas(doc_b, offsets_b, shared)
    matrix = np.zeros((len(lemmas_a), len(lemmas_b)))
    for i, lemma in enumerate(lemmas_a):
        if lemma is not None:
            matrix[i] = [float(lemma == other) for other in lemmas_b]
    return matrix


def _token_lemmas(doc, offsets: Sequence[tuple[int, int]], shared: set[str]) -> list[str | None]:
    """Per model token: the lemma of the shared noun it lies in, else ``None``."""
    owner = np.full(len(doc.text) + 1, -1)
    for token in doc:
        owner[token.idx : token.idx + len(token.text)] = token.i
    lemmas: list[str | None] = []
    for start, end in offsets:
        index = owner[start] if end > start else -1
        token = doc[int(index)] if index >= 0 else None
        matched = token is not None and token.pos_ in NOUN_TAGS and token.lemma_.lower() in shared
        lemmas.append(token.lemma_.lower() if matched else None)
    return lemmas


def noun_matching_pairs(pairs: Iterable[SimilarityPair | Sequence], nlp) -> tuple[list[SimilarityPair], dict]:
    """The pairs with the noun-matching target as their score, and the spaCy ``Doc`` of every text."""
    pairs = as_pairs(pairs)
    texts = list(dict.fromkeys(text for pair in pairs for text in (pair.text_a, pair.text_b)))
    docs = dict(zip(texts, nlp.pipe(texts), strict=True))
    targets = [
        SimilarityPair(pair.text_a, pair.text_b, float(noun_matching_target(docs[pair.text_a], docs[pair.text_b])))
        for pair in pairs
    ]
    return targets, docs


def cosine_similarity(x: np.ndarray, y: np.ndarray) -> float:
    """Cosine similarity of two arrays taken as flat vectors (NaN when either is all zero)."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    norm = np.linalg.norm(x) * np.linalg.norm(y)
    return float(x @ y / norm) if norm > 0 else float("nan")


def _transformer_layers(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's list of Transformer blocks (the ``ModuleList`` with ``num_hidden_layers`` entries)."""
    count = getattr(getattr(encoder, "config", None), "num_hidden_layers", None)
    for module in encoder.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise EvaluationError(f"cannot find the Transformer layers of {type(encoder).__name__}: train with layers=0")


def finetune(
    model: SimilarityModel,
    pairs: Sequence[SimilarityPair],
    epochs: int = 3,
    learning_rate: float = 1e-4,
    trainable_layers: int = 2,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Fine-tune ``model`` in place to regress the pairs' scores with a mean-squared error (AdamW).

    Parameters
    ----------
    model
        The similarity model; its pooling and top ``trainable_layers`` Transformer layers are trained,
        everything else is frozen.
    pairs
        Training pairs with their target scores.
    epochs, learning_rate, batch_size
        Optimisation settings.
    trainable_layers
        How many of the top Transformer layers to train (0: the pooling only).
    seed
        Seed of the batch order.
    progress
        Show a progress bar.

    Returns
    -------
    list[float]
        The mean training loss of each epoch.

    """
    check_positive("epochs", epochs)
    check_positive("batch_size", batch_size)
    check_non_negative("trainable_layers", trainable_layers)
    check_positive_number("learning_rate", learning_rate)
    model.requires_grad_(False)
    model.pooling.requires_grad_(True)
    if trainable_layers:
        for layer in _transformer_layers(model.encoder)[-trainable_layers:]:
            layer.requires_grad_(True)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    targets = torch.tensor([pair.score for pair in pairs], dtype=torch.float32)
    losses = []
    model.train()
    try:
        bar = tqdm(total=epochs * len(pairs), desc="fine-tuning", disable=not progress, unit="pair")
        for _ in range(epochs):
            total = 0.0
            for batch in torch.randperm(len(pairs), generator=generator).split(batch_size):
                a = model.tokenize([pairs[k].text_a for k in batch])
                b = model.tokenize([pairs[k].text_b for k in batch])
                phi_a = model.represent(model.embed(a["input_ids"], a["attention_mask"]), a["attention_mask"])
                phi_b = model.represent(model.embed(b["input_ids"], b["attention_mask"]), b["attention_mask"])
                score = model.compare(phi_a, phi_b)
                loss = nn.functional.mse_loss(score, targets[batch].to(score.device, score.dtype))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
                bar.update(len(batch))
            losses.append(total / len(pairs))
        bar.close()
    finally:
        model.eval()
        model.requires_grad_(True)
    return losses


@dataclass
class GroundTruthResult:
    """Fine-tuning quality on held-out pairs and the ACS of each explanation method.

    Attributes
    ----------
    spearman, mse, baseline_mse
        Held-out Spearman (x 100) and mean-squared error of the fine-tuned model, and the MSE of always
        predicting the mean training target.
    acs
        Per method, the cosine similarity with the ground truth of every held-out pair sharing a noun.
    tests
        Wilcoxon signed-rank tests of BiLRP's per-pair cosine against each other method's (Holm-corrected).
    losses
        Mean training loss per epoch.

    """

    spearman: float
    mse: float
    baseline_mse: float
    acs: dict[str, np.ndarray] = field(repr=False)
    tests: list[PairedTest] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    holdout: list[SimilarityPair] = field(repr=False, default_factory=list)
    predictions: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    evaluated: list[int] = field(repr=False, default_factory=list)
    example: dict[str, Any] = field(repr=False, default_factory=dict)
    config: dict = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Task quality, ACS mean and std per method, tests and configuration, for JSON."""
        return {
            "spearman": self.spearman,
            "mse": self.mse,
            "baseline_mse": self.baseline_mse,
            "training_losses": self.losses,
            "acs": {m: {"mean": float(v.mean()), "std": float(v.std(ddof=1))} for m, v in self.acs.items()},
            "acs_pairs": len(self.evaluated),
            "tests": [test.to_dict() for test in self.tests],
            **self.config,
        }

    def markdown(self) -> str:
        """Task quality and the ACS table (higher is better) as markdown."""
        tests = {test.other: test for test in self.tests}
        quality = markdown_table(
            [[len(self.holdout), round(self.spearman, 2), self.mse, self.baseline_mse]],
            ["held-out pairs", "Spearman x100", "MSE", "MSE of predicting the mean"],
        )
        rows = []
        for method, values in self.acs.items():
            test = tests.get(method)
            rows.append(
                [
                    _LABELS.get(method, method),
                    f"{values.mean():.3f} ± {values.std(ddof=1):.3f}",
                    "(reference)" if test is None else f"{test.mean_difference:+.3f}",
                    "" if test is None else format_p(test.p_holm),
                ]
            )
        table = markdown_table(rows, ["method", "ACS (mean ± std)", "BiLRP − method", "p (Wilcoxon, Holm)"])
        settings = ", ".join(f"{key}={value}" for key, value in self.config.items())
        return (
            "# Ground-truth interactions (noun matching)\n\n"
            f"{settings}\n\n## Fine-tuned model on held-out pairs\n\n{quality}\n"
            f"## ACS with the ground truth ({len(self.evaluated)} held-out pairs sharing a noun; higher is better)"
            f"\n\n{table}"
        )

    def figure(self):
        """An example held-out pair (short, sharing several nouns): ground truth and each method's relevance."""
        import matplotlib.pyplot as plt

        panels = self.example.get("matrices", {})
        figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.8), squeeze=False)
        for axis, (name, matrix) in zip(axes[0], panels.items(), strict=True):
            matrix = np.asarray(matrix)
            limit = float(np.abs(matrix).max()) or 1.0
            axis.imshow(matrix, cmap="bwr", vmin=-limit, vmax=limit)
            axis.set_title(name)
            axis.set_yticks(range(len(self.example["tokens_a"])), self.example["tokens_a"], fontsize=6)
            axis.set_xticks(range(len(self.example["tokens_b"])), self.example["tokens_b"], fontsize=6, rotation=90)
        figure.tight_layout()
        return figure

    def files(self) -> dict[str, str | bytes]:
        """``results.md``, ``summary.json``, ``acs.csv`` (per pair), ``predictions.csv``, ``example.png``."""
        acs_rows = [
            [k, self.holdout[k].text_a, self.holdout[k].text_b, self.holdout[k].score]
            + [float(self.acs[m][row]) for m in self.acs]
            for row, k in enumerate(self.evaluated)
        ]
        predictions = [
            [pair.text_a, pair.text_b, pair.score, float(prediction)]
            for pair, prediction in zip(self.holdout, self.predictions, strict=True)
        ]
        return {
            "results.md": self.markdown(),
            "summary.json": json_text(self.summary()),
            "acs.csv": csv_text(acs_rows, ["holdout_index", "text_a", "text_b", "target", *self.acs]),
            "predictions.csv": csv_text(predictions, ["text_a", "text_b", "target", "prediction"]),
            "example.png": figure_bytes(self.figure()),
        }


def evaluate_ground_truth(
    model: SimilarityModel | str | None,
    pairs: Iterable[SimilarityPair | Sequence],
    epochs: int = 3,
    learning_rate: float = 1e-4,
    trainable_layers: int = 2,
    holdout: float = 0.2,
    methods: Sequence[str] = ACS_METHODS,
    spacy_model: str = "en",
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
    config: dict | None = None,
    rules: str = "paper",
) -> GroundTruthResult:
    """Build the noun-matching task, fine-tune on part of the pairs, and score explanations on the rest.

    Parameters
    ----------
    model
        A model name or folder (loaded with a new QKV pooling and dot-product similarity; default
        all-MiniLM-L6-v2), or a :class:`~bilrp.SimilarityModel` (copied, then fine-tuned as it is).
    pairs
        Sentence pairs (their gold scores are ignored), e.g. STSb dev.
    epochs, learning_rate, trainable_layers
        Fine-tuning settings (see :func:`finetune`).
    holdout
        Share of the pairs held out (a seeded random choice) for Spearman, MSE and ACS; the rest train.
    methods
        Explanation methods compared with the ground truth; BiLRP is tested against the others.
    spacy_model
        spaCy language or pipeline for the noun tags (see :func:`bilrp.nlp.load_spacy`).
    batch_size
        Pairs per training batch and texts per explanation batch.
    seed
        Seed of the split, the pooling's initialisation and the batch order.
    progress
        Show progress bars.
    config
        Extra fields stored with the result.
    rules
        BiLRP's rule set (:mod:`bilrp.rule_sets`); the paper's by default.

    """
    check_fraction("holdout", holdout)
    methods = check_choices("methods", methods, ACS_METHODS)
    task, docs = noun_matching_pairs(pairs, load_spacy(spacy_model))
    if len(task) < 2:
        raise EvaluationError("the ground-truth task needs at least 2 pairs (one to train, one to hold out)")
    order = np.random.default_rng(seed).permutation(len(task))
    held = min(len(task) - 1, max(1, round(holdout * len(task))))
    train = [task[k] for k in sorted(order[held:])]
    test = [task[k] for k in sorted(order[:held])]
    torch.manual_seed(seed)
    if isinstance(model, SimilarityModel):
        similarity_model = copy.deepcopy(model)
    else:
        similarity_model = SimilarityModel.from_pretrained(model or DEFAULT_MODEL, pooling="qkv", similarity="dot")
    losses = finetune(
        similarity_model, train, epochs, learning_rate, trainable_layers, batch_size, seed, progress=progress
    )
    text_pairs = [(pair.text_a, pair.text_b) for pair in test]
    predictions = model_scores(similarity_model, text_pairs, batch_size, progress=False)
    targets = np.array([pair.score for pair in test])
    spearman = 100 * float(stats.spearmanr(predictions, targets).statistic) if len(test) > 1 else float("nan")
    mse = float(np.mean((predictions - targets) ** 2))
    baseline_mse = float(np.mean((np.mean([pair.score for pair in train]) - targets) ** 2))
    offsets = _offsets(similarity_model, sorted({t for pair in text_pairs for t in pair}), batch_size)
    truths = [interaction_matrix(docs[a], docs[b], offsets[a], offsets[b]) for a, b in text_pairs]
    evaluated = [k for k, truth in enumerate(truths) if truth.any()]
    if not evaluated:
        raise EvaluationError("no held-out pair shares a noun, so no ACS can be computed: use more pairs")
    explanations = {
        method: explain_batch(
            similarity_model,
            [text_pairs[k] for k in evaluated],
            method,
            batch_size=batch_size,
            progress=progress,
            **({"rules": rules} if method == "bilrp" else {}),
        )
        for method in methods
    }
    acs = {
        method: np.array(
            [cosine_similarity(e.relevance.numpy(), truths[k]) for e, k in zip(found, evaluated, strict=True)]
        )
        for method, found in explanations.items()
    }
    tests = compare_to_reference(acs, "bilrp") if "bilrp" in acs else []
    # the figure's example: the shortest held-out pair sharing the most nouns (at most 3, to stay readable)
    best = max(
        range(len(evaluated)),
        key=lambda row: (min(test[evaluated[row]].score, 3), -truths[evaluated[row]].size, -row),
    )
    first = explanations[methods[0]][best]
    example = {
        "tokens_a": first.tokens_a,
        "tokens_b": first.tokens_b,
        "matrices": {
            "ground truth": truths[evaluated[best]],
            **{_LABELS[m]: explanations[m][best].relevance.numpy() for m in methods if m != "random"},
        },
    }
    settings = {
        "model": similarity_model.name,
        "pooling": "qkv",
        "similarity": similarity_model.similarity,
        "train_pairs": len(train),
        "holdout_pairs": len(test),
        "epochs": epochs,
        "learning_rate": learning_rate,
        "trainable_layers": trainable_layers,
        "seed": seed,
        "rules": rules,
        **(config or {}),
    }
    return GroundTruthResult(
        spearman, mse, baseline_mse, acs, tests, losses, test, predictions, evaluated, example, settings
    )


def _offsets(model: SimilarityModel, texts: list[str], batch_size: int) -> dict[str, list[tuple[int, int]]]:
    """Character span of every token of each text (special tokens: empty spans)."""
    if not getattr(model.tokenizer, "is_fast", False):
        raise EvaluationError("the ground-truth task needs a fast tokenizer (character offsets): use one")
    offsets = {}
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        offsets.update(zip(chunk, model.tokenize(chunk)["offsets"], strict=True))
    return offsets
