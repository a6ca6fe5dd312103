"""The limits of one ``bilrp serve`` server: how long, how large and how many at once.

This module imports nothing heavy, so the command line can build and check the settings before any model
loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._validation import positive_int, positive_number
from .policy import check_allowed_host, check_allowed_origin

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
    allowed_hosts
        Host names the server answers besides ``localhost``, ``127.0.0.1``, ``[::1]`` and the address a
        connection came to (:mod:`bilrp.server.policy`): ``name`` (any port), ``name:port``, or ``"*"`` (any
        host: only behind a proxy that checks the host itself). ``bilrp serve --allow-host``.
    allowed_origins
        Origins (``scheme://host[:port]``) whose web pages may call the API besides the page's own.
        ``bilrp serve --allow-origin``.

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
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

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
        for name, check in (("allowed_hosts", check_allowed_host), ("allowed_origins", check_allowed_origin)):
            entries = getattr(self, name)
            if isinstance(entries, str) or not isinstance(entries, list | tuple):
                raise ValueError(f"{name} must be a list of strings, not {entries!r}")
            for entry in entries:
                check(entry)
            object.__setattr__(self, name, tuple(entries))

    def limits(self) -> dict[str, float | int]:
        """The limits ``/api/health`` reports."""
        return {
            "timeout_s": self.timeout_s,
            "max_body_bytes": self.max_body_bytes,
            "max_text_chars": self.max_text_chars,
            "max_top_k": self.max_top_k,
        }
