"""Align tokenizer subtokens with tagged words by character offsets, so every subtoken gets a POS tag.

Each subtoken belongs to a tokenizer word (``word_ids``) and covers characters ``offsets[i]`` of the text.
It takes the tag of the tagged span (a spaCy token) it overlaps most; a subtoken that overlaps none (an
empty span, or only whitespace) takes the tag of its word's other subtokens, else of the next tagged span.
Special tokens (``word_ids[i] is None``: ``[CLS]``, ``[SEP]``, ``<s>``, ``</s>``, ...) keep their own token
as tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..explanation import Explanation
from .tagging import TaggedSpan, Tagger

__all__ = ["Alignment", "align", "tag_explanation"]


@dataclass(frozen=True)
class Alignment:
    """Per subtoken: its tag, its tokenizer word and the index of its tagged span.

    Attributes
    ----------
    tokens
        The tokenizer tokens.
    tags
        UPOS tag per token; a special token's tag is the token itself.
    words
        Tokenizer word index per token (``None`` for special tokens).
    spans
        Index into the tagged spans per token (``None`` for special tokens and tokens without text).

    """

    tokens: list[str]
    tags: list[str]
    words: list[int | None]
    spans: list[int | None]


def _best_span(start: int, end: int, spans: Sequence[TaggedSpan]) -> int | None:
    best, best_overlap = None, 0
    for index, span in enumerate(spans):
        overlap = min(end, span.end) - max(start, span.start)
        if overlap > best_overlap:
            best, best_overlap = index, overlap
    return best


def align(
    tokens: Sequence[str],
    word_ids: Sequence[int | None],
    offsets: Sequence[tuple[int, int]],
    spans: Sequence[TaggedSpan],
) -> Alignment:
    """Give every tokenizer token the tag of the tagged span it overlaps most.

    Parameters
    ----------
    tokens
        Tokenizer tokens, special tokens included.
    word_ids
        Word index per token, ``None`` for special tokens (a fast tokenizer's ``word_ids()``).
    offsets
        Character span ``(start, end)`` per token in the text (the offset mapping).
    spans
        The tagger's tokens of the same text (see :class:`~bilrp.analysis.tagging.Tagger`).

    """
    if not len(tokens) == len(word_ids) == len(offsets):
        raise ValueError(
            f"tokens, word_ids and offsets differ in length ({len(tokens)}, {len(word_ids)}, {len(offsets)})"
        )
    chosen: list[int | None] = [
        None if word is None else _best_span(start, end, spans)
        for word, (start, end) in zip(word_ids, offsets, strict=True)
    ]
    by_word: dict[int, int] = {}
    for word, span in zip(word_ids, chosen, strict=True):
        if word is not None and span is not None:
            by_word.setdefault(word, span)
    tags = []
    for position, (token, word) in enumerate(zip(tokens, word_ids, strict=True)):
        if word is None:
            tags.append(token)
            continue
        if chosen[position] is None:
            start = offsets[position][0]
            following = [i for i, span in enumerate(spans) if span.end > start]
            chosen[position] = by_word.get(word, following[0] if following else (len(spans) - 1 if spans else None))
        tags.append("X" if chosen[position] is None else spans[chosen[position]].tag)
    return Alignment(list(tokens), tags, list(word_ids), chosen)


def tag_explanation(
    explanation: Explanation, tagger_a: Tagger, tagger_b: Tagger | None = None
) -> tuple[list[str], list[str]]:
    """POS tags of the tokens of both texts of an explanation (``tagger_b`` defaults to ``tagger_a``).

    Returns
    -------
    tuple of list of str
        ``(tags_a, tags_b)``, one tag per token of ``tokens_a`` and ``tokens_b``.

    """
    tagger_b = tagger_b or tagger_a
    sides = []
    for tokens, words, offsets, text, tagger in (
        (explanation.tokens_a, explanation.word_ids_a, explanation.offsets_a, explanation.text_a, tagger_a),
        (explanation.tokens_b, explanation.word_ids_b, explanation.offsets_b, explanation.text_b, tagger_b),
    ):
        if words is None or offsets is None or not text:
            raise ValueError("POS alignment needs texts, word ids and offsets: explain with a fast tokenizer")
        sides.append(align(tokens, words, offsets, tagger(text)).tags)
    return sides[0], sides[1]
