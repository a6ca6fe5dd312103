"""The same checks over every registered family (``bilrp.architectures.ARCHITECTURES``), on its tiny model.

For each family with a tiny random model (float64, random biases and norm weights): forward values are
unchanged under the rules; the model is restored exactly after a normal exit and after an exception; the
three engine modes agree; with every bias zeroed the relevance adds up to the score (1e-10 relative, the
certificate passes too); and BiLRP equals the per-dimension reference (tests/references.py) to 1e-8.
Hand-written rule references for the new rules are in tests/test_modern_references.py.
"""

from pathlib import Path

import pytest
import torch

from bilrp import BiLRP, SimilarityModel, TransformerComposite
from bilrp.architectures import ARCHITECTURES, ArchitectureCanonizer, architecture_table
from bilrp.architectures.llama import GQA
from bilrp.architectures.tiny import tiny_model
from bilrp.engine import pair_relevance, token_contributions
from reference_models import assert_same_state, model_state, randomize_biases
from references import per_dimension_bilrp
from tiny_models import tokenizer, zero_biases

VARIANTS = {  # further members of a family, beyond its registry entry's tiny model
    "qwen2": ("qwen", lambda: tiny_model("Qwen2Config", "Qwen2Model", **GQA)),
    "llama (Llama itself)": ("llama", lambda: tiny_model("LlamaConfig", "LlamaModel", **GQA)),
    "gemma (causal)": (
        "gemma",
        lambda: tiny_model(
            "Gemma3TextConfig", "Gemma3TextModel", use_bidirectional_attention=False, sliding_window=4, **GQA
        ),
    ),
}
BUILDERS = {name: entry.tiny for name, entry in ARCHITECTURES.items() if entry.tiny is not None}
BUILDERS.update({name: build for name, (_, build) in VARIANTS.items()})
FAMILIES = list(BUILDERS)
TEXTS = ("a man is playing a guitar on the street while people listen", "dogs run")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "architectures.md"


def family_model(name: str, pooling: str = "mean", similarity: str = "dot") -> SimilarityModel:
    encoder = BUILDERS[name]().double()
    with torch.no_grad():
        for module in encoder.modules():
            weight = getattr(module, "weight", None)
            if "Norm" in type(module).__name__ and isinstance(weight, torch.nn.Parameter):
                weight.uniform_(0.5, 1.5)
    model = SimilarityModel(encoder, tokenizer(), pooling=pooling, similarity=similarity, max_length=32, name=name)
    return randomize_biases(model).eval()


def pair(model):
    a, b = model.tokenize([TEXTS[0]]), model.tokenize([TEXTS[1]])
    emb_a = model.embed(a["input_ids"], a["attention_mask"]).detach()
    emb_b = model.embed(b["input_ids"], b["attention_mask"]).detach()
    return (emb_a, emb_b), (a["attention_mask"], b["attention_mask"])


def padded(model):
    batch = model.tokenize(list(TEXTS))
    return model.embed(batch["input_ids"], batch["attention_mask"]).detach(), batch["attention_mask"]


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_values_are_unchanged(name):
    model = family_model(name)
    emb, mask = padded(model)
    with torch.no_grad():
        expected = model.represent(emb, mask)
        with TransformerComposite().context(model):
            actual = model.represent(emb, mask)
    # 1e-6: the RMS norms of several families compute in float32 even in a float64 model (HF's own choice);
    # the rules compute them in the model's dtype. test_composite.py checks the classic families to 1e-12.
    assert float((actual - expected).abs().max()) <= 1e-6 * float(expected.abs().max())


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("exit", ["normal", "exception"])
def test_the_model_is_restored_exactly(name, exit):
    model = family_model(name)
    inputs, masks = pair(model)
    before = model_state(model)
    if exit == "normal":
        BiLRP(model, rules="paper").attribute(inputs, additional_forward_args=masks)
    else:
        with pytest.raises(KeyError), TransformerComposite().context(model):
            model.represent(inputs[0], masks[0])
            raise KeyError("stop")
    assert_same_state(before, model_state(model))


@pytest.mark.parametrize("name", FAMILIES)
def test_modes_agree_and_equal_the_per_dimension_reference(name):
    model = family_model(name)
    inputs, masks = pair(model)
    results = {
        mode: BiLRP(model, rules="paper", mode=mode).attribute(inputs, additional_forward_args=masks)
        for mode in ("replay", "forward", "reverse")
    }
    reference = per_dimension_bilrp(model, *inputs, *masks)
    scale = float(reference.abs().max())
    for mode, relevance in results.items():
        assert torch.allclose(relevance, reference, atol=1e-8 * scale), mode


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("gate_rule", ["constant_gate", "uniform"])
def test_bias_free_relevance_adds_up_to_the_score(name, gate_rule):
    model = zero_biases(family_model(name))
    inputs, masks = pair(model)
    composite = TransformerComposite(canonizers=[ArchitectureCanonizer(gate_rule=gate_rule)])
    relevance, delta = BiLRP(model, composite=composite).attribute(
        inputs, additional_forward_args=masks, return_convergence_delta=True
    )
    score = relevance.sum((1, 2)) + delta  # the rule-frozen network's own score
    assert float(delta.abs().max()) <= 1e-10 * float(score.abs().max())
    assert torch.allclose(score, model(*inputs, *masks), rtol=1e-5)  # and it is the model's score


def test_every_family_has_a_single_registry_entry_with_its_classes_installed():
    for name in FAMILIES:
        entry = ARCHITECTURES[VARIANTS[name][0] if name in VARIANTS else name]
        assert entry.model_types(), name
        assert entry.attention_types() or entry.canonizers, name


def test_the_docs_table_is_generated_from_the_registry():
    """docs/architectures.md embeds architecture_table(); regenerate with `python -m bilrp.architectures`."""
    assert architecture_table() in DOCS.read_text()


def hooked_relevance(model, inputs, masks, composite) -> torch.Tensor:
    """BiLRP through zennit's own backward hooks: batched reverse mode (one VJP per dimension), uncertified."""
    factors = []
    with composite.context(model):
        for emb, mask in zip(inputs, masks, strict=True):
            factors.append(token_contributions(model.represent, emb, mask, mode="reverse")[0])
    return pair_relevance(*factors, similarity="dot")


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("rule", ["epsilon", "gamma"])
def test_zennit_linear_rules_in_the_fast_engine_equal_zennit_hooks(name, rule):
    """Replay with the forward-graph Epsilon/Gamma equals zennit's own backward hooks (reverse mode)."""
    from zennit.rules import Epsilon, Gamma

    make = {"epsilon": lambda: Epsilon(0.1), "gamma": lambda: Gamma(0.25)}[rule]
    model = family_model(name)
    inputs, masks = pair(model)
    relevance = BiLRP(model, composite=TransformerComposite(linear_rule=make()), mode="replay").attribute(
        inputs, additional_forward_args=masks
    )
    reference = hooked_relevance(model, inputs, masks, TransformerComposite(linear_rule=make(), backward_hooks=True))
    assert torch.allclose(relevance, reference, atol=1e-8 * float(reference.abs().max()))
