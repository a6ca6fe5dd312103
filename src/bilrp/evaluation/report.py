"""Writing an evaluation's results: markdown, CSV, JSON and figures into one output folder, atomically.

Everything is rendered in memory first; each file is then written under a temporary name in the output folder
and renamed onto its final name, so a file is either complete or absent (an interrupted run leaves no
half-written file, and an earlier complete result stays until it is replaced).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import EvaluationError

__all__ = ["write_outputs", "check_out_dir", "markdown_table", "csv_text", "json_text", "figure_png", "format_number"]


def format_number(value: Any, digits: int = 4) -> str:
    """``value`` for a table cell: floats with ``digits`` significant digits, the rest as ``str``."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (floats shown with 4 significant digits)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(format_number(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV text with a header line (full float precision)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def json_text(data: Any) -> str:
    """Indented JSON (NaN written as ``null``)."""
    return json.dumps(_finite(data), indent=2, ensure_ascii=False) + "\n"


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return None if math.isnan(data) or math.isinf(data) else data
    if isinstance(data, Mapping):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(value) for value in data]
    return data


def figure_png(figure, dpi: int = 150) -> bytes:
    """PNG bytes of a matplotlib figure (the figure is closed afterwards)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def check_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` if needed and check that files can be written there (before any computation)."""
    folder = Path(out_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise EvaluationError(f"output path {str(folder)!r} is a file: give a folder for --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise EvaluationError(
            f"cannot write to {str(folder)!r}: {error.strerror or error}; choose a writable folder for --out"
        ) from None
    return folder


def write_outputs(out_dir: str | Path, files: Mapping[str, str | bytes]) -> list[Path]:
    """Write ``{file name: content}`` into ``out_dir`` (created if needed), each file atomically.

    Parameters
    ----------
    out_dir
        The output folder.
    files
        File names (relative to ``out_dir``) and their text or bytes.

    Returns
    -------
    list[Path]
        The written paths, in the order given.

    """
    folder = check_out_dir(out_dir)
    written = []
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8") if isinstance(content, str) else content
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o666 & ~_umask())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        written.append(path)
    return written


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
