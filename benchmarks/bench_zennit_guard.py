"""Cost of the certificate guard on zennit's attributors: ``Gradient(model, TransformerComposite())``, as ratios.

The guarded call (bilrp's root rule: relevance at the input, homogeneity checked in the forward pass with two
replays, conservation in the backward pass) is timed against the same call without the root rule (the bare
rules, what zennit's ``Gradient`` ran before the guard), median of ``--repeats`` interleaved runs, in two ways:

- ``per call``: ``Gradient(model, composite)(x)``, registering and removing the composite on every call (the
  zennit idiom without ``with``);
- ``in context``: ``attributor(x)`` inside ``with Gradient(model, composite) as attributor``.

Usage::

    python benchmarks/bench_zennit_guard.py                 # real all-MiniLM-L6-v2, batches of 1 and 8 texts
    python benchmarks/bench_zennit_guard.py --random-weights --lengths 32 128 --out guard.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from bench_engine import build_model, make_inputs
from torch import nn
from zennit.attribution import Gradient

import bilrp


class Bare(bilrp.TransformerComposite):
    """The composite without its root rule: the unguarded baseline (the gradient, not checked)."""

    def register(self, module: nn.Module) -> None:
        self.register_rules(module)


class Embedded(nn.Module):
    """The sentence embedding from the embedding output: what a zennit user hands to ``Gradient``."""

    def __init__(self, model: bilrp.SimilarityModel, mask: torch.Tensor) -> None:
        super().__init__()
        self.model, self.mask = model, mask

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.model.represent(embeddings, self.mask)


def seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def timed(attributor: Gradient, emb: torch.Tensor, repeats: int) -> list[float]:
    seconds(lambda: attributor(emb))  # warm-up
    return [seconds(lambda: attributor(emb)) for _ in range(repeats)]


def measure(model, length: int, batch: int, repeats: int) -> list[dict]:
    emb, _, mask, _ = make_inputs(model, length, "cpu", pairs=batch)
    embedded = Embedded(model, mask)
    composites = {"guarded": bilrp.TransformerComposite, "unguarded": Bare}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeats):  # interleaved, one call each, so that drifts in machine load hit both alike
        for name, make in composites.items():
            times.setdefault(("per call", name), []).extend(timed(Gradient(embedded, make()), emb, 1))
    for name, make in composites.items():  # one composite on the model at a time
        with Gradient(embedded, make()) as attributor:
            times[("in context", name)] = timed(attributor, emb, repeats)
    rows = []
    for way in ("per call", "in context"):
        row = {name: statistics.median(times[(way, name)]) for name in composites}
        row.update(way=way, tokens=length, batch=batch, ratio=row["guarded"] / row["unguarded"])
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--random-weights", action="store_true", help="a random model of MiniLM's size")
    parser.add_argument("--out", help="also write the rows as JSON")
    args = parser.parse_args()
    model = build_model("minilm", "cpu", random_weights=args.random_weights)
    rows = [
        row for length in args.lengths for batch in args.batches for row in measure(model, length, batch, args.repeats)
    ]
    print(f"{'way':11s} {'tokens':>6s} {'batch':>5s} {'guarded s':>10s} {'unguarded s':>12s} {'ratio':>6s}")
    for row in rows:
        print(
            f"{row['way']:11s} {row['tokens']:6d} {row['batch']:5d} {row['guarded']:10.4f} {row['unguarded']:12.4f} "
            f"{row['ratio']:6.2f}"
        )
    if args.out:
        with open(args.out, "w") as file:
            json.dump(rows, file, indent=2)


if __name__ == "__main__":
    main()
