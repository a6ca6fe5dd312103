"""Engine benchmark: time and peak memory per sentence pair of four ways to get the BiLRP matrix.

(i)   the paper's per-dimension loop: for every embedding dimension, a forward and an LRP backward pass
      per text (measured on ``--loop-dims`` dimensions and scaled to all of them);
(ii)  batched reverse mode: one VJP per embedding dimension, batched (``BiLRP(mode="reverse")``);
(iii) bilrp's engine (``BiLRP()``, replay of the frozen rule constants);
(iv)  the cost floor: one plain forward pass of a batch of ``s_a + s_b`` sequences.

Each measurement runs in a fresh subprocess so that its peak resident memory can be read. Usage::

    python benchmarks/bench_engine.py                  # MiniLM and a BERT-base-sized model, 16/32/64 tokens
    python benchmarks/bench_engine.py --stsb           # also: the STSb test set through explain_batch
    python benchmarks/bench_engine.py --device cuda    # on a GPU (peak memory from torch.cuda)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

MODELS = ("minilm", "bert-base")
LENGTHS = (16, 32, 64)
WAYS = ("loop", "reverse", "engine", "floor")


def build_model(name: str, device: str, random_weights: bool = False):
    """The real all-MiniLM-L6-v2, or a randomly initialised BERT of MiniLM's or BERT-base's size.

    Timing does not depend on the weights; random MiniLM-sized weights serve where the real ones are not
    installed (e.g. on a GPU machine). Inputs are random token ids, so no tokenizer is needed.
    """
    from transformers import BertConfig, BertModel

    import bilrp

    if name == "minilm" and not random_weights:
        return bilrp.SimilarityModel.from_pretrained().to(device).eval()
    torch.manual_seed(0)
    sizes = {"minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)}
    config = BertConfig(**sizes.get(name, {}))  # defaults: 12 layers, 768 dims, 12 heads (BERT-base)
    encoder = BertModel(config, add_pooling_layer=False)
    return bilrp.SimilarityModel(encoder, None, pooling="mean", similarity="cosine").to(device).eval()


def make_inputs(model, length: int, device: str, pairs: int = 1):
    torch.manual_seed(length)
    ids = torch.randint(1000, 20000, (2 * pairs, length), device=device)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones(2 * pairs, length, dtype=torch.long, device=device)
    with torch.no_grad():
        embeddings = model.embed(ids, mask)
    return embeddings[:pairs], embeddings[pairs:], mask[:pairs], mask[pairs:]


def per_dimension_loop(model, emb_a, emb_b, mask_a, mask_b, dims: int) -> None:
    """The paper's algorithm on the first ``dims`` dimensions (a fresh forward per dimension and text)."""
    import bilrp

    with bilrp.TransformerComposite().context(model):
        for emb, mask in ((emb_a, mask_a), (emb_b, mask_b)):
            x = emb.detach().clone().requires_grad_(True)
            for m in range(dims):
                phi = model.represent(x, mask)
                (grad,) = torch.autograd.grad(phi[:, m].sum(), x)
                (x * grad).sum(-1)


def measure(
    model_name: str,
    length: int,
    way: str,
    device: str,
    loop_dims: int,
    repeats: int,
    random_weights: bool = False,
    pairs: int = 1,
) -> dict:
    import bilrp

    torch.set_grad_enabled(True)
    model = build_model(model_name, device, random_weights)
    emb_a, emb_b, mask_a, mask_b = make_inputs(model, length, device, 1 if way == "loop" else pairs)
    dim = model.encoder.config.hidden_size
    if way == "loop":
        run = lambda: per_dimension_loop(model, emb_a, emb_b, mask_a, mask_b, loop_dims)  # noqa: E731
        scale = dim / loop_dims
    elif way in ("reverse", "engine"):
        attribution = bilrp.BiLRP(model, mode="reverse" if way == "reverse" else "auto")
        run = lambda: attribution.attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))  # noqa: E731
        scale = 1.0
    else:
        batch = torch.cat([emb_a.repeat_interleave(length, 0), emb_b.repeat_interleave(length, 0)])
        batch_mask = torch.cat([mask_a.repeat_interleave(length, 0), mask_b.repeat_interleave(length, 0)])

        def run():
            with torch.no_grad():
                model.represent(batch, batch_mask)

        scale = 1.0
    if way != "loop":
        scale = 1.0 / pairs  # time per pair
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    if device == "cuda":
        base_mb = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # model and inputs loaded
    run()  # warm-up
    sync()
    times = []
    for _ in range(1 if way == "loop" else repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20 - base_mb
    else:
        peak_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before, 0) / 1024
    return {
        "model": model_name,
        "length": length,
        "way": way,
        "pairs": pairs,
        "seconds": min(times) * scale,
        "peak_mb": peak_mb,
    }


def stsb_run(device: str, data_dir: str | None) -> dict:
    import bilrp
    from bilrp import datasets

    pairs = [(p.text_a, p.text_b) for p in datasets.load("stsb", "test", data_dir)]
    model = bilrp.SimilarityModel.from_pretrained().to(device)
    start = time.perf_counter()
    explanations = bilrp.explain_batch(model, pairs, batch_size=64, progress=False)
    seconds = time.perf_counter() - start
    return {"pairs": len(explanations), "seconds": seconds, "pairs_per_second": len(explanations) / seconds}


def table(rows: list[dict], device: str) -> str:  # noqa: D103
    lines = [
        "| model | tokens/text | (i) loop s | (ii) reverse s | (iii) engine s | (iv) floor s | (i)/(iii) | (iii)/(iv) "
        "| peak MB (i/ii/iii/iv) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model in MODELS:
        for length in LENGTHS:
            cell = {r["way"]: r for r in rows if r["model"] == model and r["length"] == length}
            if len(cell) < len(WAYS):
                continue
            t = {way: cell[way]["seconds"] for way in WAYS}
            memory = "/".join(f"{cell[way]['peak_mb']:.0f}" for way in WAYS)
            lines.append(
                f"| {model} | {length} | {t['loop']:.2f} | {t['reverse']:.3f} | {t['engine']:.3f} | {t['floor']:.3f} "
                f"| {t['loop'] / t['engine']:.0f}x | {t['engine'] / t['floor']:.2f}x | {memory} |"
            )
    pairs = rows[0]["pairs"] if rows else 1
    return (
        "\n".join(lines)
        + f"\n\n(device: {device}; seconds per sentence pair, best of repeats; (ii)-(iv) in batches of {pairs} pair(s))"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--lengths", nargs="+", type=int, default=list(LENGTHS))
    parser.add_argument("--loop-dims", type=int, default=16, help="dimensions timed in the loop, then scaled")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=1, help="pairs per batch for (ii)-(iv); times are per pair")
    parser.add_argument("--random-weights", action="store_true", help="MiniLM-sized random weights (no download)")
    parser.add_argument("--stsb", action="store_true", help="also explain the STSb test set (needs BILRP_DATA_DIR)")
    parser.add_argument("--json", help="write all measurements to this JSON file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # child process: one measurement
        model, length, way = args.one.split(":")
        result = measure(
            model, int(length), way, args.device, args.loop_dims, args.repeats, args.random_weights, args.pairs
        )
        print(json.dumps(result))
        return
    rows = []
    for model in args.models:
        for length in args.lengths:
            for way in WAYS:
                command = [
                    sys.executable,
                    __file__,
                    "--one",
                    f"{model}:{length}:{way}",
                    "--device",
                    args.device,
                    "--loop-dims",
                    str(args.loop_dims),
                    "--repeats",
                    str(args.repeats),
                    "--pairs",
                    str(args.pairs),
                ]
                command += ["--random-weights"] if args.random_weights else []
                output = subprocess.run(command, capture_output=True, text=True, check=True, env=os.environ).stdout
                rows.append(json.loads(output.strip().splitlines()[-1]))
                print(rows[-1], file=sys.stderr, flush=True)
    print(table(rows, args.device))
    result = {"rows": rows}
    if args.stsb:
        result["stsb"] = stsb_run(args.device, os.environ.get("BILRP_DATA_DIR"))
        print(
            f"\nSTSb test through explain_batch (MiniLM): {result['stsb']['pairs']} pairs in "
            f"{result['stsb']['seconds']:.1f} s ({result['stsb']['pairs_per_second']:.1f} pairs/s)"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
