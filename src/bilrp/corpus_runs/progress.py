"""Progress inside a chunk: a unit says how much of its chunk is done, and the local engine's bar ticks per record.

A chunk holds many records (32 pairs by default), computed together so that the engine's batches stay full; a
bar updated once per chunk sat at 0/20 for minutes and then jumped to 20/20. So a unit calls :func:`report` as
parts of its chunk finish (in records; fractions allowed, e.g. one method of five done for 16 pairs is 3.2), and
the local engine (:func:`bilrp.corpus_runs.local.run_local`) shows them on its bar in whole records, topping the
chunk up when it is delivered. Outside the local engine (a Ray actor, a unit called directly) :func:`report`
does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["WholeTicks", "report", "chunk_progress"]


class WholeTicks:
    """Pass fractional progress on to ``update`` (e.g. ``tqdm.update``) in whole units, never beyond ``total``."""

    def __init__(self, update: Callable[[int], object], total: float | None = None) -> None:
        self.update, self.total = update, total
        self.done, self.shown = 0.0, 0

    def __call__(self, amount: float) -> None:
        """Add ``amount`` (``>= 0``) and tick the whole units it completes."""
        self.done += max(float(amount), 0.0)
        if self.total is not None:
            self.done = min(self.done, self.total)
        whole = int(self.done + 1e-9)
        if whole > self.shown:
            self.update(whole - self.shown)
            self.shown = whole

    def finish(self) -> None:
        """Tick whatever is left up to ``total``."""
        if self.total is not None and int(self.total) > self.shown:
            self.update(int(self.total) - self.shown)
            self.shown = int(self.total)


_current: ContextVar[WholeTicks | None] = ContextVar("bilrp_chunk_progress", default=None)


def report(records: float) -> None:
    """Say that ``records`` more records of the chunk being computed are done (no-op outside the local engine)."""
    ticks = _current.get()
    if ticks is not None:
        ticks(records)


@contextmanager
def chunk_progress(update: Callable[[int], object], size: int) -> Iterator[WholeTicks]:
    """Show the :func:`report` calls of the block on ``update`` in whole records; a chunk of ``size`` records
    that finishes is shown complete, whatever its unit reported.
    """
    ticks = WholeTicks(update, size)
    token = _current.set(ticks)
    try:
        yield ticks
    finally:
        _current.reset(token)
    ticks.finish()
