"""Cost of the conservation certificate: BiLRP with and without it, in one run, as ratios.

For each engine mode (replay, the default; forward; reverse) and text length, the same pair is explained with
``certify=True`` and ``certify=False`` (median of ``--repeats`` runs each, interleaved). The ratio
``certified / uncertified - 1`` is the certificate's overhead; the goal is under 10 %. Usage::

    python benchmarks/bench_certificate.py                 # real all-MiniLM-L6-v2, 16/32/64 tokens
    python benchmarks/bench_certificate.py --out benchmarks/results/certificate_cpu_2core.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from bench_engine import build_model, make_inputs

import bilrp

MODES = ("replay", "forward", "reverse")


def seconds(attribution, inputs, masks) -> float:
    start = time.perf_counter()
    attribution.attribute(inputs, additional_forward_args=masks)
    return time.perf_counter() - start


def measure(model, length: int, mode: str, repeats: int) -> dict:
    emb_a, emb_b, mask_a, mask_b = make_inputs(model, length, "cpu")
    inputs, masks = (emb_a, emb_b), (mask_a, mask_b)
    on, off = bilrp.BiLRP(model, mode=mode), bilrp.BiLRP(model, mode=mode, certify=False)
    seconds(on, inputs, masks)  # warm-up
    times = {"certified": [], "uncertified": []}
    for _ in range(repeats):
        times["certified"].append(seconds(on, inputs, masks))
        times["uncertified"].append(seconds(off, inputs, masks))
    row = {name: statistics.median(values) for name, values in times.items()}
    row.update(mode=mode, tokens=length, overhead=row["certified"] / row["uncertified"] - 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="also write the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = build_model("minilm", "cpu")
    rows = [measure(model, length, mode, args.repeats) for mode in args.modes for length in args.lengths]
    print(f"{'mode':8s} {'tokens':>6s} {'certified s':>12s} {'uncertified s':>14s} {'overhead':>9s}")
    for row in rows:
        print(
            f"{row['mode']:8s} {row['tokens']:6d} {row['certified']:12.4f} {row['uncertified']:14.4f} "
            f"{100 * row['overhead']:8.1f}%"
        )
    if args.out:
        with open(args.out, "w") as file:
            json.dump(rows, file, indent=2)


if __name__ == "__main__":
    main()
