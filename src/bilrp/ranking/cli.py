"""``bilrp index`` and ``bilrp rank``: explain search results on the command line.

``bilrp index docs.txt --out idx`` stores every document's BiLRP factor (resumable: run it again after an
interruption and it continues); ``bilrp rank "a query" --index idx --top 5 --out ranking.html`` ranks the
indexed documents by the model's score and explains the best; ``--versus ID_A ID_B`` explains why A scores
above B. The main CLI calls :func:`register`; registering imports no torch. User errors are raised as
``ValueError`` or ``OSError`` with a one-line message (the main CLI prints it, exit status 2), and every check
that needs no model runs before the model loads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._catalog import DEFAULT_MODEL, POOLING_NAMES, SIMILARITY_NAMES
from .._cli_support import (
    add_encode_arguments,
    add_engine_arguments,
    add_rules_argument,
    encode_options,
    load_model,
    positive_int,
    ray_options,
    rules_options,
)
from .._io import atomic_paths, check_name, figure_bytes, probe_writable

if TYPE_CHECKING:
    from .difference import Difference
    from .ranking import Ranking

__all__ = ["register", "read_documents", "index_model", "STORAGE_NAMES", "RANK_FORMATS", "VERSUS_FORMATS"]

STORAGE_NAMES = ("float32", "float16", "bfloat16")
"""``--dtype`` choices (the keys of ``bilrp.ranking.storage.STORAGE_DTYPES``)."""
RANK_FORMATS = {".html": "html", ".htm": "html", ".json": "json"}
"""``bilrp rank --out`` extensions."""
VERSUS_FORMATS = {**RANK_FORMATS, ".png": "png", ".svg": "svg", ".pdf": "pdf"}
"""``bilrp rank --versus --out`` extensions (the picture too)."""


def _add_model_arguments(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--model",
        default=default,
        metavar="NAME_OR_PATH",
        help=f"model folder or cached hub name (default: {default or 'the one the index was built with'})",
    )
    parser.add_argument("--pooling", choices=POOLING_NAMES, help="override the model's pooling")
    parser.add_argument("--similarity", choices=SIMILARITY_NAMES, help="override the model's similarity")
    parser.add_argument("--no-truncate", action="store_true", help="fail on a text longer than the model maximum")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``index`` and ``rank`` to the ``bilrp`` command line (cheap: nothing heavy is imported)."""
    index = subparsers.add_parser(
        "index",
        help="store every document's BiLRP factor, to explain search results (bilrp rank)",
        description=(
            "Compute every document's BiLRP factor and store it in INDEX (safetensors shards and a JSON manifest). "
            "An interrupted run continues where it stopped when run again."
        ),
        epilog="DOCS: a text file with one document a line (ids: line numbers), or .jsonl with 'id' and 'text'.",
    )
    index.add_argument("docs", metavar="DOCS", help="documents: .txt (one a line) or .jsonl ({id, text} a line)")
    index.add_argument("--out", required=True, metavar="INDEX", help="the index folder (created; continued)")
    _add_model_arguments(index, DEFAULT_MODEL)
    add_rules_argument(index, default=None)
    index.add_argument("--dtype", choices=STORAGE_NAMES, default="float32", help="storage of the factors (float32)")
    index.add_argument("--shard-size", type=positive_int, default=256, metavar="N", help="documents a shard (256)")
    index.add_argument("--batch-size", type=positive_int, default=32, metavar="N", help="texts a batch (32)")
    index.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_engine_arguments(index)
    index.set_defaults(func=_run_index)

    rank = subparsers.add_parser(
        "rank",
        help="explain why the indexed documents rank as they do for a query",
        description="Rank the documents of INDEX by the model's score for QUERY and explain the best ones.",
        epilog=(
            "JSON output: a list of {rank, id, score, bias, tokens_a, tokens_b, relevance, ...} (the fields of "
            "bilrp explain's JSON; text A is the query); with --versus: {query, tokens, query_relevance, score, "
            "bias, a, b}, where sum(query_relevance) + bias == score == a.score - b.score."
        ),
    )
    rank.add_argument("query", metavar="QUERY", help="the query")
    rank.add_argument("--index", required=True, metavar="INDEX", help="an index folder built by bilrp index")
    rank.add_argument("--top", type=positive_int, default=10, metavar="K", help="explain the K best (default 10)")
    rank.add_argument("--versus", nargs=2, metavar=("ID_A", "ID_B"), help="explain why ID_A scores above ID_B")
    rank.add_argument("--pairs", type=positive_int, default=3, metavar="K", help="token pairs shown per result (3)")
    rank.add_argument(
        "--out", action="append", default=[], metavar="FILE", help="write .html or .json (with --versus also .png)"
    )
    _add_model_arguments(rank, None)
    add_encode_arguments(rank, sides="the query, then the documents, which must be the index's")
    add_rules_argument(rank, default=None)
    rank.set_defaults(func=_run_rank)


# ---------------------------------------------------------------------------------------------- inputs
def read_documents(path: str | Path) -> tuple[list[str], list[str]]:
    """The ids and texts of a documents file: ``.jsonl`` (``{"id", "text"}`` a line) or text (one a line).

    A text file's ids are the line numbers (from 1) of its non-blank lines. Raises a one-line ``ValueError``
    naming the file and line of any problem.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"cannot read DOCS {str(path)!r}: {'it is a folder' if file.is_dir() else 'no such file'}")
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"DOCS {str(path)!r} is not UTF-8 text: save it as UTF-8") from None
    ids, texts = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        name, text = (
            _jsonl_document(line, file, number) if file.suffix in (".jsonl", ".ndjson") else (str(number), line)
        )
        ids.append(name)
        texts.append(text)
    if not texts:
        raise ValueError(f"DOCS {str(path)!r} holds no documents: give one document a line")
    return ids, texts


def _jsonl_document(line: str, file: Path, number: int) -> tuple[str, str]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"DOCS {file} line {number}: not JSON ({error.msg})") from None
    if not isinstance(record, dict) or "id" not in record or not isinstance(record.get("text"), str):
        raise ValueError(f'DOCS {file} line {number}: give an object {{"id": ..., "text": "..."}}')
    if not record["text"].strip():
        raise ValueError(f"DOCS {file} line {number}: the text of document {record['id']!r} is empty")
    return str(record["id"]), record["text"]


def _writable_folder(folder: Path, shown: str) -> None:
    try:
        check_name(folder)
        probe_writable(folder)
    except OSError as error:
        raise ValueError(f"cannot write {shown}: {error.strerror or error}; choose a writable folder") from None


def _check_index_folder(path: str) -> Path:
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"cannot build an index at {path!r}: it is a file; give a folder")
    parent = folder if folder.is_dir() else folder.parent
    if not parent.is_dir():
        raise ValueError(f"cannot build an index at {path!r}: directory {str(parent)!r} does not exist; create it")
    _writable_folder(parent, path)
    return folder


def _check_outputs(paths: list[str], formats: dict[str, str]) -> list[Path]:
    """Every ``--out`` path with a known extension in a writable folder (checked before any computation)."""
    checked = []
    for given in paths:
        path = Path(given).expanduser()
        if path.suffix.lower() not in formats:
            known = ", ".join(formats)
            raise ValueError(f"cannot write {given}: unknown extension {path.suffix or '(none)'!r}; use {known}")
        if path.is_dir():
            raise ValueError(f"cannot write {given}: it is a directory; give a file name")
        if not path.parent.is_dir():
            raise ValueError(f"cannot write {given}: directory {str(path.parent)!r} does not exist; create it first")
        _writable_folder(path.parent, given)
        checked.append(path)
    return list(dict.fromkeys(checked))


def index_model(args: argparse.Namespace, manifest: dict[str, Any]):
    """The model an index is opened with (``bilrp rank``, ``bilrp serve``): ``--model`` or the one the index records."""
    stored = manifest.get("fingerprint", {})
    pooling = args.pooling or (stored.get("pooling") if stored.get("pooling") in POOLING_NAMES else None)
    return load_model(args.model or manifest.get("source"), pooling, args.similarity or stored.get("similarity"))


# ---------------------------------------------------------------------------------------------- commands
def _run_index(args: argparse.Namespace) -> int:
    """``bilrp index``: build (or continue) an index and say what it holds."""
    rules = rules_options("bilrp", args.rules).get("rules")
    from ..corpus_runs import ModelSource

    ray = ray_options(args, ModelSource(args.model, args.pooling, args.similarity))
    ids, texts = read_documents(args.docs)
    folder = _check_index_folder(args.out)
    from .index import DocumentIndex

    model = load_model(args.model, args.pooling, args.similarity)
    source = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    options = {"rules": rules, "dtype": args.dtype, "shard_size": args.shard_size, "batch_size": args.batch_size}
    options.update(truncate=not args.no_truncate, progress=not args.no_progress, source=source, ray=ray)
    index = DocumentIndex.build(model, texts, folder, ids, **options)
    for line in index.build_lines:
        print(line, file=sys.stderr)
    print(
        f"indexed {len(index)} documents in {folder} ({index.nbytes / len(index) / 1024:.1f} KiB a document, "
        f"{index.dtype}, rules {index.rules}, model {model.name})"
    )
    return 0


def _run_rank(args: argparse.Namespace) -> int:
    """``bilrp rank``: explain the top documents, or ``--versus`` two of them; write the ``--out`` files."""
    if not args.query.strip():
        raise ValueError("QUERY is empty: give a text with at least one non-space character")
    rules_options("bilrp", args.rules)
    outputs = _check_outputs(args.out, VERSUS_FORMATS if args.versus else RANK_FORMATS)
    from .difference import explain_difference
    from .index import DocumentIndex
    from .ranking import explain_ranking
    from .storage import read_manifest

    manifest = read_manifest(Path(args.index).expanduser())
    index = DocumentIndex.open(args.index, index_model(args, manifest), rules=args.rules)
    truncate = not args.no_truncate
    options = encode_options(args)  # sentence-transformers' encode() options
    if args.versus:
        for name in args.versus:
            index.position(name)  # an unknown id fails before any computation
        result: Any = explain_difference(
            index.model, args.query, *args.versus, index=index, truncate=truncate, **options
        )
        print(format_difference(result, args.pairs))
    else:
        result = explain_ranking(index.model, args.query, index, top_k=args.top, truncate=truncate, **options)
        print(format_ranking(result, args.pairs, str(args.index)))
    _write(outputs, result, args.pairs)
    for path in outputs:
        print(f"wrote {path}")
    return 0


def _write(outputs: list[Path], result: Ranking | Difference, pairs: int) -> None:
    """Render every output in memory, then write all of them atomically (complete or not at all)."""
    contents = [_render(result, VERSUS_FORMATS[path.suffix.lower()], pairs) for path in outputs]
    with atomic_paths(outputs) as temporaries:
        for temporary, content in zip(temporaries, contents, strict=True):
            temporary.write_bytes(content)


def _render(result: Ranking | Difference, kind: str, pairs: int) -> bytes:
    """The bytes of one output: the JSON, the HTML page, or (for a difference) the picture in format ``kind``."""
    from .. import plotting
    from .difference import Difference

    if kind == "json":
        return result.to_json().encode("utf-8")
    if kind == "html":
        draw_page = plotting.difference_html if isinstance(result, Difference) else plotting.ranking_html
        return draw_page(result, k=pairs, full_page=True).encode("utf-8")
    return figure_bytes(plotting.plot_difference(result), kind)


# ---------------------------------------------------------------------------------------------- summaries
def _shorten(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def format_ranking(ranking: Ranking, pairs: int = 1, where: str = "") -> str:
    """The table ``bilrp rank`` prints: per result its id, score = sum of R + bias, strongest pair, document."""
    from ..token_display import display_token

    width = max([len(str(name)) for name in ranking.ids] + [2])
    held = f"{where + ': ' if where else ''}{ranking.ranked} documents"
    lines = [
        f"query   {_shorten(ranking.query, 100)}",
        f"index   {held}, model {ranking.model}, rules {ranking.rules}",
        "",
        f"{'rank':>4}  {'id':<{width}}  {'score':>7} = {'sum R':>7} + {'bias':>7}   {'strongest pair':<26}document",
    ]
    for rank, e in enumerate(ranking, start=1):
        best = e.top(1)["positive"]
        pair = "-"
        if best:
            pair = f"{display_token(best[0].token_a)}-{display_token(best[0].token_b)} {best[0].relevance:+.4f}"
        total = float(e.relevance.double().sum())
        sign = "+" if e.bias >= 0 else "-"
        lines.append(
            f"{rank:>4}  {e.document_id!s:<{width}}  {e.score:>7.4f} = {total:>7.4f} {sign} {abs(e.bias):>7.4f}   "
            f"{_shorten(pair, 25):<26}{_shorten(e.text_b)}"
        )
    return "\n".join(lines)


def format_difference(difference: Difference, k: int = 5) -> str:
    """The text ``bilrp rank --versus`` prints: both scores, the identity, the query tokens that decide."""
    from ..token_display import display_token

    a, b = difference.explanation_a, difference.explanation_b
    lines = [
        f"query   {_shorten(difference.query, 100)}",
        f"A {a.document_id}  score {a.score:.4f}  {_shorten(a.text_b)}",
        f"B {b.document_id}  score {b.score:.4f}  {_shorten(b.text_b)}",
        f"score A - score B = {difference.score:+.4f} = query tokens {float(difference.query_relevance.sum()):+.4f} "
        f"+ bias {difference.bias:+.4f}",
        "",
        f"query tokens that draw more from A (+) or from B (-), top {k}:",
    ]
    lines += [f"  {value:+.4f}  {display_token(token)} [{i}]" for i, token, value in difference.top(k)]
    return "\n".join(lines)
