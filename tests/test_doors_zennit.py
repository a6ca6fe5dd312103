"""The zennit door (issue 21, case 1): bilrp's composite driven by zennit's own attributors is exact or refused.

A zennit user writes ``Gradient(model, bilrp.TransformerComposite())`` on their own Transformer. These tests
check, against independent references (the model's own output, ``bilrp.LRP``, zennit's ``EpsilonPlus``):

- models with a block no rule covers (a hand-written softmax attention, RMSNorm, SwiGLU, ALiBi attention)
  are refused with a one-line ``CertificateError`` naming the module that ``bilrp.LRP`` names, under
  ``Gradient``, ``SmoothGrad`` and ``IntegratedGradients``; the model is left exactly as it was;
- before the guard, the same call returned numbers that do not add up to the output (shown with the bare rules);
- supported models give relevance equal to ``bilrp.LRP`` (float64, 1e-8) that conserves, and the output kind
  is zennit's: one loop over ``[EpsilonPlus(), TransformerComposite()]`` gives relevance for both;
- ``EpsilonPlus(canonizers=[AttentionCanonizer(...)])`` keeps bilrp's default canonizers (issue 21, case 7).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from zennit.attribution import Gradient, IntegratedGradients, SmoothGrad
from zennit.composites import EpsilonPlus
from zennit.rules import Epsilon

import bilrp
from bilrp import CertificateError, TransformerComposite
from bilrp.architectures import TransformerCanonizer
from bilrp.canonizers import AttentionCanonizer
from custom_blocks import CULPRITS, SoftmaxAttention, custom_transformer, embeddings
from reference_models import assert_close, assert_same_state, model_state, randomize_biases
from tiny_models import HIDDEN, tiny_encoder, tiny_similarity_model, zero_biases

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ATTRIBUTORS = {
    "gradient": Gradient,
    "smoothgrad": lambda model, composite: SmoothGrad(model, composite, n_iter=3),
    "integrated": lambda model, composite: IntegratedGradients(model, composite, n_iter=3),
}


def blamed(message: str) -> str:
    """``'name' (Class`` of the module a certificate error names."""
    return re.search(r"the first module whose output breaks it is (.*?), error", message).group(1)


class Embedded(nn.Module):
    """What a zennit user writes around a similarity model: the sentence embedding from the embedding output."""

    def __init__(self, model: bilrp.SimilarityModel, mask: torch.Tensor) -> None:
        super().__init__()
        self.model, self.mask = model, mask

    def forward(self, embeddings: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.represent(embeddings, self.mask if mask is None else mask)


def lrp(model: Embedded, emb: torch.Tensor, target: int | None = None) -> torch.Tensor:
    """``bilrp.LRP``'s relevance of embedding dimension ``target``, or of their sum (``None``).

    The mask goes in ``additional_forward_args``, since LRP doubles the batch for its certificate.
    """
    explained = model if target is not None else lambda emb, mask: model(emb, mask).sum(-1)
    return bilrp.LRP(explained, composite=TransformerComposite(), model=model).attribute(emb, target, (model.mask,))


def embedded_bert(dtype: torch.dtype = torch.float64, biases: str = "random") -> tuple[nn.Module, torch.Tensor]:
    model = tiny_similarity_model("bert", "mean", "dot", dtype=dtype)
    model = randomize_biases(model) if biases == "random" else zero_biases(model)
    batch = model.tokenize(["a man is playing a guitar on the street", "dogs run"])
    emb = model.embed(batch["input_ids"], batch["attention_mask"]).detach()
    return Embedded(model, batch["attention_mask"]), emb


def mlp() -> nn.Module:
    """A ReLU network with zero biases: a model on which zennit's EpsilonPlus and bilrp's rules both apply."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1)).double()
    return zero_biases(model)


# ---------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("name", list(CULPRITS))
def test_custom_blocks_do_not_conserve_under_the_bare_rules(name):
    """The silent wrong number the guard now refuses: with biases zeroed, input x gradient misses the output."""
    model, x = custom_transformer(name, biases=False), embeddings().requires_grad_(True)
    with TransformerComposite().context(model):  # the bare rules: what zennit's Gradient returned before the guard
        output = model(x)
        (gradient,) = torch.autograd.grad(output.sum(), x)
    error = float(((x.detach() * gradient).sum((1, 2)) - output.detach()).abs().max() / output.detach().abs().max())
    assert error > 0.05, f"{name}: relative conservation error only {error:.1e}"


@pytest.mark.parametrize("attributor", list(ATTRIBUTORS))
@pytest.mark.parametrize("name", list(CULPRITS))
def test_custom_blocks_are_refused_naming_the_module_under_zennit_attributors(name, attributor):
    model, x = custom_transformer(name), embeddings()
    with pytest.raises(CertificateError) as refused:
        ATTRIBUTORS[attributor](model, TransformerComposite())(x)
    message = str(refused.value)
    module, kind = CULPRITS[name]
    assert f"{module!r} ({kind}," in message and "custom_architectures.md" in message and "\n" not in message
    with pytest.raises(CertificateError) as by_bilrp:
        bilrp.LRP(model, composite=TransformerComposite()).attribute(x)
    assert blamed(message) == blamed(str(by_bilrp.value))  # the same module, named as bilrp.LRP names it


@pytest.mark.parametrize("how", ["with", "call"])
def test_model_is_restored_after_a_refusal(how):
    model, x = custom_transformer("softmax").train(), embeddings()
    before, output = model_state(model), model.eval()(x).detach()
    model.train()
    with pytest.raises(CertificateError):
        if how == "with":
            with Gradient(model, TransformerComposite()) as attributor:
                attributor(x)
        else:
            Gradient(model, TransformerComposite())(x)
    assert_same_state(before, model_state(model))
    assert all(module.training and "forward" not in vars(module) for module in model.modules())
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    assert not any(getattr(module, key) for module in model.modules() for key in hooks)
    assert torch.equal(model.eval()(x), output)


def test_backward_hook_composite_is_refused_by_attributors_before_anything_changes():
    model, x = custom_transformer("supported"), embeddings()
    before = model_state(model)
    with pytest.raises(ValueError, match="backward_hooks"):
        Gradient(model, TransformerComposite(Epsilon(0.1), backward_hooks=True))(x)
    assert_same_state(before, model_state(model))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused_with_what_to_do(dtype):
    """Its tolerance (0.5 for float16) could not tell a missing rule from rounding."""
    model, x = custom_transformer("supported", dtype=dtype), embeddings(dtype=dtype)
    with pytest.raises(CertificateError, match=r"model\.float\(\) with float32 inputs"):
        Gradient(model, TransformerComposite())(x)


def test_a_backward_hook_that_changes_the_gradient_is_refused_in_the_backward_pass():
    """The forward pass is affine, the gradient is not its Jacobian: conservation (not homogeneity) catches it."""
    model, x = custom_transformer("supported"), embeddings()
    handle = model.blocks[0].feed_forward[0].register_full_backward_hook(lambda m, gi, go: (2 * gi[0],))
    try:
        with pytest.raises(CertificateError, match=r"does not add up .* a backward hook") as refused:
            Gradient(model, TransformerComposite())(x)
    finally:
        handle.remove()
    assert "\n" not in str(refused.value)


# ---------------------------------------------------------------------------------------------- exact answers
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_supported_model_gives_bilrp_lrp_relevance_under_gradient(dtype):
    model, emb = embedded_bert(dtype)
    with Gradient(model, TransformerComposite()) as attributor:
        output, relevance = attributor(emb)
    expected = lrp(model, emb)
    assert_close(relevance, expected, rtol=1e-8 if dtype == torch.float64 else 1e-5)
    assert_close(output, model(emb))  # the model's own output (eager attention inside the composite: 1e-5)


def test_supported_model_conserves_with_biases_zeroed():
    model, emb = embedded_bert(biases="zero")
    output, relevance = Gradient(model, TransformerComposite())(emb)
    assert_close(relevance.sum((1, 2)), output.sum(-1), rtol=1e-8)


def test_one_hot_output_relevance_is_bilrp_lrp_for_that_target():
    model, emb = embedded_bert()
    target = 3
    picked = lambda output: torch.nn.functional.one_hot(torch.tensor(target), output.shape[-1]) * output  # noqa: E731
    _, relevance = Gradient(model, TransformerComposite(), attr_output=picked)(emb)
    expected = lrp(model, emb, target)
    assert_close(relevance, expected, rtol=1e-8)


def test_an_output_whose_entries_cancel_is_not_refused_in_float32():
    """A normalised output sums to about 0, so do its relevances: conservation is relative to the terms' size."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.GELU(), nn.Linear(64, 64), nn.LayerNorm(64, elementwise_affine=False))
    x = torch.randn(4, 8)
    output, relevance = Gradient(model.eval(), TransformerComposite())(x)
    assert float(output.detach().sum(1).abs().max()) < 1e-5  # the contraction with zennit's default cancels
    inputs = x.clone().requires_grad_(True)
    with TransformerComposite().context(model):  # the bare rules: input x LRP gradient of the summed output
        (gradient,) = torch.autograd.grad(model(inputs).sum(), inputs)
    assert_close(relevance, x * gradient, rtol=1e-5)


def test_smoothgrad_is_the_mean_of_bilrp_lrp_relevance_at_its_noisy_points():
    model, emb = embedded_bert()
    torch.manual_seed(5)
    _, relevance = SmoothGrad(model, TransformerComposite(), n_iter=3)(emb)
    torch.manual_seed(5)  # zennit's noise, drawn again: std 0.1 of each example's range, the last point noise-free
    std = 0.1 * (emb.amax((1, 2), keepdim=True) - emb.amin((1, 2), keepdim=True))
    points = [emb + torch.randn_like(emb) * std for _ in range(2)] + [emb]
    assert_close(relevance, sum(lrp(model, point) for point in points) / 3, rtol=1e-8)


@pytest.mark.parametrize("attr_output", ["output", "ones"])
def test_one_loop_over_zennit_and_bilrp_composites_gives_relevance_for_both(attr_output):
    model, x = mlp(), torch.randn(3, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    given = {"output": None, "ones": torch.ones_like}[attr_output]
    relevances = {}
    for composite in [EpsilonPlus(), TransformerComposite()]:
        with Gradient(model, composite, attr_output=given) as attributor:
            output, relevances[type(composite).__name__] = attributor(x)
    entering = output if attr_output == "output" else torch.ones_like(output)  # relevance given to the output
    for relevance in relevances.values():
        assert_close(relevance.sum(1), entering.squeeze(-1), rtol=1e-4)  # zero biases: all of it arrives
    assert_close(relevances["TransformerComposite"], relevances["EpsilonPlus"], rtol=1e-4)
    if attr_output == "output":
        assert_close(relevances["TransformerComposite"], bilrp.LRP(model, TransformerComposite()).attribute(x), 1e-6)


def test_zennit_returns_relevance_only_where_the_input_meets_a_rule_first():
    """The fact behind the output kind: a LayerNorm (no zennit rule) before the first Linear passes a gradient."""
    model = nn.Sequential(nn.LayerNorm(8), *mlp()).double()
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    output, attribution = Gradient(model, EpsilonPlus())(x)
    output = output.detach()
    assert float((attribution.sum(1) - output.squeeze(-1)).abs().max()) > 0.1 * float(output.abs().max())
    output, relevance = Gradient(model, TransformerComposite())(x)  # bilrp's rule LN covers it
    assert_close(relevance.sum(1), output.squeeze(-1), rtol=1e-8)


def test_outputs_in_dicts_get_the_same_relevance_through_register():
    """zennit's register/remove idiom on a model returning a dict of tensors (HF outputs are dicts too)."""
    base, x = custom_transformer("supported"), embeddings()

    class Named(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = base

        def forward(self, inputs: torch.Tensor) -> dict:
            return {"score": self.base(inputs), "length": torch.tensor(inputs.shape[1])}

    model, composite = Named(), TransformerComposite()
    inputs = x.clone().requires_grad_(True)
    composite.register(model)
    try:
        score = model(inputs)["score"]
        (relevance,) = torch.autograd.grad(score, inputs, score)
    finally:
        composite.remove()
    assert_close(relevance, bilrp.LRP(base, composite=TransformerComposite()).attribute(x), rtol=1e-8)


def test_a_huggingface_output_gets_relevance_at_inputs_embeds_through_register():
    encoder = randomize_biases(tiny_encoder("bert"))
    x = torch.randn(2, 5, HIDDEN, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    inputs, composite = x.clone().requires_grad_(True), TransformerComposite()
    composite.register(encoder)
    try:
        hidden = encoder(inputs_embeds=inputs, attention_mask=mask).last_hidden_state
        (relevance,) = torch.autograd.grad(hidden, inputs, hidden)  # zennit's default: the output's relevance
    finally:
        composite.remove()
    summed = lambda e, m: encoder(inputs_embeds=e, attention_mask=m).last_hidden_state.sum((1, 2))  # noqa: E731
    expected = bilrp.LRP(summed, composite=TransformerComposite(), model=encoder).attribute(x, None, (mask,))
    assert_close(relevance, expected, rtol=1e-8)


# ---------------------------------------------------------------------------------------------- case 7
def test_epsilon_plus_with_an_attention_canonizer_keeps_bilrps_default_canonizers():
    model, x = custom_transformer("softmax"), embeddings()
    own = AttentionCanonizer((SoftmaxAttention,))
    relevance = bilrp.LRP(model, composite=EpsilonPlus(canonizers=[own])).attribute(x)
    explicit = TransformerComposite(Epsilon(1e-6), canonizers=[TransformerCanonizer(), own])
    with Gradient(model, explicit) as attributor:
        _, expected = attributor(x)
    assert_close(relevance, expected, rtol=1e-8)


@pytest.mark.parametrize("door", ["zennit", "bilrp"])
def test_a_composite_without_bilrps_default_canonizer_says_what_to_pass(door):
    """The covered LayerNorm is named, with what to pass, not as a computation no rule covers."""
    model, x = custom_transformer("softmax"), embeddings()
    composite = TransformerComposite(canonizers=[AttentionCanonizer((SoftmaxAttention,))])
    with pytest.raises(CertificateError) as refused:
        Gradient(model, composite)(x) if door == "zennit" else bilrp.LRP(model, composite=composite).attribute(x)
    message = str(refused.value)
    assert "'blocks.0.norm1' (LayerNorm," in message and "canonizers=[TransformerCanonizer(), ...]" in message
    assert "no bilrp rule covers" not in message and "\n" not in message


# ---------------------------------------------------------------------------------------------- the example
def test_zennit_attributor_example_runs_conserves_and_refuses():
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "zennit_attributor.py")], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    found = re.search(r"score ([-+\d.]+) = sum of relevance ([-+\d.]+) \+ bias share ([-+\d.]+)", result.stdout)
    score, total, bias = (float(value) for value in found.groups())
    per_token = [float(line.split()[-1]) for line in lines[: lines.index(found.group(0))]]
    assert len(per_token) == 8 and abs(sum(per_token) - total) < 1e-5 and abs(total + bias - score) < 1e-5
    looped = next(line for line in lines if line.startswith("TransformerComposite"))
    assert abs(float(re.search(r"sum of relevance ([-+\d.]+)", looped).group(1)) - total) < 1e-5
    refused = next(line for line in lines if line.startswith("refused: "))
    assert "'attention' (HandWrittenAttention," in refused
