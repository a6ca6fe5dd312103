"""Writing an evaluation's results: markdown, CSV, JSON and figures into one output folder.

Everything is rendered in memory first; the files are then written under temporary names in the output folder
and renamed onto their final names (:func:`bilrp._io.atomic_paths`), so a file is either complete or absent:
an interrupted run leaves no half-written file, and an earlier complete result stays until it is replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .._io import atomic_paths, fill, probe_writable
from .errors import EvaluationError

__all__ = ["write_outputs", "check_out_dir"]


def check_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` if needed and check that files can be written there (before any computation)."""
    folder = Path(out_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise EvaluationError(f"output path {str(folder)!r} is a file: give a folder for --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe_writable(folder)
    except OSError as error:
        raise EvaluationError(
            f"cannot write to {str(folder)!r}: {error.strerror or error}; choose a writable folder for --out"
        ) from None
    return folder


def write_outputs(out_dir: str | Path, files: Mapping[str, str | bytes]) -> list[Path]:
    """Write ``{file name: content}`` into ``out_dir`` (created if needed), each file complete or not at all.

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
    paths = [folder / name for name in files]
    with atomic_paths(paths) as temporaries:
        for temporary, content in zip(temporaries, files.values(), strict=True):
            fill(temporary, content.encode("utf-8") if isinstance(content, str) else content)
    return paths
