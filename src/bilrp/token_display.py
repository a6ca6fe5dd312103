"""How tokens are shown to people: readable labels, special tokens, and the colours of the two signs.

The pictures (:mod:`bilrp.plotting`), the command line's summaries and the explorer show tokens the same way:
as the tokenizer writes them, except that the word-start markers of byte-level BPE and SentencePiece (``Ġ``,
``▁``) are dropped, and special tokens (``[CLS]``, ``</s>``, ...) are told apart. This module imports nothing, so
every layer may use it.
"""

from __future__ import annotations

import re

__all__ = ["display_token", "is_special_token", "POSITIVE_COLOR", "NEGATIVE_COLOR", "SPECIAL_COLOR", "LABEL_CHARACTERS"]

POSITIVE_COLOR = "#c0272d"
"""Colour of pairs that raise the similarity (``R > 0``)."""
NEGATIVE_COLOR = "#1f5fa8"
"""Colour of pairs that lower the similarity (``R < 0``)."""
SPECIAL_COLOR = "#8a8a8a"
"""Colour of special tokens' labels."""
LABEL_CHARACTERS = 48
"""Longer labels (sentences, spans) are cut to this many characters."""

_SPECIAL_PATTERN = re.compile(r"^(\[[A-Za-z_]+\]|<\|?/?[A-Za-z_]+\|?>)$")
_WORD_START_MARKERS = ("Ġ", "▁")


def display_token(token: str) -> str:
    r"""The label shown for a token: word-start markers (``Ġ``, ``▁``) dropped, a newline shown as ``\n``."""
    shown = token.replace("\n", "\\n").replace("Ċ", "\\n")
    for marker in _WORD_START_MARKERS:
        shown = shown.removeprefix(marker)
    shown = shown.replace(_WORD_START_MARKERS[0], " ").replace(_WORD_START_MARKERS[1], " ") or "␣"
    return shown if len(shown) <= LABEL_CHARACTERS else shown[: LABEL_CHARACTERS - 1] + "…"  # a sentence


def is_special_token(token: str) -> bool:
    """Whether a token looks like a tokenizer's special token (``[CLS]``, ``[SEP]``, ``<s>``, ``<|endoftext|>``)."""
    return bool(_SPECIAL_PATTERN.match(token))
