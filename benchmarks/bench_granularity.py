"""Granularity benchmark: a query against a long document, token-level against sentence-level relevance.

For documents of about ``--lengths`` tokens (sentences of the STSb test set joined, or of the bundled fixture
when the data are absent) and a short query, ``bilrp.explain`` runs at ``granularity="token"`` and at
``granularity="sentence"`` on the real all-MiniLM-L6-v2 (``mode="auto"``: the engine picks replay or reverse
from the number of tangents). It reports both times (median of ``--repeats`` runs after a warm-up, one process,
so the ratio is what counts) and the largest difference between the sentence-level matrix and the token-level
matrix summed over sentences. Usage::

    python benchmarks/bench_granularity.py                  # 256 and 512 tokens
    python benchmarks/bench_granularity.py --lengths 128 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "data"
QUERY = "A man is playing a guitar on the street."
BY_SENTENCE = ("token", "sentence")


def sentences() -> list[str]:
    """STSb test sentences (``BILRP_DATA_DIR`` when it has the dataset, else the tests' fixture copy)."""
    from bilrp.datasets import load

    folder = os.environ.get("BILRP_DATA_DIR")
    data_dir = folder if folder and Path(folder, "stsb").exists() else FIXTURE
    pairs = load("stsb", "test", data_dir=data_dir)
    return list(dict.fromkeys(text for pair in pairs for text in (pair.text_a, pair.text_b)))


def document(model, pool: list[str], length: int) -> str:
    """Sentences of ``pool`` joined until the text has about ``length`` tokens."""
    chosen: list[str] = []
    for sentence in pool * 50:
        candidate = " ".join([*chosen, sentence])
        if len(model.tokenizer(candidate)["input_ids"]) > length:
            break
        chosen.append(sentence)
    return " ".join(chosen)


def timed(function, repeats: int):
    result = function()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "granularity_cpu_2core.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import bilrp

    model = bilrp.SimilarityModel.from_pretrained(max_length=max(args.lengths) + 8)
    pool, rows = sentences(), []
    for length in args.lengths:
        text = document(model, pool, length)
        tokens_s, tokens = timed(lambda t=text: bilrp.explain(model, QUERY, t), args.repeats)
        grouped_s, grouped = timed(
            lambda t=text: bilrp.explain(model, QUERY, t, granularity=BY_SENTENCE), args.repeats
        )
        summed = tokens.regroup("token", "sentence").relevance
        difference = float((summed - grouped.relevance.double()).abs().max() / summed.abs().max())
        row = {
            "tokens": len(tokens.tokens_b),
            "sentences": len(grouped.tokens_b),
            "token_s": tokens_s,
            "sentence_s": grouped_s,
            "speedup": tokens_s / grouped_s,
            "max_relative_difference": difference,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": args.threads, "rows": rows}
    args.out.write_text(json.dumps(meta, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
