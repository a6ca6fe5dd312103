"""Groups of tokens (words, sentences, character spans) that relevance is reported for.

Under frozen rules the network is linear in its input, so the contribution of a group of tokens is exactly the
sum of its tokens' contributions, and the engine can push a whole group through as one tangent. This module
only says which tokens form which group: a ``(groups, tokens)`` 0/1 matrix whose rows partition the tokens,
with a label per group. Special tokens (``[CLS]``, ``[SEP]``, no character span) always stay on their own, and
so does any token outside every given span, so no relevance is lost.

- ``"token"``: every token is its own group;
- ``"word"``: the tokenizer's words (a fast tokenizer's word ids);
- ``"sentence"``: sentences found by spaCy's rule-based sentencizer (no trained pipeline needed);
- a list of ``(start, end)`` character spans of the text, chosen by the user (a paragraph, a passage window).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ._catalog import GRANULARITY_NAMES

__all__ = ["GRANULARITIES", "Granularity", "TokenGroups", "token_groups", "sentence_spans", "check_granularity"]

GRANULARITIES = GRANULARITY_NAMES
"""The named granularities; a list of character spans is the fourth kind."""

Granularity = str | Sequence[tuple[int, int]]


@dataclass(frozen=True)
class TokenGroups:
    """A partition of a text's tokens into groups.

    Attributes
    ----------
    matrix
        ``(groups, tokens)`` float64, 1 where the token belongs to the group; every column has one 1.
    labels
        The text of each group (the token itself for special tokens).

    """

    matrix: torch.Tensor
    labels: list[str]


def check_granularity(granularity: Granularity) -> Granularity:
    """``granularity`` if it is a named granularity or a list of ``(start, end)`` spans, else a ``ValueError``."""
    if isinstance(granularity, str):
        if granularity not in GRANULARITIES:
            raise ValueError(
                f"unknown granularity {granularity!r}: choose one of {', '.join(GRANULARITIES)} or give "
                "(start, end) character spans"
            )
        return granularity
    spans = list(granularity)
    for span in spans:
        if (
            not isinstance(span, (tuple, list))
            or len(span) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)
            or not 0 <= span[0] < span[1]
        ):
            raise ValueError(f"span {span!r} is not a (start, end) pair of character positions with start < end")
    ordered = sorted(spans)
    if any(first[1] > second[0] for first, second in zip(ordered, ordered[1:], strict=False)):
        raise ValueError("character spans overlap: give spans that do not share characters")
    return [tuple(span) for span in spans]


@functools.cache
def _sentencizer(lang: str):
    import spacy

    nlp = spacy.blank(lang)
    nlp.add_pipe("sentencizer")
    return nlp


def sentence_spans(text: str, lang: str = "en") -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (spaCy's rule-based sentencizer)."""
    return [(sentence.start_char, sentence.end_char) for sentence in _sentencizer(lang)(text).sents]


def token_groups(
    tokens: Sequence[str],
    word_ids: Sequence[int | None] | None,
    offsets: Sequence[tuple[int, int]] | None,
    text: str,
    granularity: Granularity = "token",
    prompt_length: int = 0,
) -> TokenGroups:
    """The groups of ``tokens`` at ``granularity``.

    Parameters
    ----------
    tokens, word_ids, offsets
        The tokenizer's tokens, word ids and character offsets into ``text`` (fast tokenizers give them).
    text
        The text the offsets refer to (the prompt included, if any).
    granularity
        ``"token"``, ``"word"``, ``"sentence"`` or character spans of ``text[prompt_length:]``.
    prompt_length
        Characters of ``text`` that are the prompt; spans and sentences are found in the rest.

    """
    granularity = check_granularity(granularity)
    if granularity == "token":
        return TokenGroups(torch.eye(len(tokens), dtype=torch.float64), list(tokens))
    if word_ids is None or (offsets is None and granularity != "word"):
        raise ValueError(f"granularity {granularity!r} needs word ids and offsets from a fast tokenizer")
    if granularity == "word":
        keys = [("special", p) if word is None else ("word", word) for p, word in enumerate(word_ids)]
    else:
        spans = sentence_spans(text[prompt_length:]) if granularity == "sentence" else granularity
        spans = [(start + prompt_length, end + prompt_length) for start, end in spans]
        keys = [_span_key(position, word_ids[position], offsets[position], spans) for position in range(len(tokens))]
    return _groups(keys, tokens, offsets, text)


def _span_key(position: int, word_id: int | None, offset: tuple[int, int], spans: list[tuple[int, int]]) -> tuple:
    """The group of one token: the span its first character lies in, or itself."""
    if word_id is None or offset[1] <= offset[0]:
        return ("special", position)
    for index, (start, end) in enumerate(spans):
        if start <= offset[0] < end:
            return ("span", index)
    return ("outside", position)


def _groups(keys: list[tuple], tokens: Sequence[str], offsets, text: str) -> TokenGroups:
    """The partition with one group per distinct key, in order of first appearance, and its labels."""
    index_of: dict[tuple, int] = {}
    members: list[list[int]] = []
    for position, key in enumerate(keys):
        if key not in index_of:
            index_of[key] = len(members)
            members.append([])
        members[index_of[key]].append(position)
    labels = []
    for key, positions in zip(index_of, members, strict=True):
        if key[0] == "special":
            labels.append(tokens[positions[0]])
        elif offsets is not None and text:
            labels.append(text[offsets[positions[0]][0] : offsets[positions[-1]][1]])
        else:
            labels.append("".join(tokens[p] for p in positions))
    matrix = torch.zeros(len(members), len(tokens), dtype=torch.float64)
    for group, positions in enumerate(members):
        matrix[group, positions] = 1.0
    return TokenGroups(matrix, labels)
