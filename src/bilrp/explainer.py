"""``explain`` and ``explain_batch``: from texts to :class:`~bilrp.explanation.Explanation` objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from ._validation import optional_positive_int, positive_int
from .attr import (
    BiLRP,
    EmbeddingInteraction,
    HessianXProduct,
    IntegratedJacobians,
    InteractionAttribution,
    PairAttribution,
    RandomInteraction,
    pair_decomposition,
)
from .explaining import explaining
from .explanation import Explanation
from .models import SimilarityModel, as_similarity_model

__all__ = ["explain", "explain_batch", "METHODS", "make_attribution", "PromptNames"]

METHODS: dict[str, type[PairAttribution]] = {
    "bilrp": BiLRP,
    "hxp": HessianXProduct,
    "embedding": EmbeddingInteraction,
    "random": RandomInteraction,
    "ij": IntegratedJacobians,
}

PromptNames = str | None | tuple[str | None, str | None]
"""A prompt name for both texts of a pair, or a pair ``(for text A, for text B)``; ``None``: the default."""


def make_attribution(model: SimilarityModel, method: str = "bilrp", **options: Any) -> PairAttribution:
    """The attribution object for a method name (``bilrp``, ``hxp``, ``embedding``, ``random``, ``ij``)."""
    model = as_similarity_model(model)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    return METHODS[method](model, **options)


def explain(
    model: SimilarityModel | Any,
    text_a: str,
    text_b: str,
    method: str = "bilrp",
    truncate: bool = True,
    prompt_name: PromptNames = None,
    **options: Any,
) -> Explanation:
    """Explain the similarity of two texts with token-pair relevance.

    Parameters
    ----------
    model
        The similarity model: a :class:`~bilrp.SimilarityModel`, a ``sentence_transformers.SentenceTransformer``
        or a model name or folder (see :func:`bilrp.models.as_similarity_model`).
    text_a, text_b
        The two texts.
    method
        ``"bilrp"`` (default), ``"hxp"``, ``"embedding"``, ``"random"`` or ``"ij"``.
    truncate
        Truncate texts longer than the model maximum with a warning (``False``: raise).
    prompt_name
        The model's prompt for both texts, or ``(for text A, for text B)`` (a query and a document);
        ``None``: the model's default prompt. Prompt tokens are explained like the text's own and counted in
        ``Explanation.prompt_length_a`` / ``prompt_length_b``.
    **options
        Passed to the attribution class (``composite=``, ``mode=``, ``n_steps=``, ``seed=``).

    Examples
    --------
    >>> model = bilrp.SimilarityModel.from_pretrained()
    >>> explanation = bilrp.explain(model, "A man plays guitar.", "Someone plays music.")
    >>> explanation.top(3)["positive"]

    """
    pairs = [(text_a, text_b)]
    return explain_batch(
        model, pairs, method=method, truncate=truncate, progress=False, prompt_name=prompt_name, **options
    )[0]


def explain_batch(
    model: SimilarityModel | Any,
    pairs: Sequence[tuple[str, str]],
    method: str = "bilrp",
    batch_size: int = 32,
    internal_batch_size: int | None = None,
    progress: bool = True,
    truncate: bool = True,
    prompt_name: PromptNames = None,
    **options: Any,
) -> list[Explanation]:
    """Explain many pairs: texts are padded into batches and each distinct text is computed once.

    Methods that factorise (``R = C_a C_b^T``: BiLRP, H x P, Embedding, IJ) compute the per-text factor
    once per distinct text (a per-sentence cache), then pair the factors.

    Parameters
    ----------
    model
        The similarity model, as for :func:`explain`.
    pairs
        ``(text_a, text_b)`` tuples.
    method
        As for :func:`explain`.
    batch_size
        Texts per padded batch.
    internal_batch_size
        Tangents per batched engine pass (bounds memory).
    progress
        Show a progress bar.
    truncate
        Truncate over-long texts with a warning (``False``: raise).
    prompt_name
        As for :func:`explain`, for every pair.
    **options
        Passed to the attribution class.

    """
    model = as_similarity_model(model)
    positive_int("batch_size", batch_size)
    optional_positive_int("internal_batch_size", internal_batch_size)
    prompt_a, prompt_b = prompt_name if isinstance(prompt_name, tuple) else (prompt_name, prompt_name)
    pairs = [((prompt_a, a), (prompt_b, b)) for a, b in _checked_pairs(pairs)]
    attribution = make_attribution(model, method, **options)
    with explaining(model):  # eval mode (embedding dropout off), exclusive, float32: for every step
        keys = list(dict.fromkeys(key for pair in pairs for key in pair))
        encoded = _encode_texts(model, keys, batch_size, truncate)
        if isinstance(attribution, InteractionAttribution):
            return _explain_factorised(
                model, attribution, pairs, encoded, batch_size, internal_batch_size, progress, method
            )
        return _explain_pairwise(model, attribution, pairs, encoded, internal_batch_size, progress, method)


def _checked_pairs(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """``pairs`` as a list of two-text tuples, or a one-line ``ValueError`` naming the first bad entry."""
    checked = []
    for index, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(isinstance(t, str) for t in pair):
            raise ValueError(f"pair {index} is {pair!r}: every pair must be two texts (text_a, text_b)")
        checked.append((pair[0], pair[1]))
    return checked


def _explain_pairwise(model, attribution, pairs, encoded, internal_batch_size, progress, method):
    results = []
    for key_a, key_b in tqdm(pairs, desc=f"explaining ({method})", disable=not progress, unit="pair"):
        a, b = encoded[key_a], encoded[key_b]
        relevance, delta = attribution.attribute(
            (a["embeddings"][None], b["embeddings"][None]),
            additional_forward_args=(
                a["embeddings"].new_ones(1, a["length"]).long(),
                b["embeddings"].new_ones(1, b["length"]).long(),
            ),
            internal_batch_size=internal_batch_size,
            return_convergence_delta=True,
        )
        score = float(relevance.sum() + delta.sum())
        results.append(_make_explanation(model, method, key_a[1], key_b[1], a, b, relevance[0], score))
    return results


def _encode_texts(
    model: SimilarityModel, keys: list[tuple[str | None, str]], batch_size: int, truncate: bool
) -> dict[tuple[str | None, str], dict]:
    """Tokenize and embed every distinct ``(prompt name, text)`` once, by length to keep padding small."""
    full = {key: model.prompt(key[0]) + key[1] for key in keys}  # lengths only order the batches: no warnings
    lengths = {key: len(model.tokenizer(text, truncation=False)["input_ids"]) for key, text in full.items()}
    ordered = sorted(keys, key=lambda key: (str(key[0]), lengths[key]))
    encoded: dict[tuple[str | None, str], dict] = {}
    for start in range(0, len(ordered), batch_size):
        for prompt_name in dict.fromkeys(key[0] for key in ordered[start : start + batch_size]):
            chunk = [key for key in ordered[start : start + batch_size] if key[0] == prompt_name]
            batch = model.tokenize([key[1] for key in chunk], truncate=truncate, prompt_name=prompt_name)
            with torch.no_grad():
                embeddings = model.embed(batch["input_ids"], batch["attention_mask"])
            for row, key in enumerate(chunk):
                keep = batch["attention_mask"][row].nonzero().flatten()
                encoded[key] = {
                    "embeddings": embeddings[row, keep],
                    "length": len(keep),
                    "tokens": batch["tokens"][row],
                    "word_ids": batch.get("word_ids", [None] * len(chunk))[row],
                    "offsets": batch.get("offsets", [None] * len(chunk))[row],
                    "prompt": model.prompt(prompt_name),
                    "prompt_length": batch.get("prompt_lengths", [0] * len(chunk))[row],
                }
    return encoded


def _explain_factorised(model, attribution, pairs, encoded, batch_size, internal_batch_size, progress, method):
    texts = sorted(encoded, key=lambda t: encoded[t]["length"])
    bar = tqdm(total=len(texts) + len(pairs), desc=f"explaining ({method})", disable=not progress, unit="item")
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        width = max(encoded[t]["length"] for t in chunk)
        first = encoded[chunk[0]]["embeddings"]
        embeddings = first.new_zeros(len(chunk), width, first.shape[-1])
        mask = torch.zeros(len(chunk), width, dtype=torch.long, device=first.device)
        for row, text in enumerate(chunk):
            n = encoded[text]["length"]
            embeddings[row, :n] = encoded[text]["embeddings"]
            mask[row, :n] = 1
        contributions, phi = attribution.contributions(
            embeddings.to(model.device), mask.to(model.device), internal_batch_size
        )
        bias = attribution.bias_vectors(embeddings.to(model.device), mask.to(model.device), contributions, phi)
        for row, text in enumerate(chunk):
            encoded[text]["contributions"] = contributions[row, : encoded[text]["length"]]
            encoded[text]["phi"] = phi[row]
            encoded[text]["bias_vector"] = None if bias is None else bias[row]
        bar.update(len(chunk))
    results = []
    for key_a, key_b in pairs:
        a, b = encoded[key_a], encoded[key_b]
        relevance, score = attribution.combine(
            a["contributions"][None], b["contributions"][None], a["phi"][None], b["phi"][None]
        )
        explanation = _make_explanation(model, method, key_a[1], key_b[1], a, b, relevance[0], float(score[0]))
        explanation.rules = getattr(attribution, "rules", "")
        if a["bias_vector"] is not None:
            _add_decomposition(explanation, a, b, model.similarity)
        results.append(explanation)
        bar.update(1)
    bar.close()
    return results


def _add_decomposition(explanation: Explanation, a: dict, b: dict, similarity: str) -> None:
    """Fill the bias decomposition of ``explanation`` from the two texts' factors and bias vectors."""
    terms = pair_decomposition(
        a["contributions"][None],
        b["contributions"][None],
        a["bias_vector"][None],
        b["bias_vector"][None],
        a["phi"][None],
        b["phi"][None],
        similarity,
    )
    tokens_a, tokens_b, both = (term[0].detach().cpu().double() for term in terms)
    explanation.tokens_a_with_bias_b, explanation.bias_a_with_tokens_b = tokens_a, tokens_b
    explanation.bias_with_bias = float(both)
    explained = float(explanation.relevance.double().sum()) + float(tokens_a.sum() + tokens_b.sum() + both)
    explanation.step_error = explanation.score - explained


def _make_explanation(model, method, text_a, text_b, a, b, relevance, score) -> Explanation:
    relevance = relevance.detach().cpu()
    return Explanation(
        tokens_a=a["tokens"],
        tokens_b=b["tokens"],
        relevance=relevance,
        score=score,
        bias=score - float(relevance.double().sum()),
        text_a=text_a,
        text_b=text_b,
        model=model.name,
        method=method,
        word_ids_a=a["word_ids"],
        word_ids_b=b["word_ids"],
        offsets_a=a["offsets"],
        offsets_b=b["offsets"],
        prompt_a=a["prompt"],
        prompt_b=b["prompt"],
        prompt_length_a=a["prompt_length"],
        prompt_length_b=b["prompt_length"],
    )
