"""What a document index verifies before it serves a shard: checksum, identity, shapes, finite values, tokens.

:func:`verify_shard` runs when an index is opened, on what opening reads anyway (the metadata and the small
tensors): the shard's :func:`~bilrp.ranking.storage.content_digest` must equal the checksum the manifest lists
for it (a changed, damaged or swapped shard is refused), its recorded identity must be this index's (model
fingerprint, rules, dtype, prompt, position: a shard of another index is refused even when listed with its own
checksum), its documents must be those the manifest's digest names, and every length must agree with the tokens
and the tensors' shapes; ``phi`` and the bias vectors must be finite. A document's contribution rows are
verified when they are read (:func:`~bilrp.ranking.storage.read_contributions`), and its stored tokens are
checked against its text by :func:`check_tokens` before an explanation shows them. Every refusal is one
:class:`~bilrp.ranking.manifest.DamagedIndexError` line naming the shard file (and the document) and what to do.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from .index_build import documents_digest
from .manifest import REBUILD, DamagedIndexError, shard_identity
from .storage import STORAGE_DTYPES, ShardData, content_digest, metadata_json, read_shard

__all__ = ["load_shards", "verify_shard", "check_unique_ids", "check_tokens"]

_RECORD_KEYS = ("id", "text", "tokens", "word_ids", "offsets", "prompt_length", "contributions_sha256")
_REQUIRED = frozenset(_RECORD_KEYS)


def _refuse(data: ShardData, what: str) -> DamagedIndexError:
    return DamagedIndexError(f"index shard {data.file} {what}; {REBUILD}")


def _check_records(data: ShardData, records: Any, entry: dict[str, Any]) -> None:
    """Refuse unless the records are the manifest's count, each with every field, and digest to its ``digest``."""
    if not isinstance(records, list) or len(records) != entry["count"]:
        found = len(records) if isinstance(records, list) else type(records).__name__
        raise _refuse(data, f"holds {found} documents, the manifest lists {entry['count']}")
    for record in records:
        if not (isinstance(record, dict) and _REQUIRED <= record.keys()):
            raise _refuse(data, f"has a document record without the fields {', '.join(_RECORD_KEYS)}")
        if type(record["id"]) is not str or type(record["text"]) is not str:
            raise _refuse(data, f"has a document whose id or text is not a text ({str(record['id'])[:40]!r})")
    if documents_digest([(record["id"], record["text"]) for record in records]) != entry["digest"]:
        raise _refuse(data, "holds other document ids or texts than the manifest lists")


def _check_shapes(data: ShardData, records: list[dict[str, Any]], dtype: str) -> None:
    """Every length agrees with its document's tokens and with the shapes of the tensors."""
    lengths, phi, bias = (data.tensors[name] for name in ("lengths", "phi", "bias"))
    count = len(records)
    if lengths.dtype != torch.int64 or tuple(lengths.shape) != (count,) or bool((lengths < 1).any()):
        raise _refuse(data, f"has lengths {tuple(lengths.shape)} {lengths.dtype}, not one positive int64 a document")
    if phi.dim() != 2 or phi.shape != bias.shape or phi.shape[0] != count or phi.dtype not in _VECTOR_DTYPES:
        raise _refuse(data, f"has phi {tuple(phi.shape)} and bias {tuple(bias.shape)}, not ({count}, dim) each")
    rows_dtype, rows_shape = data.contributions
    if rows_dtype != STORAGE_DTYPES[dtype] or rows_shape != (int(lengths.sum()), phi.shape[1]):
        shown = f"{rows_shape} {rows_dtype}"
        raise _refuse(data, f"has contributions {shown}, not ({int(lengths.sum())}, {phi.shape[1]}) {dtype}")
    for record, length in zip(records, lengths.tolist(), strict=True):
        if not _sized(record, length):
            tokens = record["tokens"]
            count = len(tokens) if isinstance(tokens, list) else "no list of"
            raise _refuse(data, f"records length {length} for document {record['id']!r}, which has {count} tokens")
        prompt = record["prompt_length"]
        if type(prompt) is not int or not 0 <= prompt <= length:
            raise _refuse(data, f"records prompt length {prompt!r} for document {record['id']!r} of {length} tokens")


def _sized(record: dict[str, Any], length: int) -> bool:
    """Whether a record's tokens, and its word ids and offsets when it has them, are ``length`` long."""
    tokens, word_ids, offsets = record["tokens"], record["word_ids"], record["offsets"]
    return (
        type(tokens) is list
        and len(tokens) == length
        and (word_ids is None or (type(word_ids) is list and len(word_ids) == length))
        and (offsets is None or (type(offsets) is list and len(offsets) == length))
    )


_VECTOR_DTYPES = (torch.float32, torch.float64)


def verify_shard(data: ShardData, records: Any, entry: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Verify an opened shard against its manifest entry, or refuse it with one line.

    Parameters
    ----------
    data
        What :func:`~bilrp.ranking.storage.read_shard` read.
    records
        Its ``documents`` metadata, decoded.
    entry
        The shard's entry in the (schema-checked) manifest.
    manifest
        The manifest.

    Raises
    ------
    DamagedIndexError
        Naming the shard file (and the document) and what to do.

    """
    if content_digest(data.metadata, data.tensors, data.contributions) != entry["content_sha256"]:
        raise _refuse(data, "differs from its checksum in the manifest (changed, damaged, or another index's shard)")
    if metadata_json(data, "index") != shard_identity(manifest, entry["first"], entry["count"]):
        raise _refuse(data, "belongs to another index (another model, rule set, dtype, prompt or position)")
    _check_records(data, records, entry)
    _check_shapes(data, records, manifest["dtype"])
    for name in ("phi", "bias"):
        if bool(torch.isfinite(data.tensors[name].sum())):  # no NaN or infinity in any row (the quick test)
            continue
        finite = torch.isfinite(data.tensors[name]).all(dim=1)
        if not bool(finite.all()):
            document = records[int((~finite).nonzero()[0, 0])]["id"]
            raise _refuse(data, f"stores a {name} with NaN or infinite values for document {document!r}")


def check_unique_ids(files: list[Any], records: list[dict[str, Any]]) -> None:
    """Refuse an index that holds a document id twice (``files[i]`` is the shard of ``records[i]``)."""
    seen: dict[str, Any] = {}
    for file, record in zip(files, records, strict=True):
        if record["id"] in seen:
            raise DamagedIndexError(
                f"index shard {file} holds document id {record['id']!r} again (also in {seen[record['id']]}); {REBUILD}"
            )
        seen[record["id"]] = file


def _plain_tokens(model: Any, text: str) -> dict[str, Any] | None:
    """The tokens, word ids and offsets of ``text`` (no prompt) straight from a fast tokenizer; ``None`` for a slow
    one. A quick first test: what ``model.tokenize`` gives a single text without a prompt, at a sixth of its cost.
    """
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        return None
    encoded = tokenizer(text, truncation=True, max_length=model.max_length, return_offsets_mapping=True)
    return {
        "tokens": tokenizer.convert_ids_to_tokens(encoded["input_ids"]),
        "word_ids": encoded.word_ids(),
        "offsets": [list(o) for o in encoded["offset_mapping"]],
        "prompt_length": 0,
    }


def _model_tokens(model: Any, text: str, prompt_name: str | None) -> dict[str, Any]:
    """What the build stored for ``text``: ``model.tokenize``'s tokens, word ids, offsets and prompt length."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a truncation warning: the build gave it already
        batch = model.tokenize([text], truncate=True, prompt_name=prompt_name)
    offsets = batch.get("offsets", [None])[0]
    return {
        "tokens": batch["tokens"][0],
        "word_ids": batch.get("word_ids", [None])[0],
        "offsets": None if offsets is None else [list(o) for o in offsets],
        "prompt_length": batch.get("prompt_lengths", [0])[0],
    }


def check_tokens(model: Any, record: dict[str, Any], prompt_name: str | None, file: Any) -> None:
    """Refuse a document whose stored tokens are not its text's tokens (the shown text is the one explained).

    The text is tokenized again with the model the index was opened with (whose tokenizer, prompts and maximum
    length the fingerprint fixed), truncated as the build may have truncated it; the tokens, word ids, offsets
    and prompt length must equal the stored ones. Without a prompt, a fast tokenizer's own output is tried
    first; the model's full tokenization decides whenever that differs.
    """
    quick = _plain_tokens(model, record["text"]) if model.prompt(prompt_name) == "" else None
    if quick is not None and all(quick[key] == record[key] for key in quick):
        return
    fresh = _model_tokens(model, record["text"], prompt_name)
    if any(fresh[key] != record[key] for key in fresh):
        raise DamagedIndexError(
            f"index shard {file}: the stored tokens of document {record['id']!r} are not the tokens of its text; "
            f"{REBUILD}"
        )


def load_shards(path: Path, manifest: dict[str, Any]) -> tuple[list[dict], list, torch.Tensor, torch.Tensor]:
    """Every listed shard, verified: the records, ``(file, start, end)`` per document, and ``phi`` and bias."""
    records: list[dict] = []
    where: list[tuple[Path, int, int]] = []
    phis, biases = [], []
    for shard in manifest["shards"]:
        data = read_shard(path, shard["file"])
        shard_records = metadata_json(data, "documents")
        verify_shard(data, shard_records, shard, manifest)
        starts = [0, *torch.cumsum(data.tensors["lengths"], 0).tolist()]
        where += [(data.file, starts[row], starts[row + 1]) for row in range(len(shard_records))]
        records += shard_records
        phis.append(data.tensors["phi"])
        biases.append(data.tensors["bias"])
    check_unique_ids([file for file, _, _ in where], records)
    return records, where, torch.cat(phis), torch.cat(biases)
