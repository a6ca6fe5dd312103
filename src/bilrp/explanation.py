"""``Explanation``: the token-pair relevance of one similarity score, with its views and files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._io import json_text, write_text

__all__ = ["Explanation", "TokenPair"]



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
    prompt_a, prompt_b, prompt_length_a, prompt_length_b
        The prompt put before each text and how many of the first tokens (or words) hold it; prompt tokens
        are explained like the text's own.

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
    prompt_a: str = ""
    prompt_b: str = ""
    prompt_length_a: int = 0
    prompt_length_b: int = 0

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
        groups_a, words_a = _group(self.tokens_a, self.word_ids_a, self.offsets_a, self.prompt_a + self.text_a)
        groups_b, words_b = _group(self.tokens_b, self.word_ids_b, self.offsets_b, self.prompt_b + self.text_b)
        relevance = groups_a @ self.relevance.to(groups_a.dtype) @ groups_b.T
        return Explanation(
            words_a,
            words_b,
            relevance,
            self.score,
            self.bias,
            self.text_a,
            self.text_b,
            self.model,
            self.method,
            prompt_a=self.prompt_a,
            prompt_b=self.prompt_b,
            prompt_length_a=int(groups_a[:, : self.prompt_length_a].any(1).sum()),
            prompt_length_b=int(groups_b[:, : self.prompt_length_b].any(1).sum()),
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
            "prompt_a": self.prompt_a,
            "prompt_b": self.prompt_b,
            "prompt_length_a": self.prompt_length_a,
            "prompt_length_b": self.prompt_length_b,
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
            torch.tensor(_nan_for_null(data["relevance"]), dtype=torch.float64),
            float(data["score"]),
            float(data["bias"]),
            data.get("text_a", ""),
            data.get("text_b", ""),
            data.get("model", ""),
            data.get("method", ""),
            prompt_a=data.get("prompt_a", ""),
            prompt_b=data.get("prompt_b", ""),
            prompt_length_a=int(data.get("prompt_length_a", 0)),
            prompt_length_b=int(data.get("prompt_length_b", 0)),
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


def _nan_for_null(rows: list) -> list:
    """Relevance rows read from JSON, where :func:`bilrp._io.json_text` wrote NaN as ``null``."""
    return [[float("nan") if value is None else value for value in row] for row in rows]


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
