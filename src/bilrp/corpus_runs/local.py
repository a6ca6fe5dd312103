"""The embedded engine: run a unit of work in this process, one chunk after another."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tqdm.auto import tqdm

from .progress import chunk_progress
from .work import Record, Row, WorkUnit, compute_rows

__all__ = ["run_local"]


def run_local(
    unit: WorkUnit,
    model: Any,
    chunks: Sequence[Sequence[Record]],
    deliver: Callable[[list[Row], bytes | None], None],
    progress: bool = False,
) -> None:
    """Compute every chunk with ``unit`` on ``model`` (its state built once) and hand each chunk's rows on.

    Parameters
    ----------
    unit
        The unit of work.
    model
        The loaded model (:meth:`~bilrp.corpus_runs.work.WorkUnit.prepare` builds the state from it).
    chunks
        The chunks of records to compute, in order.
    deliver
        Called with each chunk's rows (and ``None``: the shard bytes are not made here) as soon as it is done.
    progress
        Show a progress bar (records): it ticks as the unit reports parts of a chunk done
        (:func:`bilrp.corpus_runs.progress.report`), and at the latest when the chunk is delivered.

    """
    if not chunks:
        return
    state = unit.prepare(model)
    total = sum(len(chunk) for chunk in chunks)
    with tqdm(total=total, unit="record", desc=f"computing ({unit.name})", disable=not progress) as bar:
        for chunk in chunks:
            with chunk_progress(bar.update, len(chunk)):
                rows = compute_rows(unit, state, chunk)
            deliver(rows, None)
