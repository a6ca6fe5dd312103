"""Peak memory and time of the engine's replay and reverse modes on long pairs (all-MiniLM-L6-v2).

For every length (128/256/512 tokens per text), mode (``replay``, ``reverse``) and chunking (``after``: the
library's default chunk size; ``before``: the chunk size of the former rule ``2 GiB // (16 * batch * seq *
width * 4)``, passed as ``internal_batch_size``), one fresh subprocess loads the real MiniLM (its position
embeddings take 512 tokens; ``max_length=512``), embeds a pair of random token ids and explains it with
``bilrp.BiLRP(model, mode=...).attribute``, certificate included.

Memory: a thread samples the resident set (``/proc/self/statm``) every 2 ms; ``peak_gb`` is its maximum minus
the resident set just before the call (model, inputs and a warm-up forward loaded: the engine's working set),
``total_gb`` the process's ``ru_maxrss`` (everything, model included).

Time: ``--max-chunks K`` stops a run after its first ``K`` chunks (replay: token chunks, reverse: chunks of
cotangents; counted by a hook on the encoder and a wrapper of ``torch.autograd.grad``) and projects the whole
run from them: ``setup + chunk_time * total_items / done_items``. Every chunk but the last has the same
size and the first is the largest (it also holds the certificate's probe), so a stopped run has the whole
run's peak. ``--before-chunks`` is ``K`` for the ``before`` runs (their chunks are large);
``--full LEN:MODE:CHUNKING`` runs a measurement to the end. Usage::

    python benchmarks/bench_memory.py --json benchmarks/results/memory.json --md benchmarks/results/memory.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

LENGTHS = (128, 256, 512)
MODES = ("replay", "reverse")
CHUNKINGS = ("after", "before")
_PAGE = os.sysconf("SC_PAGE_SIZE")
GB = 1e9


class _Stop(BaseException):  # noqa: N818  (not an error: no library ``except Exception`` may catch it)
    """Raised by the chunk counters to end a run after ``--max-chunks`` chunks."""


def legacy_chunk_size(batch: int, length: int, width: int, itemsize: int = 4) -> int:
    """The former default: ``2 GiB // (16 * batch * seq * width * itemsize)`` (no attention, no MLP term)."""
    return max(1, 2 * 1024**3 // max(1, batch * length * width * itemsize * 16))


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


class RssSampler:
    """Largest resident set seen while the context is open (sampled every ``interval`` seconds)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak, self._done = interval, 0, threading.Event()

    def _run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = _rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


class ChunkClock:
    """Time stamps of a run's chunks; raises :class:`_Stop` when chunk ``max_chunks + 1`` would start.

    Replay: the encoder's first call is the recording pass, every later call one chunk. Reverse: the chunks
    are the calls of ``torch.autograd.grad`` (the encoder runs before them: recording, certificate, graph).
    """

    def __init__(self, model, mode: str, max_chunks: int) -> None:
        self.mode, self.max_chunks, self.stamps = mode, max_chunks, []
        self.calls = 0
        self._handle = model.encoder.register_forward_pre_hook(self._encoder_call) if mode == "replay" else None
        self._grad = torch.autograd.grad
        if mode == "reverse":
            torch.autograd.grad = self._grad_call

    def _tick(self) -> None:
        if self.max_chunks and len(self.stamps) == self.max_chunks:
            self.stamps.append(time.perf_counter())
            raise _Stop
        self.stamps.append(time.perf_counter())

    def _encoder_call(self, module, args) -> None:
        self.calls += 1
        if self.calls > 1:
            self._tick()

    def _grad_call(self, *args, **kwargs):
        self._tick()
        return self._grad(*args, **kwargs)

    def close(self) -> None:
        """Remove the hook and restore ``torch.autograd.grad``."""
        if self._handle is not None:
            self._handle.remove()
        torch.autograd.grad = self._grad


def make_pair(model, length: int):
    """Embeddings and masks of a pair of ``length`` random token ids each (CLS first, SEP last)."""
    torch.manual_seed(length)
    ids = torch.randint(1000, 20000, (2, length))
    ids[:, 0], ids[:, -1] = model.tokenizer.cls_token_id, model.tokenizer.sep_token_id
    mask = torch.ones(2, length, dtype=torch.long)
    with torch.no_grad():
        embeddings = model.embed(ids, mask)
    return embeddings[:1], embeddings[1:], mask[:1], mask[1:]


def project(mode: str, length: int, dim: int, chunk: int, stamps: list[float], start: float, end: float) -> dict:
    """Whole-run seconds from the chunks run: ``setup + chunk_time * total_items / done_items``."""
    chunks = -(-(length if mode == "replay" else dim) // chunk)
    done = len(stamps) - 1 if stamps and end == stamps[-1] else len(stamps)
    if not stamps or done >= chunks:
        return {"seconds": end - start, "chunks": chunks, "chunks_run": chunks, "projected": False}
    if mode == "replay":  # every chunk adds f(0); the first also the probe
        total, finished = length + chunks + 1, done * (chunk + 1) + 1
    else:
        total, finished = dim, done * chunk
    seconds = (stamps[0] - start) + (end - stamps[0]) * total / finished
    return {"seconds": seconds, "chunks": chunks, "chunks_run": done, "projected": True}


def measure(length: int, mode: str, chunking: str, max_chunks: int, threads: int) -> dict:
    """One configuration, in this (fresh) process: peak memory and (projected) seconds."""
    import gc

    import bilrp
    from bilrp.engine import default_chunk_size

    torch.set_num_threads(threads)
    model = bilrp.SimilarityModel.from_pretrained(max_length=512).eval()
    emb_a, emb_b, mask_a, mask_b = make_pair(model, length)
    width = emb_a.shape[-1]
    with torch.no_grad():
        dim = model.represent(emb_a, mask_a).shape[-1]  # warm-up; finds the encoder's input argument once
    chunk = (default_chunk_size if chunking == "after" else legacy_chunk_size)(2, length, width)
    attribution = bilrp.BiLRP(model, mode=mode)
    gc.collect()
    clock, base = ChunkClock(model, mode, max_chunks), _rss()
    start = time.perf_counter()
    try:
        with RssSampler() as sampler:
            attribution.attribute(
                (emb_a, emb_b),
                additional_forward_args=(mask_a, mask_b),
                internal_batch_size=None if chunking == "after" else chunk,
            )
    except _Stop:
        pass
    finally:
        clock.close()
    end = clock.stamps[-1] if clock.max_chunks and len(clock.stamps) > clock.max_chunks else time.perf_counter()
    return {
        "length": length,
        "mode": mode,
        "chunking": chunking,
        "chunk_size": chunk,
        "dim": dim,
        "threads": threads,
        "base_gb": base / GB,
        "peak_gb": (sampler.peak - base) / GB,
        "total_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB,
        **project(mode, length, dim, chunk, clock.stamps, start, end),
    }


def run_child(length: int, mode: str, chunking: str, max_chunks: int, threads: int, timeout: float) -> dict:
    """:func:`measure` in a fresh subprocess (its own peak resident set); a row with ``error`` if it fails."""
    spec = json.dumps({"length": length, "mode": mode, "chunking": chunking, "max_chunks": max_chunks})
    command = [sys.executable, __file__, "--child", spec, "--threads", str(threads)]
    row = {"length": length, "mode": mode, "chunking": chunking}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**row, "error": f"timed out after {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {**row, "error": done.stderr.strip()[-800:]}
    return json.loads(lines[-1])


def summarise(rows: list[dict]) -> list[dict]:
    """Per length: reverse / replay time ratios, before / after ratios, and reverse's cost per VJP.

    ``vjp_cost`` is the time of one VJP in forward passes of one sequence, with the replay run taken as
    ``seq + 3`` such passes (recording, ``f(0)``, probe, one per token) and reverse as ``4 + dim * vjp_cost``
    (recording, certificate's two sequences, the graph's forward, the VJPs).
    """
    cell = {(r["length"], r["mode"], r["chunking"]): r for r in rows if "seconds" in r}
    summary = []
    for length in sorted({r["length"] for r in rows}):
        replay, reverse = cell.get((length, "replay", "after")), cell.get((length, "reverse", "after"))
        entry = {"length": length}
        if replay and reverse:
            entry["reverse_over_replay"] = reverse["seconds"] / replay["seconds"]
            forward = replay["seconds"] / (length + 3)
            entry["vjp_cost"] = (reverse["seconds"] / forward - 4) / reverse["dim"]
        for mode in MODES:
            after, before = cell.get((length, mode, "after")), cell.get((length, mode, "before"))
            if after and before:
                entry[f"{mode}_before_over_after"] = before["seconds"] / after["seconds"]
        summary.append(entry)
    return summary


def first_chunk_items(row: dict) -> int:
    """Tangents in a run's first (largest) chunk: replay's tokens plus ``f(0)`` and the probe, reverse's cotangents."""
    if row["mode"] == "replay":
        return min(row["chunk_size"], row["length"]) + 2
    return min(row["chunk_size"], row["dim"])


def estimate_gb(row: dict, width: int = 384) -> float:
    """The engine's estimate of the first chunk's working set: its tangents times ``_item_bytes`` (GB)."""
    from bilrp.engine import _item_bytes

    return first_chunk_items(row) * _item_bytes(2, row["length"], width, 4) / GB


def markdown(rows: list[dict], summary: list[dict]) -> str:
    """The rows and the summary as Markdown tables."""
    lines = [
        "| tokens/text | mode | chunking | chunk size | chunks run | peak GB (growth) | estimate GB | total GB "
        "| seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['length']} | {r['mode']} | {r['chunking']} | — | — | — | — | — | {r['error'][:60]} |")
            continue
        seconds = f"{r['seconds']:.1f}" + (" (projected)" if r["projected"] else "")
        lines.append(
            f"| {r['length']} | {r['mode']} | {r['chunking']} | {r['chunk_size']} | {r['chunks_run']}/{r['chunks']} "
            f"| {r['peak_gb']:.2f} | {estimate_gb(r):.2f} | {r['total_gb']:.2f} | {seconds} |"
        )
    lines += ["", "| tokens/text | reverse/replay | replay before/after | reverse before/after | VJP cost |"]
    lines.append("|---|---|---|---|---|")
    for s in summary:
        values = [s.get(k) for k in ("reverse_over_replay", "replay_before_over_after", "reverse_before_over_after")]
        cells = ["—" if v is None else f"{v:.2f}x" for v in values]
        vjp = "—" if "vjp_cost" not in s else f"{s['vjp_cost']:.2f}"
        lines.append(f"| {s['length']} | {' | '.join(cells)} | {vjp} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--chunkings", nargs="+", choices=CHUNKINGS, default=list(CHUNKINGS))
    parser.add_argument("--max-chunks", type=int, default=2, help="stop runs after this many chunks (0: never)")
    parser.add_argument("--before-chunks", type=int, default=1, help="--max-chunks of the 'before' runs")
    parser.add_argument("--full", nargs="*", default=[], help="LEN:MODE:CHUNKING measurements run to the end")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help="only rewrite the report from this JSON file's rows")
    args = parser.parse_args(argv)
    if args.report:
        write_report(json.loads(args.report.read_text())["rows"], args.json, args.md)
        return
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(measure(**spec, threads=args.threads)))
        return
    rows = []
    for length in args.lengths:
        for chunking in args.chunkings:
            for mode in args.modes:
                limit = args.before_chunks if chunking == "before" else args.max_chunks
                limit = 0 if f"{length}:{mode}:{chunking}" in args.full else limit
                row = run_child(length, mode, chunking, limit, args.threads, args.timeout)
                print(json.dumps(row), flush=True)
                rows.append(row)
    write_report(rows, args.json, args.md)


def write_report(rows: list[dict], json_path: Path | None, md_path: Path | None) -> None:
    """Summary of ``rows``, written as JSON and Markdown and printed."""
    summary = summarise(rows)
    report = {
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "rows": rows,
        "summary": summary,
    }
    if json_path:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(rows, summary)
    if md_path:
        md_path.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
