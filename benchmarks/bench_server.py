"""Load test of the explorer's server: latency and throughput of ``POST /api/explain`` on loopback.

Starts ``bilrp serve --port 0 --timeout 300`` in a subprocess (the real command: uvicorn, the app, one model),
warms it up, then sends ``--requests`` short-pair explanations one at a time and ``--concurrency`` at once,
each pair distinct (no cache hits), and finally a 150-word pair at the page's default granularity (``auto``:
sentences past 80 words) and by words. Every answer is checked (status 200, ``sum(R) + bias == score``).
Prints the table and writes it as a markdown section with ``--out``. Bounded: at most ``--requests``
requests a phase and ``--budget`` seconds in all. Usage::

    python benchmarks/bench_server.py --out benchmarks/results/server.md
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

WORDS = (
    "the committee met on tuesday to discuss the new budget for the city library and agreed that more money "
    "should go to children's books while the old reading room will be repaired next spring after a long debate "
    "about costs the members also asked the mayor to publish every contract online so that citizens can see how "
    "their taxes are spent and several speakers praised the volunteers who keep the branch open on weekends"
).split()


def start_server(model: str | None, timeout: float) -> tuple[subprocess.Popen, str]:
    """``bilrp serve --port 0`` in a subprocess and the address it printed."""
    command = [sys.executable, "-m", "bilrp", "serve", "--port", "0", "--timeout", "300"]
    command += ["--model", model] if model else []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines or not lines[0].startswith("bilrp explorer: http"):
        process.kill()
        raise SystemExit(f"the server did not start in {timeout:.0f} s: {process.stderr.read()[-2000:]}")
    return process, lines[0].split()[2]


def explain(http: httpx.Client, text_a: str, text_b: str, granularity: str = "auto") -> float:
    """Seconds one checked explain request took."""
    started = time.perf_counter()
    answer = http.post("/api/explain", json={"text_a": text_a, "text_b": text_b, "granularity": granularity})
    seconds = time.perf_counter() - started
    if answer.status_code != 200:
        raise SystemExit(f"request failed with {answer.status_code}: {answer.text[:300]}")
    body = answer.json()
    total = sum(map(sum, body["relevance"])) + body["bias"]
    if abs(total - body["score"]) > 1e-3 * max(1.0, abs(body["score"])):
        raise SystemExit(f"sum(R) + bias = {total} differs from the score {body['score']}")
    return seconds


def short_pair(number: int) -> tuple[str, str]:
    return f"A man is playing guitar number {number}.", f"Someone plays music on stage {number} times."


def long_pair(words: int = 150) -> tuple[str, str]:
    text = (WORDS * (words // len(WORDS) + 1))[:words]
    return " ".join(text), " ".join(text[::-1])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def phase(http: httpx.Client, name: str, pairs, concurrency: int, granularity: str = "auto") -> dict:
    """Send ``pairs`` ``concurrency`` at a time; latency percentiles and throughput."""
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(lambda pair: explain(http, *pair, granularity), pairs))
    wall = time.perf_counter() - started
    return {
        "phase": name,
        "requests": len(pairs),
        "concurrency": concurrency,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * percentile(latencies, 0.95),
        "throughput": len(pairs) / wall,
    }


def markdown(rows: list[dict], args: argparse.Namespace, load: tuple[float, float]) -> str:
    lines = [
        "## Explorer server (`bilrp serve`)",
        "",
        f"`python benchmarks/bench_server.py` ({args.requests} requests a phase, model "
        f"{args.model or 'all-MiniLM-L6-v2'}, {os.cpu_count()} CPU cores shared with other jobs, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, Python {platform.python_version()}): "
        "`bilrp serve --port 0 --timeout 300` in a subprocess, httpx clients on loopback, every pair distinct "
        "(no cache hits), every answer checked. Latency is the client's, from sending the request to the full "
        "JSON answer. "
        f"Load average {load[0]:.1f} before and {load[1]:.1f} after the run (other workers shared the cores, so "
        "the figures are upper bounds). *auto* explains a 150-word pair by sentences (past 80 words).",
        "",
        "| phase | requests | concurrent | p50 (ms) | p95 (ms) | requests/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['phase']} | {r['requests']} | {r['concurrency']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
        f"{r['throughput']:.2f} |"
        for r in rows
    ]
    lines += [
        "",
        "bilrp runs one explanation at a time (a process-wide lock), so concurrent requests queue: the throughput "
        "stays that of one, and the latency at concurrency 8 is about 8 times the service time. Goal: a short "
        "pair's p50 under 300 ms at concurrency 1 after warm-up.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model to serve (default: all-MiniLM-L6-v2)")
    parser.add_argument("--requests", type=int, default=64, help="short-pair requests a phase (default 64)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests at once in the second phase (8)")
    parser.add_argument("--long-repeats", type=int, default=3, help="150-word requests at granularity auto (3)")
    parser.add_argument("--budget", type=float, default=600.0, help="stop the whole run after these seconds")
    parser.add_argument("--out", type=Path, help="write the markdown section here")
    args = parser.parse_args()
    timer = threading.Timer(args.budget, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.daemon = True
    timer.start()
    load_before = os.getloadavg()[0]
    process, url = start_server(args.model, timeout=180)
    try:
        limits = httpx.Limits(max_connections=args.concurrency + 2)
        with httpx.Client(base_url=url, timeout=120, limits=limits) as http:
            for number in range(5):
                explain(http, *short_pair(10_000 + number))  # warm-up
            count = args.requests
            rows = [
                phase(http, "short pair", [short_pair(i) for i in range(count)], 1),
                phase(http, "short pair", [short_pair(i) for i in range(count, 2 * count)], args.concurrency),
            ]
            text_a, text_b = long_pair()
            for granularity, repeats in (("auto", args.long_repeats), ("word", 1)):
                pairs = [(f"{text_a} ({n})", text_b) for n in range(repeats)]
                rows.append(phase(http, f"150-word pair, granularity {granularity}", pairs, 1, granularity))
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        timer.cancel()
    text = markdown(rows, args, (load_before, os.getloadavg()[0]))
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
