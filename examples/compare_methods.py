"""Compare bilrp's pair attributions and Captum's IntegratedGradients in one loop, with Captum's metrics.

Every method takes the same ``attribute(inputs=(emb_a, emb_b), additional_forward_args=(mask_a, mask_b))`` call.
The pair methods return a ``(batch, s_a, s_b)`` token-pair matrix; with ``per_text=`` they return Captum's tuple,
one tensor per text (the per-text projections ``R.sum(2)`` and ``R.sum(1)``), which Captum's
``sensitivity_max``, ``infidelity`` and ``visualize_text`` take as they are. Captum's first-order methods return
per-token-and-dimension attributions for each text, summed here over the hidden dimension.

Run: ``python examples/compare_methods.py`` (uses the offline all-MiniLM-L6-v2).
"""

import tempfile
from pathlib import Path

import torch
from captum.attr import IntegratedGradients
from captum.attr import visualization as viz
from captum.metrics import infidelity, sensitivity_max

import bilrp
from bilrp.attr import TokenRemoval, per_text

torch.manual_seed(0)  # sensitivity_max draws its perturbations from torch's global generator
model = bilrp.SimilarityModel.from_pretrained()
a = model.tokenize(["A man is playing a guitar."])
b = model.tokenize(["Someone plays music on a guitar."])
with torch.no_grad():
    inputs = (model.embed(a["input_ids"], a["attention_mask"]), model.embed(b["input_ids"], b["attention_mask"]))
masks = (a["attention_mask"], b["attention_mask"])

methods = [
    bilrp.BiLRP(model),
    bilrp.HessianXProduct(model),
    bilrp.IntegratedJacobians(model),
    bilrp.EmbeddingInteraction(model),
    bilrp.RandomInteraction(model, seed=0),
    IntegratedGradients(model),
]

with torch.no_grad():
    score = float(model(*inputs, *masks))
print(f"cosine similarity: {score:.4f}")
records = []
for method in methods:
    pair = not isinstance(method, IntegratedGradients)
    with torch.enable_grad():
        attributions, delta = method.attribute(
            inputs=inputs, additional_forward_args=masks, return_convergence_delta=True
        )
    if pair:  # second-order (bilrp): token-pair relevance, and its per-text projections
        i, j = divmod(int(attributions[0].argmax()), attributions.shape[-1])
        summary = (
            f"pair matrix {tuple(attributions.shape[1:])}; strongest pair: {a['tokens'][0][i]!r}-{b['tokens'][0][j]!r}"
        )
        total = float(attributions.sum())
        tokens = per_text(attributions)
    else:  # first-order (Captum): token relevance of each text
        tokens = tuple(t.sum(-1) for t in attributions)
        strongest = int(tokens[0][0].argmax())
        summary = f"first-order; strongest token of A: {a['tokens'][0][strongest]!r}"
        total = float(sum(t.sum() for t in tokens))
    # Captum's metrics, called on the attribution itself: per_text= gives Captum's one-tensor-per-input tuple
    as_tokens, like_inputs = ({"per_text": "tokens"}, {"per_text": "inputs"}) if pair else ({}, {})
    sensitivity = sensitivity_max(
        method.attribute, inputs, additional_forward_args=masks, n_perturb_samples=5, **as_tokens
    )
    shaped = method.attribute(inputs, additional_forward_args=masks, **like_inputs)
    unfaithful = infidelity(
        method.forward_func,
        TokenRemoval(0.25, seed=0),
        inputs,
        shaped,
        additional_forward_args=masks,
        n_perturb_samples=20,
    )
    print(
        f"{method.get_name():22s} sum={total:+.4f} delta={float(delta.sum()):+.4f}  "
        f"sensitivity={float(sensitivity):.3f} infidelity={float(unfaithful):.2e}  {summary}"
    )
    for text, words, relevance in zip("AB", (a["tokens"][0], b["tokens"][0]), tokens, strict=True):
        row = relevance[0, : len(words)].detach()
        records.append(
            viz.VisualizationDataRecord(
                row / row.abs().max(),
                score,
                "similarity",
                "",
                f"{method.get_name()} {text}",
                float(row.sum()),
                words,
                float(delta.sum()),
            )
        )

html = viz.visualize_text(records)  # shows the table in Jupyter (a script prints the object's repr)
page = Path(tempfile.gettempdir()) / "compare_methods.html"
page.write_text(html.data, encoding="utf-8")
print(f"visualize_text: {len(records)} rows, written to {page}")
