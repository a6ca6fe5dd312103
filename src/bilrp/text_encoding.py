"""Texts tokenized and embedded once each, their factors, and explanations paired from two factors: the per-text
entries that :mod:`bilrp.explainer` and :mod:`bilrp.ranking` explain from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypedDict

import torch

from ._validation import optional_positive_int, positive_int
from .attr import InteractionAttribution, pair_decomposition
from .engine import pair_relevance
from .explaining import explaining
from .explanation import Explanation
from .granular import padded_groups, units
from .models import SimilarityModel, as_similarity_model
from .models.encode_options import EncodeOptions
from .models.tokenization import tokenize_texts

__all__ = ["TextFactor", "encode_texts", "text_factors", "fill_factors", "explanation_from_factors", "make_explanation"]


class TextFactor(TypedDict, total=False):
    """One text's share of a factorised explanation (:func:`text_factors`).

    ``tokens``, ``word_ids``, ``offsets``, ``prompt`` and ``prompt_length`` describe the tokenized text;
    ``embeddings`` are its embedding outputs ``(length, width)``; ``contributions`` ``C`` ``(length, dim)`` hold
    each token's contribution to each embedding dimension, ``phi`` ``(dim,)`` the representation and
    ``bias_vector`` ``(dim,)`` the part of ``phi`` no token carries (``phi - sum_i C[i]`` for BiLRP; ``None``
    for methods without a bias decomposition).
    """

    embeddings: torch.Tensor
    length: int
    tokens: list[str]
    word_ids: list[int | None] | None
    offsets: list[tuple[int, int]] | None
    prompt: str
    prompt_length: int
    contributions: torch.Tensor
    phi: torch.Tensor
    bias_vector: torch.Tensor | None


def encode_texts(
    model: SimilarityModel, keys: list[tuple[str, str]], batch_size: int, truncate: bool
) -> dict[tuple[str, str], dict]:
    """Tokenize and embed every distinct ``(prompt, text)`` once, by length to keep padding small.

    The prompt is the literal prompt text (``""``: none; :meth:`SimilarityModel.prompt` gives a named prompt's),
    put before the text as sentence-transformers does.
    """
    tokenizer = model.require_tokenizer()  # one line saying what to pass when the model has none
    # lengths only order the batches: no warnings
    lengths = {key: len(tokenizer(key[0] + key[1], truncation=False)["input_ids"]) for key in keys}
    ordered = sorted(keys, key=lambda key: (key[0], lengths[key]))
    encoded: dict[tuple[str, str], dict] = {}
    for start in range(0, len(ordered), batch_size):
        for prompt in dict.fromkeys(key[0] for key in ordered[start : start + batch_size]):
            chunk = [key for key in ordered[start : start + batch_size] if key[0] == prompt]
            batch = tokenize_texts(
                tokenizer, [key[1] for key in chunk], model.max_length, truncate, prompt, model.device, stacklevel=3
            )
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
                    "prompt": prompt,
                    "prompt_length": batch.get("prompt_lengths", [0] * len(chunk))[row],
                }
    return encoded


def text_factors(
    model: SimilarityModel | Any,
    attribution: InteractionAttribution,
    texts: Sequence[str],
    prompt_name: str | None = None,
    batch_size: int = 32,
    internal_batch_size: int | None = None,
    truncate: bool = True,
    progress: Callable[[int], object] | None = None,
    prompt: str | None = None,
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
    prompt
        A literal prompt text for every text instead (sentence-transformers' ``prompt=``; wins over
        ``prompt_name``).

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
    literal = model.prompt(prompt_name) if prompt is None else prompt
    keys = [(literal, text) for text in dict.fromkeys(texts)]
    with explaining(model):
        encoded = encode_texts(model, keys, batch_size, truncate)
        fill_factors(model, attribution, encoded, batch_size, internal_batch_size, progress)
    return [encoded[(literal, text)] for text in texts]


def fill_factors(model, attribution, encoded, batch_size, internal_batch_size, progress) -> None:
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
    options: EncodeOptions | None = None,
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
    options
        sentence-transformers' ``encode()`` options that change the score (truncation, normalisation, the
        similarity function; :class:`~bilrp.models.encode_options.EncodeOptions`): each side's factor is cut
        and scaled to the embedding the similarity is a dot product of, then paired (BiLRP's factors only).

    """
    a, b = factor_a, factor_b
    similarity = model.similarity
    if options is not None and options.changes_score:
        a, b, similarity = _encoded_factor(a, options, 0), _encoded_factor(b, options, 1), "dot"
        relevance = pair_relevance(a["contributions"][None], b["contributions"][None])
        score = (a["phi"] * b["phi"]).sum()[None]
    else:
        relevance, score = attribution.combine(
            a["contributions"][None], b["contributions"][None], a["phi"][None], b["phi"][None]
        )
    explanation = make_explanation(model, method, text_a, text_b, a, b, relevance[0], float(score[0]))
    explanation.rules = getattr(attribution, "rules", "")
    if a.get("bias_vector") is not None and b.get("bias_vector") is not None:
        _add_decomposition(explanation, a, b, similarity)
    return explanation


def _encoded_factor(factor: TextFactor, options: EncodeOptions, side: int) -> TextFactor:
    """``factor`` cut and scaled to the embedding ``encode()`` gives with ``options`` (its sum still holds)."""
    phi = factor["phi"]
    moved = dict(factor)
    moved["contributions"] = options.scaled(factor["contributions"], phi, side)
    moved["phi"] = options.scaled(phi, phi, side)
    if factor.get("bias_vector") is not None:
        moved["bias_vector"] = options.scaled(factor["bias_vector"], phi, side)
    return moved  # type: ignore[return-value]


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


def make_explanation(model, method, text_a, text_b, a, b, relevance, score) -> Explanation:
    """The :class:`~bilrp.explanation.Explanation` of two encoded texts' relevance ``R`` and score."""
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
