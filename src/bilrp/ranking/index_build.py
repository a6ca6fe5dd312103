"""Computing a document index's shards, in this process or on Ray, with one unit of work: :class:`FactorTexts`.

:class:`FactorTexts` turns a chunk of documents into their BiLRP factors (:func:`bilrp.explainer.text_factors`).
The local engine (:func:`build_here`) computes the chunks one after another and commits each as an index
shard. The Ray engine (:func:`build_on_ray`) computes the missing chunks on a Ray actor pool into Parquet
parts in ``INDEX/parts`` (resumable: :mod:`bilrp.corpus_runs.shards`), then commits them, in order, as the
same index shards the local engine writes, and deletes the parts. A shard counts once the manifest lists it
(:mod:`bilrp.ranking.index`), so an interruption at any point loses nothing and computes nothing twice.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load, save

from .._io import write_json
from ..attr import BiLRP
from ..corpus_runs import RayOptions, Record, WorkUnit, run_unit
from ..explainer import TextFactor, text_factors
from .fingerprint import digest
from .manifest import shard_identity
from .storage import MANIFEST, STORAGE_DTYPES, shard_bytes, write_shard

__all__ = ["FactorTexts", "PARTS", "build_here", "build_on_ray", "clear_leftovers", "documents_digest"]

PARTS = "parts"
"""The folder of an index where a Ray build keeps its Parquet parts until they are committed as shards."""
_KEPT = ("length", "tokens", "word_ids", "offsets", "prompt", "prompt_length")


def documents_digest(documents: Sequence[tuple[str, str]]) -> str:
    """The digest of ``(id, text)`` documents recorded with each shard."""
    return digest(*(part for pair in documents for part in pair))


@dataclass(frozen=True)
class FactorTexts(WorkUnit):
    """Each document's BiLRP factor: contributions, ``phi``, bias vector, tokens (what an index shard stores)."""

    name = "text-factors"
    rules: str = "paper"
    prompt_name: str | None = None
    batch_size: int = 32
    internal_batch_size: int | None = None
    truncate: bool = True

    def check(self, record: Record) -> str | None:
        return None  # documents are checked (non-empty, unique ids) before any is computed

    def prepare(self, model: Any) -> tuple[Any, BiLRP]:
        return model, BiLRP(model, rules=self.rules)

    def factors(self, state: tuple[Any, BiLRP], texts: list[str], progress: Callable | None = None) -> list:
        """The factors of ``texts`` (``progress`` is called with the texts of each finished batch)."""
        model, attribution = state
        return text_factors(
            model, attribution, texts, self.prompt_name, self.batch_size, self.internal_batch_size, self.truncate,
            progress,
        )  # fmt: skip

    def compute(self, state: tuple[Any, BiLRP], records: Sequence[Record]) -> list[TextFactor]:
        return self.factors(state, [record.texts[0] for record in records])

    def encode(self, result: TextFactor) -> bytes:
        tensors = {name: result[name].detach().cpu().contiguous() for name in ("contributions", "phi")}
        if result.get("bias_vector") is not None:
            tensors["bias_vector"] = result["bias_vector"].detach().cpu().contiguous()
        return save(tensors, metadata={"factor": json.dumps({key: result[key] for key in _KEPT})})

    def decode(self, data: bytes) -> TextFactor:
        tensors = load(data)
        factor: dict[str, Any] = dict(_metadata(data))
        factor["offsets"] = None if factor["offsets"] is None else [tuple(o) for o in factor["offsets"]]
        factor.update(tensors)
        factor.setdefault("bias_vector", None)
        return factor  # type: ignore[return-value]


def _metadata(data: bytes) -> dict[str, Any]:
    """The ``factor`` metadata of a safetensors blob (its JSON header)."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(json.loads(data[8 : 8 + size])["__metadata__"]["factor"])


def _commit(folder: Path, manifest: dict, first: int, chunk: list, factors: list, dtype: str) -> None:
    """Write one index shard whole, then list it with its checksum in the manifest (the shard's commit point)."""
    identity = shard_identity(manifest, first, len(chunk))
    data, checksum = shard_bytes(chunk, factors, STORAGE_DTYPES[dtype], identity)
    name = write_shard(folder, first, data)
    entry = {"file": name, "first": first, "count": len(chunk), "digest": documents_digest(chunk)}
    manifest["shards"].append({**entry, "content_sha256": checksum})
    manifest["documents"] = first + len(chunk)
    write_json(folder / MANIFEST, manifest)


def build_here(
    unit: FactorTexts,
    model: Any,
    documents: list[tuple[str, str]],
    folder: Path,
    manifest: dict,
    shard_size: int,
    dtype: str,
    progress: Callable[[int], object],
) -> None:
    """The local engine: compute the documents after ``manifest["documents"]``, one shard at a time."""
    state = unit.prepare(model)
    for first in range(int(manifest["documents"]), len(documents), shard_size):
        chunk = documents[first : first + shard_size]
        _commit(folder, manifest, first, chunk, unit.factors(state, [t for _, t in chunk], progress), dtype)


def build_on_ray(
    unit: FactorTexts,
    ray: RayOptions,
    documents: list[tuple[str, str]],
    folder: Path,
    manifest: dict,
    shard_size: int,
    dtype: str,
) -> list[str]:
    """The Ray engine: compute the missing documents into Parquet parts, commit them as shards; report lines."""
    done = int(manifest["documents"])
    records = [Record(key, name, (text,)) for key, (name, text) in enumerate(documents) if key >= done]
    parts = folder / PARTS
    meta = {"model": manifest["model"], "fingerprint": manifest["fingerprint"], "dtype": dtype}
    report = run_unit(unit, records, ray=ray, folder=parts, meta=meta, shard_size=shard_size)
    for first in range(done, len(documents), shard_size):
        chunk = documents[first : first + shard_size]
        factors = [unit.decode(report.rows[key].data) for key in range(first, first + len(chunk))]
        _commit(folder, manifest, first, chunk, factors, dtype)
    shutil.rmtree(parts, ignore_errors=True)
    return report.lines()


def clear_leftovers(folder: Path, manifest: dict[str, Any]) -> None:
    """Remove what a killed writer left (temporary files, shards it wrote but never listed); under the lock."""
    listed = {shard["file"] for shard in manifest["shards"]}
    for file in folder.iterdir():
        temporary = file.name.startswith((".shard-", f".{MANIFEST}.")) and file.name.endswith(".partial")
        if temporary or (file.name.startswith("shard-") and file.name not in listed and file.is_file()):
            file.unlink(missing_ok=True)
