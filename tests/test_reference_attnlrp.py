"""Tests of the independent AttnLRP reference (tests/reference_attnlrp.py) itself, against HF and closed forms."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel, Qwen3Config, Qwen3Model
from transformers.models.llama import modeling_llama

from reference_attnlrp import (
    ACTIVATIONS,
    EpsilonLinear,
    IdentityActivation,
    SoftmaxRule,
    UniformMatmul,
    UniformProduct,
    _layer_norm,
    _rms_norm,
    attnlrp_contributions,
    attnlrp_first_order,
    encoder_forward,
    pooled_embedding,
    softmax_relevance,
)

DTYPE = torch.float64
SIZES = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    attn_implementation="eager",
)
ARCHITECTURES = ("bert", "llama", "qwen3")
PADDINGS = ("right", "left")


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Random biases and norm weights, so that neither is the identity."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.1)
            elif "norm" in name.lower() and name.endswith("weight"):
                parameter.uniform_(0.5, 1.5)
    return model.to(DTYPE).eval()


def tiny_model(architecture: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if architecture == "bert":
        return _randomize(BertModel(BertConfig(**SIZES), add_pooling_layer=False))
    if architecture == "llama":  # grouped-query attention and biased projections
        return _randomize(LlamaModel(LlamaConfig(num_key_value_heads=2, attention_bias=True, **SIZES)))
    return _randomize(Qwen3Model(Qwen3Config(num_key_value_heads=2, head_dim=8, **SIZES)))


def inputs(model: torch.nn.Module, padding: str = "right", seq: int = 8, pad: int = 3):
    """Random token ids with ``pad`` padded positions, and the model's embedding-layer output."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, model.config.vocab_size, (1, seq), generator=generator)
    mask = torch.ones(1, seq, dtype=torch.long)
    if padding == "right":
        mask[0, seq - pad :] = 0
    else:
        mask[0, :pad] = 0
    with torch.no_grad():
        embeddings = model.embeddings(input_ids=ids) if hasattr(model, "embeddings") else model.embed_tokens(ids)
    return ids, mask, embeddings


def hf_state(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state[0]


def _pool(hidden, mask):
    weights = mask[0].to(hidden.dtype)[:, None]
    return (hidden * weights).sum(0) / weights.sum()


# ---------------------------------------------------------------------------------------------- forward pass
@pytest.mark.parametrize("padding", PADDINGS)
def test_bert_forward_matches_hf(padding):
    model = tiny_model("bert")
    ids, mask, embeddings = inputs(model, padding)
    with torch.no_grad():
        ours = encoder_forward(model, embeddings, mask)
        phi = pooled_embedding(model, embeddings, mask)
    expected = hf_state(model, ids, mask)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-8)
    torch.testing.assert_close(phi, _pool(expected, mask), rtol=0, atol=1e-8)


@pytest.mark.parametrize("architecture", ["llama", "qwen3"])
@pytest.mark.parametrize("padding", PADDINGS)
def test_decoder_forward_matches_hf(architecture, padding):
    """HF computes RMSNorm, RoPE and the softmax in float32 even for a float64 model, hence 1e-5 here.

    With left padding HF's float64 model gives NaN (its float64 ``finfo.min`` mask becomes ``-inf`` in the float32
    softmax, and a padded query there sees no key at all), so that case is compared in float32.
    """
    model = tiny_model(architecture)
    ids, mask, embeddings = inputs(model, padding)
    if padding == "left":
        model, embeddings = model.float(), embeddings.float()
    with torch.no_grad():
        ours = encoder_forward(model, embeddings, mask)
        phi = pooled_embedding(model, embeddings, mask)
    expected = hf_state(model, ids, mask)
    atol = 1e-5 if padding == "right" else 1e-4
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, expected, rtol=0, atol=atol)
    torch.testing.assert_close(phi, _pool(expected, mask), rtol=0, atol=atol)


def _rms_norm64(module):
    return lambda x: module.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + module.variance_epsilon))


def _rotary64(module):
    def forward(x, position_ids):
        freqs = position_ids[..., None].to(DTYPE) * module.inv_freq.to(DTYPE)
        angles = torch.cat([freqs, freqs], dim=-1)
        return angles.cos() * module.attention_scaling, angles.sin() * module.attention_scaling

    return forward


def _eager64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key, value = (modeling_llama.repeat_kv(t, module.num_key_value_groups) for t in (key, value))
    weights = torch.softmax(query @ key.transpose(2, 3) * scaling + attention_mask, dim=-1)
    return (weights @ value).transpose(1, 2).contiguous(), weights


def test_llama_forward_matches_float64_hf_to_1e8(monkeypatch):
    """With HF's three float32 steps replaced by float64 ones, the rest of the forward pass agrees to 1e-8."""
    model = tiny_model("llama")
    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm"):
            monkeypatch.setattr(module, "forward", _rms_norm64(module))
    monkeypatch.setattr(model.rotary_emb, "forward", _rotary64(model.rotary_emb))
    monkeypatch.setattr(modeling_llama, "eager_attention_forward", _eager64)
    for padding in PADDINGS:
        ids, mask, embeddings = inputs(model, padding)
        with torch.no_grad():
            torch.testing.assert_close(
                encoder_forward(model, embeddings, mask), hf_state(model, ids, mask), rtol=0, atol=1e-8
            )


# ---------------------------------------------------------------------------------------------- explanations
@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("padding", PADDINGS)
def test_padding_gets_zero_relevance_and_no_nan(architecture, padding):
    model = tiny_model(architecture)
    _, mask, embeddings = inputs(model, padding)
    for epsilon in (None, 0.25):
        contributions = attnlrp_contributions(model, embeddings, mask, epsilon=epsilon)
        assert contributions.shape == (mask.shape[1], model.config.hidden_size)
        assert torch.isfinite(contributions).all()
        assert (contributions[~mask[0].bool()] == 0).all()
        assert (contributions[mask[0].bool()].abs().sum(0) > 0).all()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_epsilon_zero_is_lrp0_and_epsilon_changes_it(architecture):
    model = tiny_model(architecture)
    _, mask, embeddings = inputs(model)
    lrp0 = attnlrp_contributions(model, embeddings, mask)
    torch.testing.assert_close(
        attnlrp_contributions(model, embeddings, mask, epsilon=0.0), lrp0, rtol=1e-10, atol=1e-12
    )
    assert not torch.allclose(attnlrp_contributions(model, embeddings, mask, epsilon=0.25), lrp0, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_first_order_is_weighted_sum_of_contributions(architecture):
    model = tiny_model(architecture)
    _, mask, embeddings = inputs(model)
    weights = torch.randn(model.config.hidden_size, dtype=DTYPE, generator=torch.Generator().manual_seed(2))
    for epsilon in (None, 0.25):
        expected = attnlrp_contributions(model, embeddings, mask, epsilon) @ weights
        torch.testing.assert_close(attnlrp_first_order(model, embeddings, mask, weights, epsilon), expected)


def test_rules_differ_from_gradient_times_input():
    """The Functions are in effect: AttnLRP is not plain gradient x input of the same forward pass."""
    model = tiny_model("bert")
    ids, mask, embeddings = inputs(model)
    x = embeddings.clone().requires_grad_(True)
    additive = torch.zeros(1, 1, 1, ids.shape[1], dtype=DTYPE).masked_fill(mask[:, None, None, :] == 0, -1e30)
    phi = _pool(model.encoder(x, attention_mask=additive).last_hidden_state[0], mask)
    (grad,) = torch.autograd.grad(phi[0], x)
    plain = (x * grad)[0].sum(-1).detach()
    assert not torch.allclose(attnlrp_contributions(model, embeddings, mask)[:, 0], plain, rtol=1e-3, atol=1e-6)


# ---------------------------------------------------------------------------------------------- single rules
def test_softmax_rule_matches_jacobian_closed_form():
    """x * backward(g) == x * (J^T g) == x * (R_out - s sum R_out), 0 and finite at masked entries."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(3, 4, 6, dtype=DTYPE, generator=generator)
    x[0, :, 1] = -torch.inf
    x[1, :, 4] = torch.finfo(DTYPE).min
    g = torch.randn(3, 4, 6, dtype=DTYPE, generator=generator)
    jacobian = torch.func.vmap(torch.func.jacrev(lambda row: torch.softmax(row, -1)))(x.reshape(-1, 6))
    closed = (jacobian.transpose(-1, -2) @ g.reshape(-1, 6, 1)).reshape(x.shape)
    x_in = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(SoftmaxRule.apply(x_in), x_in, g)
    torch.testing.assert_close(grad, closed, rtol=1e-12, atol=1e-14)
    relevance = softmax_relevance(x, torch.softmax(x, -1) * g)
    masked = torch.isinf(x) | (x == torch.finfo(DTYPE).min)
    assert torch.isfinite(relevance).all() and (relevance[masked] == 0).all() and (grad[masked] == 0).all()
    torch.testing.assert_close(relevance[~masked], (x * closed)[~masked], rtol=1e-12, atol=1e-14)


def test_uniform_activation_and_epsilon_rules_in_relevance_form():
    generator = torch.Generator().manual_seed(4)
    a, b = (torch.randn(5, 7, dtype=DTYPE, generator=generator).requires_grad_(True) for _ in range(2))
    g = torch.randn(5, 5, dtype=DTYPE, generator=generator)
    grad_a, grad_b = torch.autograd.grad(UniformMatmul.apply(a, b.T), (a, b), g)
    relevance_out = (a @ b.T) * g
    # uniform rule: each factor's relevance sums to half of the product's relevance
    torch.testing.assert_close((a * grad_a).sum(), 0.5 * relevance_out.sum())
    torch.testing.assert_close((b * grad_b).sum(), 0.5 * relevance_out.sum())
    torch.testing.assert_close((a * grad_a).sum(1), 0.5 * relevance_out.sum(1))
    upstream = torch.randn(5, 7, dtype=DTYPE, generator=generator)
    grad_a, grad_b = torch.autograd.grad(UniformProduct.apply(a, b), (a, b), upstream)
    torch.testing.assert_close(a * grad_a, 0.5 * a * b * upstream)  # half of R_out = a * b * upstream each
    torch.testing.assert_close(b * grad_b, 0.5 * a * b * upstream)
    for name in ("gelu", "silu"):
        (grad,) = torch.autograd.grad(IdentityActivation.apply(a, name), a, g[:, :1].expand(5, 7))
        torch.testing.assert_close(a * grad, ACTIVATIONS[name](a) * g[:, :1])  # R_in = R_out
    weight, bias, epsilon = torch.randn(5, 7, dtype=DTYPE), torch.randn(5, dtype=DTYPE), 0.3
    (grad,) = torch.autograd.grad(EpsilonLinear.apply(a, weight, bias, epsilon), a, g)
    z = (a @ weight.T + bias).detach()
    stabilised = z + epsilon * torch.where(z >= 0, 1.0, -1.0)
    torch.testing.assert_close(a * grad, a * (((z * g) / stabilised) @ weight))


def test_norm_rules_freeze_the_statistics():
    """With the std / rms frozen a norm is linear, so relevance is conserved (minus the bias); with the gradient of
    the statistics it would be scale invariant and gradient x input would sum to about 0 per token."""
    generator = torch.Generator().manual_seed(5)
    x = (3.0 * torch.randn(4, 16, dtype=DTYPE, generator=generator)).requires_grad_(True)
    g = torch.randn(4, 16, dtype=DTYPE, generator=generator)
    layer_norm, rms_norm = torch.nn.LayerNorm(16).to(DTYPE), modeling_llama.LlamaRMSNorm(16).to(DTYPE)
    with torch.no_grad():
        for parameter in (layer_norm.weight, rms_norm.weight):
            parameter.uniform_(0.5, 1.5)
        layer_norm.bias.normal_(0.0, 0.1)
    for norm, bias in ((layer_norm, layer_norm.bias.detach()), (rms_norm, 0.0)):
        y = _layer_norm(norm, x) if norm is layer_norm else _rms_norm(norm, x)
        torch.testing.assert_close(y, norm(x), rtol=1e-6, atol=1e-6)  # HF RMSNorm runs in float32
        (grad,) = torch.autograd.grad(y, x, g)
        torch.testing.assert_close((x * grad).sum(-1), ((y - bias) * g).sum(-1))
