"""The Ray engine: run a unit of work with Ray Data's ``map_batches`` on a pool of actors, one model each.

Each input row of the dataset is one chunk of records (the chunks the local engine computes one after
another). An actor of the pool loads the model once, in ``__init__``, from a picklable model source (a name
or folder), builds the unit's state, and turns every chunk it receives into the Parquet bytes of one shard
(:func:`bilrp.corpus_runs.shards.shard_bytes`); the driver writes each shard whole as it arrives. Actors take
one GPU each when the cluster has GPUs, one CPU otherwise. A worker process that dies is restarted by Ray and
its chunk retried (:data:`RETRIES` times); the driver reports how many workers were restarted.

Each shard an actor makes is bound to the run's identity, and carries the fingerprint of the actor's model: the
driver refuses a shard whose model differs from its own (a node holding another copy of the model folder, a
folder changed after the run started), naming the worker and what differs, before it writes anything of it.

Ray is imported here only, when a run starts: ``bilrp --help`` and the local engine never import it.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..models.fingerprint import fingerprint_difference, model_fingerprint
from .shards import RunMismatchError, read_shard, shard_bytes
from .work import Record, Row, WorkUnit, compute_rows

__all__ = [
    "RETRIES",
    "MISSING_EXTRA",
    "WorkerFailureError",
    "WorkerModelError",
    "ray_available",
    "ray_session",
    "run_ray",
]

RETRIES = 3
"""How often Ray restarts a dead worker and retries its chunk before the run fails."""
MISSING_EXTRA = "--engine ray needs Ray Data and pyarrow: install bilrp[ray] (pip install 'bilrp[ray]')"


class WorkerFailureError(OSError):
    """A Ray worker died more often than :data:`RETRIES`; the shards written so far are kept."""


class WorkerModelError(RunMismatchError):
    """A Ray worker loaded another model than the driver's (other weights, tokenizer, ...): nothing of it is kept."""


def ray_available() -> bool:
    """Whether the ``ray`` extra (Ray Data and pyarrow) is installed (checked without importing Ray)."""
    return all(importlib.util.find_spec(name) is not None for name in ("ray", "pyarrow"))


@contextmanager
def ray_session(address: str | None, workers: int) -> Iterator[Any]:
    """Connect to Ray for one run, and disconnect at the end (also on an error or Ctrl-C).

    ``address=None`` starts a local Ray instance (with at least ``workers`` CPUs) and shuts it down at the
    end; an address (``auto``, ``HOST:PORT``, ``ray://HOST:10001``) connects to that cluster. A process that
    is already connected (``ray.init`` called by the caller) keeps its connection and the caller owns it.
    """
    import ray

    if ray.is_initialized():
        yield ray
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        cpus = max(workers, os.cpu_count() or 1)  # "local": a new instance, never a cluster found on the machine
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
    else:
        ray.init(address=address, **quiet)
    try:
        yield ray
    finally:
        ray.shutdown()


class _UnitActor:
    """A Ray Data actor: loads the model once, then computes chunks of records into Parquet shards."""

    def __init__(self, unit: WorkUnit, source: Any, run: str | None = None) -> None:
        import ray

        model = source.load()
        self.fingerprint = _fingerprint_text(model)
        self.unit, self.state, self.run = unit, unit.prepare(model), run
        self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        self.pid = os.getpid()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        parts = []
        for payload in batch["records"]:
            records = [Record(key, name, tuple(texts)) for key, name, texts in json.loads(payload)]
            parts.append(shard_bytes(compute_rows(self.unit, self.state, records), self.run))
        count = len(parts)
        return {
            "part": np.array(parts, dtype=object),
            "pid": np.full(count, self.pid, dtype=np.int64),
            "restarted": np.full(count, self.restarted, dtype=bool),
            "model": np.array([self.fingerprint] * count, dtype=object),
        }


def _fingerprint_text(model: Any) -> str:
    """The JSON of a model's fingerprint (``""`` for a model that has none)."""
    try:
        return json.dumps(model_fingerprint(model), sort_keys=True)
    except AttributeError:
        return ""


def _check_worker(row: dict[str, Any], expected: dict[str, str] | None, source: Any) -> None:
    """Refuse a shard computed by a worker whose model is not the driver's (one line: the worker, what differs)."""
    if expected is None:
        return
    text = str(row["model"])
    found = json.loads(text) if text else None
    difference = fingerprint_difference(found, expected) if found else "a model without a fingerprint"
    if difference is not None:
        where = getattr(source, "name", None) or source
        raise WorkerModelError(
            f"Ray worker pid {int(row['pid'])} loaded another model than this process from {where!r} "
            f"({difference}): make the model the same on every node (or pass the model folder shared by all); "
            "nothing of that worker was written"
        )


def _resources(ray: Any) -> dict[str, float]:
    """One GPU per actor when the cluster has GPUs, else one CPU."""
    return {"num_gpus": 1, "num_cpus": 1} if ray.cluster_resources().get("GPU", 0) > 0 else {"num_cpus": 1}


def default_workers(ray: Any) -> int:
    """One actor per GPU of the cluster, else one per CPU."""
    resources = ray.cluster_resources()
    return max(1, int(resources.get("GPU", 0) or resources.get("CPU", 1)))


def run_ray(
    unit: WorkUnit,
    source: Any,
    chunks: Sequence[Sequence[Record]],
    deliver: Callable[[list[Row], bytes | None], None],
    address: str | None = None,
    workers: int | None = None,
    run: str | None = None,
    fingerprint: dict[str, str] | None = None,
) -> int:
    """Compute every chunk on a Ray actor pool and hand each chunk's rows (and shard bytes) on as it arrives.

    Parameters
    ----------
    unit
        The unit of work (picklable).
    source
        What the actors load the model from: a picklable object with ``load()`` (a model name or folder).
    chunks
        The chunks of records to compute.
    deliver
        Called on the driver with each chunk's rows and its Parquet bytes.
    address, workers
        The cluster (``None``: a local Ray instance started for the run) and the number of actors (``None``:
        one per GPU, else one per CPU of the cluster; never more than there are chunks).
    run
        The run identity every shard is bound to (checked on the driver before ``deliver``).
    fingerprint
        The driver's model fingerprint: a shard of an actor whose model differs is refused
        (:class:`WorkerModelError`). ``None``: not checked.

    Returns
    -------
    int
        How many worker processes Ray restarted after they died (their chunks were retried).

    """
    if not chunks:
        return 0
    with ray_session(address, workers or 1) as ray:
        from ray.exceptions import RayActorError

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        for name in ("ray", "ray.data"):  # no INFO lines of the executor on the command's stderr
            logging.getLogger(name).setLevel(logging.WARNING)
        size = min(workers or default_workers(ray), len(chunks))
        items = [{"records": json.dumps([[r.key, r.id, list(r.texts)] for r in chunk])} for chunk in chunks]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _UnitActor,
            fn_constructor_kwargs={"unit": unit, "source": source, "run": run},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=size),
            max_restarts=RETRIES,
            max_task_retries=RETRIES,
            **_resources(ray),
        )
        pids, restarted = set(), set()
        try:
            for row in dataset.iter_rows():
                _check_worker(row, fingerprint, source)
                data = bytes(row["part"])
                deliver(read_shard(io.BytesIO(data), run), data)
                pids.add(int(row["pid"]))
                if row["restarted"]:
                    restarted.add(int(row["pid"]))
        except RayActorError as error:
            raise WorkerFailureError(
                f"a Ray worker died more than {RETRIES} times ({' '.join(str(error).split())[:200]}); the shards "
                "written so far are kept: run the command again to resume"
            ) from None
    return max(len(restarted), len(pids) - size)
