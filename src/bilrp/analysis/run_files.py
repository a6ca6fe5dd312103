"""The files of a corpus run folder: ``meta.json``, the local engine's JSONL shards and the Ray engine's Parquet shards.

See :mod:`bilrp.analysis.corpus` for the layout. This module reads a folder (every complete shard of either
engine, the explained and the failed pairs), checks its ``meta.json``, and defines the record it holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import write_json
from ..corpus_runs.shards import read_shard
from ..explanation import Explanation
from ..models import SimilarityModel

__all__ = [
    "CorpusRecord",
    "CorpusMismatchError",
    "DamagedRunError",
    "load_corpus",
    "corpus_failures",
    "explanation_dict",
    "read_run",
    "run_meta",
    "check_meta",
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
        return {"index": self.index, "gold": self.gold, **explanation_dict(self.explanation)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CorpusRecord:
        """Rebuild a record from :meth:`to_dict` output."""
        explanation = Explanation.from_dict(data)
        explanation.word_ids_a, explanation.word_ids_b = data.get("word_ids_a"), data.get("word_ids_b")
        for side in ("a", "b"):
            offsets = data.get(f"offsets_{side}")
            setattr(explanation, f"offsets_{side}", None if offsets is None else [tuple(o) for o in offsets])
        return cls(int(data["index"]), data.get("gold"), explanation)


def run_meta(model: SimilarityModel, method: str, options: dict[str, Any]) -> dict[str, Any]:
    """What a run folder's ``meta.json`` records: the model (pooling, similarity, length), method, options."""
    return {
        "format": _FORMAT,
        "model": model.name,
        "pooling": model.pooling_name,
        "similarity": model.similarity,
        "max_length": model.max_length,
        "method": method,
        "options": {k: v if isinstance(v, (int, float, str, bool)) else type(v).__name__ for k, v in options.items()},
    }


def check_meta(directory: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` into a new run folder, or refuse a folder whose ``meta.json`` differs (one line)."""
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
    """All records of a run folder, ordered by index (complete shards of either engine; failed pairs left out).

    A record read from a Ray shard has no gold score (``None``); :func:`run_corpus` fills it in from its pairs.
    """
    records, _ = read_run(Path(directory))
    return [records[index] for index in sorted(records)]


def corpus_failures(directory: str | Path) -> list[dict[str, Any]]:
    """The pairs of a run folder that could not be explained: ``{"index", "id", "error"}`` each, by index."""
    _, failures = read_run(Path(directory))
    return [failures[index] for index in sorted(failures)]


_ADVICE = "delete the file to recompute its pairs"


def _entry(data: Any) -> CorpusRecord | dict[str, Any]:
    """A record, or a failed pair (a line with an ``error``)."""
    if isinstance(data, dict) and "error" in data:
        return {"index": int(data["index"]), "id": data["id"], "digest": data.get("digest"), "error": data["error"]}
    return CorpusRecord.from_dict(data)


def _parquet_entries(file: Path) -> list[CorpusRecord | dict[str, Any]]:
    """The records and failed pairs of a Ray shard (:mod:`bilrp.corpus_runs.shards`)."""
    entries: list[CorpusRecord | dict[str, Any]] = []
    for row in read_shard(file):
        if not row.ok:
            entries.append({"index": row.key, "id": row.id, "digest": row.digest, "error": row.error})
            continue
        try:
            entries.append(CorpusRecord.from_dict({"index": row.key, "gold": None, **json.loads(row.data)}))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            problem = f"{type(error).__name__} {' '.join(str(error).split())}".strip()
            message = f"damaged run file {file}: row {row.id}: not a record ({problem}); {_ADVICE}"
            raise DamagedRunError(message) from None
    return entries


def read_run(directory: Path) -> tuple[dict[int, CorpusRecord], dict[int, dict[str, Any]]]:
    """The records and the failed pairs of every complete shard of a run folder, by index."""
    entries = [
        entry for shard in sorted(directory.glob("shard-*.jsonl")) for entry in _read_records(shard, _entry, _ADVICE)
    ]
    entries += [entry for part in sorted(directory.glob("part-*.parquet")) for entry in _parquet_entries(part)]
    records, failures = {}, {}
    for entry in entries:
        if isinstance(entry, CorpusRecord):
            records.setdefault(entry.index, entry)
        else:
            failures.setdefault(entry["index"], entry)
    return records, failures


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


def explanation_dict(e: Explanation) -> dict[str, Any]:
    """An explanation's JSON form with the word ids and character offsets of both texts."""
    return {
        **e.to_dict(),
        "word_ids_a": e.word_ids_a,
        "word_ids_b": e.word_ids_b,
        "offsets_a": e.offsets_a,
        "offsets_b": e.offsets_b,
    }
