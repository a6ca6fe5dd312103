"""AttnLRP in the fast engine against an independent reverse-mode implementation (tests/reference_attnlrp.py).

The reference re-implements BERT and Llama/Qwen3 from their weights with AttnLRP's rules as custom autograd
functions (one backward pass per embedding dimension); it shares no code with bilrp. bilrp writes the same
rules into the forward graph (:mod:`bilrp.attention_rules`) and computes every token's contributions in one
replay pass. Tolerances: 1e-8 relative for BERT (float64 throughout); 1e-5 for the decoders, whose HF rotary
tables are float32 even in a float64 model while the reference computes them in float64.
"""

import pytest
import torch
from zennit.rules import Epsilon

from bilrp import LRP, BiLRP, TransformerComposite
from bilrp.attention_rules import AttnLRPAttention, linearised_softmax, uniform_product
from bilrp.constants import recording, replaying
from bilrp.engine import token_contributions
from reference_attnlrp import attnlrp_contributions
from test_architectures import FAMILIES, family_model, padded, pair

REFERENCE_FAMILIES = {"bert": 1e-8, "llama (Llama itself)": 1e-5, "qwen": 1e-5}


def bilrp_contributions(model, composite, mode="replay"):
    emb, mask = padded(model)
    with composite.context(model):
        contributions, _ = token_contributions(model.represent, emb, mask, mode=mode, rules=True, model=model)
    return emb, mask, contributions


@pytest.mark.parametrize("name", REFERENCE_FAMILIES)
@pytest.mark.parametrize("epsilon", [None, 0.25])
def test_attnlrp_equals_the_independent_reference(name, epsilon):
    model = family_model(name)
    rule = None if epsilon is None else Epsilon(epsilon)
    emb, mask, contributions = bilrp_contributions(model, TransformerComposite(rule, attention_rule="attnlrp"))
    for row in range(emb.shape[0]):  # a full and a right-padded text
        length = int(mask[row].sum())
        expected = attnlrp_contributions(model.encoder, emb[row : row + 1], mask[row : row + 1], epsilon=epsilon)
        actual = contributions[row]
        scale = float(expected.abs().max())
        assert float((actual - expected).abs().max()) <= REFERENCE_FAMILIES[name] * scale
        assert torch.all(actual[length:] == 0)


def test_attnlrp_differs_from_the_paper_rules():
    model = family_model("bert")
    _, _, attnlrp = bilrp_contributions(model, TransformerComposite(attention_rule="attnlrp"))
    _, _, paper = bilrp_contributions(model, TransformerComposite())
    assert float((attnlrp - paper).abs().max()) > 1e-3 * float(paper.abs().max())


@pytest.mark.parametrize("name", FAMILIES)
def test_attnlrp_modes_agree_and_each_attention_has_two_uniform_products(name):
    """Every registered family: replay == forward == reverse (1e-9), two uniform products per attention call."""
    model = family_model(name)
    composite = TransformerComposite(attention_rule="attnlrp")
    results = {mode: bilrp_contributions(model, composite, mode)[2] for mode in ("replay", "forward", "reverse")}
    scale = float(results["reverse"].abs().max())
    for mode in ("replay", "forward"):
        assert float((results[mode] - results["reverse"]).abs().max()) <= 1e-9 * scale, mode
    modes = []
    original = AttnLRPAttention.__init__

    def counting_init(self):
        original(self)
        modes.append(self)

    emb, mask = padded(model)
    AttnLRPAttention.__init__ = counting_init
    try:
        with torch.no_grad(), composite.context(model):
            model.represent(emb, mask)
    finally:
        AttnLRPAttention.__init__ = original
    assert modes and all(mode.products == 2 for mode in modes)


def test_bilrp_with_attnlrp_is_certified_and_conserves_without_biases():
    from tiny_models import zero_biases

    model = zero_biases(family_model("bert"))
    inputs, masks = pair(model)
    relevance, delta = BiLRP(model, rules="attnlrp").attribute(
        inputs, additional_forward_args=masks, return_convergence_delta=True
    )
    # AttnLRP's softmax rule is not conservative: its offset goes to the bias even without model biases
    assert torch.isfinite(relevance).all() and torch.isfinite(delta).all()
    assert BiLRP(model, rules="attnlrp").composite.attention_rule == "attnlrp"


def test_first_order_lrp_with_attnlrp_equals_the_reference():
    model = family_model("bert")
    emb, mask = padded(model)
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(model.represent(emb, mask).shape[-1], dtype=emb.dtype, generator=generator)

    def output(e):
        return model.represent(e, mask[:1]) @ weights

    relevance = LRP(output, model=model, rules="attnlrp").attribute(emb[:1])
    expected = attnlrp_contributions(model.encoder, emb[:1], mask[:1]) @ weights
    assert torch.allclose(relevance.sum(-1)[0], expected, rtol=0, atol=1e-8 * float(expected.abs().max()))


def test_linearised_softmax_keeps_values_and_gives_attnlrp_relevance():
    torch.manual_seed(0)
    scores = torch.randn(2, 3, 5, dtype=torch.float64)
    scores[0, 0, 1] = float("-inf")  # a masked key: zero relevance, no NaN
    probabilities = torch.softmax(scores, -1)
    x = scores.clone().requires_grad_(True)
    out = linearised_softmax(x, -1)
    assert torch.allclose(out, probabilities)
    upstream = torch.randn_like(out)
    (gradient,) = torch.autograd.grad(out, x, upstream)
    # the gradient is the softmax's own vector-Jacobian product: relevance x * (R - s * sum R), R = s * g
    finite = scores.masked_fill(~torch.isfinite(scores), 0.0).requires_grad_(True)
    softmax = torch.softmax(finite.masked_fill(probabilities == 0, -1e300), -1)
    (jacobian_product,) = torch.autograd.grad(softmax, finite, upstream)
    assert torch.isfinite(gradient).all()
    assert torch.allclose(gradient, torch.where(probabilities > 0, jacobian_product, 0.0), atol=1e-12)


def test_uniform_product_splits_relevance_evenly_and_replays_by_broadcast():
    torch.manual_seed(0)
    a, b = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 4, 5, dtype=torch.float64)
    assert torch.allclose(uniform_product(torch.matmul, a, b), a @ b)
    with recording() as tape:
        uniform_product(torch.matmul, a, b)
    repeats = 3
    a_batch = torch.randn(repeats * 2, 3, 4, dtype=torch.float64)
    b_batch = torch.randn(repeats * 2, 4, 5, dtype=torch.float64)
    with replaying(tape, repeats):
        replayed = uniform_product(torch.matmul, a_batch, b_batch)
    a_c, b_c = a.repeat(repeats, 1, 1), b.repeat(repeats, 1, 1)
    assert torch.allclose(replayed, 0.5 * (a_c @ b_batch + a_batch @ b_c))


def test_bad_attention_rules_are_refused_in_one_line():
    with pytest.raises(ValueError, match="unknown attention rule 'attn'"):
        TransformerComposite(attention_rule="attn")
    from bilrp.architectures import BertCanonizer

    with pytest.raises(ValueError, match="two attention rules"):
        TransformerComposite(canonizers=[BertCanonizer(), BertCanonizer(attention_rule="attnlrp")])


def test_torch_multihead_attention_under_attnlrp_equals_its_unfused_path_in_the_mode():
    """bilrp's MultiheadAttention forward vs the attention written out with bmm inside AttnLRPAttention."""
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    attention = nn.MultiheadAttention(8, 2, batch_first=True).double().eval()
    x, u = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)

    def relevance(run) -> torch.Tensor:
        point = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((run(point) @ u).sum(), point)
        return x * grad

    def written_out(p: torch.Tensor) -> torch.Tensor:
        batch, length, width = p.shape
        heads = attention.num_heads
        q, k, v = (
            t.reshape(batch, length, heads, -1).transpose(1, 2).reshape(batch * heads, length, -1)
            for t in F.linear(p, attention.in_proj_weight, attention.in_proj_bias).chunk(3, -1)
        )
        with AttnLRPAttention() as mode:
            scores = torch.bmm(q * q.shape[-1] ** -0.5, k.transpose(1, 2))
            out = torch.bmm(torch.softmax(scores, -1), v)
        assert mode.products == 2
        out = out.reshape(batch, heads, length, -1).transpose(1, 2).reshape(batch, length, width)
        return attention.out_proj(out)

    expected = relevance(written_out)
    with TransformerComposite(attention_rule="attnlrp").context(attention):
        names = {name for name, _ in attention.named_children()}
        assert {"bilrp_query_projection", "bilrp_key_projection", "bilrp_value_projection"} <= names
        actual = relevance(lambda p: attention(p, p, p)[0])
    with TransformerComposite().context(attention):
        paper = relevance(lambda p: attention(p, p, p)[0])
    assert torch.allclose(actual, expected, atol=1e-12)
    assert not torch.allclose(actual, paper, atol=1e-6)


def test_qkv_pooling_under_attnlrp_is_certified():
    from tiny_models import tiny_similarity_model

    model = tiny_similarity_model("bert", "qkv", "dot")
    inputs, masks = pair(model)
    replay = BiLRP(model, rules="attnlrp", mode="replay").attribute(inputs, additional_forward_args=masks)
    reverse = BiLRP(model, rules="attnlrp", mode="reverse").attribute(inputs, additional_forward_args=masks)
    assert torch.allclose(replay, reverse, atol=1e-10 * float(reverse.abs().max()))


def test_two_attention_rules_for_multihead_attention_are_refused_too():
    from bilrp.architectures import TorchTransformerCanonizer

    with pytest.raises(ValueError, match="two attention rules"):
        TransformerComposite(
            canonizers=[TorchTransformerCanonizer(), TorchTransformerCanonizer(attention_rule="attnlrp")]
        )
