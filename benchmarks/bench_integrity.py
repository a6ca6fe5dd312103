"""What the integrity checks of a document index cost: opening it, and explaining the top 10 of a query.

On the real all-MiniLM-L6-v2 (384 dimensions), an index of ``--documents`` sentences (about 14 tokens) and one
of ``--passages`` passages (about 60 tokens) is written with the index's own commit path (the shards, checksums
and manifest a build writes) from *synthetic* factors: random contributions of the true shapes, real tokens of
real texts. The checks' cost depends on the sizes, not the values, and computing real factors for thousands of
documents would take hours on a laptop CPU. In one run, each with every check and with the checks switched off
(the code path before them: the shards' mapped tensors, nothing verified), interleaved, the fastest of
``--repeats`` runs (the least disturbed on a busy machine), in CPU seconds of the one thread that does the work
(``time.thread_time``: torch on one thread; a shared machine's other processes do not count), of

- *first open*: ``DocumentIndex.open(path, model)`` as in a new process, the model's weights digest not cached
  (what ``bilrp rank`` and ``bilrp serve`` pay);
- *reopen*: the same with the weights digest cached (the model fingerprint's tokenizer digest stays): the checks
  against little more than the reading of the index;
- *rank top 10*: ``explain_ranking(model, query, index, top_k=10)`` on an open index, with the per-document
  checks (each document's contribution rows against their SHA-256 and for NaN/inf, its tokens against its text)
  counted every time;

and their ratios ``checked / unchecked - 1`` (the overhead), with the checks' cost per document. The checks of
opening: the manifest schema, each shard's content checksum, identity, documents digest, lengths and shapes,
finite ``phi``/bias, unique ids, and the small tensors copied out of the file's mapped memory. Usage::

    python benchmarks/bench_integrity.py --json benchmarks/results/integrity.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

import torch
from safetensors import safe_open

import bilrp
from bilrp.models import fingerprint as fingerprint_module
from bilrp.ranking import index as index_module
from bilrp.ranking import manifest as manifest_module
from bilrp.ranking import shard_checks, storage
from bilrp.ranking.index_build import _commit
from bilrp.ranking.manifest import new_manifest
from bilrp.ranking.storage import ShardData

SUBJECTS = ["A man", "A woman", "The child", "A dog", "Two people", "The old farmer", "A young student"]
VERBS = ["plays", "eats", "watches", "carries", "paints", "finds", "repairs"]
OBJECTS = ["a guitar", "an apple", "the ball", "a book", "the river", "a red car", "some music", "the house"]
PLACES = ["in the park", "at home", "near the station", "on a sunny day", "after school", "by the sea"]


def texts(count: int, sentences: int) -> list[str]:
    """``count`` distinct synthetic texts of ``sentences`` sentences each."""
    pool = [f"{s} {v} {o} {p}." for s in SUBJECTS for v in VERBS for o in OBJECTS for p in PLACES]
    return [
        " ".join(pool[(n * 7919 + k * 104729) % len(pool)] for k in range(sentences)) + f" ({n})" for n in range(count)
    ]


def synthetic_factor(model, text: str, generator: torch.Generator) -> dict:
    """A factor with the true tokens of ``text`` and random contributions of the true shape (float32, 384 wide)."""
    batch = model.tokenize([text])
    length = len(batch["tokens"][0])
    contributions = torch.randn(length, 384, generator=generator)
    bias = torch.randn(384, generator=generator) * 0.01
    return {
        "length": length,
        "tokens": batch["tokens"][0],
        "word_ids": batch["word_ids"][0],
        "offsets": batch["offsets"][0],
        "prompt": "",
        "prompt_length": batch["prompt_lengths"][0],
        "contributions": contributions,
        "phi": contributions.sum(0) + bias,
        "bias_vector": bias,
    }


def write_index(model, documents: list[str], folder: Path, shard_size: int = 256) -> None:
    """Commit synthetic factors of ``documents`` as an index, shard by shard, as a build does."""
    generator = torch.Generator().manual_seed(0)
    manifest = new_manifest(model, bilrp.rule_sets.default_rule_set(model), "float32", None, model.name)
    folder.mkdir(parents=True)
    pairs = [(str(n), text) for n, text in enumerate(documents)]
    for first in range(0, len(pairs), shard_size):
        chunk = pairs[first : first + shard_size]
        _commit(folder, manifest, first, chunk, [synthetic_factor(model, t, generator) for _, t in chunk], "float32")


def unchecked_read_shard(folder: Path, name: str) -> ShardData:
    """How a shard was read before the checks: the file's mapped tensors, nothing verified."""
    with safe_open(str(folder / name), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in ("lengths", "phi", "bias")}
        rows = handle.get_slice("contributions")
        return ShardData(folder / name, metadata, tensors, (None, tuple(rows.get_shape())))


def unchecked_contributions(file: Path, start: int, end: int, document: dict, dtype: torch.dtype) -> torch.Tensor:
    with safe_open(str(file), framework="pt") as handle:
        return handle.get_slice("contributions")[start:end]


@contextmanager
def checks_off():
    """Every integrity check of opening and reading switched off (the code path before the checks)."""
    with (
        mock.patch.object(manifest_module, "check_manifest", lambda file, manifest: None),
        mock.patch.object(shard_checks, "read_shard", unchecked_read_shard),
        mock.patch.object(shard_checks, "verify_shard", lambda *args: None),
        mock.patch.object(shard_checks, "check_unique_ids", lambda files, records: None),
        mock.patch.object(index_module, "read_contributions", unchecked_contributions),
        mock.patch.object(index_module, "check_tokens", lambda *args: None),
    ):
        yield


CLOCK = time.thread_time
"""CPU seconds of this thread: what the work costs, not how long other processes held the cores (torch runs
on one thread here, and the tokenizer in this thread)."""

CHECKS = [
    (manifest_module, "check_manifest"),
    (shard_checks, "verify_shard"),
    (shard_checks, "check_unique_ids"),
    (storage, "_inside"),
    (storage, "_check_rows"),
    (index_module, "check_tokens"),
]
"""Every check function, by module: timed inside a checked run by :func:`share_of_checks`."""


def _timed(function, spent: list[float]):
    """``function``, adding the seconds each call takes to ``spent[0]``."""

    def timed(*args, **kwargs):
        start = CLOCK()
        try:
            return function(*args, **kwargs)
        finally:
            spent[0] += CLOCK() - start

    return timed


def share_of_checks(function, repeats: int) -> float:
    """The median share of a checked run of ``function`` spent inside the check functions (timed in the run
    itself, so a busy machine slows both parts alike).
    """
    shares = []
    for _ in range(repeats):
        spent = [0.0]
        with ExitStack() as stack:
            for module, name in CHECKS:
                stack.enter_context(mock.patch.object(module, name, _timed(getattr(module, name), spent)))
            start = CLOCK()
            function()
            total = CLOCK() - start
        shares.append(spent[0] / total)
    return statistics.median(shares)


def alternating(function, repeats: int) -> tuple[float, float]:
    """The fastest seconds of ``function`` with the checks on and off, runs interleaved (fair on a busy machine)."""
    on, off = [], []
    function()
    with checks_off():
        function()
    for _ in range(repeats):
        start = CLOCK()
        function()
        on.append(CLOCK() - start)
        with checks_off():
            start = CLOCK()
            function()
            off.append(CLOCK() - start)
    return min(on), min(off)


def measure(model, name: str, documents: list[str], folder: Path, repeats: int, query: str) -> dict:
    """Write one synthetic index, then time opening it and explaining a query's top 10, checked and unchecked."""
    write_index(model, documents, folder / name)
    path = folder / name
    index = bilrp.DocumentIndex.open(path, model)
    size = sum(file.stat().st_size for file in path.iterdir())

    def first_open():  # as in a new process: the model's weights digest is not cached yet
        fingerprint_module._WEIGHTS.clear()
        bilrp.DocumentIndex.open(path, model)

    def rank():  # the first-read token checks counted every time
        index._tokens_checked = set()
        bilrp.explain_ranking(model, query, index, top_k=10)

    runs = {"first open": first_open, "reopen": lambda: bilrp.DocumentIndex.open(path, model), "rank top 10": rank}
    lengths = [index.factor(i)["length"] for i in index.ids[:200]]
    row: dict = {
        "index": name,
        "documents": len(index),
        "tokens_per_document": round(sum(lengths) / len(lengths), 1),
        "index_mib": round(size / 2**20, 1),
    }
    print(f"{name}: {row['documents']} documents, {row['tokens_per_document']} tokens each, {row['index_mib']} MiB")
    for what, function in runs.items():
        on, off = alternating(function, repeats)
        share = share_of_checks(function, repeats)
        key = what.replace(" ", "_")
        row |= {f"{key}_checked_s": on, f"{key}_unchecked_s": off, f"{key}_overhead": on / off - 1}
        row |= {f"{key}_checks_share": share, f"{key}_checks_overhead": share / (1 - share)}
        print(
            f"  {what:<12} checks {share / (1 - share):6.1%} of the rest of the run (timed inside it) | fastest "
            f"{on * 1e3:6.1f} ms CPU checked vs {off * 1e3:6.1f} ms unchecked: {on / off - 1:+6.1%}",
            flush=True,
        )
    row["checks_us_per_document"] = row["reopen_checks_share"] * row["reopen_checked_s"] / len(index) * 1e6
    print(f"  opening checks {row['checks_us_per_document']:.1f} us a document", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=2000, help="sentences in the first index (2000)")
    parser.add_argument("--passages", type=int, default=500, help="passages in the second index (500)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)  # every CPU second in this thread (CLOCK)
    torch.manual_seed(0)
    model = bilrp.SimilarityModel.from_pretrained()
    query = "A person plays the guitar in the park."
    fingerprint_module._WEIGHTS.clear()
    start = CLOCK()
    fingerprint_module.model_fingerprint(model)
    fingerprint_seconds = CLOCK() - start
    print(f"model fingerprint (first open in a process): {fingerprint_seconds * 1e3:.0f} ms CPU", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        rows = [
            measure(model, "sentences", texts(args.documents, 1), Path(folder), args.repeats, query),
            measure(model, "passages", texts(args.passages, 6), Path(folder), args.repeats, query),
        ]
    result = {
        "benchmark": "integrity checks of a document index",
        "model": model.name,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "repeats": args.repeats,
        "model_fingerprint_uncached_s": fingerprint_seconds,
        "rows": rows,
        "timing": "CPU seconds of the working thread (time.thread_time, torch on 1 thread), fastest of the repeats, "
        "checked and unchecked interleaved; checks_share: median share of a checked run inside the check functions",
    }
    text = json.dumps(result, indent=2) + "\n"
    if args.json:
        args.json.write_text(text)
    print(text if not args.json else f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
