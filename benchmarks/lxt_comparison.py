"""One-off comparison of bilrp's first-order AttnLRP with LXT's (LRP-eXplains-Transformers), on BERT.

The same scalar output, ``(mean-pooled last_hidden_state) . w`` for a fixed random ``w``, is explained by

- bilrp: ``bilrp.LRP(..., rules="attnlrp")`` (and ``rules="paper"``), in this environment (transformers 5);
- LXT 2.x efficient mode: ``lxt.efficient.monkey_patch(modeling_bert)``, then gradient x input, in a separate
  environment (LXT does not import with transformers 5), run as a subprocess of this script.

Both attribute to the embedding output (the input of the first encoder layer), summed over the hidden
dimension per token. LXT gets bilrp's embedding output itself (a forward hook on ``model.embeddings`` returns it
as a leaf tensor), so both explain exactly the same input. Models: a tiny random BERT (eager attention) and the
real all-MiniLM-L6-v2 encoder, each in float32 and float64, saved with ``save_pretrained`` and loaded by
transformers 4.51 on the LXT side. LXT variants, for diagnosis:

- ``attnlrp``: LXT's default patch map for BERT, eager attention (``attention_scores`` and ``context_layer``
  have their gradient halved);
- ``attnlrp-sdpa``: the same through LXT's SDPA attention class (query and key halved, output halved);
- ``attnlrp-eps0``: LXT's patches with the epsilon of its identity rule (``act(x) / (x + 1e-10)``, on GELU) set
  to 0, the ratio bilrp's rule GA uses;
- ``cp-lrp``: LXT's patches with the attention probabilities detached (a forward hook on the attention dropout)
  and the uniform rule's halving switched off, i.e. LXT's CP-LRP, the counterpart of bilrp's ``paper`` rules (AH);
  ``cp-lrp-eps0`` with the identity rule's epsilon 0 as well;
- ``gradient``: plain gradient x input without LXT, against the same in this environment (checks that the two
  transformers versions compute the same model).

Setup of the LXT environment (once)::

    python3.11 -m venv /tmp/lxtenv
    /tmp/lxtenv/bin/pip install torch==2.14.1 torchvision transformers==4.51.3 lxt==2.1 safetensors

Run (writes ``benchmarks/results/lxt_attnlrp.json`` and ``.md``)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python benchmarks/lxt_comparison.py

Without ``/tmp/lxtenv`` it prints one line and exits. ``--worker FOLDER`` is the LXT side (internal).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

LXT_ENV = Path("/tmp/lxtenv")
LXT_PYTHON = LXT_ENV / "bin" / "python"
RESULTS = Path(__file__).resolve().parent / "results"
SENTENCES = (
    "A man is playing a guitar.",
    "Someone plays music on a guitar in the park.",
    "The cat sleeps.",
)
SEED = 0
DTYPES = {"float32": torch.float32, "float64": torch.float64}
LXT_VARIANTS = ("attnlrp", "attnlrp-sdpa", "attnlrp-eps0", "cp-lrp", "cp-lrp-eps0")
LXT_RULES = (  # read from lxt 2.1, lxt/efficient/models/bert.py, patches.py and rules.py
    "Linear layers (query/key/value, dense, intermediate, output): not patched, plain gradient = LRP-0 "
    "(LXT's efficient mode has no epsilon rule for BERT); bilrp rules='attnlrp' is LRP-0 too.",
    "LayerNorm (torch.nn.LayerNorm.forward patched globally): (x - mean(x)) / stop_gradient(std), mean "
    "differentiated = bilrp's rule LN.",
    "GELU (BertIntermediate) and the pooler's tanh: identity rule, gradient scaled by act(x) / (x + 1e-10) "
    "= bilrp's rule GA up to that epsilon (bilrp: act(x) / x, 0.5 at x = 0).",
    "Softmax: not patched, its plain gradient, which under gradient x input is AttnLRP's softmax rule "
    "x * (R - s * sum(R)) = bilrp's linearised_softmax.",
    "q k^T and p v: uniform rule as divide_gradient(., 2) on attention_scores and on context_layer (eager); "
    "q and k halved before and the output halved after SDPA (sdpa) -- q and k get 1/4, v 1/2, the same "
    "1/2-1/2 splits as bilrp's uniform_product.",
    "Dropout: identity. Embeddings: not patched (irrelevant here: relevance is taken at their output).",
)
COMPARISONS = (  # (bilrp result, LXT result)
    ("bilrp attnlrp", "lxt attnlrp"),
    ("bilrp attnlrp", "lxt attnlrp-sdpa"),
    ("bilrp attnlrp", "lxt attnlrp-eps0"),
    ("bilrp paper", "lxt attnlrp"),
    ("bilrp paper", "lxt cp-lrp"),
    ("bilrp paper", "lxt cp-lrp-eps0"),
    ("gradient x input (transformers 5)", "lxt gradient"),
)


# ----------------------------------------------------------------------------- LXT side (runs in /tmp/lxtenv)
def _lxt_model(model_dir: str, dtype: torch.dtype, attention: str):
    from transformers.models.bert import modeling_bert

    model = modeling_bert.BertModel.from_pretrained(model_dir, attn_implementation=attention, torch_dtype=dtype)
    return model.eval()


def _lxt_relevance(model, inputs: dict, detach_probabilities: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Gradient x input at the embedding output (given by ``inputs["emb"]``), summed over the hidden dimension."""
    dtype = next(model.parameters()).dtype
    leaf = torch.from_numpy(inputs["emb"]).to(dtype).requires_grad_(True)
    ids, mask = torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["attention_mask"])
    weights = torch.from_numpy(inputs["w"]).to(dtype)
    handles = [model.embeddings.register_forward_hook(lambda module, args, output: leaf)]
    if detach_probabilities:  # BertSelfAttention applies self.dropout to the attention probabilities only
        for layer in model.encoder.layer:
            hook = layer.attention.self.dropout.register_forward_hook(lambda module, args, output: output.detach())
            handles.append(hook)
    try:
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    finally:
        for handle in handles:
            handle.remove()
    m = mask[..., None].to(dtype)
    output = ((hidden * m).sum(1) / m.sum(1)) @ weights
    (gradient,) = torch.autograd.grad(output.sum(), leaf)
    return (leaf * gradient).sum(-1).detach().numpy(), output.detach().numpy()


@contextlib.contextmanager
def _lxt_variant(variant: str):
    """LXT's rules as they are, or with the identity rule's epsilon 0, or without the uniform rule (CP-LRP)."""
    import lxt.efficient.models.bert as lxt_bert
    from lxt.efficient.rules import identity_rule_implicit_fn

    forward = identity_rule_implicit_fn.forward  # the staticmethod's function: its default is the epsilon
    saved = lxt_bert.divide_gradient, forward.__defaults__
    if variant.startswith("cp-lrp"):
        lxt_bert.divide_gradient = lambda tensor, factor=2: tensor
    if variant.endswith("-eps0"):
        forward.__defaults__ = (0.0,)
    try:
        yield
    finally:
        lxt_bert.divide_gradient, forward.__defaults__ = saved


def _lxt_embedding(model, inputs: dict) -> np.ndarray:
    with torch.no_grad():
        return model.embeddings(input_ids=torch.from_numpy(inputs["input_ids"])).numpy()


def _patched_classes(model) -> dict:
    layer = model.encoder.layer[0]
    return {
        "BertSelfAttention": type(layer.attention.self).__module__ + "." + type(layer.attention.self).__name__,
        "BertIntermediate": type(layer.intermediate).__module__,
        "LayerNorm.forward": torch.nn.LayerNorm.forward.__module__,
        "Dropout.forward": torch.nn.Dropout.forward.__module__,
    }


def worker_main(folder: Path) -> None:
    """The LXT side: gradient x input unpatched, then after ``monkey_patch(modeling_bert)`` the LXT variants."""
    import importlib.metadata

    import transformers
    from transformers.models.bert import modeling_bert

    jobs = json.loads((folder / "jobs.json").read_text())
    out: dict = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__}}
    out["versions"]["lxt"] = importlib.metadata.version("lxt")
    arrays: dict[str, np.ndarray] = {}
    for job in jobs:  # before patching: LXT patches torch.nn.LayerNorm and modeling_bert for good
        inputs = dict(np.load(folder / f"{job['name']}.npz"))
        model = _lxt_model(job["model_dir"], DTYPES[job["dtype"]], "eager")
        arrays[f"{job['name']}/lxt gradient"], arrays[f"{job['name']}/out gradient"] = _lxt_relevance(model, inputs)
        arrays[f"{job['name']}/lxt emb"] = _lxt_embedding(model, inputs)
    import lxt.efficient

    lxt.efficient.monkey_patch(modeling_bert)
    for job in jobs:
        inputs = dict(np.load(folder / f"{job['name']}.npz"))
        for variant in LXT_VARIANTS:
            attention = "sdpa" if variant == "attnlrp-sdpa" else "eager"
            model = _lxt_model(job["model_dir"], DTYPES[job["dtype"]], attention)
            with _lxt_variant(variant):
                relevance, output = _lxt_relevance(model, inputs, detach_probabilities=variant.startswith("cp-lrp"))
            arrays[f"{job['name']}/lxt {variant}"], arrays[f"{job['name']}/out {variant}"] = relevance, output
            out.setdefault("patched", {})[variant] = _patched_classes(model)
    np.savez(folder / "lxt.npz", **arrays)
    (folder / "lxt.json").write_text(json.dumps(out, indent=1))


# ----------------------------------------------------------------------------- bilrp side (this environment)
def tiny_encoder():
    from transformers import BertConfig, BertModel

    torch.manual_seed(SEED)
    config = BertConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=30522,
        hidden_act="gelu",
        attn_implementation="eager",
    )
    encoder = BertModel(config, add_pooling_layer=False)
    with torch.no_grad():  # random LayerNorm weights and biases: every rule matters
        for module in encoder.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    return encoder.eval()


def build_models(work: Path) -> list[dict]:
    """Per (model, dtype): the SimilarityModel (mean pooling), its saved folder and its name."""
    import bilrp

    minilm = bilrp.SimilarityModel.from_pretrained()
    encoders = {"tiny-bert": tiny_encoder(), "all-MiniLM-L6-v2": minilm.encoder.eval()}
    jobs = []
    for name, encoder in encoders.items():
        for dtype_name, dtype in DTYPES.items():
            clone = copy.deepcopy(encoder).to(dtype).eval()
            folder = work / f"{name}-{dtype_name}"
            clone.save_pretrained(folder)
            model = bilrp.SimilarityModel(clone, minilm.tokenizer, pooling="mean", similarity="dot").eval()
            jobs.append({"name": f"{name} {dtype_name}", "model": model, "model_dir": str(folder), "dtype": dtype_name})
    return jobs


def bilrp_results(job: dict) -> tuple[dict, dict]:
    """bilrp's relevance per rule set, plain gradient x input, and the inputs the LXT side needs."""
    import bilrp

    model = job["model"]
    batch = model.tokenize(list(SENTENCES))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    emb = model.embed(ids, mask).detach()
    generator = torch.Generator().manual_seed(SEED)
    w = torch.randn(model.encoder.config.hidden_size, generator=generator, dtype=torch.float64).to(emb.dtype)

    def output(e: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return model.represent(e, m) @ w

    results = {}
    for rules in ("attnlrp", "paper"):
        relevance, delta = bilrp.LRP(output, model=model, rules=rules).attribute(
            emb, additional_forward_args=(mask,), return_convergence_delta=True
        )
        results[f"bilrp {rules}"] = relevance.sum(-1).detach().numpy()
        results[f"delta {rules}"] = delta.detach().numpy()
    leaf = emb.clone().requires_grad_(True)
    out = output(leaf, mask)
    (gradient,) = torch.autograd.grad(out.sum(), leaf)
    results["gradient x input (transformers 5)"] = (leaf * gradient).sum(-1).detach().numpy()
    results["output"] = out.detach().numpy()
    inputs = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "emb": emb.numpy(), "w": w.numpy()}
    results["tokens"] = batch["tokens"]
    return results, inputs


def compare(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> dict:
    """Max |a - b| over real tokens relative to max |b|, and the Pearson correlation per sentence."""
    real = mask.astype(bool)
    scale = float(np.abs(b[real]).max())
    pearson = [float(np.corrcoef(a[i][real[i]], b[i][real[i]])[0, 1]) for i in range(len(a))]
    padded = float(np.abs(a[~real]).max()) if (~real).any() else 0.0
    return {"max_rel_diff": float(np.abs(a - b)[real].max()) / scale, "pearson": pearson, "bilrp_pad_max": padded}


def run_lxt(work: Path, jobs: list[dict]) -> tuple[dict, dict]:
    """Run this file in the LXT environment on the saved inputs; its arrays and metadata."""
    manifest = [{key: job[key] for key in ("name", "model_dir", "dtype")} for job in jobs]
    (work / "jobs.json").write_text(json.dumps(manifest))
    completed = subprocess.run(
        [str(LXT_PYTHON), str(Path(__file__).resolve()), "--worker", str(work)], capture_output=True, text=True
    )
    if completed.returncode:
        raise RuntimeError(f"the LXT worker failed:\n{completed.stderr[-4000:]}")
    return dict(np.load(work / "lxt.npz")), json.loads((work / "lxt.json").read_text())


def summarise(job: dict, ours: dict, inputs: dict, lxt: dict) -> dict:
    """The comparisons of one model and dtype, with the sanity checks (same input, same output)."""
    name, mask = job["name"], inputs["attention_mask"]
    results = {**ours, **{key.split("/", 1)[1]: value for key, value in lxt.items() if key.startswith(name + "/")}}
    entry = {"comparisons": {f"{a} vs {b}": compare(results[a], results[b], mask) for a, b in COMPARISONS}}
    scale = float(np.abs(inputs["emb"]).max())
    entry["embedding_output_rel_diff"] = float(np.abs(results["lxt emb"] - inputs["emb"]).max()) / scale
    out_scale = float(np.abs(ours["output"]).max())
    outputs = {v: float(np.abs(results[f"out {v}"] - ours["output"]).max()) / out_scale for v in LXT_VARIANTS}
    entry["output_rel_diff"] = outputs
    entry["output"] = ours["output"].tolist()
    entry["sum_relevance"] = {key: results[key].sum(-1).tolist() for key in ("bilrp attnlrp", "lxt attnlrp")}
    entry["bilrp_delta"] = {key: ours[f"delta {key}"].tolist() for key in ("attnlrp", "paper")}
    entry["per_token_sentence0"] = {
        "tokens": ours["tokens"][0],
        **{key: results[key][0][mask[0].astype(bool)].tolist() for key in ("bilrp attnlrp", "lxt attnlrp")},
    }
    return entry


def markdown(report: dict) -> str:
    lines = [
        "# bilrp AttnLRP vs LXT AttnLRP (first order, BERT)",
        "",
        f"Generated by `benchmarks/lxt_comparison.py`. Versions: {json.dumps(report['versions'])}.",
        "",
        "Relevance of `(mean-pooled last_hidden_state) . w` at the embedding output, summed over the hidden",
        "dimension per token; 3 sentences in one padded batch. `max rel diff` = max |a - b| over real tokens /",
        "max |b|; Pearson per sentence (min over the 3).",
        "",
        "## LXT's AttnLRP on BERT",
        "",
        *(f"- {rule}" for rule in LXT_RULES),
        "",
        "## Numbers",
        "",
        "| model | comparison | max rel diff | min Pearson | 1 - min Pearson |",
        "|---|---|---|---|---|",
    ]
    for name, entry in report["models"].items():
        for comparison, metrics in entry["comparisons"].items():
            r = min(metrics["pearson"])
            lines.append(f"| {name} | {comparison} | {metrics['max_rel_diff']:.2e} | {r:.6f} | {1 - r:.1e} |")
    lines += ["", "## Diagnosis", "", *report["diagnosis"], ""]
    return "\n".join(lines)


def diagnosis(models: dict) -> list[str]:
    """Per model: which comparisons agree to rounding (1e-5 relative in float32, 1e-12 in float64)."""
    lines = []
    for name, entry in models.items():
        tolerance = 1e-5 if "float32" in name else 1e-12
        parts = []
        for comparison, metrics in entry["comparisons"].items():
            diff = metrics["max_rel_diff"]
            parts.append(f"{comparison}: {'equal' if diff <= tolerance else 'DIFFERENT'} ({diff:.1e})")
        lines.append(f"- {name} (tolerance {tolerance:g}): " + "; ".join(parts) + ".")
    return [*_summary(models), "", "Per model:", "", *lines]


def _summary(models: dict) -> list[str]:
    """The conclusions: the worst float64 differences with LXT's epsilon as it is and set to 0."""

    def worst(comparison: str, dtype: str = "float64") -> float:
        return max(e["comparisons"][comparison]["max_rel_diff"] for n, e in models.items() if dtype in n)

    return [
        f"- bilrp `attnlrp` = LXT AttnLRP: max rel diff {worst('bilrp attnlrp vs lxt attnlrp'):.1e} in float64, "
        f"{worst('bilrp attnlrp vs lxt attnlrp', 'float32'):.1e} in float32 (eager and SDPA alike). The float64 "
        "residual is LXT's identity-rule epsilon (GELU gradient scaled by act(x) / (x + 1e-10), bilrp uses "
        f"act(x) / x): with it set to 0 the difference is {worst('bilrp attnlrp vs lxt attnlrp-eps0'):.1e}.",
        f"- bilrp `paper` (rule AH) = LXT CP-LRP: {worst('bilrp paper vs lxt cp-lrp-eps0'):.1e} in float64 "
        "(epsilon 0); "
        f"against LXT AttnLRP it differs by up to {worst('bilrp paper vs lxt attnlrp'):.1e}, as two different "
        "attention rules should.",
        "- Plain gradient x input agrees across transformers 5.x and 4.51 to "
        f"{worst('gradient x input (transformers 5) vs lxt gradient'):.1e} (float64): both run the same model.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=Path, help="internal: run the LXT side on this folder")
    args = parser.parse_args()
    if args.worker is not None:
        worker_main(args.worker)
        return
    if not LXT_PYTHON.exists():
        print(f"skipped: no LXT environment at {LXT_ENV} (see this script's docstring to create it)")
        return
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        jobs = build_models(work)
        ours = {}
        for job in jobs:
            ours[job["name"]] = bilrp_results(job)
            np.savez(work / f"{job['name']}.npz", **ours[job["name"]][1])
        lxt, meta = run_lxt(work, jobs)
    models = {job["name"]: summarise(job, *ours[job["name"]], lxt) for job in jobs}
    versions = {"bilrp env": {"torch": torch.__version__, "transformers": transformers.__version__}}
    report = {"versions": {**versions, "lxt env": meta["versions"]}, "lxt_patched_classes": meta["patched"]}
    report["lxt_rules"] = LXT_RULES
    report.update(models=models, diagnosis=diagnosis(models), sentences=SENTENCES, platform=platform.platform())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lxt_attnlrp.json").write_text(json.dumps(report, indent=1))
    (RESULTS / "lxt_attnlrp.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    sys.exit(main())
