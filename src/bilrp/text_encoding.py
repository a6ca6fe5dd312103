"""Texts tokenized and embedded once each: the per-text entries that :mod:`bilrp.explainer` explains from."""

from __future__ import annotations

from typing import TypedDict

import torch

from .models import SimilarityModel

__all__ = ["TextFactor", "encode_texts"]


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
