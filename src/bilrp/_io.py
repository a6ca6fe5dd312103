"""Output files that appear complete or not at all, and the text formats bilrp writes (markdown, CSV, JSON).

Every writer renders into a temporary file beside its target and renames it onto the target only when all
writing succeeded, so an interrupted or failed run never leaves a half-written file (and an earlier complete
file stays until it is replaced). This module is the bottom layer of the output code: the CLI, the evaluation
suite and the corpus analyses all write through it; it imports nothing else from bilrp.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "one_line",
    "atomic_paths",
    "atomic_path",
    "probe_writable",
    "check_name",
    "fill",
    "write_text",
    "write_bytes",
    "write_json",
    "write_csv",
    "write_markdown",
    "save_figure",
    "json_text",
    "csv_text",
    "markdown_table",
    "format_cell",
    "figure_bytes",
]


_PREFIX_KEPT = 64
"""Characters of the target's name kept in the name of its temporary file (which must fit the file system)."""


def _file_mode(target: Path) -> int:
    """The mode ``target`` keeps when it is replaced: its own, or for a new file that of an ordinary new file
    under the current umask (``mkstemp`` creates 0600).
    """
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def atomic_paths(paths: Sequence[str | Path]) -> Iterator[list[Path]]:
    """Temporary paths beside ``paths``; renamed onto them together when the block ends without error.

    All temporaries are written before the first rename, so when any writing fails no target is created or
    replaced. Temporary files never outlive the block. A replaced file keeps its permissions; a new file gets
    those of an ordinary new file (``0o666`` less the umask).
    """
    targets = [Path(path) for path in paths]
    temporaries: list[Path] = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            prefix = f".{target.name[:_PREFIX_KEPT]}."
            handle, name = tempfile.mkstemp(prefix=prefix, suffix=".partial", dir=target.parent)
            os.close(handle)
            temporaries.append(Path(name))
        yield list(temporaries)
        for temporary, target in zip(temporaries, targets, strict=True):
            os.chmod(temporary, _file_mode(target))
            os.replace(temporary, target)
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto ``path`` when the block ends without error."""
    with atomic_paths([path]) as (temporary,):
        yield temporary


def probe_writable(folder: str | Path) -> None:
    """Raise :class:`OSError` unless a file can be created in ``folder`` (call before long computations)."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def check_name(path: str | Path) -> None:
    """Raise :class:`OSError` (``ENAMETOOLONG``) when a name in ``path`` is too long for the file system.

    Call before long computations, together with :func:`probe_writable` on the folder.
    """
    path = Path(path)
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows) or no such folder (checked elsewhere)
        limit = 255
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > limit:
            what = "file name" if part == path.name else f"folder name {part[:20]}..."
            message = f"the {what} is too long ({size} bytes, at most {limit} here); choose a shorter name"
            raise OSError(errno.ENAMETOOLONG, message, str(path))


def fill(temporary: str | Path, data: bytes) -> None:
    """Write ``data`` into a temporary file from :func:`atomic_paths`, flushed to disk before the rename."""
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_path(path) as temporary:
        fill(temporary, data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    if not isinstance(text, str):
        raise TypeError(f"write_text needs a str, not {type(text).__name__}")
    return write_bytes(path, text.encode("utf-8"))


def one_line(message: object) -> str:
    """``message`` as one line: every run of whitespace, newlines included, becomes one space."""
    return " ".join(str(message).split())


def json_text(data: Any, indent: int | None = 2) -> str:
    r"""The JSON text of ``data``, ending with a newline: the one JSON serialiser of bilrp.

    NaN and infinities are written as ``null`` (strict JSON has no such numbers), tuples as lists, and text as
    UTF-8 (not ``\u`` escapes).

    Parameters
    ----------
    data
        Dicts, lists, tuples, strings, numbers, booleans and ``None``.
    indent
        Spaces per level; ``None`` writes one line (one record of a JSON-lines file).

    Returns
    -------
    str
        Strict JSON followed by ``"\n"``.

    """
    return json.dumps(_finite(data), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return None if math.isnan(data) or math.isinf(data) else data
    if isinstance(data, Mapping):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(value) for value in data]
    return data


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_text(path, json_text(data))


def _columns_and_cells(
    rows: Sequence[Sequence[Any] | Mapping[str, Any]], columns: Sequence[str] | None
) -> tuple[list[str], list[list[Any]]]:
    """Column names and cell values of list rows (``columns`` required) or dict rows (columns default to the
    first row's keys).
    """
    if rows and isinstance(rows[0], Mapping):
        names = list(columns if columns is not None else rows[0])
        return names, [[row.get(name) for name in names] for row in rows]
    if columns is None:
        if rows:
            raise ValueError("rows given as sequences need their column names")
        return [], []
    return list(columns), [list(row) for row in rows]


def csv_text(rows: Sequence[Sequence[Any] | Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV with a header line, floats at full precision."""
    names, cells = _columns_and_cells(rows, columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(cells)
    return buffer.getvalue()


def write_csv(
    path: str | Path, rows: Sequence[Sequence[Any] | Mapping[str, Any]], columns: Sequence[str] | None = None
) -> Path:
    """Write rows as CSV (see :func:`csv_text`), atomically."""
    return write_text(path, csv_text(rows, columns))


def format_cell(value: Any, digits: int = 4) -> str:
    """``value`` for a table cell: floats with ``digits`` significant digits, ``None`` empty, the rest ``str``."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}"
    return "" if value is None else str(value)


def markdown_table(rows: Sequence[Sequence[Any] | Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured markdown table of list or dict rows (floats shown with 4 significant digits)."""
    names, cells = _columns_and_cells(rows, columns)
    if not names:
        return "(no rows)\n"
    lines = ["| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
    lines += ["| " + " | ".join(format_cell(cell).replace("|", "\\|") for cell in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def write_markdown(path: str | Path, title: str, sections: Sequence[tuple[str, str]]) -> Path:
    """Write a markdown file with a title and ``(heading, body)`` sections, atomically."""
    text = f"# {title}\n"
    for heading, body in sections:
        text += f"\n## {heading}\n\n{body.rstrip()}\n"
    return write_text(path, text)


def figure_bytes(figure, format: str = "png", dpi: int = 150) -> bytes:
    """The bytes of a matplotlib figure in ``format``; the figure is closed afterwards."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format=format, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def save_figure(figure, path: str | Path, dpi: int = 150) -> Path:
    """Save a matplotlib figure atomically (format from the file extension, default PNG) and close it."""
    path = Path(path)
    return write_bytes(path, figure_bytes(figure, path.suffix.lstrip(".").lower() or "png", dpi))
