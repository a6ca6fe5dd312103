"""Run a unit of work over records with the chosen engine, resuming from a shard folder, and report the run.

:func:`run_unit` is what the corpus commands call: ``ray=None`` runs the embedded engine in this process
(with the model already loaded), :class:`RayOptions` runs the Ray engine (the actors load the model from
``RayOptions.source``). With a ``folder``, every computed chunk is written there as a Parquet shard and a
rerun computes only the records no complete shard holds; the Ray engine always needs one. The run holds the
folder's lock while it runs (a second writer is refused), and reads back only shards bound to its identity
(:mod:`bilrp.corpus_runs.identity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .identity import plain
from .shards import ShardStore, shard_bytes
from .work import Record, Row, WorkUnit

__all__ = ["ENGINES", "RayOptions", "RunReport", "run_unit"]

ENGINES = ("local", "ray")
"""``--engine`` choices: the embedded single-process engine (the default) and Ray."""


@dataclass(frozen=True)
class RayOptions:
    """Run on Ray: the model source the actors load, the cluster address and the number of actors.

    Parameters
    ----------
    source
        A picklable object with ``load()`` returning the model (:class:`~bilrp.corpus_runs.work.ModelSource`).
    address
        ``None`` starts a local Ray instance for the run (and shuts it down); ``"auto"``, ``"HOST:PORT"`` or
        ``"ray://HOST:10001"`` connects to a running cluster.
    workers
        Actors (model copies); ``None``: one per GPU of the cluster, else one per CPU.

    """

    source: Any
    address: str | None = None
    workers: int | None = None


@dataclass
class RunReport:
    """The rows of a run's records, and what the run did: shards computed and read back, failures, restarts."""

    engine: str
    rows: dict[int, Row] = field(default_factory=dict)
    computed: int = 0
    reused: int = 0
    restarts: int = 0
    folder: Path | None = None

    @property
    def failures(self) -> list[Row]:
        """The refused records (an empty text, ...), in key order."""
        return [self.rows[key] for key in sorted(self.rows) if not self.rows[key].ok]

    def results(self, unit: WorkUnit) -> dict[int, Any]:
        """The decoded result of every computed record, by key (in key order)."""
        return {key: unit.decode(self.rows[key].data) for key in sorted(self.rows) if self.rows[key].ok}

    def failure_table(self) -> list[dict[str, str]]:
        """``{"id", "error"}`` per failed record (for ``failures.json``)."""
        return [{"id": row.id, "error": row.error or ""} for row in self.failures]

    def lines(self) -> list[str]:
        """What to tell the user (stderr): one line per failed record, then (Ray) the engine's summary."""
        lines = [f"record {row.id}: {row.error}; skipped" for row in self.failures]
        if self.engine == "local":
            return lines
        where = f" in {self.folder}" if self.folder is not None else ""
        summary = f"{self.engine}: {self.computed} shard(s) computed, {self.reused} read back{where}"
        if self.restarts:
            summary += f"; {self.restarts} worker(s) died and were restarted by Ray, their shards retried"
        return [*lines, summary]


def run_unit(
    unit: WorkUnit,
    records: Sequence[Record],
    *,
    model: Any = None,
    ray: RayOptions | None = None,
    folder: str | Path | None = None,
    meta: dict[str, Any] | None = None,
    run: str | None = None,
    shard_size: int = 32,
    progress: bool = False,
) -> RunReport:
    """Compute ``unit`` for every record (the missing ones only, when ``folder`` holds shards of the run).

    Parameters
    ----------
    unit, records
        The unit of work and its inputs (keys unique).
    model
        The loaded model, for the local engine. With the Ray engine, every actor's model must have its
        fingerprint (:func:`~bilrp.models.fingerprint.model_fingerprint`; checked).
    ray
        Run on Ray with these options (``None``: the local engine).
    folder
        The shard folder (``None``: keep the rows in memory; the Ray engine needs a folder).
    meta
        What the run computes besides the unit (the model and its fingerprint,
        :func:`~bilrp.corpus_runs.identity.model_identity`), recorded in ``folder/run.json`` and compared by
        later runs; every shard is bound to it. ``None`` leaves the folder's check to the caller.
    run
        With ``meta=None``: the identity of the caller's run (its record's
        :func:`~bilrp.corpus_runs.identity.run_digest`), which every shard written and read must carry.
    shard_size
        Records per chunk (one unit call, one shard).
    progress
        Show the local engine's progress bar.

    """
    if ray is None and model is None:
        raise ValueError("the local engine needs the loaded model")
    if ray is not None and folder is None:
        raise ValueError("the Ray engine writes shards: give a folder for them")
    store = None
    if folder is not None:
        full = None if meta is None else {"unit": unit.name, "options": plain(unit.options()), **meta}
        store = ShardStore(folder, full, run)
    if store is None:
        return _run(unit, records, model, ray, None, shard_size, progress)
    with store.open():
        return _run(unit, records, model, ray, store, shard_size, progress)


def _run(
    unit: WorkUnit,
    records: Sequence[Record],
    model: Any,
    ray: RayOptions | None,
    store: ShardStore | None,
    shard_size: int,
    progress: bool,
) -> RunReport:
    """:func:`run_unit` once the store (if any) is open: read back the done records, compute the others."""
    report = RunReport("ray" if ray is not None else "local", folder=None if store is None else store.folder)
    done = store.rows(records) if store is not None else {}
    report.rows.update(done)
    report.reused = store.files_read if store is not None else 0
    todo = [record for record in records if record.key not in done]
    chunks = [todo[start : start + shard_size] for start in range(0, len(todo), shard_size)]
    run = None if store is None else store.run

    def deliver(rows: list[Row], data: bytes | None) -> None:
        if store is not None:
            store.write(rows[0].key, rows[-1].key, data if data is not None else shard_bytes(rows, run))
        report.rows.update((row.key, row) for row in rows)
        report.computed += 1

    if ray is None:
        from .local import run_local

        run_local(unit, model, chunks, deliver, progress)
    else:
        from .ray_engine import run_ray

        expected = None if model is None else _fingerprint(model)
        report.restarts = run_ray(unit, ray.source, chunks, deliver, ray.address, ray.workers, run, expected)
    return report


def _fingerprint(model: Any) -> dict[str, str] | None:
    """The model's fingerprint, which the Ray actors' models must have; ``None`` for a model without one."""
    from ..models.fingerprint import model_fingerprint

    try:
        return model_fingerprint(model)
    except AttributeError:  # not a SimilarityModel (no tokenizer, pooling, ...): nothing to compare
        return None
