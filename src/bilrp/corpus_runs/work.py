"""The unit of work of a corpus command: ``(model state, chunk of records) -> one encoded row per record``.

Both engines call :func:`compute_rows` with a :class:`WorkUnit`: the local engine in this process, the Ray
engine inside an actor that built the unit's state once (:meth:`WorkUnit.prepare`, e.g. the model and a
zero-bias copy of it). A record the unit cannot take (an empty text) becomes a failed row naming the reason,
and the other records of the chunk are computed as usual, so one bad record never stops a run.

A unit is a small picklable object (its options are plain values), and so is the :class:`ModelSource` the Ray
actors load the model from: a model name or folder travels to the workers, never the torch object.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .identity import plain

__all__ = ["Record", "Row", "WorkUnit", "ModelSource", "compute_rows", "record_digest", "empty_text_reason"]


@dataclass(frozen=True)
class Record:
    """One input of a run: its position, its id (reported on failure) and its texts (one, or a pair).

    ``key`` orders the records and names the shards (``part-<first key>-<last key>.parquet``); ``id`` is what a
    user recognises (a document id, ``pair-12``).
    """

    key: int
    id: str
    texts: tuple[str, ...]

    @property
    def digest(self) -> str:
        """A digest of the id and texts: a stored row counts for this record only when it matches."""
        return record_digest(self.id, self.texts)


@dataclass(frozen=True)
class Row:
    """One result: the record's key, id and digest, and either the unit's encoded result or the failure."""

    key: int
    id: str
    digest: str
    data: bytes | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the record was computed (``data`` holds its result)."""
        return self.error is None


def record_digest(name: str, texts: Sequence[str]) -> str:
    """SHA-256 (hex, 16 characters) of an id and texts, each length-prefixed (no two inputs collide by joining)."""
    hasher = hashlib.sha256()
    for part in (name, *texts):
        encoded = part.encode("utf-8", "surrogatepass")
        hasher.update(len(encoded).to_bytes(8, "little") + encoded)
    return hasher.hexdigest()[:16]


def empty_text_reason(record: Record) -> str | None:
    """Why ``record`` cannot be explained (an empty or blank text), or ``None`` when it can."""
    for position, text in enumerate(record.texts):
        if not isinstance(text, str) or not text.strip():
            side = "the text" if len(record.texts) == 1 else f"text {'ab'[position] if position < 2 else position}"
            return f"{side} is empty ({text!r})"
    return None


@dataclass(frozen=True)
class ModelSource:
    """How a worker loads the model: a name or folder, with the pooling and similarity overrides."""

    name: str | None = None
    pooling: str | None = None
    similarity: str | None = None

    def __post_init__(self) -> None:
        from pathlib import Path

        if self.name is not None and Path(self.name).expanduser().exists():  # workers may run elsewhere
            object.__setattr__(self, "name", str(Path(self.name).expanduser().resolve()))

    def load(self) -> Any:
        """The :class:`~bilrp.SimilarityModel`, loaded quietly (offline unless ``HF_HUB_OFFLINE=0``)."""
        from ..models import load_quietly

        return load_quietly(self.name, self.pooling, self.similarity)


@dataclass(frozen=True)
class WorkUnit:
    """Base of the units of work: subclasses are frozen dataclasses whose fields are the unit's options.

    Subclasses set :attr:`name` and implement :meth:`compute`; they may override :meth:`prepare` (the state
    an actor builds once from the model), :meth:`check` (which records are refused) and the codec
    :meth:`encode` / :meth:`decode` of one result.
    """

    name: ClassVar[str] = "unit"

    def options(self) -> dict[str, Any]:
        """The unit's options (its fields), recorded with the run so that a folder of another run is refused."""
        return {field.name: plain(getattr(self, field.name)) for field in fields(self)}

    def prepare(self, model: Any) -> Any:
        """The state the unit computes with (default: the model itself); built once per engine or actor."""
        return model

    def check(self, record: Record) -> str | None:
        """Why ``record`` is refused (default: an empty text), or ``None``."""
        return empty_text_reason(record)

    def compute(self, state: Any, records: Sequence[Record]) -> list[Any]:
        """One result per record (all passed :meth:`check`), in order."""
        raise NotImplementedError(f"{type(self).__name__} does not implement compute")

    def encode(self, result: Any) -> bytes:
        """The bytes stored for one result (default: the result is bytes already)."""
        return result

    def decode(self, data: bytes) -> Any:
        """The result :meth:`encode` stored."""
        return data


def compute_rows(unit: WorkUnit, state: Any, records: Sequence[Record]) -> list[Row]:
    """The rows of one chunk: the refused records as failures, the others computed together by the unit."""
    refused = {record.key: unit.check(record) for record in records}
    good = [record for record in records if refused[record.key] is None]
    results = dict(zip((r.key for r in good), unit.compute(state, good) if good else [], strict=True))
    rows = []
    for record in records:
        if refused[record.key] is not None:
            rows.append(Row(record.key, record.id, record.digest, error=refused[record.key]))
        else:
            rows.append(Row(record.key, record.id, record.digest, data=unit.encode(results[record.key])))
    return rows
