"""The documents of the common retrieval stacks, as the text their retriever embedded, their id and their score.

A retriever returns its own objects; what bilrp must explain is the text the retriever *embedded*, which is not
always the text it shows:

- LangChain ``Document``: ``page_content`` (vector stores embed it alone; ``metadata`` is not embedded), ``id``;
  the ``(Document, score)`` pairs of ``similarity_search_with_score`` give the score.
- LlamaIndex nodes (``TextNode``, ``Document``) and ``NodeWithScore``: ``get_content(metadata_mode=EMBED)``, the
  text *with* the metadata LlamaIndex embeds (``node.get_content()`` leaves it out), ``node_id``, ``score``.
- Haystack ``Document`` (duck-typed: ``content`` and ``meta``): ``content``, ``id``, ``score``.
- a ``dict`` with ``"text"`` (and optionally ``"id"`` and ``"score"``); a ``(document, score)`` pair; a ``str``.

Objects are recognised by what they hold, never by importing the stacks. :data:`DOCUMENT_KINDS` is the registry.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["RetrievedDocument", "DocumentKind", "DOCUMENT_KINDS", "as_documents"]


@dataclass(frozen=True)
class RetrievedDocument:
    """One document as a retriever embedded and scored it.

    Attributes
    ----------
    text
        The text the retriever embedded.
    id
        Its id in the retriever (``None`` when it has none).
    score
        The retriever's score for it (``None`` when not given).
    kind
        What it was given as (``"LangChain Document"``, ...), for messages.

    """

    text: str
    id: str | None = None
    score: float | None = None
    kind: str = "text"


@dataclass(frozen=True)
class DocumentKind:
    """A kind of document object: its name, how to recognise it, and how to read it."""

    name: str
    matches: Callable[[Any], bool]
    read: Callable[[Any], RetrievedDocument]


def _from(package: str, obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == package


def _llama_index_embed_mode(obj: Any) -> Any:
    """LlamaIndex's ``MetadataMode.EMBED`` (its module is loaded, since one of its objects exists)."""
    schema = sys.modules.get("llama_index.core.schema")
    return schema.MetadataMode.EMBED if schema is not None else "embed"


def _read_node(node: Any, score: Any = None) -> RetrievedDocument:
    text = node.get_content(metadata_mode=_llama_index_embed_mode(node))
    return RetrievedDocument(text, _text_id(getattr(node, "node_id", None)), score, "LlamaIndex node")


def _read_dict(record: dict) -> RetrievedDocument:
    if "text" not in record:
        raise ValueError(f"a dict without 'text' (keys {sorted(map(str, record))}): give {{'text': ..., 'id': ...}}")
    return RetrievedDocument(record["text"], _text_id(record.get("id")), record.get("score"), "dict")


DOCUMENT_KINDS: tuple[DocumentKind, ...] = (
    DocumentKind("text", lambda d: isinstance(d, str), lambda d: RetrievedDocument(d)),
    DocumentKind(
        "LlamaIndex NodeWithScore",
        lambda d: _from("llama_index", d) and hasattr(d, "node") and hasattr(d, "score"),
        lambda d: _read_node(d.node, d.score),
    ),
    DocumentKind("LlamaIndex node", lambda d: _from("llama_index", d) and hasattr(d, "get_content"), _read_node),
    DocumentKind(
        "LangChain Document",
        lambda d: isinstance(getattr(d, "page_content", None), str),
        lambda d: RetrievedDocument(d.page_content, _text_id(getattr(d, "id", None)), None, "LangChain Document"),
    ),
    DocumentKind(
        "Haystack Document",
        lambda d: hasattr(d, "content") and hasattr(d, "meta"),
        lambda d: RetrievedDocument(d.content, _text_id(d.id), getattr(d, "score", None), "Haystack Document"),
    ),
    DocumentKind("dict", lambda d: isinstance(d, dict), _read_dict),
)
"""The document objects bilrp reads, first match wins."""


def as_documents(documents: Sequence[Any] | Any) -> list[RetrievedDocument]:
    """Every document of ``documents`` read with :data:`DOCUMENT_KINDS`; a ``(document, score)`` pair adds the score.

    Raises a one-line ``TypeError``/``ValueError`` naming the first document that is none of these, or whose text
    is empty, or whose score is not a number.
    """
    if isinstance(documents, str | bytes | dict) or not isinstance(documents, Sequence | tuple | list):
        raise TypeError(
            f"documents= is {_described(documents)}: give a list of documents (texts, LangChain Documents, "
            "LlamaIndex nodes, Haystack Documents, dicts with 'text', or (document, score) pairs)"
        )
    return [_read(document, position) for position, document in enumerate(documents)]


def _read(document: Any, position: int) -> RetrievedDocument:
    score = None
    if isinstance(document, tuple) and len(document) == 2 and _is_number(document[1]):
        document, score = document  # LangChain's similarity_search_with_score, or (text, score)
    kind = next((kind for kind in DOCUMENT_KINDS if kind.matches(document)), None)
    if kind is None:
        raise TypeError(
            f"document {position} is {_described(document)}: give a text, a LangChain Document, a LlamaIndex node, "
            "a Haystack Document, a dict with 'text', or a (document, score) pair"
        )
    try:
        read = kind.read(document)
    except ValueError as error:
        raise ValueError(f"document {position} is {error}") from None
    if not isinstance(read.text, str) or not read.text.strip():
        raise ValueError(
            f"document {position} ({kind.name}) has the text {read.text!r}: every document needs a non-empty text"
        )
    score = read.score if score is None else score
    if score is not None and not _is_number(score):
        raise ValueError(f"document {position} ({kind.name}) has the score {score!r}: a score must be a number")
    return RetrievedDocument(read.text, read.id, None if score is None else float(score), kind.name)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _text_id(value: Any) -> str | None:
    return None if value is None else str(value)


def _described(obj: Any) -> str:
    return f"a {type(obj).__module__}.{type(obj).__qualname__}" if not isinstance(obj, str) else "a str"
