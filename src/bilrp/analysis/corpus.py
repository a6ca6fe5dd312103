"""Explain every pair of a dataset, writing shards to disk as it goes, so that an interrupted run resumes.

A run lives in one folder: ``meta.json`` (model, pooling, similarity, method) and shards holding one record
per pair (index, gold score and the explanation with word ids and character offsets): the local engine writes
``shard-<first>-<last>.jsonl`` (one JSON record a line), the Ray engine ``part-<first>-<last>.parquet``
(:mod:`bilrp.corpus_runs.shards`, the same JSON in the ``data`` column). A shard appears whole or not at all
(written under a temporary name, then renamed), so a run stopped at any point leaves only complete shards;
the next run, with either engine, explains only the pairs that no shard holds. The pairs of one folder must
stay the same (checked), while their number may grow: a run with ``limit=100`` is continued by a run over the
whole dataset. Both engines compute with the same unit of work (:class:`ExplainPairs`); a pair with an empty
text is recorded as failed (a line ``{"index", "id", "error"}``; :func:`corpus_failures`), warned about, and
left out of the records.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .. import datasets
from .._integrity import folder_lock
from .._io import json_text, write_text
from .._validation import optional_positive_int, positive_int
from ..corpus_runs import RayOptions, Record, Row, WorkUnit, compute_rows, run_unit
from ..explainer import explain_batch
from ..explanation import Explanation
from ..models import SimilarityModel
from .run_files import (
    CorpusMismatchError,
    CorpusRecord,
    DamagedRunError,
    check_meta,
    corpus_failures,
    explanation_dict,
    load_corpus,
    read_run,
    run_meta,
    shard_line,
)
from .specs import slug

__all__ = [
    "CorpusRecord",
    "CorpusMismatchError",
    "DamagedRunError",
    "run_corpus",
    "load_corpus",
    "run_dataset",
    "run_directory",
    "corpus_failures",
    "ExplainPairs",
]


@dataclass(frozen=True)
class ExplainPairs(WorkUnit):
    """The unit of work of a corpus run: a chunk of pairs -> each pair's explanation (JSON, as in a shard)."""

    name = "explain"
    method: str = "bilrp"
    batch_size: int = 32
    options: dict[str, Any] = field(default_factory=dict)

    def compute(self, state: Any, records: Sequence[Record]) -> list[Explanation]:
        pairs = [record.texts for record in records]
        return explain_batch(
            state, pairs, method=self.method, batch_size=self.batch_size, progress=False, **self.options
        )

    def encode(self, result: Explanation) -> bytes:
        return json_text(explanation_dict(result), indent=None).encode("utf-8")

    def decode(self, data: bytes) -> dict[str, Any]:
        return json.loads(data)


def _as_triple(pair: Any) -> tuple[str, str, float | None]:
    if isinstance(pair, datasets.SimilarityPair):
        return pair.text_a, pair.text_b, pair.score
    if len(pair) == 2:
        return pair[0], pair[1], None
    return pair[0], pair[1], pair[2]


def run_corpus(
    model: SimilarityModel,
    pairs: Sequence[Any],
    directory: str | Path,
    method: str = "bilrp",
    shard_size: int = 32,
    batch_size: int = 32,
    progress: bool = True,
    ray: RayOptions | None = None,
    **options: Any,
) -> list[CorpusRecord]:
    """Explain every pair, resuming from the shards already in ``directory``.

    Parameters
    ----------
    model
        The similarity model.
    pairs
        :class:`~bilrp.datasets.SimilarityPair` objects, or ``(text_a, text_b)`` / ``(text_a, text_b, gold)``.
    directory
        The run folder (created if missing).
    method
        Explanation method (see :func:`bilrp.explain`).
    shard_size
        Pairs explained together (one :func:`bilrp.explain_batch` call, sharing its per-sentence cache)
        and written as one shard.
    batch_size
        Texts per padded batch.
    progress
        Show a progress bar (pairs per second).
    ray
        Run on Ray with these options (docs/scaling.md): the shards are Parquet files in the same folder, and
        either engine resumes the other's run. ``None``: in this process.
    **options
        Passed to the attribution (``composite=``, ``internal_batch_size=``, ...).

    Returns
    -------
    list of CorpusRecord
        One record per pair, in the order of ``pairs``, less the pairs that could not be explained (an empty
        text: warned about, and listed by :func:`corpus_failures`).

    Raises
    ------
    CorpusMismatchError
        When the folder holds another model's or method's run, or other pairs at the same positions.

    """
    positive_int("shard_size", shard_size)
    positive_int("batch_size", batch_size)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with folder_lock(directory, "explaining a corpus"):  # one writer per run folder; a second is refused
        run = check_meta(directory, run_meta(model, method, options))
        triples = [_as_triple(pair) for pair in pairs]
        pair_records = [Record(i, f"pair-{i}", (a, b)) for i, (a, b, _) in enumerate(triples)]
        done, failed = _done(directory, pair_records)
        todo = [record for record in pair_records if record.key not in done and record.key not in failed]
        unit = ExplainPairs(method, batch_size, dict(options))
        if ray is None:
            golds = [gold for _, _, gold in triples]
            initial = len(done) + len(failed)
            rows = _explain_here(unit, model, todo, directory, shard_size, progress, golds, initial, run)
        else:
            shards = len(list(directory.glob("shard-*.jsonl"))) + len(list(directory.glob("part-*.parquet")))
            report = run_unit(unit, todo, model=model, ray=ray, folder=directory, run=run, shard_size=shard_size)
            report.reused = shards
            print(report.lines()[-1], file=sys.stderr)  # what Ray did: shards computed, workers restarted
            rows = report.rows.values()
        for row in rows:
            if row.ok:
                done[row.key] = CorpusRecord.from_dict({"index": row.key, "gold": None, **unit.decode(row.data)})
            else:
                failed[row.key] = {"index": row.key, "id": row.id, "digest": row.digest, "error": row.error}
    for index in sorted(failed):
        failure = failed[index]
        warnings.warn(f"pair {failure['id']} of {directory.name}: {failure['error']}; skipped", stacklevel=2)
    for index, record in done.items():
        record.gold = triples[index][2]
    return [done[i] for i in range(len(triples)) if i in done]


def _done(directory: Path, records: list[Record]) -> tuple[dict[int, CorpusRecord], dict[int, dict[str, Any]]]:
    """The explained and the failed pairs of ``records`` that the folder holds; another pair there is refused."""
    stored, failures = read_run(directory)
    done = {i: r for i, r in stored.items() if i < len(records)}
    for index, record in done.items():
        if (record.explanation.text_a, record.explanation.text_b) != records[index].texts:
            raise CorpusMismatchError(f"{directory} holds another pair at position {index}: use another folder")
    failed = {i: f for i, f in failures.items() if i < len(records)}
    for index, failure in failed.items():
        if failure["digest"] != records[index].digest:
            raise CorpusMismatchError(f"{directory} holds another pair at position {index}: use another folder")
    return done, failed


def _explain_here(
    unit: ExplainPairs,
    model: SimilarityModel,
    todo: list[Record],
    directory: Path,
    shard_size: int,
    progress: bool,
    golds: list[float | None],
    initial: int,
    run: str,
) -> list[Row]:
    """The local engine: explain ``todo`` in chunks of ``shard_size``, each written as one JSONL shard."""
    rows: list[Row] = []
    bar = tqdm(total=len(golds), initial=initial, unit="pair", desc=f"explaining ({unit.method})", disable=not progress)
    try:
        for start in range(0, len(todo), shard_size):
            chunk = compute_rows(unit, model, todo[start : start + shard_size])
            lines = "".join(shard_line(_line(row, golds[row.key]), run) for row in chunk)
            write_text(directory / f"shard-{chunk[0].key:06d}-{chunk[-1].key:06d}.jsonl", lines)
            rows += chunk
            bar.update(len(chunk))
    finally:
        bar.close()
    return rows


def _line(row: Row, gold: float | None) -> dict[str, Any]:
    """The JSONL line of one row: the record (index, gold, explanation) or the failure."""
    if not row.ok:
        return {"index": row.key, "id": row.id, "digest": row.digest, "error": row.error}
    return {"index": row.key, "gold": gold, **json.loads(row.data)}


def run_directory(runs_dir: str | Path, dataset: str, split: str, model: SimilarityModel, method: str) -> Path:
    """The run folder of a dataset, model (with its pooling and similarity) and method under ``runs_dir``."""
    name = f"{dataset}-{split}--{slug(model.name)}--{model.pooling_name}-{model.similarity}--{method}"
    return Path(runs_dir) / name


def run_dataset(
    model: SimilarityModel,
    dataset: str,
    runs_dir: str | Path,
    split: str = "test",
    limit: int | None = None,
    data_dir: str | Path | None = None,
    method: str = "bilrp",
    **kwargs: Any,
) -> list[CorpusRecord]:
    """Explain the first ``limit`` pairs (default all) of a dataset, reusing its run folder under ``runs_dir``.

    Parameters
    ----------
    model
        The similarity model.
    dataset, split, data_dir
        As for :func:`bilrp.datasets.load`.
    runs_dir
        Folder holding run folders (see :func:`run_directory`); analyses sharing it share explanations.
    limit
        Take only the first ``limit`` pairs.
    method
        Explanation method.
    **kwargs
        Passed to :func:`run_corpus`.

    """
    optional_positive_int("limit", limit)
    pairs = datasets.load(dataset, split=split, data_dir=data_dir)[:limit]
    directory = run_directory(runs_dir, dataset, split, model, method)
    return run_corpus(model, pairs, directory, method=method, **kwargs)
