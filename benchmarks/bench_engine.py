"""Engine benchmark: time and peak memory per sentence pair of four ways to get the BiLRP matrix.

(i)   the paper's per-dimension loop: for every embedding dimension, a forward and an LRP backward pass
      per text (measured on ``--loop-dims`` dimensions and scaled to all of them);
(ii)  batched reverse mode: one VJP per embedding dimension, batched (``BiLRP(mode="reverse")``);
(iii) bilrp's engine (``BiLRP()``, replay of the frozen rule constants);
(iv)  the cost floor: one plain forward pass of a batch of ``s_a + s_b`` sequences.

Each measurement runs in a fresh subprocess so that its peak resident memory can be read. Models: the real
all-MiniLM-L6-v2 (``minilm``), the real all-mpnet-base-v2 (``mpnet``, base size: 12 layers, 768 dimensions;
``BILRP_MPNET_DIR`` or else ``../shared/models/fetch-all-mpnet-base-v2`` gives its folder) and a random BERT-base
(``bert-base``); ``--random-weights`` replaces MiniLM and MPNet by random models of their sizes (no files needed,
e.g. on a GPU machine). Usage::

    python benchmarks/bench_engine.py                  # real MiniLM and MPNet, 16/32/64/128 tokens
    python benchmarks/bench_engine.py --loop-dims 8 --skip mpnet:128:reverse   # leave out a measurement
    python benchmarks/bench_engine.py --stsb           # also: the STSb test set through explain_batch
    python benchmarks/bench_engine.py --device cuda --random-weights   # on a GPU (peak memory from torch.cuda)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

MODELS = ("minilm", "mpnet", "bert-base")
DEFAULT_MODELS = ("minilm", "mpnet")
LABELS = {"minilm": "MiniLM", "mpnet": "MPNet", "bert-base": "BERT-base"}
LENGTHS = (16, 32, 64, 128)
WAYS = ("loop", "reverse", "engine", "floor")
MPNET_FETCH = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "fetch-all-mpnet-base-v2"
SINGLE_RUN_SECONDS = 30.0
"""A measurement whose first (warm-up) run takes longer than this is that one run, not ``--repeats`` more."""


def mpnet_folder() -> str:
    """The all-mpnet-base-v2 folder: ``BILRP_MPNET_DIR``, else the last line the (idempotent) fetch script prints."""
    folder = os.environ.get("BILRP_MPNET_DIR")
    if folder:
        return folder
    if not MPNET_FETCH.is_file():
        sys.exit(f"all-mpnet-base-v2: {MPNET_FETCH} not found; set BILRP_MPNET_DIR to a fetched folder")
    done = subprocess.run(["bash", str(MPNET_FETCH)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"{MPNET_FETCH} failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


def build_model(name: str, device: str, random_weights: bool = False):
    """The real all-MiniLM-L6-v2 or all-mpnet-base-v2, or a randomly initialised model of MiniLM's, MPNet's or
    BERT-base's size.

    Timing does not depend on the weights; random weights serve where the real ones are not installed (e.g. on
    a GPU machine). Inputs are random token ids, so no tokenizer is needed.
    """
    from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel

    import bilrp

    if name == "minilm" and not random_weights:
        return bilrp.SimilarityModel.from_pretrained().to(device).eval()
    if name == "mpnet" and not random_weights:
        return bilrp.SimilarityModel.from_pretrained(mpnet_folder()).to(device).eval()
    torch.manual_seed(0)
    if name == "mpnet":  # MPNetConfig's defaults: 12 layers, 768 dims, 12 heads (all-mpnet-base-v2's size)
        encoder = MPNetModel(MPNetConfig(), add_pooling_layer=False)
        return bilrp.SimilarityModel(encoder, None, pooling="mean", similarity="cosine").to(device).eval()
    sizes = {"minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)}
    config = BertConfig(**sizes.get(name, {}))  # defaults: 12 layers, 768 dims, 12 heads (BERT-base)
    encoder = BertModel(config, add_pooling_layer=False)
    return bilrp.SimilarityModel(encoder, None, pooling="mean", similarity="cosine").to(device).eval()


def make_inputs(model, length: int, device: str, pairs: int = 1):
    torch.manual_seed(length)
    ids = torch.randint(1000, 20000, (2 * pairs, length), device=device)
    tokenizer = getattr(model, "tokenizer", None)
    cls_id, sep_id = getattr(tokenizer, "cls_token_id", None), getattr(tokenizer, "sep_token_id", None)
    ids[:, 0], ids[:, -1] = (101, 102) if cls_id is None or sep_id is None else (cls_id, sep_id)
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
    start = time.perf_counter()
    run()  # warm-up
    sync()
    warm_up = time.perf_counter() - start
    times = [warm_up] if warm_up > SINGLE_RUN_SECONDS else []  # long runs: first-call overheads are negligible
    for _ in range(0 if times else repeats):
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
        "weights": "random" if random_weights or model_name == "bert-base" else "real",
        "length": length,
        "way": way,
        "pairs": pairs,
        "seconds": statistics.median(times) * scale,  # median: robust to other processes sharing the CPU
        "best_seconds": min(times) * scale,
        "runs": len(times),
        "threads": torch.get_num_threads(),
        "peak_mb": peak_mb,
        **({"loop_dims": loop_dims, "dims": dim} if way == "loop" else {}),
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
        "| model | tokens/text | (i) loop s | (ii) reverse s | (iii) engine s | (iv) floor s | (i)/(iii) | (ii)/(iii) "
        "| (iii)/(iv) | peak MB (i/ii/iii/iv) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def seconds(cell, way, digits):
        if way not in cell:
            return "—"
        if "timed_out_s" in cell[way]:
            return f">{cell[way]['timed_out_s']:.0f}"
        return f"{cell[way]['seconds']:.{digits}f}"

    def ratio(cell, a, b, digits):  # a lower bound when ``a`` timed out
        if a not in cell or b not in cell or "timed_out_s" in cell[b]:
            return "—"
        if "timed_out_s" in cell[a]:
            return f">{cell[a]['timed_out_s'] / cell[b]['seconds']:.{digits}f}x"
        return f"{cell[a]['seconds'] / cell[b]['seconds']:.{digits}f}x"

    for model in MODELS:
        for length in sorted({r["length"] for r in rows}):
            cell = {r["way"]: r for r in rows if r["model"] == model and r["length"] == length}
            if "engine" not in cell:
                continue
            memory = "/".join(f"{cell[way]['peak_mb']:.0f}" if "peak_mb" in cell.get(way, {}) else "—" for way in WAYS)
            label = LABELS[model] + ("-size (random)" if cell["engine"].get("weights") == "random" else "")
            lines.append(
                f"| {label} | {length} | {seconds(cell, 'loop', 2)} | {seconds(cell, 'reverse', 3)} "
                f"| {seconds(cell, 'engine', 3)} | {seconds(cell, 'floor', 3)} | {ratio(cell, 'loop', 'engine', 0)} "
                f"| {ratio(cell, 'reverse', 'engine', 1)} | {ratio(cell, 'engine', 'floor', 2)} | {memory} |"
            )
    pairs = next((r["pairs"] for r in rows if "pairs" in r), 1)
    loop_dims = next((r["loop_dims"] for r in rows if "loop_dims" in r), None)
    loop = f"; (i) timed on {loop_dims} dimensions and scaled" if loop_dims else ""
    return (
        "\n".join(lines)
        + f"\n\n(device: {device}; seconds per sentence pair, median of repeats after a warm-up (runs over "
        f"{SINGLE_RUN_SECONDS:.0f} s: that one run){loop}; (ii)-(iv) in batches of {pairs} pair(s); — : not measured; "
        ">N: stopped after N s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=MODELS)
    parser.add_argument("--lengths", nargs="+", type=int, default=list(LENGTHS))
    parser.add_argument("--loop-dims", type=int, default=16, help="dimensions timed in the loop, then scaled")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (after a warm-up)")
    parser.add_argument("--timeout", type=float, help="stop a measurement after this many seconds (shown as >N)")
    parser.add_argument("--threads", type=int, help="torch threads in every measurement (default: torch's choice)")
    parser.add_argument("--pairs", type=int, default=1, help="pairs per batch for (ii)-(iv); times are per pair")
    parser.add_argument(
        "--random-weights", action="store_true", help="random MiniLM- and MPNet-sized weights (no model files)"
    )
    parser.add_argument(
        "--skip", nargs="+", default=[], metavar="MODEL:LENGTH:WAY", help="measurements to leave out (e.g. too slow)"
    )
    parser.add_argument("--stsb", action="store_true", help="also explain the STSb test set (needs BILRP_DATA_DIR)")
    parser.add_argument("--json", help="write all measurements to this JSON file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:  # child process: one measurement
        model, length, way = args.one.split(":")
        result = measure(
            model, int(length), way, args.device, args.loop_dims, args.repeats, args.random_weights, args.pairs
        )
        print(json.dumps(result))
        return
    if "mpnet" in args.models and not args.random_weights:
        os.environ["BILRP_MPNET_DIR"] = mpnet_folder()  # fetched once, for every child process
    rows = []
    for model in args.models:
        for length in args.lengths:
            for way in WAYS:
                if f"{model}:{length}:{way}" in args.skip:
                    print(f"skipped {model}:{length}:{way}", file=sys.stderr, flush=True)
                    continue
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
                command += ["--threads", str(args.threads)] if args.threads else []
                command += ["--random-weights"] if args.random_weights else []
                try:
                    done = subprocess.run(command, capture_output=True, text=True, env=os.environ, timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    rows.append({"model": model, "length": length, "way": way, "timed_out_s": args.timeout})
                else:
                    if done.returncode != 0:
                        sys.exit(f"{model}:{length}:{way} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
                    rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(rows[-1], file=sys.stderr, flush=True)
                write_json(args, rows)  # after every measurement: a long run that stops keeps what it has
    print(table(rows, args.device))
    result = write_json(args, rows)
    if args.stsb:
        result["stsb"] = stsb_run(args.device, os.environ.get("BILRP_DATA_DIR"))
        print(
            f"\nSTSb test through explain_batch (MiniLM): {result['stsb']['pairs']} pairs in "
            f"{result['stsb']['seconds']:.1f} s ({result['stsb']['pairs_per_second']:.1f} pairs/s)"
        )
        write_json(args, rows, result)


def write_json(args, rows: list[dict], result: dict | None = None) -> dict:
    """The run's measurements and settings, written to ``--json`` when given."""
    result = result or {
        "meta": {
            "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "device": args.device,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "python": platform.python_version(),
            "skipped": args.skip,
        },
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
