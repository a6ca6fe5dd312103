"""``Explanation``: the token-pair relevance of one similarity score, with its views and files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import _display
from ._io import json_text, write_text
from .granularity import Granularity, token_groups

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
    rules
        The rule set of an LRP explanation (:mod:`bilrp.rule_sets`; ``"custom"`` for a given composite).
    tokens_a_with_bias_b, bias_a_with_tokens_b, bias_with_bias
        The bias, decomposed (BiLRP and Integrated Jacobians; ``None`` for the other methods): each token of A
        with the bias part of B's embedding, the bias part of A's with each token of B, and the two bias
        parts together. With them and :attr:`step_error`, ``bias`` is fully accounted for
        (:meth:`decomposition`).
    step_error
        The part of the score no term carries: Integrated Jacobians' path-integration error (0 for BiLRP,
        whose decomposition is exact and certified).
    document_id
        The id of text B in a :class:`~bilrp.DocumentIndex` (an explained search result); ``None`` otherwise.

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
    rules: str = ""
    tokens_a_with_bias_b: torch.Tensor | None = field(default=None, repr=False)
    bias_a_with_tokens_b: torch.Tensor | None = field(default=None, repr=False)
    bias_with_bias: float | None = None
    step_error: float = 0.0
    document_id: str | None = None

    def __repr__(self) -> str:
        """One line: score, summed relevance, bias, numbers of tokens, method, rules and the texts."""
        total = float(self.relevance.detach().double().sum())
        parts = [
            f"score={self.score:.4f}",
            f"sum_R={total:.4f}",
            f"bias={self.bias:.4f}",
            f"tokens={len(self.tokens_a)}x{len(self.tokens_b)}",
            f"method={self.method!r}",
        ]
        parts += [f"rules={self.rules!r}"] if self.rules else []
        parts += [] if self.document_id is None else [f"document_id={self.document_id!r}"]
        parts += [f"text_a={_display.quoted(self.text_a)}", f"text_b={_display.quoted(self.text_b)}"]
        return f"Explanation({', '.join(parts)})"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any] | None:
        """Jupyter: the HTML view and the pair plot as PNG (:mod:`bilrp.plotting.notebook`), and :meth:`__repr__`."""
        return _display.mimebundle(self, include, exclude)

    def _repr_html_(self) -> str | None:
        """The HTML view (:func:`bilrp.plotting.to_html`), for tools that ask for HTML only."""
        return _display.html(self)

    @property
    def bias_share(self) -> float:
        """``|bias| / (|bias| + sum |R|)``: how much of the explanation the token pairs leave to the bias."""
        bias, total = abs(self.bias), float(self.relevance.double().abs().nansum())
        return bias / (bias + total) if bias + total > 0 else 0.0

    @property
    def has_decomposition(self) -> bool:
        """Whether the bias is decomposed into token-with-bias terms (BiLRP, Integrated Jacobians)."""
        return self.tokens_a_with_bias_b is not None and self.bias_a_with_tokens_b is not None

    def decomposition(self) -> torch.Tensor:
        """The full decomposition: ``R`` with a bias column and a bias row, ``(len(a) + 1, len(b) + 1)``.

        Entry ``[i, j]`` is token pair ``(i, j)``; the last column holds each token of A with B's bias part,
        the last row the bias part of A with each token of B, and the corner the bias with the bias. The
        matrix sums to ``score - step_error``.
        """
        if not self.has_decomposition:
            raise ValueError(
                f"explanations by {self.method!r} have no bias decomposition: use method='bilrp' (or 'ij')"
            )
        relevance = self.relevance.double()
        column = self.tokens_a_with_bias_b.double()[:, None]
        corner = torch.tensor([[self.bias_with_bias or 0.0]], dtype=torch.float64)
        top = torch.cat([relevance, column], dim=1)
        bottom = torch.cat([self.bias_a_with_tokens_b.double()[None, :], corner], dim=1)
        return torch.cat([top, bottom], dim=0)

    def _decomposition_fields(self, groups_a: torch.Tensor | None = None, groups_b: torch.Tensor | None = None):
        """The decomposition keywords, rows and columns summed by ``groups_a``/``groups_b`` when given."""
        if not self.has_decomposition:
            return {"rules": self.rules, "step_error": self.step_error}
        column, row = self.tokens_a_with_bias_b.double(), self.bias_a_with_tokens_b.double()
        return {
            "rules": self.rules,
            "tokens_a_with_bias_b": column if groups_a is None else groups_a @ column,
            "bias_a_with_tokens_b": row if groups_b is None else groups_b @ row,
            "bias_with_bias": self.bias_with_bias,
            "step_error": self.step_error,
        }

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
        return self.regroup("word", "word")

    def regroup(self, granularity_a: Granularity = "token", granularity_b: Granularity = "token") -> Explanation:
        """Sum token relevance into groups of each text: ``"word"``, ``"sentence"`` or ``(start, end)`` spans.

        Exact (the relevance of a group is the sum of its tokens'), and so is the bias decomposition. For large
        texts computing the groups directly is cheaper: ``bilrp.explain(..., granularity="sentence")``.
        """
        if self.word_ids_a is None or self.word_ids_b is None:
            raise ValueError("regrouping needs the token-level explanation (word ids and offsets of both texts)")
        text_a, text_b = self.prompt_a + self.text_a, self.prompt_b + self.text_b
        found_a = token_groups(
            self.tokens_a, self.word_ids_a, self.offsets_a, text_a, granularity_a, prompt_length=len(self.prompt_a)
        )
        found_b = token_groups(
            self.tokens_b, self.word_ids_b, self.offsets_b, text_b, granularity_b, prompt_length=len(self.prompt_b)
        )
        groups_a, groups_b = found_a.matrix, found_b.matrix
        relevance = groups_a @ self.relevance.to(groups_a.dtype) @ groups_b.T
        return Explanation(
            found_a.labels,
            found_b.labels,
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
            document_id=self.document_id,
            **self._decomposition_fields(groups_a, groups_b),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: model, method, texts, tokens, relevance rows, score and bias (and ``document_id``
        when text B is an indexed document).
        """
        data = {
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
            "rules": self.rules,
            "bias_share": self.bias_share,
            "tokens_a_with_bias_b": _list_or_none(self.tokens_a_with_bias_b),
            "bias_a_with_tokens_b": _list_or_none(self.bias_a_with_tokens_b),
            "bias_with_bias": self.bias_with_bias,
            "step_error": self.step_error,
        }
        if self.document_id is not None:
            data["document_id"] = self.document_id
        return data

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
            rules=data.get("rules", ""),
            tokens_a_with_bias_b=_tensor_or_none(data.get("tokens_a_with_bias_b")),
            bias_a_with_tokens_b=_tensor_or_none(data.get("bias_a_with_tokens_b")),
            bias_with_bias=None if data.get("bias_with_bias") is None else float(data["bias_with_bias"]),
            step_error=float(data.get("step_error") or 0.0),
            document_id=None if data.get("document_id") is None else str(data["document_id"]),
        )


def _list_or_none(values: torch.Tensor | None) -> list[float] | None:
    return None if values is None else values.double().tolist()


def _tensor_or_none(values: list | None) -> torch.Tensor | None:
    if values is None:
        return None
    return torch.tensor([float("nan") if v is None else v for v in values], dtype=torch.float64)


def _nan_for_null(rows: list) -> list:
    """Relevance rows read from JSON, where :func:`bilrp._io.json_text` wrote NaN as ``null``."""
    return [[float("nan") if value is None else value for value in row] for row in rows]
