"""Explain every pair of a dataset, writing shards to disk as it goes, so that an interrupted run resumes.

A run lives in one folder: ``meta.json`` (model, pooling, similarity, method) and shards
``shard-<first>-<last>.jsonl`` holding one JSON record per pair (index, gold score and the explanation with
word ids and character offsets). A shard appears whole or not at all (written under a temporary name, then
renamed), so a run stopped at any point leaves only complete shards; the next run explains only the pairs
that no shard holds. The pairs of one folder must stay the same (checked), while their number may grow: a run
with ``limit=100`` is continued by a run over the whole dataset.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .. import datasets
from .._io import json_text, write_json, write_text
from .._validation import optional_positive_int, positive_int
from ..explainer import explain_batch
from ..explanation import Explanation
from ..models import SimilarityModel
from .specs import slug

__all__ = [
    "CorpusRecord",
    "CorpusMismatchError",
    "DamagedRunError",
    "run_corpus",
    "load_corpus",
    "run_dataset",
    "run_directory",
]

_FORMAT = 1


class CorpusMismatchError(ValueError):
    """A run folder that holds explanations of another model, method or set of pairs."""


class DamagedRunError(ValueError):
    """A file of a run folder that cannot be read (cut short, edited or corrupted); deleting it recomputes it."""


@dataclass
class CorpusRecord:
    """One explained pair of a corpus: its position, its gold score and its explanation."""

    index: int
    gold: float | None
    explanation: Explanation

    @property
    def score(self) -> float:
        """The model's similarity of the pair."""
        return self.explanation.score

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the explanation's :meth:`~bilrp.Explanation.to_dict` plus index, gold, word ids, offsets."""
        e = self.explanation
        return {
            "index": self.index,
            "gold": self.gold,
            **e.to_dict(),
            "word_ids_a": e.word_ids_a,
            "word_ids_b": e.word_ids_b,
            "offsets_a": e.offsets_a,
            "offsets_b": e.offsets_b,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CorpusRecord:
        """Rebuild a record from :meth:`to_dict` output."""
        explanation = Explanation.from_dict(data)
        explanation.word_ids_a, explanation.word_ids_b = data.get("word_ids_a"), data.get("word_ids_b")
        for side in ("a", "b"):
            offsets = data.get(f"offsets_{side}")
            setattr(explanation, f"offsets_{side}", None if offsets is None else [tuple(o) for o in offsets])
        return cls(int(data["index"]), data.get("gold"), explanation)


def _as_triple(pair: Any) -> tuple[str, str, float | None]:
    if isinstance(pair, datasets.SimilarityPair):
        return pair.text_a, pair.text_b, pair.score
    if len(pair) == 2:
        return pair[0], pair[1], None
    return pair[0], pair[1], pair[2]


def _meta(model: SimilarityModel, method: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "model": model.name,
        "pooling": model.pooling_name,
        "similarity": model.similarity,
        "max_length": model.max_length,
        "method": method,
        "options": {k: v if isinstance(v, (int, float, str, bool)) else type(v).__name__ for k, v in options.items()},
    }


def _check_meta(directory: Path, meta: dict[str, Any]) -> None:
    file = directory / "meta.json"
    if not file.exists():
        write_json(file, meta)
        return
    advice = f"delete the folder {directory} to start this run afresh"
    (stored,) = _read_records(file, dict, advice, whole=True)
    for key, value in meta.items():
        if stored.get(key) != value:
            raise CorpusMismatchError(
                f"{directory} holds a run with {key}={stored.get(key)!r}, not {value!r}: use another folder"
            )


def load_corpus(directory: str | Path) -> list[CorpusRecord]:
    """All records of a run folder, ordered by index (complete shards only)."""
    directory = Path(directory)
    records = [
        record
        for shard in sorted(directory.glob("shard-*.jsonl"))
        for record in _read_records(shard, CorpusRecord.from_dict, "delete the file to recompute its pairs")
    ]
    records.sort(key=lambda r: r.index)
    return records


def _read_records(file: Path, build: Callable[[Any], Any], advice: str, whole: bool = False) -> list[Any]:
    """``build(data)`` of each JSON line of ``file`` (or of the whole file when ``whole``).

    Raises :class:`DamagedRunError` naming the file, the line and the problem, followed by ``advice``.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DamagedRunError(f"cannot read run file {file}: {' '.join(str(error).split())}; {advice}") from None
    records = []
    for number, line in enumerate([text] if whole else text.splitlines(), start=1):
        if not (whole or line.strip()):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            where = f"line {error.lineno if whole else number}, column {error.colno}"
            raise DamagedRunError(f"damaged run file {file}: {where}: {error.msg}; {advice}") from None
        try:
            records.append(build(data))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            problem = f"{type(error).__name__} {' '.join(str(error).split())}".strip()
            raise DamagedRunError(
                f"damaged run file {file}: line {number}: not a record ({problem}); {advice}"
            ) from None
    return records


def run_corpus(
    model: SimilarityModel,
    pairs: Sequence[Any],
    directory: str | Path,
    method: str = "bilrp",
    shard_size: int = 32,
    batch_size: int = 32,
    progress: bool = True,
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
    **options
        Passed to the attribution (``composite=``, ``internal_batch_size=``, ...).

    Returns
    -------
    list of CorpusRecord
        One record per pair, in the order of ``pairs``.

    Raises
    ------
    CorpusMismatchError
        When the folder holds another model's or method's run, or other pairs at the same positions.

    """
    positive_int("shard_size", shard_size)
    positive_int("batch_size", batch_size)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _check_meta(directory, _meta(model, method, options))
    triples = [_as_triple(pair) for pair in pairs]
    done = {r.index: r for r in load_corpus(directory) if r.index < len(triples)}
    for index, record in done.items():
        if (record.explanation.text_a, record.explanation.text_b) != triples[index][:2]:
            raise CorpusMismatchError(f"{directory} holds another pair at position {index}: use another folder")
    todo = [i for i in range(len(triples)) if i not in done]
    bar = tqdm(total=len(triples), initial=len(done), unit="pair", desc=f"explaining ({method})", disable=not progress)
    try:
        for start in range(0, len(todo), shard_size):
            chunk = todo[start : start + shard_size]
            explanations = explain_batch(
                model, [triples[i][:2] for i in chunk], method=method, batch_size=batch_size, progress=False, **options
            )
            records = [CorpusRecord(i, triples[i][2], e) for i, e in zip(chunk, explanations, strict=True)]
            lines = "".join(json_text(r.to_dict(), indent=None) for r in records)
            write_text(directory / f"shard-{chunk[0]:06d}-{chunk[-1]:06d}.jsonl", lines)
            done.update((r.index, r) for r in records)
            bar.update(len(chunk))
    finally:
        bar.close()
    return [done[i] for i in range(len(triples))]


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
