"""``explain`` and ``explain_batch``: from texts to :class:`~bilrp.explanation.Explanation` objects."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from .granular import GranularityLike, attach_groups, group_relevance, padded_groups, resolve_granularity, units
from .models import SimilarityModel, as_similarity_model
from .text_encoding import TextFactor, encode_texts

__all__ = [
    "explain",
    "explain_batch",
    "METHODS",
    "make_attribution",
    "PromptNames",
    "TextFactor",
    "text_factors",
    "explanation_from_factors",
]

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
    granularity: GranularityLike = "token",
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
    granularity
        What the rows and columns of ``R`` are: ``"token"`` (default), ``"word"``, ``"sentence"`` (spaCy's
        sentencizer), a function ``text -> [(start, end), ...]`` of character spans, or a pair ``(for text A,
        for text B)`` of these or of span lists. Groups are computed directly (one engine tangent per group,
        exactly the sum of its tokens), so long texts cost as many passes as groups, not tokens. Special tokens
        and tokens outside every span stay on their own.
    **options
        Passed to the attribution class (``composite=``, ``rules=``, ``mode=``, ``n_steps=``, ``seed=``).

    Examples
    --------
    >>> model = bilrp.SimilarityModel.from_pretrained()
    >>> explanation = bilrp.explain(model, "A man plays guitar.", "Someone plays music.")
    >>> explanation.top(3)["positive"]

    """
    pairs = [(text_a, text_b)]
    return explain_batch(
        model,
        pairs,
        method=method,
        truncate=truncate,
        progress=False,
        prompt_name=prompt_name,
        granularity=granularity,
        **options,
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
    granularity: GranularityLike = "token",
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
    granularity
        As for :func:`explain` (a pair of span lists only with one pair).
    **options
        Passed to the attribution class.

    """
    model = as_similarity_model(model)
    positive_int("batch_size", batch_size)
    optional_positive_int("internal_batch_size", internal_batch_size)
    prompt_a, prompt_b = prompt_name if isinstance(prompt_name, tuple) else (prompt_name, prompt_name)
    checked = _checked_pairs(pairs)
    granularity_of = resolve_granularity(granularity, checked)
    pairs = [((prompt_a, a), (prompt_b, b)) for a, b in checked]
    attribution = make_attribution(model, method, **options)
    with explaining(model):  # eval mode (embedding dropout off), exclusive, float32: for every step
        keys = list(dict.fromkeys(key for pair in pairs for key in pair))
        encoded = encode_texts(model, keys, batch_size, truncate)
        if granularity_of is not None:
            attach_groups(encoded, granularity_of)
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
        grouped = group_relevance(relevance[0], a, b)
        results.append(_make_explanation(model, method, key_a[1], key_b[1], a, b, grouped, score))
    return results


def _explain_factorised(model, attribution, pairs, encoded, batch_size, internal_batch_size, progress, method):
    bar = tqdm(total=len(encoded) + len(pairs), desc=f"explaining ({method})", disable=not progress, unit="item")
    _fill_factors(model, attribution, encoded, batch_size, internal_batch_size, bar.update)
    results = []
    for key_a, key_b in pairs:
        a, b = encoded[key_a], encoded[key_b]
        results.append(explanation_from_factors(model, attribution, a, b, key_a[1], key_b[1], method))
        bar.update(1)
    bar.close()
    return results


def text_factors(
    model: SimilarityModel | Any,
    attribution: InteractionAttribution,
    texts: Sequence[str],
    prompt_name: str | None = None,
    batch_size: int = 32,
    internal_batch_size: int | None = None,
    truncate: bool = True,
    progress: Callable[[int], object] | None = None,
) -> list[TextFactor]:
    """Each text's factor of a factorising attribution: what ``explain_batch`` computes once per distinct text.

    Texts are tokenized, embedded and padded into batches by length; one engine pass per batch gives every
    token's contribution to every embedding dimension. Pairing two factors with
    :func:`explanation_from_factors` gives exactly the explanation :func:`explain` gives for the two texts.

    Parameters
    ----------
    model
        The similarity model, as for :func:`explain`.
    attribution
        A factorising attribution built for ``model`` (:class:`~bilrp.BiLRP`, H x P, IJ, Embedding).
    texts
        The texts (a text given twice is computed once).
    prompt_name
        The model's prompt for every text (``None``: the default prompt).
    batch_size, internal_batch_size, truncate
        As for :func:`explain_batch`.
    progress
        Called with the number of texts of each finished batch (e.g. ``tqdm.update``).

    Returns
    -------
    list of TextFactor
        One per text, in the order of ``texts``.

    """
    model = as_similarity_model(model)
    positive_int("batch_size", batch_size)
    optional_positive_int("internal_batch_size", internal_batch_size)
    if not isinstance(attribution, InteractionAttribution):
        raise TypeError(f"{type(attribution).__name__} does not factorise: use BiLRP, HessianXProduct or IJ")
    keys = [(prompt_name, text) for text in dict.fromkeys(texts)]
    with explaining(model):
        encoded = encode_texts(model, keys, batch_size, truncate)
        _fill_factors(model, attribution, encoded, batch_size, internal_batch_size, progress)
    return [encoded[(prompt_name, text)] for text in texts]


def _fill_factors(model, attribution, encoded, batch_size, internal_batch_size, progress) -> None:
    """Add ``contributions``, ``phi`` and ``bias_vector`` to every entry of ``encoded``, batch by batch."""
    texts = sorted(encoded, key=lambda t: encoded[t]["length"])
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
        groups = padded_groups([encoded[t] for t in chunk], width, embeddings.dtype, model.device)
        contributions, phi = attribution.contributions(
            embeddings.to(model.device), mask.to(model.device), internal_batch_size, groups=groups
        )
        bias = attribution.bias_vectors(embeddings.to(model.device), mask.to(model.device), contributions, phi)
        for row, text in enumerate(chunk):
            encoded[text]["contributions"] = contributions[row, : units(encoded[text])]
            encoded[text]["phi"] = phi[row]
            encoded[text]["bias_vector"] = None if bias is None else bias[row]
        if progress is not None:
            progress(len(chunk))


def explanation_from_factors(
    model: SimilarityModel,
    attribution: InteractionAttribution,
    factor_a: TextFactor,
    factor_b: TextFactor,
    text_a: str,
    text_b: str,
    method: str = "bilrp",
) -> Explanation:
    """The explanation of two texts' similarity from their factors (:func:`text_factors`).

    ``R = C_a C_b^T`` (divided by ``|phi_a| |phi_b|`` for cosine), the score from the two representations and,
    when the factors carry bias vectors (BiLRP, IJ), the bias decomposition: exactly what :func:`explain` gives.

    Parameters
    ----------
    model
        The similarity model the factors were computed with.
    attribution
        The attribution that computed them (its ``combine`` pairs them, its ``rules`` name the rules).
    factor_a, factor_b
        The two texts' factors; both on one device and in one dtype.
    text_a, text_b
        The two texts (without prompts), recorded in the explanation.
    method
        The method name recorded in the explanation.

    """
    a, b = factor_a, factor_b
    relevance, score = attribution.combine(
        a["contributions"][None], b["contributions"][None], a["phi"][None], b["phi"][None]
    )
    explanation = _make_explanation(model, method, text_a, text_b, a, b, relevance[0], float(score[0]))
    explanation.rules = getattr(attribution, "rules", "")
    if a.get("bias_vector") is not None and b.get("bias_vector") is not None:
        _add_decomposition(explanation, a, b, model.similarity)
    return explanation


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
