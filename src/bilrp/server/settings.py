"""The limits of one ``bilrp serve`` server: how long, how large and how many at once.

This module imports nothing heavy, so the command line can build and check the settings before any model
loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._validation import positive_int, positive_number

__all__ = ["ServerSettings"]


@dataclass(frozen=True)
class ServerSettings:
    """What one server accepts and how it runs the work.

    Parameters
    ----------
    timeout_s
        Seconds a request may take, waiting for its turn included; a longer one is stopped (its explanation
        stops at the next module call) and answered with 504.
    max_body_bytes
        The largest request body; a larger one is answered with 413 before it is read in full.
    max_text_chars
        The longest text (``text_a``, ``text_b``, ``query``) in characters; a longer one gets 422. Texts
        shorter than this but longer than the model's maximum number of tokens are truncated, with a note.
    max_top_k
        The largest ``top_k`` of ``/api/rank``.
    auto_word_from
        Granularity ``"auto"`` explains words instead of tokens when either text has more words than this.
    auto_sentence_from
        ... and sentences instead of words when either text has more words than this (the cost grows with the
        number of groups: a 150-word pair takes about 30 s by words, 1 s by sentences on 2 cores); ``None``:
        never.
    workers
        Explanations computed at once (threads). bilrp runs explanations one at a time anyway (a process-wide
        lock, ``docs/guarantees.md``), so more workers only let figures render beside an explanation.
    cache_size
        Recent explanations kept, so that a download after an explain does not compute it again.
    rules
        The rule set of BiLRP explanations whose request names none (``None``: the model family's).

    """

    timeout_s: float = 30.0
    max_body_bytes: int = 64 * 1024
    max_text_chars: int = 20_000
    max_top_k: int = 50
    auto_word_from: int = 40
    auto_sentence_from: int | None = 80
    workers: int = 1
    cache_size: int = 32
    rules: str | None = None

    def __post_init__(self) -> None:
        positive_number("timeout_s", self.timeout_s)
        for name in ("max_body_bytes", "max_text_chars", "max_top_k", "auto_word_from", "workers", "cache_size"):
            positive_int(name, getattr(self, name))
        if self.auto_sentence_from is not None:
            positive_int("auto_sentence_from", self.auto_sentence_from)
            if self.auto_sentence_from < self.auto_word_from:
                raise ValueError(
                    f"auto_sentence_from ({self.auto_sentence_from}) must be at least auto_word_from "
                    f"({self.auto_word_from}), or None"
                )
        if self.rules is not None and not isinstance(self.rules, str):
            raise ValueError(f"rules must be a rule-set name or None, not {self.rules!r}")

    def limits(self) -> dict[str, float | int]:
        """The limits ``/api/health`` reports."""
        return {
            "timeout_s": self.timeout_s,
            "max_body_bytes": self.max_body_bytes,
            "max_text_chars": self.max_text_chars,
            "max_top_k": self.max_top_k,
        }
