"""The files of a corpus run folder: ``meta.json``, the local engine's JSONL shards and the Ray engine's Parquet shards.

See :mod:`bilrp.analysis.corpus` for the layout. This module reads a folder (every complete shard of either
engine, the explained and the failed pairs), checks its ``meta.json``, and defines the record it holds.

``meta.json`` is the run's identity: the model (name, pooling, similarity, maximum length and its fingerprint:
weights, tokenizer, head, prompts), the method and its options, the rules resolved to one spelling. Every shard
is bound to it: each line of a JSONL shard starts with ``"run"`` (the identity's digest) and ``"check"`` (a
digest of the rest of the line and the run), a Parquet shard carries both in its metadata
(:mod:`bilrp.corpus_runs.shards`). A shard of another run, an edited or corrupted line, is refused with one line
naming the file and what to do; nothing stale is read back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import json_text, write_json
from ..corpus_runs.identity import canonical_rules, check_digest, meta_difference, plain, run_digest
from ..corpus_runs.shards import DamagedShardError, RunMismatchError, read_shard
from ..explanation import Explanation
from ..models import SimilarityModel
from ..models.fingerprint import model_fingerprint

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
    "run_identity",
    "shard_line",
]

_FORMAT = 2
META = "meta.json"


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
    """What a run folder's ``meta.json`` records: the model (with its fingerprint), method, options and rules."""
    return {
        "format": _FORMAT,
        "model": model.name,
        "pooling": model.pooling_name,
        "similarity": model.similarity,
        "max_length": model.max_length,
        "method": method,
        "options": _recorded_options(model, method, options),
        "fingerprint": model_fingerprint(model),
    }


def _recorded_options(model: SimilarityModel, method: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options as canonical data; BiLRP's rules in one spelling (the model's default ones when none given)."""
    recorded = plain(options)
    if method == "bilrp" and options.get("composite") is None:
        from ..rule_sets import default_rule_set

        rules = options.get("rules")
        recorded["rules"] = canonical_rules(default_rule_set(model) if rules is None else rules)
    return recorded


def check_meta(directory: Path, meta: dict[str, Any]) -> str:
    """Write ``meta.json`` into a new run folder, or refuse a folder whose ``meta.json`` differs (one line).

    Returns
    -------
    str
        The run's identity (:func:`~bilrp.corpus_runs.identity.run_digest` of ``meta``): what its shards carry.

    """
    file = directory / META
    if not file.exists():
        write_json(file, meta)
        return run_digest(meta)
    advice = f"delete the folder {directory} to start this run afresh"
    (stored,) = _read_records(file, dict, advice, whole=True)
    difference = meta_difference(stored, meta)
    if difference is not None:
        raise CorpusMismatchError(
            f"{directory} holds {difference}: delete the folder to recompute it, or use another folder"
        )
    return run_digest(meta)


def run_identity(directory: Path) -> str | None:
    """The identity of the run a folder holds (from its ``meta.json``), or ``None`` when it has none."""
    file = directory / META
    if not file.exists():
        return None
    (stored,) = _read_records(file, dict, f"delete the folder {directory} to start this run afresh", whole=True)
    return run_digest(stored)


def shard_line(entry: dict[str, Any], run: str) -> str:
    """The JSONL line of one entry of a shard, bound to the run ``run``: ``{"run": ..., "check": ..., ...}``."""
    rest = json_text(entry, indent=None)[1:-1]  # after "{", before the newline
    return f'{{"run": "{run}", "check": "{check_digest(run, rest.encode())}", {rest}\n'


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


def _parquet_entries(file: Path, run: str) -> list[CorpusRecord | dict[str, Any]]:
    """The records and failed pairs of a Ray shard (:mod:`bilrp.corpus_runs.shards`) of the run ``run``."""
    try:
        rows = read_shard(file, run)
    except RunMismatchError as error:
        raise CorpusMismatchError(str(error)) from None
    except DamagedShardError as error:
        raise DamagedRunError(str(error)) from None
    entries: list[CorpusRecord | dict[str, Any]] = []
    for row in rows:
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
    """The records and the failed pairs of every complete shard of a run folder, by index.

    Every shard must belong to the run the folder's ``meta.json`` describes, and every line or row must match
    its check: anything else is refused (:class:`CorpusMismatchError`, :class:`DamagedRunError`), one line
    naming the file and what to do.
    """
    shards = sorted(directory.glob("shard-*.jsonl"))
    parts = sorted(directory.glob("part-*.parquet"))
    run = run_identity(directory)
    if run is None:
        if shards or parts:
            raise DamagedRunError(
                f"{directory} holds shards but no {META} (what they were computed with): delete the folder to "
                "start this run afresh"
            )
        return {}, {}
    entries = [entry for shard in shards for entry in _read_records(shard, _entry, _ADVICE, run=run)]
    entries += [entry for part in parts for entry in _parquet_entries(part, run)]
    records, failures = {}, {}
    for entry in entries:
        if isinstance(entry, CorpusRecord):
            records.setdefault(entry.index, entry)
        else:
            failures.setdefault(entry["index"], entry)
    return records, failures


def _read_records(
    file: Path, build: Callable[[Any], Any], advice: str, whole: bool = False, run: str | None = None
) -> list[Any]:
    """``build(data)`` of each JSON line of ``file`` (or of the whole file when ``whole``).

    With ``run``, each line must be a line of that run (:func:`shard_line`) matching its check.
    Raises :class:`DamagedRunError` naming the file, the line and the problem, followed by ``advice``
    (:class:`CorpusMismatchError` for a line of another run).
    """
    try:
        raw = file.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DamagedRunError(f"cannot read run file {file}: {' '.join(str(error).split())}; {advice}") from None
    records = []
    # "\n" only: a text may hold other line breaks (U+2028, U+0085), written as they are (ensure_ascii=False);
    # the bytes of each line (what its check covers) split at the same places: UTF-8 never encodes "\n" otherwise
    lines = [text] if whole else text.split("\n")
    raw_lines = [raw] if whole else raw.split(b"\n")
    for number, (line, raw_line) in enumerate(zip(lines, raw_lines, strict=True), start=1):
        if not (whole or line.strip()):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            where = f"line {error.lineno if whole else number}, column {error.colno}"
            raise DamagedRunError(f"damaged run file {file}: {where}: {error.msg}; {advice}") from None
        stamp = (data.pop("run", None), data.pop("check", None)) if run is not None and isinstance(data, dict) else None
        try:
            records.append(build(data))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            problem = f"{type(error).__name__} {' '.join(str(error).split())}".strip()
            raise DamagedRunError(
                f"damaged run file {file}: line {number}: not a record ({problem}); {advice}"
            ) from None
        if run is not None:
            _check_line(file, number, raw_line, stamp, run, advice)
    if run is not None and not records:  # a shard is written whole, with one line per pair at least
        raise DamagedRunError(f"damaged run file {file}: it holds no line; {advice}")
    return records


def _check_line(file: Path, number: int, line: bytes, stamp: tuple[Any, Any] | None, run: str, advice: str) -> None:
    """Refuse a shard line of another run (or of none), or one that does not match its check."""
    stored, check = stamp if stamp is not None else (None, None)
    if stored != run:
        whose = "no run (written by an older bilrp)" if stored is None else f"another run ({stored})"
        raise CorpusMismatchError(
            f"run file {file}: line {number} belongs to {whose}, not to this run ({run}); {advice}"
        )
    prefix = f'{{"run": "{stored}", "check": "{check}", '.encode()
    if not (
        isinstance(check, str)
        and line.startswith(prefix)
        and check_digest(run, memoryview(line)[len(prefix) :]) == check
    ):
        raise DamagedRunError(
            f"damaged run file {file}: line {number} does not match its check (edited or corrupted); {advice}"
        )


def explanation_dict(e: Explanation) -> dict[str, Any]:
    """An explanation's JSON form with the word ids and character offsets of both texts."""
    return {
        **e.to_dict(),
        "word_ids_a": e.word_ids_a,
        "word_ids_b": e.word_ids_b,
        "offsets_a": e.offsets_a,
        "offsets_b": e.offsets_b,
    }
