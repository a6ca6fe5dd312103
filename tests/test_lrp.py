"""First-order LRP through ``TransformerComposite`` against independently written references.

The explained output is a fixed random projection ``u . phi`` of the pooled embedding ``phi``; relevance
is gradient x input on the embedding output. References (tests/reference_models.py) hand-code the rules
without bilrp. Tolerance: 1e-5 relative to the largest reference value (float64 models).
"""

import copy

import pytest
import torch
from torch import nn
from zennit.rules import Epsilon

import bilrp
from bilrp import TransformerComposite
from reference_models import (
    assert_close,
    bert_reference,
    gradient,
    hf_reference,
    input_x_gradient,
    mean_pooling,
    projection,
    qkv_pooling_reference,
    randomize_biases,
    torch_encoder_reference,
)
from tiny_models import ARCHITECTURES, HIDDEN, tiny_similarity_model, zero_biases

TEXTS = ["a man is playing a guitar on the street while people listen", "dogs run"]


def hf_inputs(model: bilrp.SimilarityModel) -> tuple[torch.Tensor, torch.Tensor]:
    batch = model.tokenize(TEXTS)  # a padded batch
    return model.embed(batch["input_ids"], batch["attention_mask"]).detach(), batch["attention_mask"]


class Projected(nn.Module):
    """``u . represent(emb, mask)``: a scalar per example, for bilrp.LRP."""

    def __init__(self, model: bilrp.SimilarityModel, u: torch.Tensor) -> None:
        super().__init__()
        self.model, self.u = model, u

    def forward(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model.represent(emb, mask) @ self.u


def composite_relevance(model: bilrp.SimilarityModel, emb: torch.Tensor, mask: torch.Tensor, u: torch.Tensor):
    with TransformerComposite().context(model):
        return input_x_gradient(lambda x: model.represent(x, mask) @ u, emb)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_relevance_equals_reference(architecture):
    model = randomize_biases(tiny_similarity_model(architecture, "mean", "dot"))
    emb, mask = hf_inputs(model)
    u = projection(HIDDEN)
    expected = input_x_gradient(lambda x: mean_pooling(hf_reference(model.encoder, x, mask), mask) @ u, emb)
    assert_close(composite_relevance(model, emb, mask, u), expected)
    # the comparison can fail: plain gradient x input (no rules) is far from the reference
    plain = input_x_gradient(lambda x: model.represent(x, mask) @ u, emb)
    assert (plain - expected).abs().max() > 1e-3 * expected.abs().max()


def test_qkv_pooling_relevance_equals_reference():
    model = randomize_biases(tiny_similarity_model("bert", "qkv", "dot"))
    emb, mask = hf_inputs(model)
    u = projection(HIDDEN)

    def reference(x):
        return qkv_pooling_reference(model.pooling, hf_reference(model.encoder, x, mask), mask) @ u

    assert_close(composite_relevance(model, emb, mask, u), input_x_gradient(reference, emb))


def tiny_torch_encoder(norm_first: bool, activation: str, final_norm: bool) -> nn.TransformerEncoder:
    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(
        16, 4, 32, dropout=0.1, activation=activation, batch_first=True, norm_first=norm_first
    )
    encoder = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16) if final_norm else None, enable_nested_tensor=False)
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
    return randomize_biases(encoder).double().eval()


def torch_case(encoder: nn.TransformerEncoder):
    """A padded batch for ``encoder`` and the explained output ``u . mean-pooled state``."""
    x = torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    u = projection(16)

    def explained(h: torch.Tensor) -> torch.Tensor:
        return mean_pooling(encoder(h, src_key_padding_mask=mask == 0), mask) @ u

    return x, mask, u, explained


@pytest.mark.parametrize(
    ("norm_first", "activation", "final_norm"), [(False, "relu", False), (True, "gelu", True), (False, "gelu", True)]
)
def test_torch_transformer_encoder_relevance_equals_reference(norm_first, activation, final_norm):
    encoder = tiny_torch_encoder(norm_first, activation, final_norm)
    x, mask, u, explained = torch_case(encoder)
    with TransformerComposite().context(encoder):
        relevance = input_x_gradient(explained, x)
    expected = input_x_gradient(
        lambda h: mean_pooling(torch_encoder_reference(encoder, h, mask, activation), mask) @ u, x
    )
    assert_close(relevance, expected)


def test_epsilon_linear_rule_equals_reference():
    """``TransformerComposite(linear_rule=Epsilon(eps))``: LRP-epsilon on every Linear, LN/AH/GA elsewhere."""
    model = randomize_biases(tiny_similarity_model("bert", "mean", "dot"))
    emb, mask = hf_inputs(model)
    u = projection(HIDDEN)
    with TransformerComposite(linear_rule=Epsilon(0.05)).context(model):
        relevance = input_x_gradient(lambda x: model.represent(x, mask) @ u, emb)
    expected = input_x_gradient(lambda x: mean_pooling(bert_reference(model.encoder, x, mask, 0.05), mask) @ u, emb)
    assert_close(relevance, expected)
    lrp0 = input_x_gradient(lambda x: mean_pooling(bert_reference(model.encoder, x, mask), mask) @ u, emb)
    assert (lrp0 - expected).abs().max() > 1e-3 * expected.abs().max()  # epsilon does change the relevance


def test_epsilon_linear_rule_reaches_the_multihead_attention_value_projection():
    """``nn.MultiheadAttention`` keeps its input projection as a raw parameter; the canonizer routes the
    value part through an ``nn.Linear`` child so that the composite's linear rule applies there too."""
    encoder = tiny_torch_encoder(norm_first=False, activation="gelu", final_norm=True)
    x, mask, u, explained = torch_case(encoder)
    with TransformerComposite(linear_rule=Epsilon(0.05)).context(encoder):
        relevance = input_x_gradient(explained, x)
    expected = input_x_gradient(
        lambda h: mean_pooling(torch_encoder_reference(encoder, h, mask, "gelu", epsilon=0.05), mask) @ u, x
    )
    assert_close(relevance, expected)
    lrp0 = input_x_gradient(lambda h: mean_pooling(torch_encoder_reference(encoder, h, mask, "gelu"), mask) @ u, x)
    assert (lrp0 - expected).abs().max() > 1e-3 * expected.abs().max()  # epsilon does change the relevance


def test_multihead_attention_parameter_gradients_are_unchanged_inside_the_context():
    """The value projection child shares the attention's parameters; gradients still reach them."""
    encoder = tiny_torch_encoder(norm_first=True, activation="relu", final_norm=False)
    x, _, _, explained = torch_case(encoder)
    weight = encoder.layers[0].self_attn.in_proj_weight
    with TransformerComposite().context(encoder):
        (inside,) = torch.autograd.grad(explained(x).sum(), weight)
    value_rows = slice(2 * weight.shape[1], None)
    assert inside[value_rows].abs().max() > 0
    assert torch.equal(inside[: value_rows.start], torch.zeros_like(inside[: value_rows.start]))  # rule AH


@pytest.mark.slow
def test_minilm_relevance_equals_reference(minilm):
    model = copy.deepcopy(minilm).double()
    emb, mask = hf_inputs(model)
    u = projection(model.encoder.config.hidden_size)
    expected = input_x_gradient(lambda x: mean_pooling(hf_reference(model.encoder, x, mask), mask) @ u, emb)
    assert_close(composite_relevance(model, emb, mask, u), expected)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_conservation_without_biases(architecture):
    model = zero_biases(tiny_similarity_model(architecture, "mean", "dot"))
    emb, mask = hf_inputs(model)
    u = projection(HIDDEN)
    relevance = composite_relevance(model, emb, mask, u)
    with torch.no_grad():
        output = model.represent(emb, mask) @ u
    assert_close(relevance.sum((1, 2)), output)


def test_torch_encoder_conservation_without_biases():
    encoder = zero_biases(tiny_torch_encoder(True, "gelu", True))
    x, _, _, explained = torch_case(encoder)
    with TransformerComposite().context(encoder):
        relevance = input_x_gradient(explained, x)
    with torch.no_grad():
        assert_close(relevance.sum((1, 2)), explained(x))


@pytest.mark.parametrize("architecture", ["bert", "gpt-neo"])
def test_lrp_attribution_relevance_and_delta(architecture):
    model = randomize_biases(tiny_similarity_model(architecture, "mean", "dot"))
    emb, mask = hf_inputs(model)
    u = projection(HIDDEN)
    explained = Projected(model, u)
    relevance, delta = bilrp.LRP(explained).attribute(
        emb, additional_forward_args=(mask,), return_convergence_delta=True
    )
    expected = input_x_gradient(lambda x: mean_pooling(hf_reference(model.encoder, x, mask), mask) @ u, emb)
    assert_close(relevance, expected)
    with torch.no_grad():
        output = explained(emb, mask)  # outside the composite: the model's own forward
    assert_close(delta, output - expected.sum((1, 2)))
    assert delta.abs().min() > 1e-6 * output.abs().max()  # biases do take a share


@pytest.mark.parametrize("architecture", [*ARCHITECTURES, "torch"])
def test_forward_mode_agrees_with_reverse_mode(architecture):
    """Under the rules, the JVP along any tangent equals the rule gradient (reverse mode) dotted with it."""
    if architecture == "torch":
        module = tiny_torch_encoder(False, "gelu", True)
        x, _, _, explained = torch_case(module)
    else:
        module = randomize_biases(tiny_similarity_model(architecture, "qkv", "dot"))
        x, mask = hf_inputs(module)
        u = projection(HIDDEN)

        def explained(h):
            return module.represent(h, mask) @ u

    tangent = torch.randn(x.shape, generator=torch.Generator().manual_seed(11), dtype=x.dtype)
    with TransformerComposite().context(module):
        reverse = (gradient(explained, x) * tangent).sum((1, 2))
        _, forward = torch.func.jvp(explained, (x,), (tangent,))
    assert_close(forward.detach(), reverse)
