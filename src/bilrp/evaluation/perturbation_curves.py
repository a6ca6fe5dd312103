"""The perturbation curves (paper section 4.3, appendix B): put a text's tokens back, most relevant first.

For each text and token order, the tokens that may be perturbed (special tokens stay) are all replaced by a
filler token, then put back in that order in steps of a fixed fraction of the length; the curve is the
Euclidean distance of each perturbed text's embedding to the unperturbed one. The Random order is one seeded
permutation per text, drawn from a generator seeded with ``(seed, pair id)``, so a pair's random orders do not
depend on which other pairs are computed with it (the local and Ray engines agree exactly).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..corpus_runs.progress import WholeTicks
from ..models import SimilarityModel
from .errors import EvaluationError, check_fraction

__all__ = [
    "perturbation_fractions",
    "kept_counts",
    "token_order",
    "perturbed_sequences",
    "perturbation_curves",
    "filler_token_id",
    "aupc",
]

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
    keys: Sequence[int] | None = None,
    on_progress: Callable[[float], object] | None = None,
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
    keys
        The id of each pair (default: its position): the pair index of its rows, and with ``seed`` the seed
        of its random orders (``numpy.random.default_rng((seed, key))``).
    on_progress
        Called with the number of pairs (fractional) each batch of forward passes completes; the progress bar
        ticks the same way, per pair.

    Returns
    -------
    texts, curves
        ``(pair id, side, text)`` per row, and per order the ``(texts, points)`` distances.

    """
    tokenized = _token_ids(model, sorted({t for pair in text_pairs for t in pair}), batch_size)
    keys = list(range(len(text_pairs))) if keys is None else [int(key) for key in keys]
    texts: list[tuple[int, str, str]] = []
    chunks: dict[str, list[np.ndarray]] = {order: [] for order in orders}
    bar = tqdm(total=len(text_pairs), desc="perturbation", disable=not progress, unit="pair")
    ticks = WholeTicks(bar.update, len(text_pairs))

    def done(pairs: float) -> None:
        ticks(pairs)
        if on_progress is not None:
            on_progress(pairs)

    for start in range(0, len(text_pairs), _PAIRS_PER_CHUNK):
        indices = range(start, min(start + _PAIRS_PER_CHUNK, len(text_pairs)))
        chunk_texts, sequences = _perturbations(
            model, text_pairs, indices, tokenized, relevance, orders, fractions, filler_id, (seed, keys)
        )
        share = functools.partial(_scaled, done, len(indices))
        for order, curve in _distances(model, tokenized, chunk_texts, sequences, normalize, batch_size, share).items():
            chunks[order].append(curve)
        texts += chunk_texts
    ticks.finish()
    bar.close()
    return texts, {order: np.concatenate(parts) for order, parts in chunks.items()}


def _scaled(done: Callable[[float], None], count: int, fraction: float) -> None:
    done(fraction * count)


def _perturbations(model, text_pairs, indices, tokenized, relevance, methods, fractions, filler_id, seeding):
    """The texts of the pairs at ``indices`` and, per method, each text's perturbed token-id sequences.

    ``seeding`` is ``(seed, keys)``: pair ``index`` draws its random orders from ``default_rng((seed, key))``.
    """
    special = set(model.tokenizer.all_special_ids)
    seed, keys = seeding
    texts, sequences = [], {method: [] for method in methods}
    for index in indices:
        generator = np.random.default_rng((seed, keys[index]))
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
            texts.append((keys[index], side, text))
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
def _distances(model, tokenized, texts, sequences, normalize, batch_size, progress=None) -> dict[str, np.ndarray]:
    """Distance of each perturbed sequence's embedding to its text's embedding; repeated sequences run once.

    ``progress`` is called with the fraction of the forward passes each batch completes.
    """
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
        if progress is not None:
            progress(len(chunk) / len(ordered))
    curves = {}
    for method, per_text in sequences.items():
        rows = []
        for (_, _, text), steps in zip(texts, per_text, strict=True):
            reference = unique[tuple(tokenized[text])]
            rows.append(torch.stack([unique[ids] for ids in steps]).sub(reference).norm(dim=-1).numpy())
        curves[method] = np.stack(rows)
    return curves
