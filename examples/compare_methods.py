"""Compare bilrp's pair attributions and Captum's IntegratedGradients in one loop.

Every method takes the same ``attribute(inputs=(emb_a, emb_b), additional_forward_args=(mask_a, mask_b))``
call. The pair methods return a ``(batch, s_a, s_b)`` token-pair matrix; Captum's first-order methods
return per-token-and-dimension attributions for each text, summed here over the hidden dimension.

Run: ``python examples/compare_methods.py`` (uses the offline all-MiniLM-L6-v2).
"""

import torch
from captum.attr import IntegratedGradients

import bilrp

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
for method in methods:
    with torch.enable_grad():
        attributions, delta = method.attribute(
            inputs=inputs, additional_forward_args=masks, return_convergence_delta=True
        )
    if isinstance(attributions, tuple):  # first-order (Captum): token relevance of each text
        tokens = [t.sum(-1)[0] for t in attributions]
        strongest = int(tokens[0].argmax())
        summary = f"first-order; strongest token of A: {a['tokens'][0][strongest]!r}"
        total = float(sum(t.sum() for t in tokens))
    else:  # second-order (bilrp): token-pair relevance
        i, j = divmod(int(attributions[0].argmax()), attributions.shape[-1])
        summary = (
            f"pair matrix {tuple(attributions.shape[1:])}; strongest pair: {a['tokens'][0][i]!r}-{b['tokens'][0][j]!r}"
        )
        total = float(attributions.sum())
    print(f"{method.get_name():22s} sum={total:+.4f} delta={float(delta.sum()):+.4f}  {summary}")
