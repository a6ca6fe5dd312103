"""The conservation certificate: exact results pass in every mode, any non-linearity without a rule is refused.

Unknown modules are judged by what they compute, never by their names: a custom attention called ``MHA``,
``TokenMixer`` or ``FlashMixer`` (the last two through ``F.scaled_dot_product_attention``), a ``Scaler``
multiplying two input-dependent tensors and a GeGLU feed-forward block are refused in every engine mode,
with the first module whose output breaks the certificate named by its path. Modules that are affine
(a masked-mean mixer, an eval-mode BatchNorm head) pass, and their relevance equals the per-dimension
reference (tests/references.py) to 1e-8 in float64.
"""

import pytest
import torch
from torch import nn

import bilrp
from bilrp import LRP, BiLRP, SimilarityModel
from bilrp.certificate import CertificateError, certificate_error, tolerance
from own_encoders import MHA, FeedForward, FlashMixer, GeGLU, MeanMixer, OwnEncoder, TokenMixer
from references import per_dimension_bilrp
from tiny_models import tiny_similarity_model, tokenizer

MODES = ("replay", "forward", "reverse")
TEXTS = ("a man is playing a guitar on the street", "dogs run fast")


def own_model(**options) -> SimilarityModel:
    encoder = OwnEncoder(**options).double().eval()
    return SimilarityModel(encoder, tokenizer(), pooling="mean", similarity="dot", max_length=32, name="own")


def pair_inputs(model: SimilarityModel):
    a, b = model.tokenize([TEXTS[0]]), model.tokenize([TEXTS[1]])
    emb_a = model.embed(a["input_ids"], a["attention_mask"]).detach()
    emb_b = model.embed(b["input_ids"], b["attention_mask"]).detach()
    return (emb_a, emb_b), (a["attention_mask"], b["attention_mask"])


UNRULED = {
    "MHA": (dict(mixer=MHA), "encoder.blocks.0.mixer", "MHA"),
    "TokenMixer (sdpa)": (dict(mixer=TokenMixer), "encoder.blocks.0.mixer", "TokenMixer"),
    "FlashMixer (causal sdpa)": (dict(mixer=FlashMixer), "encoder.blocks.0.mixer", "FlashMixer"),
    "Scaler": (dict(scaler=True), "encoder.blocks.0.scaler", "Scaler"),
    "GeGLU": (dict(feed_forward=GeGLU), "encoder.blocks.0.feed_forward", "GeGLU"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", UNRULED)
def test_unruled_nonlinearity_is_refused_naming_the_module(case, mode):
    options, path, cls = UNRULED[case]
    model = own_model(**options)
    inputs, masks = pair_inputs(model)
    with pytest.raises(CertificateError) as error:
        BiLRP(model, mode=mode).attribute(inputs, additional_forward_args=masks)
    message = str(error.value)
    assert f"'{path}' ({cls}" in message, message
    assert "custom_architectures.md" in message and "\n" not in message
    assert "mode=" not in message  # never suggests another mode


def test_without_certificate_the_geglu_case_is_silently_non_conserving():
    """The regression: a bias-free GeGLU model explained in forward mode does not add up to its score."""
    model = own_model(feed_forward=GeGLU)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
    inputs, masks = pair_inputs(model)
    relevance, delta = BiLRP(model, mode="forward", certify=False).attribute(
        inputs, additional_forward_args=masks, return_convergence_delta=True
    )
    assert abs(float(delta)) > 1e-3 * abs(float(relevance.sum()))
    with pytest.raises(CertificateError):
        BiLRP(model, mode="forward").attribute(inputs, additional_forward_args=masks)


class BatchNormHead(nn.Module):
    """Mean pooling, then an eval-mode ``BatchNorm1d``: affine, needs no rule and must not be refused."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim)
        with torch.no_grad():
            self.norm.running_mean.normal_()
            self.norm.running_var.uniform_(0.5, 2.0)
            self.norm.weight.normal_()

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask[..., None].to(hidden.dtype)
        return self.norm((hidden * weights).sum(1) / weights.sum(1))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("head", ["mean", "batchnorm"])
def test_affine_own_modules_pass_and_equal_the_per_dimension_reference(head, mode):
    model = own_model(mixer=MeanMixer, feed_forward=FeedForward)
    if head == "batchnorm":
        model.pooling = BatchNormHead(16).double().eval()
    inputs, masks = pair_inputs(model)
    relevance = BiLRP(model, mode=mode).attribute(inputs, additional_forward_args=masks)
    expected = per_dimension_bilrp(model, *inputs, *masks)
    assert torch.allclose(relevance, expected, atol=1e-8 * float(expected.abs().max()))


@pytest.mark.parametrize("mode", MODES)
def test_known_architecture_passes_in_every_mode(mode):
    model = tiny_similarity_model("bert", "mean", "cosine")
    inputs, masks = pair_inputs(model)
    relevance, delta = BiLRP(model, mode=mode).attribute(
        inputs, additional_forward_args=masks, return_convergence_delta=True
    )
    score = model(*inputs, *masks)
    assert torch.allclose(relevance.sum((1, 2)) + delta, score, atol=1e-12)


def test_tolerance_is_dtype_aware():
    assert tolerance(torch.float64) < 1e-6 < tolerance(torch.float32) < 1e-2


def test_certificate_error_of_an_affine_map_is_rounding_only():
    torch.manual_seed(0)
    w, b = torch.randn(5, 7, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    x = torch.randn(3, 4, 5, dtype=torch.float64)  # batch 3, 4 "tokens"
    f = lambda t: t.sum(1) @ w + b  # noqa: E731
    contributions = torch.stack([x[:, i] @ w for i in range(4)], 1)
    error = certificate_error(contributions.sum(1), f(torch.zeros_like(x)), f(x), f(-2 * x))
    assert error < 1e-14
    bent = certificate_error(contributions.sum(1), f(torch.zeros_like(x)), torch.tanh(f(x)), f(-2 * x))
    assert bent > 1e-2


# ---------------------------------------------------------------------------------------------- first-order LRP
class Projected(nn.Module):
    def __init__(self, model: SimilarityModel) -> None:
        super().__init__()
        self.model = model
        self.u = torch.linspace(-1, 1, model.represent(*_one(model)).shape[-1], dtype=torch.float64)

    def forward(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model.represent(emb, mask) @ self.u


def _one(model):
    batch = model.tokenize([TEXTS[0]])
    return model.embed(batch["input_ids"], batch["attention_mask"]).detach(), batch["attention_mask"]


def test_first_order_lrp_is_certified_and_refuses_an_unruled_module():
    honest = Projected(tiny_similarity_model("bert", "mean", "dot"))
    emb, mask = _one(honest.model)
    relevance, delta = LRP(honest).attribute(emb, additional_forward_args=(mask,), return_convergence_delta=True)
    assert torch.allclose(relevance.sum() + delta, honest(emb, mask), atol=1e-12)
    broken = Projected(own_model(mixer=MHA))
    emb, mask = _one(broken.model)
    with pytest.raises(CertificateError, match=r"'model\.encoder\.blocks\.0\.mixer' \(MHA"):
        LRP(broken).attribute(emb, additional_forward_args=(mask,))


def test_first_order_lrp_of_a_similarity_is_refused():
    """A similarity is bilinear in the two texts: first-order relevance of it does not conserve."""
    model = tiny_similarity_model("bert", "mean", "dot")
    inputs, masks = pair_inputs(model)
    with pytest.raises(CertificateError, match=r"'<root>' \(SimilarityModel"):
        LRP(model).attribute(inputs, additional_forward_args=masks)


def test_certificate_error_is_exported():
    assert bilrp.CertificateError is CertificateError


class NaNPooling(nn.Module):
    """Mean pooling that turns one dimension into NaN: a NaN must never be certified."""

    def forward(self, hidden, mask):
        pooled = hidden.mean(1)
        return torch.cat([pooled[:, :1] * float("nan"), pooled[:, 1:]], dim=-1)


@pytest.mark.parametrize("mode", MODES)
def test_nan_is_never_certified(mode):
    model = tiny_similarity_model("bert", "mean", "dot")
    model.pooling = NaNPooling()
    inputs, masks = pair_inputs(model)
    with pytest.raises(CertificateError, match="NaN or infinite"):
        BiLRP(model, mode=mode).attribute(inputs, additional_forward_args=masks)
    assert certificate_error(*(torch.full((1, 2), float("nan")),) * 4) == float("inf")
