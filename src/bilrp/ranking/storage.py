"""The files of a document index: a JSON manifest and safetensors shards, each written whole.

See :mod:`bilrp.ranking.index` for the layout. This module reads and writes them and knows nothing of models
beyond the fingerprint it records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from .._io import json_text, one_line, write_bytes
from ..explainer import TextFactor
from ..models import SimilarityModel
from .fingerprint import model_fingerprint

__all__ = [
    "FORMAT",
    "KIND",
    "MANIFEST",
    "STORAGE_DTYPES",
    "DamagedIndexError",
    "read_manifest",
    "new_manifest",
    "shard_bytes",
    "write_shard",
    "load_shard",
    "read_contributions",
]

FORMAT = 1
KIND = "bilrp-document-index"
MANIFEST = "manifest.json"
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""How the contributions can be stored (``phi`` and the bias vectors are kept in float32, or float64)."""


class DamagedIndexError(ValueError):
    """An index folder whose manifest or shards cannot be read."""


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the index at ``path``, or a one-line error saying why there is none to read."""
    folder = Path(path)
    file = folder / MANIFEST
    if not file.is_file():
        what = "is not a folder" if folder.exists() and not folder.is_dir() else f"holds no {MANIFEST}"
        raise FileNotFoundError(f"no index at {folder}: it {what}; build one with bilrp index")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedIndexError(f"cannot read {file}: {' '.join(str(error).split())}; build the index again") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND or manifest.get("format") != FORMAT:
        raise DamagedIndexError(f"{file} is not the manifest of a bilrp document index (format {FORMAT})")
    return manifest


def new_manifest(
    model: SimilarityModel, rules: str, dtype: str, prompt_name: str | None, source: str | None
) -> dict[str, Any]:
    """The manifest of a new, empty index of ``model`` (its fingerprint included)."""
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


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32, or in float64 when it was computed in float64."""
    return tensor.to(torch.float64 if tensor.dtype == torch.float64 else torch.float32).contiguous()


def shard_bytes(documents: list[tuple[str, str]], factors: list[TextFactor], dtype: torch.dtype) -> bytes:
    """The safetensors file of one shard."""
    records = [
        {
            "id": name,
            "text": text,
            "tokens": factor["tokens"],
            "word_ids": factor["word_ids"],
            "offsets": None if factor["offsets"] is None else [list(o) for o in factor["offsets"]],
            "prompt_length": factor["prompt_length"],
        }
        for (name, text), factor in zip(documents, factors, strict=True)
    ]
    tensors = {
        "contributions": torch.cat([f["contributions"].detach().cpu() for f in factors]).to(dtype).contiguous(),
        "lengths": torch.tensor([f["length"] for f in factors], dtype=torch.int64),
        "phi": _at_least_float32(torch.stack([f["phi"].detach().cpu() for f in factors])),
        "bias": _at_least_float32(torch.stack([f["bias_vector"].detach().cpu() for f in factors])),
    }
    return save(tensors, metadata={"format": str(FORMAT), "documents": json_text(records, indent=None)})


def write_shard(folder: Path, first: int, data: bytes) -> str:
    """Write one shard file whole (temporary name, then rename); returns its name."""
    name = f"shard-{first:08d}.safetensors"
    write_bytes(folder / name, data)
    return name


def load_shard(folder: Path, shard: dict[str, Any]) -> tuple[list[dict], torch.Tensor, torch.Tensor, torch.Tensor]:
    """The documents, lengths, phi and bias of one listed shard, or :class:`DamagedIndexError`."""
    file = folder / shard["file"]
    try:
        with safe_open(str(file), framework="pt") as handle:
            records = json.loads(handle.metadata()["documents"])
            lengths, phi, bias = (handle.get_tensor(name) for name in ("lengths", "phi", "bias"))
    except (OSError, SafetensorError, KeyError, TypeError, json.JSONDecodeError) as error:
        problem = one_line(error) or type(error).__name__
        raise DamagedIndexError(f"cannot read index shard {file}: {problem}; build the index again") from None
    if len(records) != shard["count"] or len(lengths) != shard["count"]:
        listed = shard["count"]
        raise DamagedIndexError(f"index shard {file} holds {len(records)} documents, the manifest lists {listed}")
    return records, lengths, phi, bias


def read_contributions(file: Path, start: int, end: int) -> torch.Tensor:
    """Rows ``start:end`` of a shard's stacked contributions (one document), read without loading the rest."""
    with safe_open(str(file), framework="pt") as handle:
        return handle.get_slice("contributions")[start:end]
