"""Rule-set benchmark: the fast engine (replay) against the reverse-mode path, per rule set and length.

For each rule set (``epsilon=0.1``, ``gamma=0.25``, ``attnlrp``, ``attnlrp-epsilon=0.1`` and the paper's) and each
text length, one text's token contributions are computed

- by bilrp's engine: ``BiLRP(rules=...)``, replay of the frozen rule constants, certificate on;
- by the reverse-mode path: one VJP per embedding dimension, batched. For the linear rules that is zennit's own
  backward hooks (``TransformerComposite(linear_rule, backward_hooks=True)``, through ``GradientRule``): the path
  bilrp had to fall back to before the rules lived in the forward graph. AttnLRP has no zennit hook, so its
  reverse path runs bilrp's forward-graph rules backwards.

It reports the time of each (median of ``--repeats`` runs after one warm-up, all in one process, so the ratio is
what counts) and the largest difference between the two results relative to their largest entry. Usage::

    python benchmarks/bench_rules.py                      # real MiniLM, 16/32/64 tokens
    python benchmarks/bench_rules.py --model mpnet --lengths 32 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import mpnet_folder  # noqa: E402

RULE_SETS = ("paper", "epsilon=0.1", "gamma=0.25", "attnlrp", "attnlrp-epsilon=0.1")


def load(name: str):
    import bilrp

    folder = mpnet_folder() if name == "mpnet" else None
    return (bilrp.SimilarityModel.from_pretrained(folder) if folder else bilrp.SimilarityModel.from_pretrained()).eval()


def text_inputs(model, length: int):
    """The embedding output and mask of a ``length``-token text (random ids between the special tokens)."""
    generator = torch.Generator().manual_seed(length)
    ids = torch.randint(1000, 5000, (1, length), generator=generator)
    ids[0, 0], ids[0, -1] = model.tokenizer.cls_token_id, model.tokenizer.sep_token_id
    mask = torch.ones_like(ids)
    with torch.no_grad():
        return model.embed(ids, mask), mask


def reverse_path(model, spec: str, embeddings, mask):
    """Contributions by the reverse-mode path of ``spec`` (zennit's hooks for the linear rules)."""
    from bilrp import TransformerComposite
    from bilrp.engine import token_contributions
    from bilrp.rule_sets import rule_set_composite

    composite = rule_set_composite(spec)
    if composite.linear_rule is not None:
        composite = TransformerComposite(
            composite.linear_rule, backward_hooks=True, attention_rule=composite.attention_rule
        )
    with composite.context(model):
        return token_contributions(
            model.represent, embeddings, mask, mode="reverse", rules=True, certify=False, model=model
        )[0]


def engine(model, spec: str, embeddings, mask):
    from bilrp import BiLRP

    return BiLRP(model, rules=spec, mode="replay").contributions(embeddings, mask)[0]


def timed(function, repeats: int, *args) -> tuple[float, torch.Tensor]:
    result = function(*args)  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("minilm", "mpnet"), default="minilm")
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--rules", nargs="+", default=list(RULE_SETS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rules_cpu_2core.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load(args.model)
    rows = []
    for length in args.lengths:
        embeddings, mask = text_inputs(model, length)
        for spec in args.rules:
            fast, fast_result = timed(engine, args.repeats, model, spec, embeddings, mask)
            slow, slow_result = timed(reverse_path, args.repeats, model, spec, embeddings, mask)
            difference = float((fast_result - slow_result).abs().max() / slow_result.abs().max())
            row = {"model": args.model, "tokens": length, "rules": spec, "replay_s": fast, "reverse_s": slow}
            row.update({"speedup": slow / fast, "max_relative_difference": difference})
            rows.append(row)
            print(
                f"{args.model:6s} {length:4d} tok {spec:20s} replay {fast:7.3f} s  reverse {slow:7.3f} s  "
                f"x{slow / fast:5.1f}  max rel diff {difference:.1e}",
                flush=True,
            )
    meta = {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    previous[args.model] = meta
    args.out.write_text(json.dumps(previous, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
