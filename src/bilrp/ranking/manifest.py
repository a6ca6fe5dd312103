"""The manifest of a document index (``manifest.json``): what it records, and the schema every reader checks.

The manifest is the root of an index's integrity: it lists every shard with the checksum of its contents
(:func:`bilrp.ranking.storage.content_digest`) and the digest of its documents' ids and texts, and records the
model fingerprint, rule set, storage dtype and prompt the factors were computed with. :func:`read_manifest`
refuses a manifest that does not follow :func:`check_manifest`'s schema with one line naming the field, so
nothing downstream meets a missing key or a wrong type.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .fingerprint import FINGERPRINT_PARTS, canonical_rules, model_fingerprint

__all__ = [
    "FORMAT",
    "KIND",
    "MANIFEST",
    "STORAGE_DTYPE_NAMES",
    "DamagedIndexError",
    "REBUILD",
    "shard_name",
    "shard_identity",
    "read_manifest",
    "new_manifest",
    "check_manifest",
]

FORMAT = 2
"""Format 2 records a checksum per shard (format 1, without them, is refused: it cannot be verified)."""
KIND = "bilrp-document-index"
MANIFEST = "manifest.json"
STORAGE_DTYPE_NAMES = ("float32", "float16", "bfloat16")
"""How the contributions can be stored (the keys of :data:`bilrp.ranking.storage.STORAGE_DTYPES`)."""
REBUILD = "build the index again into a new folder (bilrp index DOCS --out FOLDER, or DocumentIndex.build)"
"""What to do about a damaged, foreign or unverifiable index: the end of every such error."""

_HEX = {"digest": re.compile(r"[0-9a-f]{32}"), "content_sha256": re.compile(r"[0-9a-f]{64}")}


class DamagedIndexError(ValueError):
    """An index folder whose manifest or shards are damaged, changed, foreign or cannot be read."""


def shard_name(first: int) -> str:
    """The file name of the shard whose first document is at position ``first``: the only name a manifest may list."""
    return f"shard-{first:08d}.safetensors"


def shard_identity(manifest: dict[str, Any], first: int, count: int) -> dict[str, Any]:
    """What a shard records of the index it belongs to (compared with the manifest when it is opened)."""
    keys = ("model", "fingerprint", "rules", "dtype", "prompt_name", "prompt")
    return {**{key: manifest[key] for key in keys}, "first": first, "count": count}


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the index at ``path``, checked by :func:`check_manifest`, or a one-line error."""
    folder = Path(path)
    file = folder / MANIFEST
    if not file.is_file():
        what = "is not a folder" if folder.exists() and not folder.is_dir() else f"holds no {MANIFEST}"
        raise FileNotFoundError(f"no index at {folder}: it {what}; build one with bilrp index")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise DamagedIndexError(f"cannot read {file}: {' '.join(str(error).split())}; {REBUILD}") from None
    check_manifest(file, manifest)
    return manifest


def new_manifest(model: Any, rules: str, dtype: str, prompt_name: str | None, source: str | None) -> dict[str, Any]:
    """The manifest of a new, empty index of ``model`` (a :class:`~bilrp.SimilarityModel`; its fingerprint included)."""
    return {
        "kind": KIND,
        "format": FORMAT,
        "model": model.name,
        "source": source or model.name,
        "method": "bilrp",
        "rules": rules,
        "dtype": dtype,
        "prompt_name": prompt_name,
        "prompt": model.prompt(prompt_name),
        "fingerprint": model_fingerprint(model),
        "documents": 0,
        "shards": [],
    }


def _shown(value: Any) -> str:
    """``repr(value)``, cut to 60 characters (a message stays one short line)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_problem(manifest: dict[str, Any]) -> tuple[str, str] | None:
    """``(field, what is wrong)`` for the first top-level field that breaks the schema, else ``None``."""
    strings = {"model": False, "source": False, "rules": False, "prompt_name": True, "prompt": True}
    for key, optional in strings.items():
        if key not in manifest:
            return key, "is missing"
        if not (isinstance(manifest[key], str) or (optional and manifest[key] is None)):
            return key, f"is {_shown(manifest[key])}, not a text"
    if manifest.get("method") != "bilrp":
        return "method", f"is {_shown(manifest.get('method'))}, not 'bilrp'"
    if manifest.get("dtype") not in STORAGE_DTYPE_NAMES:
        return "dtype", f"is {_shown(manifest.get('dtype'))}, not one of {', '.join(STORAGE_DTYPE_NAMES)}"
    try:
        canonical_rules(manifest["rules"])
    except (ValueError, TypeError) as error:
        return "rules", f"is not a rule set ({' '.join(str(error).split())})"
    fingerprint = manifest.get("fingerprint")
    if not isinstance(fingerprint, dict):
        return "fingerprint", "is missing" if fingerprint is None else f"is {type(fingerprint).__name__}, not an object"
    for part in FINGERPRINT_PARTS:
        if not isinstance(fingerprint.get(part), str):
            return f"fingerprint.{part}", "is missing" if part not in fingerprint else "is not a text"
    if not _is_int(manifest.get("documents")) or manifest["documents"] < 1:
        return "documents", f"is {_shown(manifest.get('documents'))}, not a positive whole number"
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards:
        return "shards", f"is {_shown(shards)}, not a non-empty list of shard entries"
    return None


def _shard_problem(shards: list[Any], documents: int) -> tuple[str, str] | None:
    """``(field, what is wrong)`` for the first shard entry that breaks the schema or the order, else ``None``."""
    first = 0
    for number, entry in enumerate(shards):
        where = f"shards[{number}]"
        if not isinstance(entry, dict):
            return where, f"is {_shown(entry)}, not a shard entry {{file, first, count, digest, content_sha256}}"
        if not _is_int(entry.get("count")) or entry["count"] < 1:
            return f"{where}.count", f"is {_shown(entry.get('count'))}, not a positive whole number"
        if not _is_int(entry.get("first")) or entry["first"] != first:
            return f"{where}.first", f"is {_shown(entry.get('first'))}, not {first} (the shards must follow each other)"
        if entry.get("file") != shard_name(first):
            name = shard_name(first)
            return f"{where}.file", f"is {_shown(entry.get('file'))}, not {name!r} (a file of the index folder)"
        for key, pattern in _HEX.items():
            if not isinstance(entry.get(key), str) or not pattern.fullmatch(entry[key]):
                what = "is missing" if key not in entry else f"is {_shown(entry[key])}, not a hex digest"
                return f"{where}.{key}", what
        first += entry["count"]
    if first != documents:
        return "documents", f"is {documents}, but the shards hold {first}"
    return None


def check_manifest(file: Path, manifest: Any) -> None:
    """Raise :class:`DamagedIndexError` (one line naming the field and what to do) unless ``manifest`` is valid.

    Valid: the kind and format of a bilrp document index; texts for ``model``, ``source``, ``rules`` (a rule
    set), ``prompt_name`` and ``prompt``; a storage dtype; every part of a fingerprint; and a non-empty list of
    shards that follow each other (``first`` = the documents before), each with a positive ``count``, the
    file name :func:`shard_name` gives (inside the folder), and hex digests; ``documents`` their total.
    """
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise DamagedIndexError(f"{file} is not the manifest of a bilrp document index; {REBUILD}")
    if manifest.get("format") != FORMAT:
        found = manifest.get("format")
        why = "was written by an earlier bilrp, without shard checksums" if found == 1 else f"has format {found!r}"
        raise DamagedIndexError(f"index manifest {file} {why} (this bilrp reads format {FORMAT}); {REBUILD}")
    problem = _field_problem(manifest) or _shard_problem(manifest["shards"], manifest["documents"])
    if problem is not None:
        field, what = problem
        raise DamagedIndexError(f"index manifest {file}: field {field!r} {what}; {REBUILD}")
