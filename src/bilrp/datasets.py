"""Sentence-similarity datasets read from local files: STSb, SICK-R, BIOSSES and multilingual STSb.

Files are looked up under the folder named by the environment variable ``BILRP_DATA_DIR`` (or the
``data_dir`` argument); nothing is downloaded. The expected layout is that of the offline copies::

    stsb/sts-test.csv, stsb/sts-dev.csv     (TAB-separated, no header, no quoting)
    sick/SICK.txt                           (TAB-separated, header, CRLF, SemEval_set column)
    biosses/biosses.tsv                     (TAB-separated, header, mean score column)
    mstsb/stsb-<lang>-test.csv              (comma-separated CSV, no header)
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SimilarityPair", "load", "data_folder", "DATASETS", "DatasetError", "MSTSB_LANGUAGES"]

DATA_DIR_VARIABLE = "BILRP_DATA_DIR"
MSTSB_LANGUAGES = ("en", "de", "es", "fr")
DATASETS = ("stsb", "sick", "biosses", "mstsb-<lang>", "mstsb-<la>-<lb>")
_SPLITS = {
    "stsb": ("test", "dev"),
    "sick": ("test", "train", "trial"),
    "biosses": ("test", "all"),
}


class DatasetError(ValueError):
    """A dataset that cannot be found or read, with what was expected where."""


@dataclass(frozen=True)
class SimilarityPair:
    """One pair with its gold similarity score (on the dataset's own scale)."""

    text_a: str
    text_b: str
    score: float


def data_folder(path: str | Path | None = None) -> Path:
    """The dataset folder: ``path`` if given, else ``$BILRP_DATA_DIR``."""
    chosen = path if path is not None else os.environ.get(DATA_DIR_VARIABLE)
    if not chosen:
        raise DatasetError(
            f"no dataset folder: set {DATA_DIR_VARIABLE} to the folder holding stsb/, sick/, biosses/ and mstsb/ "
            "(or pass data_dir=)"
        )
    folder = Path(chosen).expanduser()
    if not folder.is_dir():
        raise DatasetError(
            f"dataset folder {str(folder)!r} does not exist: set {DATA_DIR_VARIABLE} to an existing folder"
        )
    return folder


def _require(file: Path, dataset: str) -> Path:
    if not file.is_file():
        raise DatasetError(f"dataset {dataset!r} expects the file {str(file)!r}, which does not exist")
    return file


def load(name: str, split: str = "test", data_dir: str | Path | None = None) -> list[SimilarityPair]:
    """Load a similarity dataset as a list of :class:`SimilarityPair`.

    Parameters
    ----------
    name
        ``"stsb"``, ``"sick"`` (relatedness), ``"biosses"``, ``"mstsb-<lang>"`` (``en``, ``de``, ``es``,
        ``fr``) or ``"mstsb-<la>-<lb>"`` (cross-lingual: text A in ``la``, text B in ``lb``, same row).
    split
        ``"test"`` (default); ``"dev"`` for STSb; ``"train"``/``"trial"`` for SICK. BIOSSES has one split
        (``"test"`` and ``"all"`` both give all 100 pairs); mSTSb has ``"test"`` only.
    data_dir
        Folder holding the datasets; default ``$BILRP_DATA_DIR``.

    """
    folder = data_folder(data_dir)
    match = re.fullmatch(r"mstsb-([a-z]{2})(?:-([a-z]{2}))?", name)
    if match:
        return _load_mstsb(folder, match.group(1), match.group(2) or match.group(1), split)
    if name not in _SPLITS:
        raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    if split not in _SPLITS[name]:
        raise DatasetError(f"dataset {name!r} has no split {split!r}: choose one of {', '.join(_SPLITS[name])}")
    return {"stsb": _load_stsb, "sick": _load_sick, "biosses": _load_biosses}[name](folder, split)


def _load_stsb(folder: Path, split: str) -> list[SimilarityPair]:
    file = _require(folder / "stsb" / f"sts-{split}.csv", "stsb")
    pairs = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")  # no quote handling: sentences contain raw '"'
        if len(fields) < 7:
            raise DatasetError(
                f"line {number} of {str(file)!r} has {len(fields)} TAB-separated fields, expected at least 7 "
                "(genre, filename, year, id, score, sentence1, sentence2): is it the original STSb release?"
            )
        pairs.append(SimilarityPair(fields[5].strip(), fields[6].strip(), _score(fields[4], file, number)))
    return pairs


def _score(value: str, file: Path, number: int) -> float:
    try:
        return float(value)
    except ValueError:
        raise DatasetError(f"line {number} of {str(file)!r} has the score {value!r}, which is not a number") from None


def _load_sick(folder: Path, split: str) -> list[SimilarityPair]:
    file = _require(folder / "sick" / "SICK.txt", "sick")
    rows = _read_tsv(file, ("sentence_A", "sentence_B", "relatedness_score", "SemEval_set"))
    return [
        SimilarityPair(row["sentence_A"].strip(), row["sentence_B"].strip(), _score(row["relatedness_score"], file, n))
        for n, row in enumerate(rows, start=2)
        if row["SemEval_set"].strip().lower() == split
    ]


def _load_biosses(folder: Path, split: str) -> list[SimilarityPair]:
    file = _require(folder / "biosses" / "biosses.tsv", "biosses")
    rows = _read_tsv(file, ("sentence1", "sentence2", "score"))
    return [
        SimilarityPair(row["sentence1"].strip(), row["sentence2"].strip(), _score(row["score"], file, n))
        for n, row in enumerate(rows, start=2)
    ]


def _read_tsv(file: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a TAB-separated file with a header (CR characters dropped, no quote handling)."""
    lines = file.read_text(encoding="utf-8").replace("\r", "").splitlines()
    reader = csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    missing = [column for column in columns if column not in (reader.fieldnames or [])]
    if missing:
        raise DatasetError(f"{str(file)!r} lacks the column(s) {', '.join(missing)} in its header line")
    return list(reader)


def _read_mstsb(folder: Path, language: str) -> list[list[str]]:
    if language not in MSTSB_LANGUAGES:
        raise DatasetError(f"mSTSb has no language {language!r}: choose one of {', '.join(MSTSB_LANGUAGES)}")
    file = _require(_mstsb_file(folder, language), f"mstsb-{language}")
    with file.open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    for number, row in enumerate(rows, start=1):
        if len(row) < 3:
            raise DatasetError(
                f"row {number} of {str(file)!r} has {len(row)} fields, expected 3 (sentence1, sentence2, score)"
            )
    return rows


def _load_mstsb(folder: Path, language_a: str, language_b: str, split: str) -> list[SimilarityPair]:
    if split != "test":
        raise DatasetError(f"mSTSb has only the 'test' split, not {split!r}")
    rows_a = _read_mstsb(folder, language_a)
    rows_b = rows_a if language_b == language_a else _read_mstsb(folder, language_b)
    if len(rows_a) != len(rows_b):
        raise DatasetError(
            f"mSTSb files for {language_a} and {language_b} differ in length ({len(rows_a)} vs {len(rows_b)})"
        )
    return [
        SimilarityPair(a[0].strip(), b[1].strip(), _score(a[2], _mstsb_file(folder, language_a), number))
        for number, (a, b) in enumerate(zip(rows_a, rows_b, strict=True), start=1)
    ]


def _mstsb_file(folder: Path, language: str) -> Path:
    return folder / "mstsb" / f"stsb-{language}-test.csv"
