"""Start-up benchmark: wall time of ``bilrp --help`` and ``bilrp explain --help`` against a bare ``import torch``.

Each command runs ``--repeats`` times in a fresh subprocess (after one warm-up run that fills the OS file
cache); the medians are printed with their ratio to ``python -c "import torch"``. The goal is that the help
commands cost less than half of a bare ``import torch``. Usage::

    python benchmarks/bench_startup.py              # 7 runs each
    python benchmarks/bench_startup.py --repeats 15 --json results/startup.json
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from bilrp._io import write_json

COMMANDS = {
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "bilrp --help": [sys.executable, "-m", "bilrp", "--help"],
    "bilrp explain --help": [sys.executable, "-m", "bilrp", "explain", "--help"],
    "python -c 'import bilrp'": [sys.executable, "-c", "import bilrp"],
    "python -c 'pass' (interpreter)": [sys.executable, "-c", "pass"],
}
REFERENCE = "python -c 'import torch'"
GOAL = 0.5


def seconds(command: list[str]) -> float:
    """Wall time of one run of ``command`` (which must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(repeats: int) -> dict[str, dict[str, float]]:
    """Median, minimum and maximum seconds of each command; runs are interleaved so drifts hit all alike."""
    for command in COMMANDS.values():
        seconds(command)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeats):
        for name, command in COMMANDS.items():
            times[name].append(seconds(command))
    return {
        name: {"median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs)}
        for name, runs in times.items()
    }


def report(results: dict[str, dict[str, float]]) -> str:
    """A table of medians and ratios to the bare ``import torch``, and whether the help commands meet the goal."""
    reference = results[REFERENCE]["median_s"]
    lines = [f"{'command':<34} {'median':>8} {'min':>8} {'max':>8}  {'/ import torch':>14}"]
    for name, result in results.items():
        ratio = result["median_s"] / reference
        lines.append(
            f"{name:<34} {result['median_s']:>7.3f}s {result['min_s']:>7.3f}s {result['max_s']:>7.3f}s  {ratio:>14.2f}"
        )
    helps = [name for name in results if name.startswith("bilrp")]
    met = all(results[name]["median_s"] < GOAL * reference for name in helps)
    lines.append(f"goal (help < {GOAL:g} x import torch): {'met' if met else 'NOT met'}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per command (7)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    results = measure(max(1, args.repeats))
    print(f"python {sys.version.split()[0]}, {args.repeats} runs per command")
    print(report(results))
    if args.json:
        write_json(args.json, {"repeats": args.repeats, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
