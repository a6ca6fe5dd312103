"""The Ray engine: 1 worker vs 2 workers on this machine, against the local engine, and Ray's start-up cost.

In one run, on the real all-MiniLM-L6-v2, each command as a user runs it (a fresh ``bilrp`` process; the
Ray runs start their own local Ray instance and shut it down, so their times include Ray's start-up):

- ``bilrp index`` over the distinct STSb test sentences (``$BILRP_DATA_DIR``, default ``../shared/data``; the
  fixture rows of ``tests/fixtures/data`` when the full data is missing, and the output says which);
- ``bilrp evaluate perturbation`` on the first ``--pairs`` STSb test pairs (methods ``--methods``, step
  ``--step``);

each with the local engine, ``--engine ray --workers 1`` and ``--engine ray --workers 2``; and Ray's fixed
costs: ``ray.init`` of a local instance (and its shutdown), and a whole ``bilrp index`` of two documents on
Ray minus the same run with the local engine (start-up, actor start, model load in the actor). Every process
runs with ``OMP_NUM_THREADS=1``, so the local engine and each Ray actor use one core.

Usage::

    python benchmarks/bench_ray.py --out benchmarks/results/ray.md
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bilrp import datasets

ROOT = Path(__file__).resolve().parents[1]
ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
ENGINES = {
    "local": [],
    "ray, 1 worker": ["--engine", "ray", "--workers", "1"],
    "ray, 2 workers": ["--engine", "ray", "--workers", "2"],
}


def data_folder() -> tuple[Path, str]:
    """The STSb folder used and how to describe it."""
    folder = Path(os.environ.get("BILRP_DATA_DIR", ROOT.parent / "shared" / "data"))
    if (folder / "stsb" / "sts-test.csv").is_file():
        return folder, f"STSb test, full data ({folder})"
    fixture = ROOT / "tests" / "fixtures" / "data"
    return fixture, f"STSb test, the fixture rows only ({fixture}; set BILRP_DATA_DIR for the full data)"


def timed(argv: list[str]) -> float:
    """Wall-clock seconds of ``bilrp ARGV`` in a fresh process (its failure stops the benchmark)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bilrp", *argv], env={**os.environ, **ENV}, capture_output=True,
                          text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bilrp {' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return seconds


def ray_start_seconds() -> float:
    """``ray.init`` of a local 2-CPU instance plus its shutdown, in a fresh process."""
    code = (
        "import time; t = time.perf_counter(); import ray; ray.init(address='local', num_cpus=2, "
        "include_dashboard=False, log_to_driver=False, logging_level='WARNING'); ray.shutdown(); "
        "print(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **ENV}, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def index_runs(folder: Path, work: Path) -> tuple[int, dict[str, float]]:
    """``bilrp index`` of the distinct STSb test sentences with each engine: documents and seconds."""
    pairs = datasets.load("stsb", "test", data_dir=folder)
    sentences = list(dict.fromkeys(t for p in pairs for t in (p.text_a, p.text_b)))
    docs = work / "sentences.txt"
    docs.write_text("".join(" ".join(s.split()) + "\n" for s in sentences), encoding="utf-8")
    seconds = {}
    for name, flags in ENGINES.items():
        out = work / f"index-{name.replace(' ', '').replace(',', '-')}"
        seconds[name] = timed(["index", str(docs), "--out", str(out), "--no-progress", *flags])
    return len(sentences), seconds


def perturbation_runs(folder: Path, work: Path, args: argparse.Namespace) -> dict[str, float]:
    """``bilrp evaluate perturbation`` on the first ``args.pairs`` STSb test pairs with each engine."""
    seconds = {}
    for name, flags in ENGINES.items():
        out = work / f"perturbation-{name.replace(' ', '').replace(',', '-')}"
        argv = ["evaluate", "perturbation", "--dataset", "stsb", "--data-dir", str(folder), "--limit", str(args.pairs)]
        argv += ["--methods", *args.methods, "--step", str(args.step), "--out", str(out), "--no-progress"]
        seconds[name] = timed([*argv, *flags])
    return seconds


def ray_overhead(work: Path) -> float:
    """A two-document ``bilrp index`` on Ray (one worker) minus the same with the local engine, in seconds."""
    docs = work / "two.txt"
    docs.write_text("A man plays a guitar.\nA dog runs in a field.\n", encoding="utf-8")
    local = timed(["index", str(docs), "--out", str(work / "two-local"), "--no-progress"])
    ray = timed(["index", str(docs), "--out", str(work / "two-ray"), "--no-progress", *ENGINES["ray, 1 worker"]])
    return ray - local


def table(title: str, count: str, seconds: dict[str, float]) -> list[str]:
    """A markdown table: seconds, items per second and the ratio to one Ray worker, per engine."""
    one = seconds["ray, 1 worker"]
    lines = [f"### {title}", "", "| engine | seconds | per second | vs ray, 1 worker |", "|---|---|---|---|"]
    amount = float(count.split()[0])
    for name, value in seconds.items():
        lines.append(f"| {name} | {value:.1f} | {amount / value:.2f} {count.split()[1]} | {one / value:.2f}x |")
    return [*lines, ""]


def scaling_note(index: dict[str, float], perturbation: dict[str, float], overhead: float) -> list[str]:
    """How 2 workers compare with 1, with and without Ray's fixed cost, and why not 2x on this machine."""
    ratios = []
    for name, seconds in (("index", index), ("perturbation", perturbation)):
        one, two = seconds["ray, 1 worker"], seconds["ray, 2 workers"]
        ratios.append(f"{name} {one / two:.2f}x ({(one - overhead) / (two - overhead):.2f}x without the fixed cost)")
    return [
        f"2 workers vs 1 worker: {'; '.join(ratios)}. Short of 2x because the two actors share the machine's two "
        "cores with the driver (it loads the model too, and writes and commits the shards), Ray's own processes "
        "and, while this ran, other jobs. One Ray worker is about as fast as the local engine once its fixed "
        "cost is paid: the unit of work is the same.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200, help="pairs of evaluate perturbation (200)")
    parser.add_argument("--methods", nargs="+", default=["random", "hxp", "bilrp"], help="(random hxp bilrp)")
    parser.add_argument("--step", type=float, default=0.1, help="perturbation step (0.1: 11 points)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ray.md")
    args = parser.parse_args()
    folder, source = data_folder()
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        start = ray_start_seconds()
        overhead = ray_overhead(work)
        documents, index = index_runs(folder, work)
        perturbation = perturbation_runs(folder, work, args)
    import ray

    lines = [
        "# Ray engine: 1 vs 2 workers (`python benchmarks/bench_ray.py`)",
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other jobs while this "
        f"ran: the times are upper bounds), Python {platform.python_version()}, Ray {ray.__version__}, "
        "all-MiniLM-L6-v2, OMP_NUM_THREADS=1 in every process (the local engine and each actor use one core). "
        f"Data: {source}. Each time is a whole `bilrp` command in a fresh process: imports, model load, and "
        "for Ray the start of a local instance, of the actors and the model load in each actor.",
        "",
        f"- Ray start-up: `ray.init` of a local instance and its shutdown, {start:.1f} s; a two-document "
        f"`bilrp index` on Ray (1 worker) takes {overhead:.1f} s longer than with the local engine (start-up, "
        "actor start, model load in the actor: the fixed cost of `--engine ray` on this machine).",
        "",
        *table(f"`bilrp index` of {documents} distinct STSb test sentences", f"{documents} docs", index),
        *table(
            f"`bilrp evaluate perturbation`, {args.pairs} pairs, methods {' '.join(args.methods)}, step {args.step}",
            f"{args.pairs} pairs",
            perturbation,
        ),
        *scaling_note(index, perturbation, overhead),
    ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
