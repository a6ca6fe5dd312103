"""``TransformerComposite``: forward values unchanged, exact clean-up, clear refusals, zennit attributors.

Forward outputs with and without the composite agree to 1e-5 relative to the largest value (float64
tiny models agree to ~1e-15; the float32 MiniLM differs by the rounding of eager vs fused attention).
Clean-up is checked by identity: every instance attribute, hook dictionary entry, config attribute and
parameter of every module is the same object (and value) after the context as before.
"""

import re
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from torch import nn
from zennit.attribution import Gradient
from zennit.rules import Epsilon

import bilrp
from bilrp import TransformerComposite, UnsupportedModuleError
from bilrp.architectures import TransformerCanonizer
from bilrp.canonizers import AttentionCanonizer
from reference_models import (
    ToyAttention,
    ToyEncoder,
    assert_close,
    assert_same_state,
    hf_reference,
    input_x_gradient,
    mean_pooling,
    model_state,
    projection,
    randomize_biases,
)
from tiny_models import ARCHITECTURES, HIDDEN, tiny_similarity_model

TEXTS = ["a man is playing a guitar on the street while people listen", "dogs run"]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
pytestmark = [
    pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning"),
    pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning"),
]


def tokenized(model):
    batch = model.tokenize(TEXTS)  # a padded batch: the second text is much shorter
    return batch["input_ids"], batch["attention_mask"]


def encoder_output(model, ids, mask) -> torch.Tensor:
    with torch.no_grad():
        return model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state


# ---------------------------------------------------------------------------------------------- forward values
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_forward_unchanged_on_tiny_models(architecture):
    model = randomize_biases(tiny_similarity_model(architecture, "mean", "dot"))
    ids, mask = tokenized(model)
    expected = encoder_output(model, ids, mask)
    with TransformerComposite().context(model):
        actual = encoder_output(model, ids, mask)
    real = mask.bool()
    assert_close(actual[real], expected[real])


@pytest.mark.parametrize("architecture", ["bert", "roberta", "xlm-roberta", "distilbert"])
def test_sdpa_models_are_explained_on_the_eager_path_with_padding(architecture):
    """Loaded with sdpa: the composite switches to eager attention (same values, padding mask included),
    gives the rule relevance (as with an eager-loaded copy), and switches back on exit."""
    sdpa = randomize_biases(tiny_similarity_model(architecture, "mean", "dot"))
    eager = randomize_biases(tiny_similarity_model(architecture, "mean", "dot"))
    eager.encoder.set_attn_implementation("eager")
    assert sdpa.encoder.config._attn_implementation == "sdpa"
    ids, mask = tokenized(sdpa)
    emb = sdpa.embed(ids, mask).detach()
    u = projection(HIDDEN)
    relevances = []
    for model in (sdpa, eager):
        with TransformerComposite().context(model):
            assert model.encoder.config._attn_implementation == "eager"
            relevances.append(input_x_gradient(lambda x, model=model: model.represent(x, mask) @ u, emb))
            with torch.no_grad():
                output = model.represent(emb, mask) @ u
        with torch.no_grad():
            assert_close(output, eager.represent(emb, mask) @ u)
    assert sdpa.encoder.config._attn_implementation == "sdpa"
    assert_close(relevances[0], relevances[1])
    reference = input_x_gradient(lambda x: mean_pooling(hf_reference(sdpa.encoder, x, mask), mask) @ u, emb)
    assert_close(relevances[0], reference)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_forward_unchanged_on_torch_transformer_encoder(norm_first, batch_first, causal):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, activation="gelu", batch_first=batch_first, norm_first=norm_first)
    encoder = randomize_biases(nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16))).double().eval()
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    padding = torch.tensor([[False] * 6, [False] * 3 + [True] * 3])
    attn_mask = torch.ones(6, 6, dtype=torch.bool).triu(1) if causal else None  # True: may not attend
    inputs = x if batch_first else x.transpose(0, 1)

    def run():
        with torch.no_grad():
            out = encoder(inputs, mask=attn_mask, src_key_padding_mask=padding, is_causal=causal)
        return out if batch_first else out.transpose(0, 1)

    expected = run()
    with TransformerComposite().context(encoder):
        actual = run()
    # real tokens only: PyTorch's nested-tensor fast path (no composite) writes zeros at padded positions
    assert_close(actual[~padding], expected[~padding])


@pytest.mark.slow
def test_forward_unchanged_on_minilm(minilm):
    ids, mask = tokenized(minilm)
    expected, expected_scores = encoder_output(minilm, ids, mask), minilm.score(TEXTS, TEXTS[::-1])
    with TransformerComposite().context(minilm):
        assert minilm.encoder.config._attn_implementation == "eager"
        actual, scores = encoder_output(minilm, ids, mask), minilm.score(TEXTS, TEXTS[::-1])
    assert minilm.encoder.config._attn_implementation == "sdpa"
    assert_close(actual[mask.bool()], expected[mask.bool()])
    assert_close(scores, expected_scores)


# ---------------------------------------------------------------------------------------------- clean-up
class Explained(nn.Module):
    """A scalar per example from a similarity model, callable with the embedding output alone."""

    def __init__(self, model, mask: torch.Tensor) -> None:
        super().__init__()
        self.model, self.mask = model, mask

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.model.represent(emb, self.mask).sum(-1)


def prepared_model(architecture: str):
    """A tiny model in training mode (as a user may leave it), with one instance forward and one hook of
    the user's own, which must survive the composite untouched."""
    model = randomize_biases(tiny_similarity_model(architecture, "qkv", "dot")).train()
    norm = next(module for module in model.modules() if isinstance(module, nn.LayerNorm))
    norm.forward = nn.LayerNorm.forward.__get__(norm)
    model.pooling.register_forward_hook(lambda module, inputs, output: None)
    return model, norm


def assert_restored(model, before, implementation, user_norm) -> None:
    assert_same_state(before, model_state(model))
    assert model.encoder.config._attn_implementation == implementation
    for name, module in model.named_modules():
        hooks = sum(len(getattr(module, key)) for key in HOOK_DICTS)
        assert hooks == (1 if module is model.pooling else 0), f"hooks left on {name!r}"
        if module is not user_norm:
            assert "forward" not in vars(module), f"instance forward left on {name!r}"
            assert module.forward.__func__ is type(module).forward
        assert module.training, f"{name!r} left in eval mode"


COMPOSITES = {"lrp0": lambda: TransformerComposite(), "epsilon": lambda: TransformerComposite(Epsilon(1e-3))}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize(
    ("composite", "exit_by"), [("lrp0", "normal"), ("lrp0", "exception"), ("epsilon", "exception")]
)
def test_context_restores_the_model_exactly(architecture, composite, exit_by):
    model, user_norm = prepared_model(architecture)
    ids, mask = tokenized(model)
    emb = model.embed(ids, mask).detach().requires_grad_(True)
    before, implementation = model_state(model), model.encoder.config._attn_implementation
    with pytest.raises(KeyboardInterrupt) if exit_by != "normal" else nullcontext():
        with COMPOSITES[composite]().context(model):
            assert not model.training and model.encoder.config._attn_implementation == "eager"
            torch.autograd.grad(model.represent(emb, mask).sum(), emb)
            if exit_by != "normal":
                raise KeyboardInterrupt("user pressed ctrl-c")
    assert_restored(model, before, implementation, user_norm)


@pytest.mark.parametrize("exit_by", ["normal", "exception"])
def test_zennit_gradient_attributor_restores_the_torch_encoder(exit_by):
    layer = nn.TransformerEncoderLayer(16, 4, 32, activation=nn.GELU(), batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2).double().train()
    before = model_state(encoder)
    x = torch.randn(1, 5, 16, dtype=torch.float64)
    with pytest.raises(RuntimeError) if exit_by == "exception" else nullcontext():
        with Gradient(encoder, TransformerComposite(Epsilon(1e-3))) as attributor:
            attributor(x, torch.ones_like)
            if exit_by == "exception":
                raise RuntimeError("failure inside the context")
    assert_same_state(before, model_state(encoder))
    assert all(module.training and "forward" not in vars(module) for module in encoder.modules())


def test_zennit_gradient_attributor_gives_the_rule_relevance():
    model = randomize_biases(tiny_similarity_model("bert", "mean", "dot"))
    ids, mask = tokenized(model)
    emb = model.embed(ids, mask).detach()
    with Gradient(Explained(model, mask), TransformerComposite()) as attributor:  # zennit's default attr_output
        _, relevance = attributor(emb)  # relevance, as zennit's own composites give (bilrp.root_rule)
    reference = input_x_gradient(lambda x: mean_pooling(hf_reference(model.encoder, x, mask), mask).sum(-1), emb)
    assert_close(relevance, reference)


# ---------------------------------------------------------------------------------------------- refusals
class Summed(nn.Module):
    """``ToyEncoder`` summed to one number per example, for first-order LRP."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, mask).sum((1, 2))


def toy_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(2, 5, 8), torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])


def test_unknown_attention_class_is_refused_by_what_it_computes():
    """Not by its name: the composite registers, and the certificate names the attention that has no rule."""
    model = Summed(ToyEncoder())
    before = model_state(model)
    x, mask = toy_inputs()
    with pytest.raises(bilrp.CertificateError) as error:
        bilrp.LRP(model).attribute(x, additional_forward_args=(mask,))
    message = str(error.value)
    assert "'encoder.attention.0' (ToyAttention" in message and "custom_architectures.md" in message
    assert "\n" not in message
    assert_same_state(before, model_state(model))


def test_unknown_norm_class_is_refused_by_what_it_computes():
    model = Summed(ToyEncoder())
    composite = TransformerComposite(canonizers=[TransformerCanonizer(), AttentionCanonizer((ToyAttention,))])
    x, mask = toy_inputs()
    with pytest.raises(bilrp.CertificateError, match=r"'encoder\.norm\.0' \(ToyNorm"):
        bilrp.LRP(model, composite=composite).attribute(x, additional_forward_args=(mask,))


def multihead_model() -> nn.Module:
    return nn.Sequential(nn.LayerNorm(8), nn.MultiheadAttention(8, 2, add_bias_kv=True, batch_first=True)).train()


def test_unsupported_multihead_attention_options_are_refused_before_anything_changes():
    model = multihead_model()
    before = model_state(model)
    with pytest.raises(UnsupportedModuleError, match=r"module '1' of class MultiheadAttention.*add_bias_kv"):
        TransformerComposite().register(model)
    assert_same_state(before, model_state(model))


def test_failure_half_way_through_the_canonizers_leaves_the_model_untouched():
    """Without the up-front check, a canonizer failing after others were applied must undo them all."""
    model = multihead_model()
    before = model_state(model)
    with pytest.raises(UnsupportedModuleError):
        with TransformerComposite(strict=False).context(model):
            pass
    assert_same_state(before, model_state(model))
    assert model.training and "forward" not in vars(model[0])


# ---------------------------------------------------------------------------------------------- the example
def test_custom_transformer_example_runs_and_conserves():
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "custom_transformer.py")], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    sentences = [line for line in lines if line.startswith("sentence ")]
    for header, words in zip(sentences, [8, 5], strict=True):  # one relevance line per word
        score = float(re.search(r"score=([-+\d.]+)", header).group(1))
        tokens = lines[lines.index(header) + 1 :]
        summary = next(line for line in tokens if "sum of relevance" in line)
        per_token = [float(line.split()[-1]) for line in tokens[: tokens.index(summary)]]
        assert len(per_token) == words
        total, bias = (float(v) for v in re.search(r"relevance ([-+\d.]+), bias share ([-+\d.]+)", summary).groups())
        assert abs(sum(per_token) - total) < 1e-5 and abs(total + bias - score) < 1e-5
    error = float(re.search(r"conservation with biases zeroed: relative error=([-+\d.e]+)", result.stdout).group(1))
    assert error < 1e-5
