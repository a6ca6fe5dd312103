"""The shard files of a document index: safetensors, each written whole, each with a checksum of its contents.

See :mod:`bilrp.ranking.index` for the layout and :mod:`bilrp.ranking.manifest` for the manifest. A shard holds
``contributions`` (its documents' token rows stacked, in the storage dtype), ``lengths``, ``phi`` and ``bias``
tensors, and in its metadata the documents (id, text, tokens, word ids, offsets, prompt length and the SHA-256
of the document's contribution rows) and the identity of its index (model fingerprint, rules, dtype, prompt,
position). :func:`content_digest` is the shard's checksum the manifest records: the SHA-256 of the metadata and
of every tensor (names, dtypes, shapes; the bytes of all but the contributions, whose rows each document's own
digest covers). It depends on the contents only, not on the order safetensors writes its header in, so the
local and the Ray engine record the same manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from .._io import json_text, one_line, write_bytes
from ..explainer import TextFactor
from .manifest import FORMAT, KIND, MANIFEST, REBUILD, DamagedIndexError, new_manifest, read_manifest, shard_name

__all__ = [
    "FORMAT",
    "KIND",
    "MANIFEST",
    "STORAGE_DTYPES",
    "DamagedIndexError",
    "ShardData",
    "read_manifest",
    "new_manifest",
    "tensor_digest",
    "content_digest",
    "shard_bytes",
    "write_shard",
    "read_shard",
    "read_contributions",
]

STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""How the contributions can be stored (``phi`` and the bias vectors are kept in float32, or float64)."""
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_SAFETENSORS_DTYPES |= {"I64": torch.int64, "I32": torch.int32}
_SMALL = ("lengths", "phi", "bias")
"""The tensors read whole when a shard is opened (the contributions are read a document at a time)."""


@dataclass
class ShardData:
    """What opening a shard reads: its metadata, the small tensors, and the dtype and shape of the contributions."""

    file: Path
    metadata: dict[str, str]
    tensors: dict[str, torch.Tensor]
    contributions: tuple[torch.dtype | None, tuple[int, ...]]


def _bytes_of(tensor: torch.Tensor) -> memoryview:
    """The bytes of a tensor as safetensors stores them (C order, little-endian), without a copy when contiguous."""
    return memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def tensor_digest(tensor: torch.Tensor) -> str:
    """The SHA-256 (hex) of a tensor's bytes, as safetensors stores them."""
    return hashlib.sha256(_bytes_of(tensor)).hexdigest()


def content_digest(
    metadata: Mapping[str, str], tensors: Mapping[str, torch.Tensor], contributions: tuple[Any, tuple[int, ...]]
) -> str:
    """The checksum of a shard's contents (hex SHA-256): metadata, the small tensors, the contributions' form.

    Every part is length-prefixed, so no two different contents share a digest by concatenation.
    """
    hasher = hashlib.sha256()

    def part(data: str | memoryview) -> None:
        data = memoryview(data.encode("utf-8")) if isinstance(data, str) else data
        hasher.update(data.nbytes.to_bytes(8, "little"))
        hasher.update(data)

    for key in sorted(metadata):
        part(key)
        part(metadata[key])
    for name in sorted(tensors):
        tensor = tensors[name]
        part(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}")
        part(_bytes_of(tensor))
    part(f"contributions|{contributions[0]}|{tuple(contributions[1])}")
    return hasher.hexdigest()


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32, or in float64 when it was computed in float64."""
    return tensor.to(torch.float64 if tensor.dtype == torch.float64 else torch.float32).contiguous()


def _check_finite(documents: list[tuple[str, str]], factors: list[TextFactor]) -> None:
    """Refuse to store a factor with a NaN or an infinity (one line naming the document): nothing is written."""
    for (name, _), factor in zip(documents, factors, strict=True):
        for key in ("contributions", "phi", "bias_vector"):
            if not bool(torch.isfinite(factor[key]).all()):
                raise ValueError(
                    f"the {key} of document {name!r} hold NaN or infinite values, so its factor is not stored: "
                    "check the model's weights and the document (bilrp.explain on it names the module at fault)"
                )


def shard_bytes(
    documents: list[tuple[str, str]], factors: list[TextFactor], dtype: torch.dtype, identity: dict[str, Any]
) -> tuple[bytes, str]:
    """The safetensors file of one shard and its :func:`content_digest`.

    ``identity`` (model, fingerprint, rules, dtype, prompt name, first position, count) is stored with it, so
    a shard is recognised as another index's even when listed with its checksum.
    """
    _check_finite(documents, factors)
    rows = [factor["contributions"].detach().cpu().to(dtype).contiguous() for factor in factors]
    records = [
        {
            "id": name,
            "text": text,
            "tokens": factor["tokens"],
            "word_ids": factor["word_ids"],
            "offsets": None if factor["offsets"] is None else [list(o) for o in factor["offsets"]],
            "prompt_length": factor["prompt_length"],
            "contributions_sha256": tensor_digest(row),
        }
        for (name, text), factor, row in zip(documents, factors, rows, strict=True)
    ]
    small = {
        "lengths": torch.tensor([f["length"] for f in factors], dtype=torch.int64),
        "phi": _at_least_float32(torch.stack([f["phi"].detach().cpu() for f in factors])),
        "bias": _at_least_float32(torch.stack([f["bias_vector"].detach().cpu() for f in factors])),
    }
    contributions = torch.cat(rows)
    metadata = {
        "format": str(FORMAT),
        "documents": json_text(records, indent=None),
        "index": json_text(identity, indent=None),
    }
    data = save({"contributions": contributions, **small}, metadata=metadata)
    return data, content_digest(metadata, small, (contributions.dtype, tuple(contributions.shape)))


def write_shard(folder: Path, first: int, data: bytes) -> str:
    """Write one shard file whole (temporary name, then rename); returns its name."""
    name = shard_name(first)
    write_bytes(folder / name, data)
    return name


def _inside(folder: Path, file: Path) -> None:
    """Refuse a shard that is, or links to, a file outside the index folder."""
    if file.resolve().parent != folder.resolve():
        raise DamagedIndexError(f"index shard {file} leads out of the index folder {folder}; {REBUILD}")


def read_shard(folder: Path, name: str) -> ShardData:
    """The metadata, small tensors and contributions' form of shard ``name`` (unverified: see ``shard_checks``)."""
    file = folder / name
    _inside(folder, file)
    try:
        with safe_open(str(file), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key).clone() for key in _SMALL}  # not the file's mapped memory
            rows = handle.get_slice("contributions")
            contributions = (_SAFETENSORS_DTYPES.get(rows.get_dtype()), tuple(rows.get_shape()))
    except (OSError, SafetensorError, KeyError, TypeError, ValueError) as error:
        problem = one_line(error) or type(error).__name__
        raise DamagedIndexError(f"cannot read index shard {file}: {problem}; {REBUILD}") from None
    return ShardData(file, metadata, tensors, contributions)


def read_contributions(file: Path, start: int, end: int, document: dict[str, Any], dtype: torch.dtype) -> torch.Tensor:
    """Rows ``start:end`` of a shard's stacked contributions (one ``document``), verified before they are returned.

    Read without loading the rest of the shard; refused with one line naming the shard file and the document id
    when the rows' SHA-256 differs from the one in the (verified) shard metadata, or any value is NaN or infinite.
    """
    name = document["id"]
    try:
        with safe_open(str(file), framework="pt") as handle:
            rows = handle.get_slice("contributions")[start:end].clone()  # verified below, then not changed
    except (OSError, SafetensorError) as error:
        problem = f"cannot read index shard {file} (document {name!r}): {one_line(error)}; {REBUILD}"
        raise DamagedIndexError(problem) from None
    _check_rows(file, rows, document, dtype)
    return rows


def _check_rows(file: Path, rows: torch.Tensor, document: dict[str, Any], dtype: torch.dtype) -> None:
    """Refuse a document's contribution rows unless they have its SHA-256 and the dtype, and are finite."""
    name = document["id"]
    if rows.dtype != dtype or tensor_digest(rows) != document["contributions_sha256"]:
        raise DamagedIndexError(
            f"index shard {file}: the contributions of document {name!r} differ from their checksum; {REBUILD}"
        )
    if not bool(torch.isfinite(rows.sum())) and not bool(torch.isfinite(rows).all()):  # the sum: a quick test
        raise DamagedIndexError(
            f"index shard {file}: the stored contributions of document {name!r} hold NaN or infinite values; {REBUILD}"
        )


def metadata_json(data: ShardData, key: str) -> Any:
    """The JSON value of metadata ``key`` of a shard, or :class:`DamagedIndexError`."""
    try:
        return json.loads(data.metadata[key])
    except (KeyError, TypeError, ValueError, RecursionError):
        raise DamagedIndexError(f"index shard {data.file} has no readable {key!r} metadata; {REBUILD}") from None
