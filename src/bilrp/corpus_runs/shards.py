"""The Parquet shard store of a run: one file per computed chunk, written whole, and the run's ``run.json``.

A folder holds ``run.json`` (what the run computes: the unit, its options and the model; a folder of another
run is refused) and shards ``part-<first key>-<last key>.parquet``, named by the keys of their records (so the
same chunk always gets the same name). Each shard is a table with one row per record: ``key`` (int64), ``id``,
``digest`` (of the id and texts), ``data`` (the unit's encoded result, binary) and ``error`` (the reason a
record was refused, else null). A shard is written under a temporary name and renamed
(:func:`bilrp._io.write_bytes`), so a run stopped at any point (Ctrl-C, a killed worker or driver) leaves only
complete shards; temporaries (``.part-...partial``) are ignored. Resuming reads the complete shards and
computes only the records none of them holds: nothing is lost, nothing is computed twice.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._io import one_line, write_bytes, write_json
from .work import Record, Row

__all__ = ["RunMismatchError", "DamagedShardError", "shard_name", "shard_bytes", "read_shard", "ShardStore"]

KIND = "bilrp-corpus-run"
FORMAT = 1
RUN_FILE = "run.json"
_COLUMNS = ("key", "id", "digest", "data", "error")


class RunMismatchError(ValueError):
    """A shard folder that holds another run (another unit, options, model or records)."""


class DamagedShardError(ValueError):
    """A shard that cannot be read; deleting it recomputes its records."""


def shard_name(first: int, last: int) -> str:
    """The file name of the shard of records ``first`` to ``last`` (keys)."""
    return f"part-{first:08d}-{last:08d}.parquet"


def shard_bytes(rows: Sequence[Row]) -> bytes:
    """The Parquet file of one shard's rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "key": pa.array([row.key for row in rows], pa.int64()),
            "id": pa.array([row.id for row in rows], pa.string()),
            "digest": pa.array([row.digest for row in rows], pa.string()),
            "data": pa.array([row.data for row in rows], pa.binary()),
            "error": pa.array([row.error for row in rows], pa.string()),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def read_shard(file: Path) -> list[Row]:
    """The rows of one shard file, or :class:`DamagedShardError` naming it and how to recover."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        columns = pq.read_table(file).to_pydict()
        rows = [Row(*values) for values in zip(*(columns[name] for name in _COLUMNS), strict=True)]
    except (OSError, pa.ArrowException, KeyError, TypeError, ValueError) as error:
        problem = one_line(error) or type(error).__name__
        raise DamagedShardError(f"cannot read shard {file}: {problem}; delete the file to recompute it") from None
    return rows


class ShardStore:
    """The shard folder of one run.

    Parameters
    ----------
    folder
        The folder (created if missing).
    meta
        What the run computes (unit, options, model); stored in ``run.json`` by the first run, and compared
        with it by every later one. ``None``: the caller checks the folder itself (the analysis run folders
        keep their own ``meta.json``).

    """

    def __init__(self, folder: str | Path, meta: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.files_read = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        if meta is not None:
            self._check_meta({"kind": KIND, "format": FORMAT, **meta})

    def _check_meta(self, meta: dict[str, Any]) -> None:
        file = self.folder / RUN_FILE
        if not file.exists():
            write_json(file, meta)
            return
        try:
            stored = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            problem = one_line(error)
            raise DamagedShardError(f"cannot read {file}: {problem}; delete {self.folder} to start afresh") from None
        for key, value in json.loads(json.dumps(meta)).items():  # as JSON (tuples are lists)
            if stored.get(key) != value:
                raise RunMismatchError(
                    f"{self.folder} holds a run with {key}={stored.get(key)!r}, not {value!r}: delete the folder "
                    "or use another one"
                )

    def files(self) -> list[Path]:
        """The complete shard files, in key order."""
        return sorted(self.folder.glob("part-*.parquet"))

    def rows(self, records: Sequence[Record] | None = None) -> dict[int, Row]:
        """The stored rows by key; with ``records``, only theirs, refusing a stored row of another record."""
        wanted = None if records is None else {record.key: record for record in records}
        found: dict[int, Row] = {}
        self.files_read = 0
        for file in self.files():
            rows = read_shard(file)
            self.files_read += any(wanted is None or row.key in wanted for row in rows)
            for row in rows:
                if wanted is not None:
                    record = wanted.get(row.key)
                    if record is None:
                        continue
                    if record.digest != row.digest:
                        raise RunMismatchError(
                            f"{file} holds another record at position {row.key} (id {row.id!r}, not {record.id!r}): "
                            f"delete {self.folder} or use another folder"
                        )
                found.setdefault(row.key, row)
        return found

    def missing(self, records: Sequence[Record], shard_size: int) -> list[list[Record]]:
        """The chunks still to compute: the records no complete shard holds, ``shard_size`` at a time."""
        done = self.rows(records)
        todo = [record for record in records if record.key not in done]
        return [todo[start : start + shard_size] for start in range(0, len(todo), shard_size)]

    def write(self, first: int, last: int, data: bytes) -> Path:
        """Write one shard file whole (its Parquet bytes from :func:`shard_bytes`)."""
        return write_bytes(self.folder / shard_name(first, last), data)
