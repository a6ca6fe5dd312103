"""How an evaluation runs its unit of work: in this process or on Ray, and what it tells about the run.

:func:`run_evaluation` hands the unit and its records to :func:`bilrp.corpus_runs.run_unit` (Ray runs keep
their Parquet shards in ``shards``, resumable) and returns the report; :func:`run_files` adds the table of
refused records (``failures.json``) to an evaluation's output files when there are any.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .._io import json_text
from ..corpus_runs import RayOptions, Record, RunReport, WorkUnit, run_unit
from ..corpus_runs.identity import model_identity
from ..models import SimilarityModel

__all__ = ["run_evaluation", "run_files", "report_lines", "PAIRS_PER_SHARD"]

PAIRS_PER_SHARD = 32
"""Pairs per chunk of the pair evaluations (one unit call; one shard of a Ray run)."""


def run_evaluation(
    unit: WorkUnit,
    model: SimilarityModel,
    records: Sequence[Record],
    ray: RayOptions | None = None,
    shards: str | Path | None = None,
    shard_size: int = PAIRS_PER_SHARD,
    progress: bool = False,
) -> RunReport:
    """Run ``unit`` over ``records`` locally (``ray=None``) or on Ray, with shards in ``shards`` if given.

    The shard folder's ``run.json`` records the unit, its options and the model's fingerprint (weights,
    tokenizer, pooling, head, similarity, maximum length, prompts): a rerun with anything else is refused, and
    every shard is bound to that record (:mod:`bilrp.corpus_runs.identity`).
    """
    if ray is not None and shards is None:
        raise ValueError("a Ray evaluation keeps its shards in a folder: give shards=")
    meta = model_identity(model) if shards is not None else None
    return run_unit(
        unit, records, model=model, ray=ray, folder=shards, meta=meta, shard_size=shard_size, progress=progress
    )


def run_files(report: RunReport | None) -> dict[str, str]:
    """``{"failures.json": ...}`` listing the refused records (id and reason), or ``{}`` when none was."""
    if report is None or not report.failures:
        return {}
    return {"failures.json": json_text(report.failure_table())}


def report_lines(report: RunReport | None) -> list[str]:
    """The lines the command prints on stderr about the run (failures, engine summary)."""
    return [] if report is None else report.lines()
