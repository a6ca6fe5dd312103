"""Step error of Integrated Jacobians on STSb test pairs, per reference (zero, PAD, MASK) and number of steps.

Per text, ``n(x) = C.sum(1) + n(r) + e`` (``IntegratedJacobians.step_error``). The pair score then splits into
``R.sum()``, the exact reference terms ``s(r, x') + s(x, r') - s(r, r')`` and the pair step error
``E = (n(x) - n(r)) . (n(x') - n(r')) - C.sum(1) . C'.sum(1)``; this script reports ``|E| / |score|``.

``C.sum(1)`` is linear in the per-token tangents, so it equals the midpoint sum of one directional
derivative per path point, ``mean_k J(r + a_k d) d`` with ``d = x - r``: one JVP per point instead of one per
token and point. The script checks that identity against ``IntegratedJacobians.contributions`` on a few texts,
then sweeps the step counts with it. Midpoint grids nest when one count is an odd multiple of another
(100 holds 20, 50 holds 10), so each grid is evaluated once. Usage::

    python benchmarks/ij_step_error.py                      # MiniLM (50 pairs) and MPNet (20 pairs), ~30 min
    python benchmarks/ij_step_error.py --minilm-pairs 3 --mpnet-pairs 0 --out /tmp/quick.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import time
from pathlib import Path

import torch

import bilrp
from bilrp import IntegratedJacobians
from bilrp.composites import PlainComposite
from bilrp.explaining import explaining

ROOT = Path(__file__).resolve().parents[1]
MPNET_FETCH = ROOT.parent / "shared" / "models" / "fetch-all-mpnet-base-v2"
GROUP = 16
"""Texts per batch: sorted by length so that a batch pads little."""
CHECK_TEXTS, CHECK_STEPS = 3, 10


def grids(steps: list[int]) -> dict[int, list[int]]:
    """Finest grids to evaluate and the step counts each gives (``grid / n`` odd: the midpoints nest)."""
    plan: dict[int, list[int]] = {}
    for n in sorted(set(steps), reverse=True):
        if not any(grid % n == 0 and (grid // n) % 2 == 1 for grid in plan):
            plan[n] = []
        for grid in plan:
            if grid % n == 0 and (grid // n) % 2 == 1 and n not in plan[grid]:
                plan[grid].append(n)
    return plan


def midpoint_mean(values: torch.Tensor, grid: int, n: int) -> torch.Tensor:
    """Mean over the ``n``-point midpoint rule of ``values`` given on the ``grid``-point one (dim 0)."""
    m = grid // n
    return values[m // 2 :: m].mean(0)


def derivatives(ij: IntegratedJacobians, x, reference, mask, grid: int, chunk: int = 4) -> torch.Tensor:
    """``(grid, batch, dim)``: ``J(r + a_k d) d`` at the ``grid`` midpoints ``a_k``, ``d = (x - r) * mask``."""
    direction = (x - reference) * mask[..., None].to(x.dtype)
    alphas = [(k + 0.5) / grid for k in range(grid)]
    pieces = []
    for start in range(0, grid, chunk):
        part = alphas[start : start + chunk]
        points = torch.cat([reference + a * direction for a in part])
        masks = mask.repeat(len(part), 1)
        tangent = direction.repeat(len(part), 1, 1)
        out = torch.func.jvp(lambda e, masks=masks: ij._normalised(e, masks), (points,), (tangent,))[1]
        pieces.append(out.reshape(len(part), x.shape[0], -1))
    return torch.cat(pieces)


def text_terms(ij: IntegratedJacobians, x, mask, steps: list[int]) -> dict:
    """``n(x)``, ``n(r)`` and ``{n: C.sum(1)}`` of a batch of texts, for every step count in ``steps``."""
    model = ij.forward_func
    with explaining(model), torch.no_grad():
        reference = ij.reference_input(x, mask)
        reference_phi = ij.reference_representation(x, mask)
        with PlainComposite().context(model):
            phi = ij._normalised(x, mask)
            sums = {}
            for grid, counts in grids(steps).items():
                values = derivatives(ij, x, reference, mask, grid)
                sums.update({n: midpoint_mean(values, grid, n) for n in counts})
    return {"phi": phi, "reference_phi": reference_phi, "sums": sums}


def batches(model, texts: list[str]):
    """``(indices, embeddings, mask)`` of groups of similar length (right padding trimmed per group)."""
    tokens = model.tokenize(texts)
    lengths = tokens["attention_mask"].sum(1)
    order = sorted(range(len(texts)), key=lambda i: int(lengths[i]))
    for start in range(0, len(order), GROUP):
        index = torch.tensor(order[start : start + GROUP])
        width = int(lengths[index].max())
        ids, mask = tokens["input_ids"][index, :width], tokens["attention_mask"][index, :width]
        with torch.no_grad():
            yield index, model.embed(ids, mask).detach(), mask


def sweep(model, texts: list[str], reference: str, steps: list[int]) -> dict:
    """Per-text ``phi``, ``reference_phi`` and sums ``(texts, dim)`` for one reference."""
    ij = IntegratedJacobians(model, reference=reference)
    phi, reference_phi, sums = {}, {}, {n: {} for n in steps}
    for index, x, mask in batches(model, texts):
        terms = text_terms(ij, x, mask, steps)
        for row, i in enumerate(index.tolist()):
            phi[i], reference_phi[i] = terms["phi"][row], terms["reference_phi"][row]
            for n in steps:
                sums[n][i] = terms["sums"][n][row]
    stack = lambda values: torch.stack([values[i] for i in range(len(texts))])  # noqa: E731
    return {"phi": stack(phi), "reference_phi": stack(reference_phi), "sums": {n: stack(s) for n, s in sums.items()}}


def pair_errors(terms: dict, n_steps: int, pairs: int) -> dict[str, list[float]]:
    """Score, pair step error ``E`` and per-text ``|e|`` (texts ``0..pairs-1`` are A, the rest B)."""
    phi, ref = terms["phi"], terms["reference_phi"]
    total = terms["sums"][n_steps]
    moved = phi - ref
    error_vector = moved - total  # = IntegratedJacobians.step_error
    score = (phi[:pairs] * phi[pairs:]).sum(-1)
    error = (moved[:pairs] * moved[pairs:]).sum(-1) - (total[:pairs] * total[pairs:]).sum(-1)
    return {"score": score.tolist(), "error": error.tolist(), "text_error": error_vector.norm(dim=-1).tolist()}


def summary(errors: dict[str, list[float]]) -> dict[str, float]:
    score, error = torch.tensor(errors["score"]), torch.tensor(errors["error"]).abs()
    relative = error / score.abs().clamp_min(1e-12)
    return {
        "rel_max": float(relative.max()),
        "rel_p99": float(relative.quantile(0.99)),
        "rel_median": float(relative.median()),
        "abs_max": float(error.max()),
        "text_error_max": max(errors["text_error"]),
    }


def class_check(model, texts: list[str], reference: str) -> float:
    """Largest ``|contributions().sum(1) - midpoint sum of JVPs|`` at ``CHECK_STEPS`` on a few texts."""
    ij = IntegratedJacobians(model, n_steps=CHECK_STEPS, reference=reference)
    tokens = model.tokenize(texts[:CHECK_TEXTS])
    x = model.embed(tokens["input_ids"], tokens["attention_mask"]).detach()
    contributions, _ = ij.contributions(x, tokens["attention_mask"])
    fast = text_terms(ij, x, tokens["attention_mask"], [CHECK_STEPS])["sums"][CHECK_STEPS]
    return float((contributions.sum(1) - fast).abs().max())


def roughness(model, texts: list[str], intervals: int) -> dict[str, float]:
    """Largest change of ``n`` over one of ``intervals`` equal pieces of the PAD path, and path length / chord."""
    ij = IntegratedJacobians(model)
    jumps, ratios = [], []
    for _, x, mask in batches(model, texts):
        with explaining(model), torch.no_grad(), PlainComposite().context(model):
            reference = ij.reference_input(x, mask)
            path = [ij._normalised(reference + k / intervals * (x - reference), mask) for k in range(intervals + 1)]
        steps = torch.stack(path).diff(dim=0).norm(dim=-1)  # (intervals, batch)
        jumps += steps.max(0).values.tolist()
        ratios += (steps.sum(0) / (path[-1] - path[0]).norm(dim=-1)).tolist()
    return {"intervals": intervals, "largest_step_max": max(jumps), "length_over_chord_max": max(ratios)}


def run_model(name: str, model, pairs, plan: dict[str, list[int]], scan: int = 0) -> dict:
    texts = [p.text_a for p in pairs] + [p.text_b for p in pairs]
    lengths = model.tokenize(texts)["attention_mask"].sum(1).float()
    out = {"model": name, "pairs": len(pairs), "mean_tokens": float(lengths.mean()), "max_tokens": int(lengths.max())}
    out["rows"], out["class_check"] = [], {}
    start = time.perf_counter()
    if scan:
        out["roughness"] = roughness(model, texts, scan)
    for reference, steps in plan.items():
        if not steps:
            continue
        out["class_check"][reference] = class_check(model, texts, reference)
        terms = sweep(model, texts, reference, steps)
        for n in steps:
            row = {"reference": reference, "n_steps": n, **summary(pair_errors(terms, n, len(pairs)))}
            out["rows"].append(row)
            print(f"{name:18s} {reference:5s} {n:4d} rel_max={row['rel_max']:.2e} abs_max={row['abs_max']:.2e}")
        out.setdefault("scores", pair_errors(terms, steps[0], len(pairs))["score"])
        print(f"  {reference} done at {time.perf_counter() - start:.0f} s", flush=True)
    out["seconds"] = time.perf_counter() - start
    return out


def mpnet_folder() -> str:
    """The all-mpnet-base-v2 folder the (idempotent) fetch script prints on its last line."""
    done = subprocess.run(["bash", str(MPNET_FETCH)], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def markdown(results: list[dict], threshold: float) -> str:
    """One table per model: max and 99th-percentile relative pair step error per reference and step count."""
    lines = ["# Integrated Jacobians: pair step error on STSb test pairs", ""]
    lines.append(f"`|E| / |score|`, E = score - R.sum() - exact reference terms; goal: max < {threshold:g}.")
    for result in results:
        lines += [
            "",
            f"## {result['model']}{result.get('label', '')} ({result['pairs']} pairs, {result['mean_tokens']:.1f} "
            f"tokens per text on average, {result['seconds']:.0f} s)",
            "",
        ]
        lines += [
            "| reference | n_steps | max | p99 | median | max abs | max per-text |e| |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in result["rows"]:
            lines.append(
                f"| {row['reference']} | {row['n_steps']} | {row['rel_max']:.1e} | {row['rel_p99']:.1e} | "
                f"{row['rel_median']:.1e} | {row['abs_max']:.1e} | {row['text_error_max']:.1e} |"
            )
        checks = ", ".join(f"{k} {v:.1e}" for k, v in result["class_check"].items())
        lines += ["", f"Fast path sums vs `IntegratedJacobians.contributions` ({CHECK_STEPS} steps): {checks}."]
        if "roughness" in result:
            scan = result["roughness"]
            lines += [
                "",
                f"PAD path scanned at {scan['intervals']} equal steps: the largest change of n(x) in one step is "
                f"{scan['largest_step_max']:.2f}; path length / chord up to {scan['length_over_chord_max']:.1f}.",
            ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minilm-pairs", type=int, default=50)
    parser.add_argument("--mpnet-pairs", type=int, default=20)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 100], help="for the PAD reference")
    parser.add_argument("--other-steps", type=int, nargs="*", default=[10, 50], help="for MASK and zero")
    parser.add_argument("--mpnet-steps", type=int, nargs="+", default=[10, 20, 50], help="PAD, on MPNet")
    parser.add_argument("--mpnet-other-steps", type=int, nargs="*", default=[10], help="MASK and zero, on MPNet")
    parser.add_argument("--scan", type=int, default=0, help="also scan the PAD path at this many equal steps")
    parser.add_argument("--label", default="", help="added to the model names of this run")
    parser.add_argument("--append", action="store_true", help="add this run's results to those already in --out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ij_step_error.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pairs = bilrp.datasets.load("stsb", "test")
    sample = random.Random(args.seed).sample(pairs, max(args.minilm_pairs, args.mpnet_pairs))
    plan = {"pad": args.steps, "mask": args.other_steps, "zero": args.other_steps}
    mpnet_plan = {"pad": args.mpnet_steps, "mask": args.mpnet_other_steps, "zero": args.mpnet_other_steps}
    results = json.loads(args.out.read_text())["results"] if args.append and args.out.is_file() else []
    if args.minilm_pairs:
        model = bilrp.SimilarityModel.from_pretrained()
        results.append(run_model("all-MiniLM-L6-v2", model, sample[: args.minilm_pairs], plan, args.scan))
    if args.mpnet_pairs:
        model = bilrp.SimilarityModel.from_pretrained(mpnet_folder())
        results.append(run_model("all-mpnet-base-v2", model, sample[: args.mpnet_pairs], mpnet_plan, args.scan))
    for result in results[len(results) - bool(args.minilm_pairs) - bool(args.mpnet_pairs) :]:
        result["label"] = args.label
    meta = {
        "dataset": "stsb test",
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threshold": args.threshold,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results, args.threshold))
    print(markdown(results, args.threshold))


if __name__ == "__main__":
    main()
