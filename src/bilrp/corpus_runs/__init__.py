"""Corpus runs: the units of work of the corpus commands and the two engines that run them.

A corpus command (``bilrp evaluate sts|perturbation|conservation``, ``bilrp analyze pos|multilingual|quantiles``,
``bilrp index``) splits its input into :class:`~bilrp.corpus_runs.work.Record` objects (a text or a pair, with
a deterministic id) and hands chunks of them to a :class:`~bilrp.corpus_runs.work.WorkUnit`, which turns a
chunk into one encoded result row per record. The same unit runs in both engines:

- the *local* engine (:mod:`bilrp.corpus_runs.local`) runs it in this process, chunk after chunk;
- the *Ray* engine (:mod:`bilrp.corpus_runs.ray_engine`) runs it with Ray Data's ``map_batches`` on a pool of
  actors that load the model once each, and writes every chunk's rows as one Parquet shard
  (:mod:`bilrp.corpus_runs.shards`), so that a run stopped at any point resumes with the missing chunks only.

The commands then reduce the rows to their tables, JSON and figures, the same way for both engines. A run
folder records what its results depend on (the model's fingerprint, the unit and its options:
:mod:`bilrp.corpus_runs.identity`), every shard is bound to that record and checked when read back, and one
process at a time writes a folder (its lock), so nothing stale, foreign or damaged is ever read back. This
layer sits between the explainer/models and the corpus packages (``bilrp.evaluation``, ``bilrp.analysis``,
``bilrp.ranking``); it imports none of them, and Ray only inside the Ray engine.
"""

from __future__ import annotations

from .engine import ENGINES, RayOptions, RunReport, run_unit
from .work import ModelSource, Record, Row, WorkUnit, compute_rows

__all__ = ["ENGINES", "RayOptions", "RunReport", "run_unit", "ModelSource", "Record", "Row", "WorkUnit", "compute_rows"]
