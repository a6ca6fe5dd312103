"""Each canonizer on its own: forward values unchanged, the rule relevance of the references, exact restore.

Tolerance: 1e-5 relative to the largest value (float64 tiny models; the agreement is ~1e-15).
"""

from functools import partial

import pytest
import torch
from torch import nn
from transformers.models.gpt_neo.modeling_gpt_neo import GPTNeoFlashAttention2

from bilrp import TransformerComposite
from bilrp.architectures import (
    ARCHITECTURES as REGISTRY,
)
from bilrp.architectures import (
    BertCanonizer,
    DistilBertCanonizer,
    GPTNeoCanonizer,
    MPNetCanonizer,
    RobertaCanonizer,
    TransformerCanonizer,
)
from bilrp.canonizers import (
    ActivationCanonizer,
    AttentionCanonizer,
    EvalEagerCanonizer,
    InstanceAttributeCanonizer,
    LayerNormCanonizer,
    ScoreProjectionCanonizer,
)
from bilrp.rules import constant_rms_norm
from reference_models import (
    ToyAttention,
    ToyEncoder,
    ToyNorm,
    assert_close,
    assert_same_state,
    hf_reference,
    input_x_gradient,
    mean_pooling,
    model_state,
    projection,
    randomize_biases,
    torch_encoder_reference,
    toy_reference,
)
from tiny_models import ARCHITECTURES, HIDDEN, tiny_encoder, tiny_similarity_model, zero_biases

TEXTS = ["a man is playing a guitar on the street while people listen", "dogs run"]
FAMILY = {
    "bert": BertCanonizer,
    "roberta": RobertaCanonizer,
    "xlm-roberta": RobertaCanonizer,
    "mpnet": MPNetCanonizer,
    "distilbert": DistilBertCanonizer,
    "gpt-neo": GPTNeoCanonizer,
}


def family_types(family) -> tuple[type, ...]:
    """The attention classes of an architecture canonizer's registry entry."""
    return REGISTRY[family.families[0]].attention_types()


def hf_case(architecture: str):
    model = randomize_biases(tiny_similarity_model(architecture, "mean", "dot"))
    batch = model.tokenize(TEXTS)
    mask = batch["attention_mask"]
    return model, model.embed(batch["input_ids"], mask).detach(), mask


def relevance_and_output(model, emb, mask, canonizers):
    u = projection(HIDDEN)
    with TransformerComposite(canonizers=canonizers).context(model):
        relevance = input_x_gradient(lambda x: model.represent(x, mask) @ u, emb)
        with torch.no_grad():
            output = model.represent(emb, mask) @ u
    reference = input_x_gradient(lambda x: mean_pooling(hf_reference(model.encoder, x, mask), mask) @ u, emb)
    return relevance, output, reference


# ---------------------------------------------------------------------------------------------- per architecture
SINGLE_CANONIZERS = {
    "family": lambda types, family: family(),
    "eval+eager": lambda types, family: EvalEagerCanonizer(),
    "attention": lambda types, family: AttentionCanonizer(types),
    "score projections": lambda types, family: ScoreProjectionCanonizer(types),
    "layer norm": lambda types, family: LayerNormCanonizer(),
    "activation": lambda types, family: ActivationCanonizer(),
}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("canonizer", SINGLE_CANONIZERS)
def test_every_canonizer_keeps_forward_values(architecture, canonizer):
    model, emb, mask = hf_case(architecture)
    family = FAMILY[architecture]
    made = SINGLE_CANONIZERS[canonizer](family_types(family), family)
    with torch.no_grad():
        expected = model.represent(emb, mask)
        with TransformerComposite(canonizers=[made], strict=False).context(model):
            assert_close(model.represent(emb, mask), expected)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_family_canonizer_alone_gives_the_reference_relevance(architecture):
    model, emb, mask = hf_case(architecture)
    relevance, _, reference = relevance_and_output(model, emb, mask, [FAMILY[architecture]()])
    assert_close(relevance, reference)


@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
def test_attention_rule_on_the_sdpa_path(architecture):
    """Without the eager switch, the rule still holds: sdpa calls inside attention modules are replaced by
    attention with constant probabilities (HF's padding mask for sdpa included)."""
    model, emb, mask = hf_case(architecture)
    attention_types = family_types(FAMILY[architecture])
    canonizers = [AttentionCanonizer(attention_types), LayerNormCanonizer(), ActivationCanonizer()]
    assert model.encoder.config._attn_implementation == "sdpa"
    relevance, output, reference = relevance_and_output(model, emb, mask, canonizers)
    assert_close(relevance, reference)
    with torch.no_grad():
        assert_close(output, model.represent(emb, mask) @ projection(HIDDEN))


def test_gpt_neo_flash_attention_modules_run_their_eager_forward():
    """GPT-Neo picks its attention *class* by implementation; flash modules are explained on the eager path."""
    model, emb, mask = hf_case("gpt-neo")
    with torch.no_grad():
        expected = model.represent(emb, mask)
    for block in model.encoder.h:
        eager = block.attn.attention
        flash = GPTNeoFlashAttention2(model.encoder.config, eager.attention_type, eager.layer_id)
        flash.load_state_dict(eager.state_dict())
        block.attn.attention = flash.to(torch.float64).eval()
    relevance, output, reference = relevance_and_output(model, emb, mask, [GPTNeoCanonizer()])
    assert_close(output, expected @ projection(HIDDEN))
    assert_close(relevance, reference)


# ---------------------------------------------------------------------------------------------- plain PyTorch
@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu module"])
def test_torch_encoder_layer_activation_function_or_module(activation):
    torch.manual_seed(0)
    module_or_name = nn.GELU() if activation == "gelu module" else activation
    layer = nn.TransformerEncoderLayer(16, 4, 32, activation=module_or_name, batch_first=True, norm_first=True)
    encoder = randomize_biases(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)).double().eval()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
    u = projection(16)

    def explained(h):
        return mean_pooling(encoder(h, src_key_padding_mask=mask == 0), mask) @ u

    before = model_state(encoder)
    with torch.no_grad():
        expected = explained(x)
    with TransformerComposite().context(encoder):
        relevance = input_x_gradient(explained, x)
        with torch.no_grad():
            assert_close(explained(x), expected)
    assert_same_state(before, model_state(encoder))
    reference = input_x_gradient(
        lambda h: mean_pooling(torch_encoder_reference(encoder, h, mask, activation.split()[0]), mask) @ u, x
    )
    assert_close(relevance, reference)


# ---------------------------------------------------------------------------------------------- your own classes
class ToyAttentionCanonizer(AttentionCanonizer):
    """Rule AH on :class:`ToyAttention` (the worked example of docs/custom_architectures.md)."""

    def __init__(self) -> None:
        super().__init__((ToyAttention,))


def _toy_norm_forward(module: ToyNorm, x: torch.Tensor) -> torch.Tensor:
    return constant_rms_norm(x, (x.shape[-1],), module.weight, module.eps)


class ToyNormCanonizer(InstanceAttributeCanonizer):
    """Rule LN on :class:`ToyNorm`: its root mean square is a constant."""

    handled_types = (ToyNorm,)

    def attributes(self, module: nn.Module) -> dict[str, object]:
        return {"forward": partial(_toy_norm_forward, module)}


def toy_case():
    torch.manual_seed(0)
    model = randomize_biases(ToyEncoder()).double().eval()
    with torch.no_grad():
        for norm in model.norm:
            norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
    composite = TransformerComposite(canonizers=[TransformerCanonizer(), ToyAttentionCanonizer(), ToyNormCanonizer()])
    return model, x, mask, composite


def test_custom_canonizers_forward_relevance_and_restore():
    model, x, mask, composite = toy_case()
    u = projection(8)

    def explained(h):
        return mean_pooling(model(h, mask), mask) @ u

    before = model_state(model)
    with torch.no_grad():
        expected = explained(x)
    with composite.context(model):
        relevance = input_x_gradient(explained, x)
        with torch.no_grad():
            assert_close(explained(x), expected)  # 1. forward values unchanged
    assert_same_state(before, model_state(model))  # 2. the model is exactly as before
    reference = input_x_gradient(lambda h: mean_pooling(toy_reference(model, h, mask), mask) @ u, x)
    assert_close(relevance, reference)  # 3. the rules, against a hand-written reference


def test_custom_canonizers_conserve_without_biases():
    model, x, mask, composite = toy_case()
    zero_biases(model)
    u = projection(8)

    def explained(h):
        return mean_pooling(model(h, mask), mask) @ u

    with composite.context(model):
        relevance = input_x_gradient(explained, x)
        with torch.no_grad():
            assert_close(relevance.sum((1, 2)), explained(x))


# ---------------------------------------------------------------------------------------------- mechanics
def test_instance_attributes_are_restored_or_deleted():
    class Marker(InstanceAttributeCanonizer):
        handled_types = (nn.LayerNorm,)

        def attributes(self, module):
            return {"forward": lambda x: x, "eps": 0.5, "marker": True}

    norm = nn.LayerNorm(3)
    own_forward = nn.LayerNorm.forward.__get__(norm)
    norm.forward = own_forward
    instances = Marker().apply(nn.Sequential(norm, nn.LayerNorm(3)))
    assert len(instances) == 2 and norm.eps == 0.5 and norm.marker
    for instance in instances:
        instance.remove()
    assert norm.forward is own_forward and norm.eps == 1e-5 and not hasattr(norm, "marker")


def test_eval_eager_canonizer_restores_training_and_implementation():
    encoder = tiny_encoder("bert").train()
    config = encoder.config
    had_internal = "_attn_implementation_internal" in vars(config)
    (instance,) = EvalEagerCanonizer().apply(encoder)
    assert not any(module.training for module in encoder.modules())
    assert config._attn_implementation == "eager"
    assert len(instance.implementations) == 1  # one config shared by many modules: saved once
    instance.remove()
    assert all(module.training for module in encoder.modules())
    assert config._attn_implementation == "sdpa" and ("_attn_implementation_internal" in vars(config)) == had_internal


def test_stacked_canonizers_unwind_last_in_first_out():
    """Two canonizers wrapping the same attention forward: removal restores the class forward exactly."""
    model, emb, mask = hf_case("bert")
    attention_types = family_types(BertCanonizer)
    before = model_state(model)
    composite = TransformerComposite(canonizers=[BertCanonizer(), AttentionCanonizer(attention_types)])
    with composite.context(model), torch.no_grad():
        model.represent(emb, mask)
    assert_same_state(before, model_state(model))
