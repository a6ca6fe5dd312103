"""Explaining search results: one query against the top-10 of 1,000 indexed documents, versus ``explain_batch``.

The documents are 1,000 distinct STSb test sentences (the second sentence of each pair; ``$BILRP_DATA_DIR``,
default ``../shared/data``, else ``tests/fixtures/data`` topped up with synthetic sentences); the queries are the
first sentences of pairs spread over the set, so each has a relevant document in the index. On the real
all-MiniLM-L6-v2, in one run:

- build a :class:`bilrp.DocumentIndex` of the documents in float32 and in float16 (time, bytes per document);
- per query, the median over ``--repeats`` runs (after a warm-up) of ``explain_ranking(model, query, index,
  top_k=10)`` and of ``explain_batch`` on the same 10 (query, document) pairs, and their ratio;
- the largest difference of the relevance from ``explain_batch`` (float32 index) and from the float16 index
  (relative to the largest |R| of each pair), and of the scores;
- the same timing on ``--passages`` longer documents (three consecutive sentences joined, float32 index): with
  short queries and long documents, the cost of the documents' engine passes that the index saves grows.

Usage::

    python benchmarks/bench_ranking.py --json benchmarks/results/ranking.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import bilrp
from bilrp import datasets

ROOT = Path(__file__).resolve().parents[1]


def corpus(count: int, queries: int) -> tuple[list[str], list[str], str]:
    """``count`` distinct documents, ``queries`` queries with a relevant document among them, and the source."""
    folder = Path(os.environ.get("BILRP_DATA_DIR", ROOT.parent / "shared" / "data"))
    if not (folder / "stsb" / "sts-test.csv").is_file():
        folder = ROOT / "tests" / "fixtures" / "data"
    pairs = datasets.load("stsb", "test", data_dir=folder)
    documents = list(dict.fromkeys(p.text_b for p in pairs))[:count]
    source = f"STSb test ({folder})"
    if len(documents) < count:  # the fixture rows: top up with synthetic sentences
        subjects = ["A man", "A woman", "The child", "A dog", "Two people"]
        verbs = ["plays", "eats", "sees"]
        objects = ["a guitar", "an apple", "the ball", "a book", "the river", "a red car", "some music", "the house"]
        extra = [f"{s} {v} {o} on day {n}." for n in range(count) for s in subjects for v in verbs for o in objects]
        documents = list(dict.fromkeys(documents + extra))[:count]
        source += " topped up with synthetic sentences"
    kept = set(documents)
    candidates = [p.text_a for p in pairs if p.text_b in kept and p.text_a not in kept]
    step = max(1, len(candidates) // queries)
    return documents, candidates[::step][:queries], source


def timed(function, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls after one warm-up, and the last result."""
    result = function()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def build(model, documents: list[str], folder: Path, dtype: str) -> tuple[bilrp.DocumentIndex, dict]:
    start = time.perf_counter()
    index = bilrp.DocumentIndex.build(model, documents, folder / dtype, dtype=dtype, progress=False)
    seconds = time.perf_counter() - start
    row = {
        "dtype": dtype,
        "documents": len(index),
        "build_seconds": seconds,
        "seconds_per_document": seconds / len(index),
        "bytes": index.nbytes,
        "bytes_per_document": index.nbytes / len(index),
    }
    return index, row


def relative_error(a, b) -> float:
    largest = float(a.relevance.abs().max())
    return float((a.relevance.double() - b.relevance.double()).abs().max()) / largest


def query_row(model, query: str, indexes: dict, top: int, repeats: int) -> dict:
    full = indexes["float32"]
    rank_seconds, ranking = timed(lambda: bilrp.explain_ranking(model, query, full, top_k=top), repeats)
    pairs = [(query, e.text_b) for e in ranking]
    batch_seconds, batch = timed(lambda: bilrp.explain_batch(model, pairs, progress=False), repeats)
    row = {
        "query": query,
        "query_tokens": len(ranking[0].tokens_a),
        "document_tokens_mean": statistics.mean(len(e.tokens_b) for e in ranking),
        "explain_ranking_seconds": rank_seconds,
        "explain_batch_seconds": batch_seconds,
        "ratio": batch_seconds / rank_seconds,
        "max_relative_relevance_error_float32": max(relative_error(a, b) for a, b in zip(batch, ranking, strict=True)),
        "max_score_error_float32": max(abs(a.score - b.score) for a, b in zip(batch, ranking, strict=True)),
    }
    for dtype, index in indexes.items():
        if dtype == "float32":
            continue
        half = bilrp.explain_ranking(model, query, index, ids=ranking.ids)
        row[f"max_relative_relevance_error_{dtype}"] = max(
            relative_error(a, b) for a, b in zip(ranking, half, strict=True)
        )
        row[f"max_score_error_{dtype}"] = max(abs(a.score - b.score) for a, b in zip(ranking, half, strict=True))
    return row


def passages_setting(model, documents: list[str], queries: list[str], args, folder: Path) -> dict:
    """Build an index of ``args.passages`` passages (three sentences each) and time the queries against it."""
    passages = [" ".join(documents[3 * i : 3 * i + 3]) for i in range(min(args.passages, len(documents) // 3))]
    index, row = build(model, passages, folder / "passages", "float32")
    rows = [query_row(model, query, {"float32": index}, args.top, args.repeats) for query in queries]
    for query in rows:
        print(json.dumps(query), file=sys.stderr)
    ratios = [query["ratio"] for query in rows]
    return {"build": row, "queries": rows, "ratio_median": statistics.median(ratios), "ratio_min": min(ratios)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16"])
    parser.add_argument("--passages", type=int, default=100, help="passages of three sentences (0: none)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    documents, queries, source = corpus(args.documents, args.queries)
    model = bilrp.SimilarityModel.from_pretrained()
    indexes, builds = {}, []
    with tempfile.TemporaryDirectory() as folder:
        for dtype in dict.fromkeys(["float32", *args.dtypes]):
            indexes[dtype], row = build(model, documents, Path(folder), dtype)
            builds.append(row)
            print(json.dumps(row), file=sys.stderr)
        start = time.perf_counter()
        bilrp.DocumentIndex.open(indexes["float32"].path, model)
        open_seconds = time.perf_counter() - start
        rows = []
        for query in queries:
            rows.append(query_row(model, query, indexes, args.top, args.repeats))
            print(json.dumps(rows[-1]), file=sys.stderr)
        passages = passages_setting(model, documents, queries, args, Path(folder)) if args.passages else None
    ratios = [row["ratio"] for row in rows]
    result = {
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()),
        },
        "model": model.name,
        "rules": indexes["float32"].rules,
        "documents_source": source,
        "top_k": args.top,
        "repeats": args.repeats,
        "open_seconds": open_seconds,
        "builds": builds,
        "queries": rows,
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "passages": passages,
    }
    text = json.dumps(result, indent=2) + "\n"
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
