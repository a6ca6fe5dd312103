"""Explanations at a granularity: the encoded texts of :mod:`bilrp.explainer` regrouped into words, sentences or spans.

:func:`attach_groups` gives every encoded text its token groups (:mod:`bilrp.granularity`) and replaces its
tokens by the groups' labels; :func:`padded_groups` stacks a batch's groups for the engine, which pushes each
group through as one tangent; :func:`group_relevance` sums a token-level matrix into groups for the methods that
are computed pair by pair.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .granularity import GRANULARITIES, Granularity, check_granularity, token_groups

__all__ = ["GranularityLike", "resolve_granularity", "attach_groups", "padded_groups", "group_relevance"]

GranularityLike = str | Callable[[str], Sequence[tuple[int, int]]] | tuple[Granularity, Granularity]
"""``"token"``, ``"word"``, ``"sentence"``, a function ``text -> (start, end) spans``, or (in :func:`~bilrp.explain`)
a pair ``(for text A, for text B)`` of any of these or of span lists."""


def resolve_granularity(
    granularity: GranularityLike, pairs: Sequence[tuple[str, str]]
) -> Callable[[str], Granularity] | None:
    """A function giving each text's granularity, or ``None`` for token level (a one-line error if invalid)."""
    if isinstance(granularity, str):
        check_granularity(granularity)
        return None if granularity == "token" else (lambda text: granularity)
    if callable(granularity):
        return lambda text: check_granularity(list(granularity(text)))
    if isinstance(granularity, tuple) and len(granularity) == 2:
        if len(pairs) != 1:
            raise ValueError("a pair of granularities (for text A, for text B) is for one pair of texts: use explain")
        (text_a, text_b), (first, second) = pairs[0], granularity
        first, second = check_granularity(first), check_granularity(second)
        if text_a == text_b and first != second:
            raise ValueError("the two texts are the same, so they need the same granularity")
        return lambda text: first if text == text_a else second
    raise ValueError(
        f"granularity must be one of {', '.join(GRANULARITIES)}, a function text -> spans, or a pair for text A "
        f"and text B, not {type(granularity).__name__}"
    )


def attach_groups(encoded: dict, granularity_of: Callable[[str], Granularity]) -> None:
    """Give every encoded text (``{(prompt name, text): entry}``) its token groups, in place.

    The entry keeps its token-level ``embeddings`` and ``length`` and gets ``groups`` ``(groups, length)``; its
    ``tokens`` become the group labels, its prompt length counts the groups that hold prompt tokens, and word
    ids and offsets (token-level) are dropped.
    """
    for (_, text), entry in encoded.items():
        prompt = entry["prompt"]
        found = token_groups(
            entry["tokens"], entry["word_ids"], entry["offsets"], prompt + text, granularity_of(text), len(prompt)
        )
        prompt_groups = int(found.matrix[:, : entry["prompt_length"]].any(1).sum())
        entry.update(
            groups=found.matrix, tokens=found.labels, word_ids=None, offsets=None, prompt_length=prompt_groups
        )


def padded_groups(entries: Sequence[dict], width: int, dtype: torch.dtype, device) -> torch.Tensor | None:
    """``(batch, max groups, width)`` of a batch's entries (``None`` when they have no groups)."""
    if not entries or "groups" not in entries[0]:
        return None
    count = max(entry["groups"].shape[0] for entry in entries)
    groups = torch.zeros(len(entries), count, width, dtype=dtype, device=device)
    for row, entry in enumerate(entries):
        matrix = entry["groups"]
        groups[row, : matrix.shape[0], : matrix.shape[1]] = matrix.to(dtype=dtype, device=device)
    return groups


def units(entry: dict) -> int:
    """Rows of an entry's factor: its groups, or its tokens."""
    return entry["groups"].shape[0] if "groups" in entry else entry["length"]


def group_relevance(relevance: torch.Tensor, a: dict, b: dict) -> torch.Tensor:
    """A token-level ``(len_a, len_b)`` matrix summed into the two entries' groups (as it is without groups)."""
    if "groups" in a:
        relevance = a["groups"].to(relevance) @ relevance
    if "groups" in b:
        relevance = relevance @ b["groups"].to(relevance).T
    return relevance
