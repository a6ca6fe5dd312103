"""zennit's linear-layer rules written into the forward graph (``bilrp.linear_rules``).

The reference is zennit itself: its rule hooked on the layer (a backward hook computing relevance), fed
the output relevance ``R_out``. The forward-graph rule is differentiated with ``g_out = R_out / z``; its
gradient x input must be zennit's relevance to 1e-10 (relative to the largest relevance, float64). On
the tiny BERT, the forward-graph rules must give the relevance of the existing zennit-backward-hook path
(``TransformerComposite(linear_rule=...)``, through ``bilrp.rules.GradientRule``) to 1e-8.
"""

from contextlib import contextmanager
from functools import partial

import pytest
import torch
from torch import nn
from zennit.composites import LayerMapComposite
from zennit.core import BasicHook, Hook, Stabilizer
from zennit.rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Norm,
    Pass,
    ReLUGuidedBackprop,
    WSquare,
    ZBox,
    ZPlus,
)

from bilrp import TransformerComposite
from bilrp.architectures import TransformerCanonizer
from bilrp.canonizers import ActivationCanonizer, UnsupportedModuleError
from bilrp.constants import recording, replaying
from bilrp.linear_canonizer import LinearRuleCanonizer
from bilrp.linear_rules import (
    alpha_beta_linear,
    epsilon_linear,
    gamma_linear,
    lrp0_linear,
    pass_linear,
    zplus_linear,
)
from bilrp.rule_translation import forward_graph_rule
from bilrp.rules import GradientRule
from reference_models import assert_same_state, model_state, randomize_biases
from tiny_models import tiny_similarity_model

TOL = 1e-10
MODEL_TOL = 1e-8
TEXTS = ["a man is playing a guitar on the street while people listen", "dogs run"]
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::FutureWarning")]


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def linear(n_in: int = 7, n_out: int = 5, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(n_in, n_out).double()
    with torch.no_grad():
        layer.bias.copy_(randn(n_out, seed=seed + 100) * 0.5)
    return layer


def inputs(n_in: int = 7, seed: int = 1) -> torch.Tensor:
    """Mixed-sign inputs with a few exact zeros (relevance 0 there in zennit and here)."""
    x = randn(4, 3, n_in, seed=seed)
    x[0, 0, :2] = 0.0
    return x


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def zennit_relevance(rule: Hook, layer: nn.Module, x: torch.Tensor, relevance_out: torch.Tensor) -> torch.Tensor:
    """zennit's own input relevance: its rule hooked on the layer, the output relevance as output gradient."""
    hook = rule.copy()
    handles = hook.register(layer)
    try:
        x = x.clone().requires_grad_(True)
        (relevance,) = torch.autograd.grad(layer(x), x, relevance_out)
    finally:
        handles.remove()
    return relevance


def forward_graph_relevance(fn, layer: nn.Module, x: torch.Tensor, relevance_out: torch.Tensor) -> torch.Tensor:
    """Gradient x input through the forward-graph rule, seeded with ``g_out = R_out / z``."""
    x = x.clone().requires_grad_(True)
    with torch.no_grad():
        z = layer(x)
    (grad,) = torch.autograd.grad(fn(layer, x), x, relevance_out / z)
    return x.detach() * grad


RULES = {
    "epsilon-1e-6": lambda: Epsilon(),
    "epsilon-0.01": lambda: Epsilon(0.01),
    "epsilon-0.1": lambda: Epsilon(0.1),
    "epsilon-1": lambda: Epsilon(1.0),
    "epsilon-0.25-nobias": lambda: Epsilon(0.25, zero_params="bias"),
    "epsilon-clip": lambda: Epsilon(Stabilizer(0.5, clip=True)),
    "epsilon-normscale": lambda: Epsilon(Stabilizer(0.5, norm_scale=True)),
    "gamma-0.1": lambda: Gamma(0.1),
    "gamma-0.25": lambda: Gamma(0.25),
    "gamma-1": lambda: Gamma(1.0),
    "gamma-0.5-stab0.1": lambda: Gamma(0.5, stabilizer=0.1),
    "gamma-0.25-nobias": lambda: Gamma(0.25, zero_params=["bias"]),
    "zplus": lambda: ZPlus(),
    "zplus-nobias": lambda: ZPlus(zero_params="bias"),
    "alphabeta-2-1": lambda: AlphaBeta(2.0, 1.0),
    "alphabeta-1-0": lambda: AlphaBeta(1.0, 0.0),
    "alphabeta-3-2-nobias": lambda: AlphaBeta(3.0, 2.0, zero_params="bias"),
}


# ---------------------------------------------------------------------------------------------- one layer
@pytest.mark.parametrize("name", RULES)
def test_relevance_equals_zennit_and_forward_is_unchanged(name):
    rule = RULES[name]()
    fn = forward_graph_rule(rule)
    assert fn is not None
    for seed in range(3):
        layer, x = linear(seed=seed), inputs(seed=seed + 10)
        relevance_out = randn(4, 3, 5, seed=seed + 20)
        expected = zennit_relevance(rule, layer, x, relevance_out)
        assert relative_error(forward_graph_relevance(fn, layer, x, relevance_out), expected) < TOL
        with torch.no_grad():
            value, plain = fn(layer, x), layer(x)
        assert torch.allclose(value, plain, rtol=1e-12, atol=1e-12), (value - plain).abs().max()


def test_the_rule_functions_take_zennits_parameters():
    layer, x, relevance_out = linear(), inputs(), randn(4, 3, 5, seed=3)
    cases = [
        (partial(epsilon_linear, epsilon=0.1), Epsilon(0.1)),
        (partial(gamma_linear, gamma=0.5, stabilizer=1e-3), Gamma(0.5, stabilizer=1e-3)),
        (partial(zplus_linear, zero_params="bias"), ZPlus(zero_params="bias")),
        (partial(alpha_beta_linear, alpha=2.0, beta=1.0), AlphaBeta(2.0, 1.0)),
    ]
    for fn, rule in cases:
        expected = zennit_relevance(rule, layer, x, relevance_out)
        assert relative_error(forward_graph_relevance(fn, layer, x, relevance_out), expected) < TOL
    with pytest.raises(ValueError, match="alpha - beta"):
        alpha_beta_linear(layer, x, alpha=2.0, beta=2.0)


def test_epsilon_zero_is_lrp0_and_lrp0_is_the_plain_layer():
    layer, x = linear(), inputs()
    assert torch.equal(epsilon_linear(layer, x, 0.0), layer(x))
    assert torch.equal(lrp0_linear(layer, x), layer(x))
    with recording() as tape:
        epsilon_linear(layer, x, 0.0)
    assert not tape.values  # no constants at all


def test_pass_passes_relevance_through():
    layer, x, relevance_out = linear(7, 7), randn(4, 3, 7, seed=5), randn(4, 3, 7, seed=6)
    fn = forward_graph_rule(Pass())
    assert fn is pass_linear
    relevance = forward_graph_relevance(fn, layer, x, relevance_out)
    assert relative_error(relevance, relevance_out) < TOL
    assert relative_error(relevance, zennit_relevance(Pass(), layer, x, relevance_out)) < TOL
    with pytest.raises(ValueError, match="as many output as input"):
        pass_linear(linear(7, 5), x)


def test_forward_mode_and_reverse_mode_see_the_rule():
    layer, x = linear(), inputs()
    for rule in (Epsilon(0.1), Gamma(0.25), ZPlus(), AlphaBeta(2.0, 1.0)):
        fn = partial(forward_graph_rule(rule), layer)
        reverse = torch.autograd.functional.jacobian(fn, x)
        forward = torch.func.jacfwd(fn)(x)
        assert relative_error(forward, reverse) < 1e-13
        # and the Jacobian is the rule's: J^T g_out is the zennit relevance / x
        relevance_out = randn(4, 3, 5, seed=7)
        g_out = relevance_out / layer(x).detach()
        relevance = x * torch.einsum("abo,abocde->cde", g_out, forward)
        assert relative_error(relevance, zennit_relevance(rule, layer, x, relevance_out)) < TOL


# ---------------------------------------------------------------------------------------------- translation
class PlainSubclass(Epsilon):
    pass


class OverriddenBackward(Epsilon):
    def backward(self, module, grad_input, grad_output):
        return grad_input


class OwnLambdas(Epsilon):
    def __init__(self):
        BasicHook.__init__(
            self,
            input_modifiers=[lambda x: x],
            param_modifiers=[lambda p, name: p],
            output_modifiers=[lambda y: y],
            gradient_mapper=lambda g, outputs: g / outputs[0],
            reducer=lambda inputs, grads: inputs[0] * grads[0],
        )


def test_forward_graph_rule_refuses_rules_without_a_forward_graph_form():
    replaced = Gamma(0.25)
    replaced.reducer = lambda inputs, gradients: inputs[0] * gradients[0]
    patched = Epsilon(0.1)
    patched.backward = lambda module, grad_input, grad_output: grad_input
    refused = [
        Flat(),
        WSquare(),
        ZBox(-1.0, 1.0),
        Norm(),
        ReLUGuidedBackprop(),
        BasicHook(),
        Hook(),
        OverriddenBackward(),
        OwnLambdas(),
        replaced,
        patched,
        "not a rule",
    ]
    for rule in refused:
        assert forward_graph_rule(rule) is None, rule
    with pytest.raises(ValueError, match="no forward-graph form"):
        LinearRuleCanonizer(Flat())


def test_forward_graph_rule_reads_the_parameters_of_copies_and_plain_subclasses():
    layer, x, relevance_out = linear(), inputs(), randn(4, 3, 5, seed=8)
    for rule in (PlainSubclass(0.3), Epsilon(0.3).copy(), Gamma(0.7, stabilizer=0.01).copy(), AlphaBeta(2, 1).copy()):
        fn = forward_graph_rule(rule)
        assert fn is not None
        expected = zennit_relevance(rule, layer, x, relevance_out)
        assert relative_error(forward_graph_relevance(fn, layer, x, relevance_out), expected) < TOL
    assert forward_graph_rule(Gamma(0.7, stabilizer=0.01)).keywords["gamma"] == 0.7
    keywords = forward_graph_rule(AlphaBeta(3, 2, stabilizer=0.5, zero_params="bias")).keywords
    assert (keywords["alpha"], keywords["beta"], keywords["zero_params"]) == (3, 2, "bias")
    assert keywords["stabilizer"].epsilon == 0.5


# ---------------------------------------------------------------------------------------------- canonizer
@contextmanager
def applied(model: nn.Module, *canonizers):
    """Apply canonizers in order; remove them newest first."""
    instances = []
    try:
        for canonizer in canonizers:
            instances += canonizer.apply(model)
        yield model
    finally:
        for instance in reversed(instances):
            instance.remove()


class MLP(nn.Module):
    """Token-wise Linear/GELU stack, mean-pooled: ``represent(x, mask) -> (batch, dim)``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.layers = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 4))
        randomize_biases(self, scale=0.5)
        self.double()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.layers(x)
        return (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)


def mlp_canonizers(model: MLP) -> list:
    first, second, last = model.layers[0], model.layers[2], model.layers[4]
    return [
        ActivationCanonizer(),
        LinearRuleCanonizer(Gamma(0.25), modules=[first]),
        LinearRuleCanonizer(partial(alpha_beta_linear, alpha=2.0, beta=1.0), names=["layers.2"]),
        LinearRuleCanonizer(Epsilon(0.1), modules=[last]),
    ], (first, second, last)


def test_canonizer_sets_the_rule_on_its_targets_only_and_restores_them():
    model = MLP()
    before = model_state(model)
    canonizers, (first, second, last) = mlp_canonizers(model)
    with applied(model, LinearRuleCanonizer(ZPlus(), names=["layers.4"])):
        assert "forward" in vars(last) and "forward" not in vars(first)
    with applied(model, *canonizers):
        for module in (first, second, last):
            assert vars(module)["forward"].func in (gamma_linear, alpha_beta_linear, epsilon_linear)
    assert_same_state(before, model_state(model))
    with pytest.raises(ValueError, match="no module named"):
        LinearRuleCanonizer(Epsilon(0.1), names=["layers.9"]).apply(model)
    with pytest.raises(ValueError, match="not an nn.Linear"):
        LinearRuleCanonizer(Epsilon(0.1), names=["layers.1"]).apply(model)
    assert_same_state(before, model_state(model))


class ScaledLinear(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


def test_canonizer_refuses_linear_subclasses_with_their_own_forward():
    model = nn.Sequential(nn.Linear(3, 3), ScaledLinear(3, 3))
    canonizer = LinearRuleCanonizer(Epsilon(0.1))
    assert canonizer.unsupported(model[0]) is None and "overrides nn.Linear.forward" in canonizer.unsupported(model[1])
    before = model_state(model)
    with pytest.raises(UnsupportedModuleError, match="ScaledLinear"):
        canonizer.apply(model)
    assert_same_state(before, model_state(model))
    with pytest.raises(UnsupportedModuleError, match="ScaledLinear"):
        with TransformerComposite(canonizers=[canonizer]).context(model):
            pass
    assert_same_state(before, model_state(model))


# ---------------------------------------------------------------------------------------------- affinity
def test_network_is_affine_under_the_recorded_constants():
    """Record at x, replay over an additive split x = sum_k x_k: sum_k (f(x_k) - f(0)) + f(0) == f(x)."""
    model = MLP()
    x, mask = randn(2, 5, 6, seed=11), torch.ones(2, 5)
    parts = [randn(2, 5, 6, seed=20 + k) for k in range(3)]
    parts.append(x - sum(parts))
    canonizers, _ = mlp_canonizers(model)
    with torch.no_grad():
        plain = model(x, mask)
    with applied(model, *canonizers), torch.no_grad():
        with recording() as tape:
            phi = model(x, mask)
        assert len(tape.values) == 2 + 2 * 5 + 2  # 2 GELU ratios; 2 sign masks, 2 scales, offset (twice); 2
        batch = torch.cat([torch.zeros_like(x), *parts])
        with replaying(tape, len(parts) + 1):
            out = model(batch, mask.repeat(len(parts) + 1, 1)).reshape(len(parts) + 1, *phi.shape)
        with replaying(tape, 1):
            again = model(x, mask)
        unfrozen = sum(model(part, mask) for part in parts)
    assert torch.allclose(phi, plain, rtol=0, atol=1e-12)
    assert relative_error((out[1:] - out[0]).sum(0) + out[0], phi) < 1e-12
    assert relative_error(again, phi) < 1e-13
    assert relative_error(unfrozen, phi) > 1e-2  # without the constants it is not affine: the check bites


def replay_contributions(represent, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``C[b, i] = f(x_i) - f(0)`` with the constants recorded at ``x`` (``x_i``: only token ``i`` kept),
    after checking the certificate ``sum_i C[b, i] + f(0) == f(x)``; ``(batch, seq, dim)``."""
    length = x.shape[1]
    with torch.no_grad():
        with recording() as tape:
            phi = represent(x, mask)
        tokens = torch.eye(length, dtype=x.dtype)[:, None, :, None] * (x * mask[..., None])[None]
        batch = torch.cat([torch.zeros_like(x)[None], tokens])
        with replaying(tape, length + 1):
            out = represent(batch.flatten(0, 1), mask.repeat(length + 1, 1)).unflatten(0, (length + 1, x.shape[0]))
    contributions = (out[1:] - out[0]).transpose(0, 1)
    assert relative_error(contributions.sum(1) + out[0], phi) < 1e-12
    return contributions


def forward_contributions(represent, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``C[b, i] = J x_i`` by forward mode: one JVP per token, batched with vmap."""
    tokens = torch.eye(x.shape[1], dtype=x.dtype)[:, None, :, None] * (x * mask[..., None])[None]
    jvp = lambda t: torch.func.jvp(lambda e: represent(e, mask), (x,), (t,))[1]  # noqa: E731
    with torch.no_grad():
        return torch.func.vmap(jvp)(tokens).transpose(0, 1)


def input_x_gradients(represent, x: torch.Tensor, mask: torch.Tensor, dims) -> torch.Tensor:
    """Gradient x input of ``phi[:, m]`` (one backward pass per ``m`` in ``dims``): ``(dims, batch, seq, width)``."""
    point = x.clone().requires_grad_(True)
    phi = represent(point, mask)
    rows = [torch.autograd.grad(phi[:, m].sum(), point, retain_graph=True)[0] for m in dims]
    return torch.stack(rows) * (x * mask[..., None])


def reverse_contributions(represent, x: torch.Tensor, mask: torch.Tensor, dims) -> torch.Tensor:
    """``C[b, i, m] = sum_k x[b, i, k] d phi[b, m] / d x[b, i, k]`` by reverse mode, for ``m`` in ``dims``."""
    return input_x_gradients(represent, x, mask, dims).sum(-1).permute(1, 2, 0)


def test_replay_forward_and_reverse_contributions_agree_on_the_mlp():
    model = MLP()
    x, mask = randn(2, 5, 6, seed=12), torch.tensor([[1.0] * 5, [1.0] * 3 + [0.0] * 2], dtype=torch.float64)
    canonizers, _ = mlp_canonizers(model)
    with applied(model, *canonizers):
        replay = replay_contributions(model, x, mask)
        forward = forward_contributions(model, x, mask)
        reverse = reverse_contributions(model, x, mask, range(4))
    assert relative_error(forward, reverse) < 1e-12
    assert relative_error(replay, reverse) < 1e-12
    assert replay[1, 3:].abs().max() == 0


# ---------------------------------------------------------------------------------------------- tiny BERT
@pytest.fixture(scope="module")
def bert():
    model = randomize_biases(tiny_similarity_model("bert", "mean", "dot"))
    batch = model.tokenize(TEXTS)
    mask = batch["attention_mask"]
    emb = model.embed(batch["input_ids"], mask).detach()
    with torch.no_grad():
        model.represent(emb, mask)  # any one-time set-up of the model happens outside the rule contexts
    return model, emb, mask


def hook_path(rule: Hook) -> LayerMapComposite:
    """The zennit-backward-hook path: ``rule`` on every ``nn.Linear`` through ``GradientRule``."""
    return LayerMapComposite([((nn.Linear,), GradientRule(rule))], canonizers=[TransformerCanonizer()])


@pytest.mark.parametrize("rule", [lambda: Epsilon(0.1), lambda: Gamma(0.25)], ids=["epsilon-0.1", "gamma-0.25"])
def test_tiny_bert_relevance_equals_the_zennit_hook_path(bert, rule):
    model, emb, mask = bert
    dims = [0, 7, 19, 31]
    before = model_state(model)
    with hook_path(rule()).context(model):
        expected = input_x_gradients(model.represent, emb, mask, dims)
        with torch.no_grad():
            phi_hook = model.represent(emb, mask)
    assert_same_state(before, model_state(model))
    with TransformerComposite().context(model), applied(model, LinearRuleCanonizer(rule())):
        actual = input_x_gradients(model.represent, emb, mask, dims)
        replay = replay_contributions(model.represent, emb, mask)[..., dims]  # the certificate holds
        forward = forward_contributions(model.represent, emb, mask)[..., dims]
        with torch.no_grad():
            value = model.represent(emb, mask)
    assert_same_state(before, model_state(model))
    with torch.no_grad():
        plain = model.represent(emb, mask)
    assert relative_error(actual, expected) < MODEL_TOL
    reverse = expected.sum(-1).permute(1, 2, 0)  # the hook path's token contributions
    assert relative_error(replay, reverse) < MODEL_TOL
    assert relative_error(forward, reverse) < MODEL_TOL
    assert relative_error(value, plain) < 1e-12 and relative_error(value, phi_hook) < 1e-12


def test_torch_encoder_value_projection_gets_the_rule():
    """The canonizer reaches the MultiheadAttention value projection child (applied after the composite)."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, activation="gelu", batch_first=True)
    encoder = randomize_biases(nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)).double().eval()
    x, u = randn(2, 4, 8, seed=13), randn(8, seed=14)

    def relevance() -> torch.Tensor:
        point = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((encoder(point) @ u).sum(), point)
        return x * grad

    with hook_path(Gamma(0.25)).context(encoder):
        expected = relevance()
    with TransformerComposite().context(encoder):
        canonizer = LinearRuleCanonizer(Gamma(0.25))
        targets = list(canonizer.targets(encoder))
        assert any(type(module).__name__ == "ValueProjection" for module in targets)
        with applied(encoder, canonizer):
            actual = relevance()
    assert relative_error(actual, expected) < MODEL_TOL
