"""The Parquet shard store of a run: one file per computed chunk, written whole, and the run's ``run.json``.

A folder holds ``run.json`` (what the run computes: the unit, its options and the model's fingerprint; a folder
of another run is refused, naming what differs) and shards ``part-<first key>-<last key>.parquet``, named by
the keys of their records (so the same chunk always gets the same name). Each shard is a table with one row per
record: ``key`` (int64), ``id``, ``digest`` (of the id and texts), ``data`` (the unit's encoded result, binary)
and ``error`` (the reason a record was refused, else null). Its Parquet metadata binds it to its run:
``bilrp.run`` is the run's identity (:func:`~bilrp.corpus_runs.identity.run_digest` of ``run.json``) and
``bilrp.check`` a digest of its rows, so a shard of another run (other weights, rules, options) and a shard
whose rows were edited or corrupted are refused, one line naming the file and what to do, never read back.

A shard is written under a temporary name and renamed (:func:`bilrp._io.write_bytes`), so a run stopped at any
point (Ctrl-C, a killed worker or driver) leaves only complete shards; temporaries (``.part-...partial``) are
ignored. Resuming reads the complete shards and computes only the records none of them holds: nothing is lost,
nothing is computed twice. One writer at a time: a run holds the folder's lock
(:func:`bilrp._integrity.folder_lock`) while it reads and writes, and a second run on the folder is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .._integrity import folder_lock
from .._io import one_line, write_bytes, write_json
from .identity import meta_difference, plain, run_digest
from .work import Record, Row

__all__ = [
    "RunMismatchError",
    "DamagedShardError",
    "shard_name",
    "shard_bytes",
    "read_shard",
    "rows_check",
    "ShardStore",
]

KIND = "bilrp-corpus-run"
FORMAT = 2
RUN_FILE = "run.json"
RUN_KEY = b"bilrp.run"
CHECK_KEY = b"bilrp.check"
_COLUMNS = ("key", "id", "digest", "data", "error")


class RunMismatchError(ValueError):
    """A shard folder, or a shard, of another run (another unit, options, model or records)."""


class DamagedShardError(ValueError):
    """A shard that cannot be read, or whose rows do not match its check; deleting it recomputes its records."""


def shard_name(first: int, last: int) -> str:
    """The file name of the shard of records ``first`` to ``last`` (keys)."""
    return f"part-{first:08d}-{last:08d}.parquet"


def rows_check(rows: Sequence[Row]) -> str:
    """The digest of a shard's rows (every field of every row, in order): what ``bilrp.check`` holds.

    SHA-256 (128 bits kept) over the ``repr`` of every row's small fields and data length (unambiguous: strings
    are quoted and escaped), then every row's data.
    """
    heads = [(row.key, row.id, row.digest, row.data is None, len(row.data or b""), row.error) for row in rows]
    encoded = repr(heads).encode("utf-8", "surrogatepass")
    hasher = hashlib.sha256(len(encoded).to_bytes(8, "little") + encoded)
    for row in rows:
        if row.data:
            hasher.update(row.data)
    return hasher.hexdigest()[:32]


def shard_bytes(rows: Sequence[Row], run: str | None = None) -> bytes:
    """The Parquet file of one shard's rows, bound to the run ``run`` (its identity) and checked by its rows."""
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
    metadata = {CHECK_KEY: rows_check(rows).encode()}
    if run is not None:
        metadata[RUN_KEY] = run.encode()
    sink = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), sink)
    return sink.getvalue()


def read_shard(file: Path | IO[bytes], run: str | None = None) -> list[Row]:
    """The rows of one shard file, checked against its ``bilrp.check`` and, with ``run``, bound to that run.

    Raises
    ------
    DamagedShardError
        The file cannot be read as a shard, or its rows do not match their check (edited, corrupted).
    RunMismatchError
        ``run`` is given and the shard belongs to another run (or to none: written by an older bilrp).

    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
        columns = table.to_pydict()
        rows = [Row(*values) for values in zip(*(columns[name] for name in _COLUMNS), strict=True)]
    except (OSError, pa.ArrowException, KeyError, TypeError, ValueError) as error:
        problem = one_line(error) or type(error).__name__
        raise DamagedShardError(f"cannot read shard {file}: {problem}; delete the file to recompute it") from None
    metadata = table.schema.metadata or {}
    stored_run = metadata.get(RUN_KEY, b"").decode("utf-8", "replace") or None
    if run is not None and stored_run != run:
        whose = "no run (written by an older bilrp)" if stored_run is None else f"another run ({stored_run})"
        raise RunMismatchError(
            f"shard {file} belongs to {whose}, not to this run ({run}): delete the file to recompute its records"
        )
    check = metadata.get(CHECK_KEY)
    if (check is not None or run is not None) and (check or b"").decode("utf-8", "replace") != rows_check(rows):
        raise DamagedShardError(
            f"shard {file} does not match its check (its rows were edited or corrupted): delete the file to "
            "recompute its records"
        )
    return rows


class ShardStore:
    """The shard folder of one run.

    Parameters
    ----------
    folder
        The folder (created if missing).
    meta
        What the run computes (unit, options, model fingerprint); stored in ``run.json`` by the first run, and
        compared with it by every later one (:meth:`open`). ``None``: the caller checks the folder itself (the
        analysis run folders keep their own ``meta.json``) and gives the run's identity as ``run``.
    run
        The run identity the shards are bound to when ``meta`` is ``None`` (``None`` too: unbound shards).

    """

    def __init__(self, folder: str | Path, meta: dict[str, Any] | None = None, run: str | None = None) -> None:
        self.folder = Path(folder)
        self.files_read = 0
        self.meta = None if meta is None else plain({"kind": KIND, "format": FORMAT, **meta})
        self.run = run_digest(self.meta) if self.meta is not None else run

    @contextmanager
    def open(self) -> Iterator[ShardStore]:
        """Hold the folder's lock (a second writer is refused at once), check ``run.json``; yield the store."""
        with folder_lock(self.folder, "computing a corpus run"):
            if self.meta is not None:
                self._check_meta(self.meta)
            yield self

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
        if not isinstance(stored, dict):
            raise DamagedShardError(f"{file} is not a run record: delete {self.folder} to start afresh")
        difference = meta_difference(stored, meta)
        if difference is not None:
            raise RunMismatchError(f"{self.folder} holds {difference}: delete the folder or use another one")

    def files(self) -> list[Path]:
        """The complete shard files, in key order."""
        return sorted(self.folder.glob("part-*.parquet"))

    def rows(self, records: Sequence[Record] | None = None) -> dict[int, Row]:
        """The stored rows by key; with ``records``, only theirs, refusing a stored row of another record."""
        wanted = None if records is None else {record.key: record for record in records}
        found: dict[int, Row] = {}
        self.files_read = 0
        if wanted is not None and not wanted:  # nothing asked for: nothing to read (the caller read the run)
            return found
        for file in self.files():
            rows = read_shard(file, self.run)
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
        """Write one shard file whole (its Parquet bytes from :func:`shard_bytes`, bound to this run)."""
        return write_bytes(self.folder / shard_name(first, last), data)
