"""``explain`` and ``explain_batch``: from texts to :class:`Explanation` objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ._io import json_text, write_text
from ._validation import optional_positive_int, positive_int
from .attr import (
    BiLRP,
    EmbeddingInteraction,
    HessianXProduct,
    IntegratedJacobians,
    InteractionAttribution,
    PairAttribution,
    RandomInteraction,
)
from .explaining import explaining
from .models import SimilarityModel, as_similarity_model

__all__ = ["Explanation", "explain", "explain_batch", "METHODS", "make_attribution", "TokenPair"]

METHODS: dict[str, type[PairAttribution]] = {
    "bilrp": BiLRP,
    "hxp": HessianXProduct,
    "embedding": EmbeddingInteraction,
    "random": RandomInteraction,
    "ij": IntegratedJacobians,
}


@dataclass(frozen=True)
class TokenPair:
    """One entry of the relevance matrix."""

    i: int
    j: int
    token_a: str
    token_b: str
    relevance: float


@dataclass
class Explanation:
    """Token-pair relevance of one similarity score: ``relevance.sum() + bias == score``.

    Attributes
    ----------
    tokens_a, tokens_b
        Tokenizer tokens of each text, special tokens included (or words after :meth:`to_words`).
    relevance
        ``(len(tokens_a), len(tokens_b))`` tensor.
    score
        The model's similarity of the two texts.
    bias
        ``score - relevance.sum()``: the share of the score no token pair carries (biases).

    """

    tokens_a: list[str]
    tokens_b: list[str]
    relevance: torch.Tensor
    score: float
    bias: float
    text_a: str = ""
    text_b: str = ""
    model: str = ""
    method: str = "bilrp"
    word_ids_a: list[int | None] | None = field(default=None, repr=False)
    word_ids_b: list[int | None] | None = field(default=None, repr=False)
    offsets_a: list[tuple[int, int]] | None = field(default=None, repr=False)
    offsets_b: list[tuple[int, int]] | None = field(default=None, repr=False)

    def top(self, k: int = 10) -> dict[str, list[TokenPair]]:
        """The ``k`` strongest positive and ``k`` strongest negative token pairs."""
        flat = self.relevance.flatten()
        columns = self.relevance.shape[1]
        order = torch.argsort(flat, descending=True)

        def pairs(indices: torch.Tensor, keep) -> list[TokenPair]:
            chosen = [int(n) for n in indices if keep(float(flat[n]))][:k]
            return [
                TokenPair(
                    n // columns, n % columns, self.tokens_a[n // columns], self.tokens_b[n % columns], float(flat[n])
                )
                for n in chosen
            ]

        return {"positive": pairs(order, lambda v: v > 0), "negative": pairs(order.flip(0), lambda v: v < 0)}

    def to_words(self) -> Explanation:
        """Sum subtoken relevance into words (special tokens stay on their own); the total is conserved."""
        if self.word_ids_a is None or self.word_ids_b is None:
            raise ValueError("word grouping needs word ids from a fast tokenizer; this explanation has none")
        groups_a, words_a = _group(self.tokens_a, self.word_ids_a, self.offsets_a, self.text_a)
        groups_b, words_b = _group(self.tokens_b, self.word_ids_b, self.offsets_b, self.text_b)
        relevance = groups_a @ self.relevance.to(groups_a.dtype) @ groups_b.T
        return Explanation(
            words_a, words_b, relevance, self.score, self.bias, self.text_a, self.text_b, self.model, self.method
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: model, method, texts, tokens, relevance rows, score and bias."""
        return {
            "model": self.model,
            "method": self.method,
            "text_a": self.text_a,
            "text_b": self.text_b,
            "tokens_a": list(self.tokens_a),
            "tokens_b": list(self.tokens_b),
            "relevance": self.relevance.tolist(),
            "score": self.score,
            "bias": self.bias,
        }

    def to_json(self, path: str | Path | None = None, indent: int | None = 2) -> str:
        """The JSON text of :meth:`to_dict` (NaN written as ``null``); also written to ``path`` when given.

        The file is written atomically (complete or not at all) and an existing file keeps its mode.
        """
        text = json_text(self.to_dict(), indent=indent)
        if path is not None:
            write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Explanation:
        """Rebuild an explanation from :meth:`to_dict` output."""
        return cls(
            list(data["tokens_a"]),
            list(data["tokens_b"]),
            torch.tensor(data["relevance"], dtype=torch.float64),
            float(data["score"]),
            float(data["bias"]),
            data.get("text_a", ""),
            data.get("text_b", ""),
            data.get("model", ""),
            data.get("method", ""),
        )

    # pictures: thin wrappers over the public functions of bilrp.plotting
    def plot(self, **kwargs):
        """The paper's pair plot (see :func:`bilrp.plotting.plot_pairs`)."""
        from .plotting import plot_pairs

        return plot_pairs(self, **kwargs)

    def heatmap(self, **kwargs):
        """Matrix heatmap (see :func:`bilrp.plotting.plot_heatmap`)."""
        from .plotting import plot_heatmap

        return plot_heatmap(self, **kwargs)

    def to_html(self, **kwargs) -> str:
        """Self-contained HTML view (see :func:`bilrp.plotting.to_html`)."""
        from .plotting import to_html

        return to_html(self, **kwargs)

    def _repr_html_(self) -> str:
        return self.to_html()


def _group(
    tokens: list[str], word_ids: list[int | None], offsets: list[tuple[int, int]] | None, text: str
) -> tuple[torch.Tensor, list[str]]:
    keys: list[tuple] = []
    index_of: dict[tuple, int] = {}
    rows: list[int] = []
    spans: dict[int, list[int]] = {}
    for position, word in enumerate(word_ids):
        key = ("special", position) if word is None else ("word", word)
        if key not in index_of:
            index_of[key] = len(keys)
            keys.append(key)
        rows.append(index_of[key])
        spans.setdefault(index_of[key], []).append(position)
    words = []
    for group, key in enumerate(keys):
        members = spans[group]
        if key[0] == "word" and offsets is not None and text:
            start, end = offsets[members[0]][0], offsets[members[-1]][1]
            words.append(text[start:end])
        else:
            words.append("".join(tokens[m] for m in members) if key[0] == "word" else tokens[members[0]])
    matrix = torch.zeros(len(keys), len(tokens), dtype=torch.float64)
    matrix[rows, list(range(len(tokens)))] = 1.0
    return matrix, words


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
    **options
        Passed to the attribution class (``composite=``, ``mode=``, ``n_steps=``, ``seed=``).

    Examples
    --------
    >>> model = bilrp.SimilarityModel.from_pretrained()
    >>> explanation = bilrp.explain(model, "A man plays guitar.", "Someone plays music.")
    >>> explanation.top(3)["positive"]

    """
    return explain_batch(model, [(text_a, text_b)], method=method, truncate=truncate, progress=False, **options)[0]


def explain_batch(
    model: SimilarityModel | Any,
    pairs: Sequence[tuple[str, str]],
    method: str = "bilrp",
    batch_size: int = 32,
    internal_batch_size: int | None = None,
    progress: bool = True,
    truncate: bool = True,
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
    **options
        Passed to the attribution class.

    """
    model = as_similarity_model(model)
    positive_int("batch_size", batch_size)
    optional_positive_int("internal_batch_size", internal_batch_size)
    pairs = _checked_pairs(pairs)
    attribution = make_attribution(model, method, **options)
    with explaining(model):  # eval mode (embedding dropout off), exclusive, float32: for every step
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))
        encoded = _encode_texts(model, texts, batch_size, truncate)
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
    for text_a, text_b in tqdm(pairs, desc=f"explaining ({method})", disable=not progress, unit="pair"):
        a, b = encoded[text_a], encoded[text_b]
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
        results.append(_make_explanation(model, method, text_a, text_b, a, b, relevance[0], score))
    return results


def _encode_texts(model: SimilarityModel, texts: list[str], batch_size: int, truncate: bool) -> dict[str, dict]:
    """Tokenize and embed every distinct text once, sorted by length to keep padding small."""
    lengths = {text: len(model.tokenizer(text, truncation=False)["input_ids"]) for text in texts}
    ordered = sorted(texts, key=lengths.__getitem__)
    encoded: dict[str, dict] = {}
    for start in range(0, len(ordered), batch_size):
        chunk = ordered[start : start + batch_size]
        batch = model.tokenize(chunk, truncate=truncate)
        with torch.no_grad():
            embeddings = model.embed(batch["input_ids"], batch["attention_mask"])
        for row, text in enumerate(chunk):
            keep = batch["attention_mask"][row].nonzero().flatten()
            encoded[text] = {
                "embeddings": embeddings[row, keep],
                "length": len(keep),
                "tokens": batch["tokens"][row],
                "word_ids": batch.get("word_ids", [None] * len(chunk))[row],
                "offsets": batch.get("offsets", [None] * len(chunk))[row],
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
        for row, text in enumerate(chunk):
            encoded[text]["contributions"] = contributions[row, : encoded[text]["length"]]
            encoded[text]["phi"] = phi[row]
        bar.update(len(chunk))
    results = []
    for text_a, text_b in pairs:
        a, b = encoded[text_a], encoded[text_b]
        relevance, score = attribution.combine(
            a["contributions"][None], b["contributions"][None], a["phi"][None], b["phi"][None]
        )
        results.append(_make_explanation(model, method, text_a, text_b, a, b, relevance[0], float(score[0])))
        bar.update(1)
    bar.close()
    return results


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
    )
