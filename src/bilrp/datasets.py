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

__all__ = ["SimilarityPair", "load", "data_dir", "DATASETS", "DatasetError", "MSTSB_LANGUAGES"]

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


def data_dir(path: str | Path | None = None) -> Path:
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
    folder = globals()["data_dir"](data_dir)
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
    for line in file.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")  # no quote handling: sentences contain raw '"'
        pairs.append(SimilarityPair(fields[5].strip(), fields[6].strip(), float(fields[4])))
    return pairs


def _load_sick(folder: Path, split: str) -> list[SimilarityPair]:
    file = _require(folder / "sick" / "SICK.txt", "sick")
    rows = csv.DictReader(
        file.read_text(encoding="utf-8").replace("\r", "").splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE
    )
    return [
        SimilarityPair(row["sentence_A"].strip(), row["sentence_B"].strip(), float(row["relatedness_score"]))
        for row in rows
        if row["SemEval_set"].strip().lower() == split
    ]


def _load_biosses(folder: Path, split: str) -> list[SimilarityPair]:
    file = _require(folder / "biosses" / "biosses.tsv", "biosses")
    rows = csv.DictReader(file.read_text(encoding="utf-8").splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    return [SimilarityPair(row["sentence1"].strip(), row["sentence2"].strip(), float(row["score"])) for row in rows]


def _read_mstsb(folder: Path, language: str) -> list[list[str]]:
    if language not in MSTSB_LANGUAGES:
        raise DatasetError(f"mSTSb has no language {language!r}: choose one of {', '.join(MSTSB_LANGUAGES)}")
    file = _require(folder / "mstsb" / f"stsb-{language}-test.csv", f"mstsb-{language}")
    with file.open(encoding="utf-8", newline="") as handle:
        return [row for row in csv.reader(handle) if row]


def _load_mstsb(folder: Path, language_a: str, language_b: str, split: str) -> list[SimilarityPair]:
    if split != "test":
        raise DatasetError(f"mSTSb has only the 'test' split, not {split!r}")
    rows_a = _read_mstsb(folder, language_a)
    rows_b = rows_a if language_b == language_a else _read_mstsb(folder, language_b)
    if len(rows_a) != len(rows_b):
        raise DatasetError(
            f"mSTSb files for {language_a} and {language_b} differ in length ({len(rows_a)} vs {len(rows_b)})"
        )
    return [SimilarityPair(a[0].strip(), b[1].strip(), float(a[2])) for a, b in zip(rows_a, rows_b, strict=True)]
