"""The rules AH, LN and GA (and zennit rules for Linear) against explicit matrix-form references.

Every rule must keep the forward value and make one quantity a constant; its Jacobian is then a known
matrix. Jacobians come from reverse mode (``torch.autograd.functional.jacobian``) and forward mode
(``torch.func.jacfwd``), and both must equal the matrix. Tolerance: 1e-10 absolute in float64 (the
computations are a handful of operations, so anything larger is a wrong formula, not rounding).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from zennit.rules import Epsilon

from bilrp.composites import TransformerComposite
from bilrp.rules import (
    DetachedAttention,
    attention_with_constant_probabilities,
    constant_rms_norm,
    constant_std_layer_norm,
    proportional_activation,
)

TOL = 1e-10
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=generator(seed), dtype=torch.float64)


def jacobians(function, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Jacobian by reverse mode and by forward mode."""
    return torch.autograd.functional.jacobian(function, x), torch.func.jacfwd(function)(x)


def assert_jacobian(function, x: torch.Tensor, expected: torch.Tensor) -> None:
    for jacobian in jacobians(function, x):
        assert torch.allclose(jacobian, expected, atol=TOL, rtol=0), (jacobian - expected).abs().max()


# ---------------------------------------------------------------------------------------------- LN
def test_layer_norm_rule_keeps_forward_and_has_constant_std_jacobian():
    n, eps = 6, 1e-5
    x, weight, bias = randn(n, seed=1) * 3 + 1, randn(n, seed=2), randn(n, seed=3)
    out = constant_std_layer_norm(x, (n,), weight, bias, eps)
    assert torch.allclose(out, F.layer_norm(x, (n,), weight, bias, eps), atol=TOL, rtol=0)
    std = math.sqrt(x.var(unbiased=False).item() + eps)
    expected = torch.diag(weight) @ (torch.eye(n, dtype=x.dtype) - 1.0 / n) / std  # diag(w) (I - 11^T/n) / std
    assert_jacobian(lambda v: constant_std_layer_norm(v, (n,), weight, bias, eps), x, expected)


def test_layer_norm_rule_is_linear_without_bias():
    """LN with constant std and no bias is linear in x: relevance x * grad sums to the output exactly."""
    n = 5
    x, weight = randn(n, seed=4), randn(n, seed=5)
    x_ = x.clone().requires_grad_(True)
    out = constant_std_layer_norm(x_, (n,), weight, None, 1e-5)
    u = randn(n, seed=6)
    (grad,) = torch.autograd.grad(out @ u, x_)
    assert abs((x * grad).sum() - out.detach() @ u) < TOL


def test_rms_norm_rule_keeps_forward_and_has_diagonal_jacobian():
    n, eps = 6, 1e-6
    x, weight = randn(n, seed=7), randn(n, seed=8)
    out = constant_rms_norm(x, (n,), weight, eps)
    assert torch.allclose(out, F.rms_norm(x, (n,), weight, eps), atol=TOL, rtol=0)
    rms = math.sqrt(x.pow(2).mean().item() + eps)
    assert_jacobian(lambda v: constant_rms_norm(v, (n,), weight, eps), x, torch.diag(weight) / rms)


# ---------------------------------------------------------------------------------------------- GA
ACTIVATIONS = {
    "nn.GELU": nn.GELU(),
    "gelu_new": ACT2FN["gelu_new"],
    "hf gelu": ACT2FN["gelu"],
    "nn.SiLU": nn.SiLU(),
    "F.relu": F.relu,
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_rule_passes_relevance_in_proportion(name):
    activation = ACTIVATIONS[name]
    x = torch.cat([randn(7, seed=9) * 2, torch.zeros(1, dtype=torch.float64)])
    out = proportional_activation(activation, x)
    assert torch.allclose(out, activation(x), atol=TOL, rtol=0)
    value = activation(x)
    ratio = torch.tensor([0.5 if v == 0 else (a / v).item() for v, a in zip(x, value, strict=True)], dtype=x.dtype)
    assert_jacobian(lambda v: proportional_activation(activation, v), x, torch.diag(ratio))
    # relevance of each unit is exactly its activation (conservation through the rule)
    x_ = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(proportional_activation(activation, x_).sum(), x_)
    assert torch.allclose(x * grad, value, atol=TOL, rtol=0)
    assert torch.isfinite(grad).all()


# ---------------------------------------------------------------------------------------------- AH
def explicit_probabilities(q, k, scale, allowed):
    scores = (q @ k.transpose(-1, -2)) * scale
    scores = torch.where(allowed, scores, torch.full_like(scores, -math.inf))
    weights = scores.exp() * allowed
    return weights / weights.sum(-1, keepdim=True)


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float", "causal"])
def test_attention_rule_gradient_is_the_value_path_only(mask_kind):
    batch, heads, length, dim = 2, 2, 4, 3
    q, k, v = (randn(batch, heads, length, dim, seed=seed) for seed in (10, 11, 12))
    allowed = torch.ones(batch, 1, length, length, dtype=torch.bool)
    kwargs = {}
    if mask_kind == "bool":
        allowed[1, ..., -1] = False  # padding: the last key of the second example
        kwargs["attn_mask"] = allowed
    elif mask_kind == "float":
        allowed[1, ..., -1] = False
        kwargs["attn_mask"] = torch.zeros(allowed.shape, dtype=q.dtype).masked_fill(~allowed, -math.inf)
    elif mask_kind == "causal":
        allowed = allowed & torch.ones(length, length, dtype=torch.bool).tril()
        kwargs["is_causal"] = True
    scale = 0.7
    probabilities = explicit_probabilities(q, k, scale, allowed)

    q_, k_, v_ = (t.clone().requires_grad_(True) for t in (q, k, v))
    out = attention_with_constant_probabilities(q_, k_, v_, scale=scale, **kwargs)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, scale=scale, **kwargs), atol=TOL, rtol=0)
    grad_out = randn(*out.shape, seed=13)
    grads = torch.autograd.grad(out, (q_, k_, v_), grad_out, allow_unused=True)
    assert all(g is None or torch.all(g == 0) for g in grads[:2])  # no relevance through the scores
    assert torch.allclose(grads[2], probabilities.transpose(-1, -2) @ grad_out, atol=TOL, rtol=0)  # P^T g

    _, tangent_out = torch.func.jvp(
        lambda a, b, c: attention_with_constant_probabilities(a, b, c, scale=scale, **kwargs),
        (q, k, v),
        (randn(*q.shape, seed=14), randn(*k.shape, seed=15), v),
    )
    assert torch.allclose(tangent_out, probabilities @ v, atol=TOL, rtol=0)  # forward mode: only P @ dv


def test_attention_rule_grouped_query_attention():
    q, k, v = randn(1, 4, 3, 2, seed=16), randn(1, 2, 3, 2, seed=17), randn(1, 2, 3, 2, seed=18)
    expected = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    assert torch.allclose(attention_with_constant_probabilities(q, k, v, enable_gqa=True), expected, atol=TOL)


def test_attention_rule_refuses_dropout():
    q = randn(1, 1, 2, 2)
    with pytest.raises(ValueError, match="dropout"):
        attention_with_constant_probabilities(q, q, q, dropout_p=0.1)


def test_detached_attention_mode_detaches_softmax_and_sdpa_only_inside():
    x = randn(3, 4, seed=19).requires_grad_(True)
    q, k, v = (randn(1, 1, 3, 2, seed=s).requires_grad_(True) for s in (20, 21, 22))
    with DetachedAttention():
        for softmax in (lambda t: torch.softmax(t, -1), lambda t: F.softmax(t, dim=-1), lambda t: t.softmax(-1)):
            out = softmax(x)
            assert not out.requires_grad
            assert torch.allclose(out, torch.softmax(x.detach(), -1), atol=TOL, rtol=0)
        out = F.scaled_dot_product_attention(q, k, v)
        assert torch.autograd.grad(out.sum(), q, allow_unused=True)[0] is None
    assert torch.softmax(x, -1).requires_grad  # the mode is gone
    out = F.scaled_dot_product_attention(q, k, v)
    assert torch.autograd.grad(out.sum(), q)[0].abs().sum() > 0


# ---------------------------------------------------------------------------------------------- zennit rules
def test_gradient_rule_epsilon_on_a_linear_layer():
    """``linear_rule=Epsilon(eps)`` (run through ``bilrp.rules.GradientRule``) makes a Linear's backward
    ``W^T (g * z / (z + eps sign z))``: the gradient form of LRP-epsilon."""
    torch.manual_seed(0)
    layer = nn.Linear(4, 3).double()
    x, g = randn(2, 4, seed=23), randn(2, 3, seed=24)
    z = layer(x).detach()
    eps = 0.3
    sign = torch.where(z >= 0, 1.0, -1.0).to(z.dtype)  # zennit's sign: +1 at 0
    expected = (g * z / (z + eps * sign)) @ layer.weight.detach()
    x_ = x.clone().requires_grad_(True)
    with TransformerComposite(linear_rule=Epsilon(eps)).context(layer):
        (grad,) = torch.autograd.grad(layer(x_), x_, g)
    assert torch.allclose(grad, expected, atol=TOL, rtol=0)
    assert not layer._forward_hooks and not layer._forward_pre_hooks


def test_gradient_rule_with_vanishing_epsilon_is_lrp0():
    layer = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 2)).double()
    x = randn(3, 4, seed=25)
    results = []
    for rule in (None, Epsilon(1e-14)):
        x_ = x.clone().requires_grad_(True)
        with TransformerComposite(linear_rule=rule).context(layer):
            results.append(torch.autograd.grad(layer(x_).sum(), x_)[0])
    assert torch.allclose(results[0], results[1], atol=1e-8, rtol=0)
