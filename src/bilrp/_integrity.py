"""Integrity primitives of stored artefacts: a streaming file digest and a lock file for one writer per folder.

Bottom layer (imports nothing from bilrp): the document index (:mod:`bilrp.ranking`) and the corpus runs
(:mod:`bilrp.corpus_runs`) verify what they read with :func:`file_digest` and serialise writers with
:func:`folder_lock`.

The lock is an advisory ``flock`` on a lock file in the folder (``fcntl`` on POSIX, ``msvcrt`` on Windows).
The operating system releases it when its process ends, however it ends (``SIGKILL`` included), so a lock
left by a killed process is never stale: the next writer takes it over. A second writer, in another process
or in another thread of the same process, is refused at once with :class:`FolderBusyError` (one line naming
the folder, the holder's process id and what it is doing); the same thread may take the lock again (nested
blocks).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["file_digest", "bytes_digest", "folder_lock", "FolderBusyError", "LOCK_NAME"]

LOCK_NAME = ".bilrp.lock"
"""The name of the lock file inside a locked folder (removed when the lock is released cleanly)."""

_CHUNK = 1 << 20

_held: dict[str, tuple[int, int, int]] = {}
"""Locks this process holds: resolved folder -> (thread id, nesting depth, file descriptor)."""
_held_guard = threading.Lock()


class FolderBusyError(OSError):
    """Another live writer holds the folder's lock: reported as one line (exit status 2 on the command line)."""


def file_digest(path: str | Path) -> str:
    """The SHA-256 of the file at ``path`` as 64 hex digits, read in 1 MiB chunks (any size, little memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bytes_digest(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 hex digits (the digest :func:`file_digest` gives a file holding ``data``)."""
    return hashlib.sha256(data).hexdigest()


def _try_lock(descriptor: int) -> bool:
    """Take an exclusive lock on the open file without waiting; ``False`` when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(path: Path) -> str:
    """What the lock file says about its holder (``"pid 123, building an index"``), or ``"another process"``."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return " ".join(text.split())[:200] or "another process"


def _busy(folder: Path, holder: str) -> FolderBusyError:
    return FolderBusyError(
        f"{folder} is being written by another bilrp writer ({holder}); wait until it has finished, "
        "or write into another folder"
    )


def _acquire(folder: Path, purpose: str) -> int:
    """Open and lock ``folder``'s lock file; the descriptor. The lock file is the one at its path (a writer
    that released the lock meanwhile removed the file it locked, so a lock on a removed file is retried).
    """
    path = folder / LOCK_NAME
    for _ in range(100):
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(descriptor):
            os.close(descriptor)
            raise _busy(folder, _holder(path))
        try:
            same = os.path.samestat(os.fstat(descriptor), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            note = f"pid {os.getpid()}, {purpose}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode()
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, note, 0)
            return descriptor
        os.close(descriptor)
    raise _busy(folder, "its lock file keeps being replaced")


@contextmanager
def folder_lock(folder: str | Path, purpose: str) -> Iterator[Path]:
    """Hold the write lock of ``folder`` (created if missing) for the block; yields the folder.

    Parameters
    ----------
    folder
        The folder one writer at a time may change (an index folder, a run folder).
    purpose
        What the holder does, for the message another writer gets (``"building an index"``).

    Raises
    ------
    FolderBusyError
        At once, when another process, or another thread of this one, holds the lock. The same thread may
        nest blocks. A lock held by a process that has ended (even by ``SIGKILL``) is free again.

    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(folder)
    me = threading.get_ident()
    with _held_guard:
        held = _held.get(key)
        if held is not None and held[0] != me:
            raise _busy(folder, _holder(folder / LOCK_NAME))
        if held is None:
            _held[key] = (me, 1, _acquire(folder, purpose))
        else:
            _held[key] = (me, held[1] + 1, held[2])
    try:
        yield folder
    finally:
        with _held_guard:
            owner, depth, descriptor = _held[key]
            if depth > 1:
                _held[key] = (owner, depth - 1, descriptor)
            else:
                del _held[key]
                with suppress(OSError):  # before unlocking: a writer that opened it meanwhile retries
                    (folder / LOCK_NAME).unlink(missing_ok=True)
                os.close(descriptor)  # closing the last descriptor releases the lock
