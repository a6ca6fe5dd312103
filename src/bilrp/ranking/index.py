"""``DocumentIndex``: every document's BiLRP factor computed once and stored, to explain any query against them.

BiLRP factorises, ``R = C_q C_d^T`` (divided by ``|phi_q| |phi_d|`` for cosine), so a document's token
contributions ``C_d`` (tokens x dims), its representation ``phi_d`` and its bias vector ``phi_d - sum C_d`` are
all a query needs from it. An index is one folder::

    manifest.json                 the model fingerprint, the rule set, the storage dtype and the shard list
                                  (per shard: a digest of its ids and texts, the SHA-256 of its contents)
    shard-00000000.safetensors    one shard: ``contributions`` (its documents' tokens stacked), ``lengths``,
                                  ``phi`` and ``bias`` tensors; ids, texts, tokens, each document's
                                  contributions' SHA-256 and the index's identity in the metadata
    .bilrp.lock                   while a build writes (bilrp._integrity.folder_lock)

Every file is written under a temporary name and renamed (:mod:`bilrp._io`), and a shard counts only once the
manifest lists it, so an interrupted :meth:`DocumentIndex.build` leaves only complete shards and the next build
continues after them: nothing is lost, nothing computed twice. One writer at a time: a build holds the folder's
lock file (:func:`bilrp._integrity.folder_lock`), and a second writer is refused at once.

Nothing is served unverified (:mod:`bilrp.ranking.manifest`, :mod:`bilrp.ranking.shard_checks`): opening checks
the manifest's schema and every shard's checksum, identity, documents, shapes and finite vectors; a document's
contribution rows are checked against their own digest and its tokens against its text when it is explained.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .._integrity import LOCK_NAME, folder_lock
from .._validation import optional_positive_int, positive_int
from ..attr import BiLRP
from ..corpus_runs import RayOptions
from ..explainer import TextFactor
from ..models import SimilarityModel, as_similarity_model
from .fingerprint import canonical_rules, mismatch_message, model_fingerprint
from .index_build import PARTS, FactorTexts, build_here, build_on_ray, clear_leftovers, documents_digest
from .shard_checks import check_tokens, load_shards
from .storage import (
    MANIFEST,
    STORAGE_DTYPES,
    DamagedIndexError,
    new_manifest,
    read_contributions,
    read_manifest,
)

__all__ = ["DocumentIndex", "IndexMismatchError", "DamagedIndexError", "UnknownDocumentError", "STORAGE_DTYPES"]


class IndexMismatchError(ValueError):
    """An index built with another model, rule set, storage dtype or set of documents."""


class UnknownDocumentError(ValueError):
    """A document id the index does not hold."""


def _checked_documents(documents: Iterable[str], ids: Sequence[Any] | None) -> list[tuple[str, str]]:
    """``(id, text)`` per document, ids as text (default: the positions), or a one-line ``ValueError``."""
    texts = list(documents)
    if not texts:
        raise ValueError("no documents given: an index needs at least one")
    names = [str(i) for i in range(len(texts))] if ids is None else [str(i) for i in ids]
    if len(names) != len(texts):
        raise ValueError(f"got {len(names)} ids for {len(texts)} documents: give one id per document")
    seen: set[str] = set()
    for name, text in zip(names, texts, strict=True):
        if name in seen:
            raise ValueError(f"document id {name!r} is given twice: every document needs its own id")
        seen.add(name)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"document {name!r} is {text!r}: every document must be a non-empty text")
    return list(zip(names, texts, strict=True))


def _check_manifest(folder: Path, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Refuse to continue a build into ``folder`` unless it holds the same model, rules, dtype and prompt."""
    advice = "build into another folder"
    problem = mismatch_message(str(folder), stored["fingerprint"], wanted["fingerprint"], stored["model"], advice)
    if problem is None and canonical_rules(stored["rules"]) != canonical_rules(wanted["rules"]):
        problem = f"index {folder} was built with rules {stored['rules']!r}, not {wanted['rules']!r}: {advice}"
    for key, what in (("dtype", "stores factors in"), ("prompt_name", "was built with the prompt")):
        if problem is None and stored.get(key) != wanted[key]:
            problem = f"index {folder} {what} {stored.get(key)!r}, not {wanted[key]!r}: {advice}"
    if problem is not None:
        raise IndexMismatchError(problem)


def _check_model(folder: Path, manifest: dict[str, Any], model: SimilarityModel) -> None:
    """Refuse an index for ``model`` unless it is the model the index was built with (one line)."""
    advice = "open it with the model it was built with, or build a new index for this one"
    current = model_fingerprint(model)
    problem = mismatch_message(str(folder), manifest["fingerprint"], current, manifest["model"], advice)
    if problem is not None:
        raise IndexMismatchError(problem)


def _check_rules(folder: Path, manifest: dict[str, Any], rules: str | None) -> None:
    """Refuse ``rules`` unless they are ``None`` or the rules the index was built with (one line)."""
    if rules is not None and canonical_rules(rules) != canonical_rules(manifest["rules"]):
        raise IndexMismatchError(
            f"index {folder} was built with rules {manifest['rules']!r}, not {rules!r}: explain with "
            f"rules={manifest['rules']!r} (or no rules), or build a new index with these rules"
        )


def _prepare_folder(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest to continue in ``folder``: its own when it holds this index already, else ``manifest``."""
    if (folder / MANIFEST).exists():
        stored = read_manifest(folder)
        _check_manifest(folder, stored, manifest)
        return stored
    if folder.is_dir():
        allowed = ("shard-", MANIFEST, PARTS, LOCK_NAME.lstrip("."))
        others = [p.name for p in folder.iterdir() if not p.name.lstrip(".").startswith(allowed)]
        if others:
            raise IndexMismatchError(
                f"cannot build an index in {folder}: it holds other files ({others[0]!r}); give a new or empty folder"
            )
    return manifest


def _check_documents(folder: Path, manifest: dict[str, Any], documents: list[tuple[str, str]]) -> int:
    """How many of ``documents`` the index holds already (the same ones, in the same order), or an error."""
    done = int(manifest["documents"])
    if len(documents) < done:
        raise IndexMismatchError(
            f"index {folder} holds {done} documents but {len(documents)} were given: give the same documents "
            "(more may follow), or build into another folder"
        )
    for shard in manifest["shards"]:
        first, count = shard["first"], shard["count"]
        if documents_digest(documents[first : first + count]) != shard["digest"]:
            raise IndexMismatchError(
                f"index {folder} holds other documents at positions {first}-{first + count - 1} (ids or texts "
                "differ): give the same documents, or build into another folder"
            )
    return done


class DocumentIndex:
    """Stored BiLRP factors of a set of documents, for explaining queries against them (:func:`explain_ranking`).

    Build one with :meth:`build` and reopen it with :meth:`open`; the index is tied to the model, tokenizer,
    pooling, similarity and rule set it was built with, and refuses any other.

    Attributes
    ----------
    path
        The index folder.
    model
        The model it was opened with.
    ids, texts
        The documents, in the order they were indexed.
    phi, bias
        ``(len(index), dim)``: each document's representation and bias vector (``phi - sum C``), in float32 (in
        float64 for a model computed in float64) whatever the storage dtype of the contributions.
    rules, dtype, prompt_name
        The rule-set spec, the storage dtype of the contributions and the documents' prompt name.

    """

    def __init__(self, path: Path, model: SimilarityModel, manifest: dict[str, Any]) -> None:
        self.path, self.model, self.manifest = path, model, manifest
        self.build_lines: list[str] = []  # what a Ray build reports (shards computed, restarted workers)
        self._records, self._where, self.phi, self.bias = load_shards(path, manifest)
        self._tokens_checked: set[int] = set()
        self.ids = [record["id"] for record in self._records]
        self.texts = [record["text"] for record in self._records]
        self._position = {name: position for position, name in enumerate(self.ids)}

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        model: SimilarityModel | Any,
        documents: Iterable[str],
        path: str | Path,
        ids: Sequence[Any] | None = None,
        *,
        rules: str | None = None,
        dtype: str = "float32",
        shard_size: int = 256,
        batch_size: int = 32,
        internal_batch_size: int | None = None,
        prompt_name: str | None = None,
        truncate: bool = True,
        progress: bool = True,
        source: str | None = None,
        ray: RayOptions | None = None,
    ) -> DocumentIndex:
        """Compute every document's factor and store it in ``path``, continuing an interrupted build there.

        Parameters
        ----------
        model
            The similarity model (as for :func:`bilrp.explain`).
        documents
            The document texts.
        path
            The index folder (created if missing). A folder holding an index of the same model, rules, dtype
            and first documents is continued: only the documents it lacks are computed.
        ids
            One id per document (stored as text); default ``"0"``, ``"1"``, ... (the positions).
        rules
            BiLRP's rule set (:mod:`bilrp.rule_sets`); default the model family's, as in :func:`bilrp.explain`.
        dtype
            Storage of the contributions: ``"float32"``, ``"float16"`` or ``"bfloat16"`` (half the size; the
            relevance then differs from :func:`bilrp.explain` by the rounding, see ``docs/search.md``).
        shard_size
            Documents per shard file (the unit of resumption).
        batch_size, internal_batch_size, truncate
            As for :func:`bilrp.explain_batch`.
        prompt_name
            The model's prompt for documents (``None``: the default prompt).
        progress
            Show a progress bar (documents).
        source
            How to load the model again (recorded for ``bilrp rank``); default its name.
        ray
            Compute the factors on Ray with these options (docs/scaling.md); ``None``: in this process. Both
            write the same shards; a Ray build keeps its work in ``path/parts`` until the shards are committed.

        Returns
        -------
        DocumentIndex
            The complete index, opened with ``model``.

        Raises
        ------
        bilrp._integrity.FolderBusyError
            At once, when another writer (process or thread) is building into ``path``: one writer at a time.
        IndexMismatchError
            When ``path`` holds an index of another model, rule set, dtype, prompt or other documents.
        DamagedIndexError
            When ``path`` holds a damaged index (nothing is computed onto it).

        """
        model = as_similarity_model(model)
        if dtype not in STORAGE_DTYPES:
            raise ValueError(f"unknown storage dtype {dtype!r}: choose one of {', '.join(STORAGE_DTYPES)}")
        positive_int("shard_size", shard_size)
        positive_int("batch_size", batch_size)
        optional_positive_int("internal_batch_size", internal_batch_size)
        documents_ = _checked_documents(documents, ids)
        attribution = BiLRP(model, rules=rules)
        folder = Path(path).expanduser()
        if folder.exists() and not folder.is_dir():
            raise IndexMismatchError(f"cannot build an index at {folder}: it is a file; give a folder")
        wanted = new_manifest(model, attribution.rules, dtype, prompt_name, source)
        unit = FactorTexts(attribution.rules, prompt_name, batch_size, internal_batch_size, truncate)
        with folder_lock(folder, "building a document index"):
            manifest = _prepare_folder(folder, wanted)
            done = _check_documents(folder, manifest, documents_)
            if manifest["shards"]:
                load_shards(folder, manifest)  # the shards to continue from are verified before any is added
            clear_leftovers(folder, manifest)
            if ray is not None:
                lines = build_on_ray(unit, ray, documents_, folder, manifest, shard_size, dtype)
                index = cls(folder, model, manifest)
                index.build_lines = lines
                return index
            bar = tqdm(total=len(documents_), initial=done, unit="doc", desc="indexing (bilrp)", disable=not progress)
            try:
                build_here(unit, model, documents_, folder, manifest, shard_size, dtype, bar.update)
            finally:
                bar.close()
            return cls(folder, model, manifest)

    @classmethod
    def open(cls, path: str | Path, model: SimilarityModel | Any, rules: str | None = None) -> DocumentIndex:
        """Open the index at ``path`` for ``model``; refuse it when it was built with another model or rule set.

        Parameters
        ----------
        path
            The index folder.
        model
            The similarity model; its fingerprint (weights, tokenizer, pooling, head, similarity, maximum
            length, prompts) must equal the one the index was built with.
        rules
            The rule set the caller wants; ``None`` accepts the index's own (recorded at build time).

        Raises
        ------
        IndexMismatchError
            One line naming what differs (the weights, the pooling, the rule set, ...).
        DamagedIndexError
            One line naming the manifest field or the shard file (and document) that fails a check, and what
            to do: a manifest that breaks the schema, a shard whose checksum, identity, documents, lengths or
            vectors are wrong. A document's contributions and tokens are checked when :meth:`factor` reads them.

        """
        folder = Path(path).expanduser()
        manifest = read_manifest(folder)
        model = as_similarity_model(model)
        _check_rules(folder, manifest, rules)
        _check_model(folder, manifest, model)
        return cls(folder, model, manifest)

    # ------------------------------------------------------------------ checks and views
    def check_model(self, model: SimilarityModel, rules: str | None = None) -> None:
        """Raise :class:`IndexMismatchError` unless ``model`` and ``rules`` are those the index was built with.

        The model the index was opened with passes without digesting its weights again.
        """
        _check_rules(self.path, self.manifest, rules)
        if model is not self.model:
            _check_model(self.path, self.manifest, model)

    @property
    def rules(self) -> str:
        """The rule-set spec the factors were computed with."""
        return self.manifest["rules"]

    @property
    def dtype(self) -> str:
        """The storage dtype of the contributions (``"float32"``, ``"float16"`` or ``"bfloat16"``)."""
        return self.manifest["dtype"]

    @property
    def prompt_name(self) -> str | None:
        """The model's prompt name the documents were tokenized with."""
        return self.manifest["prompt_name"]

    @property
    def nbytes(self) -> int:
        """Bytes on disk: the manifest and every shard."""
        files = [self.path / MANIFEST, *(self.path / shard["file"] for shard in self.manifest["shards"])]
        return sum(file.stat().st_size for file in files)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, document_id: object) -> bool:
        return str(document_id) in self._position

    def __repr__(self) -> str:
        return (
            f"DocumentIndex({str(self.path)!r}: {len(self)} documents, model {self.manifest['model']!r}, "
            f"rules {self.rules!r}, {self.dtype})"
        )

    def position(self, document_id: Any) -> int:
        """The position of a document id, or :class:`UnknownDocumentError` (one line)."""
        key = str(document_id)
        if key not in self._position:
            some = ", ".join(repr(name) for name in self.ids[:3]) + (", ..." if len(self) > 3 else "")
            raise UnknownDocumentError(f"unknown document id {key!r}: index {self.path} holds ids {some}")
        return self._position[key]

    def text(self, document_id: Any) -> str:
        """The text of a document."""
        return self.texts[self.position(document_id)]

    def factor(self, document_id: Any) -> TextFactor:
        """A document's stored factor: tokens, contributions (in the storage dtype), ``phi`` and bias vector.

        The contribution rows are checked against their SHA-256 and for NaN/infinities on every read, and the
        tokens against the text (tokenized again) on the first; a failure is a one-line
        :class:`DamagedIndexError` naming the shard file and the document.
        """
        position = self.position(document_id)
        file, start, end = self._where[position]
        record = self._records[position]
        contributions = read_contributions(file, start, end, record, STORAGE_DTYPES[self.dtype])
        if position not in self._tokens_checked:
            check_tokens(self.model, record, self.prompt_name, file)
            self._tokens_checked.add(position)
        offsets = record["offsets"]
        return {
            "length": end - start,
            "tokens": record["tokens"],
            "word_ids": record["word_ids"],
            "offsets": None if offsets is None else [tuple(o) for o in offsets],
            "prompt": self.manifest["prompt"],
            "prompt_length": record["prompt_length"],
            "contributions": contributions,
            "phi": self.phi[position],
            "bias_vector": self.bias[position],
        }

    def scores(self, phi_query: torch.Tensor) -> torch.Tensor:
        """The model's similarity of a query representation ``(dim,)`` with every document, ``(len(index),)``."""
        phi = self.phi.to(device=phi_query.device, dtype=torch.promote_types(phi_query.dtype, torch.float32))
        return self.model.compare(phi_query.to(phi.dtype)[None], phi)
