"""BiLRP and the engine against the literal per-dimension algorithm (tolerance: 1e-5 relative)."""

import pytest
import torch

from bilrp import BiLRP, TransformerComposite
from bilrp.engine import CertificateError, token_contributions
from bilrp.models import POOLINGS
from reference_models import randomize_biases
from references import per_dimension_bilrp
from tiny_models import ARCHITECTURES, tiny_similarity_model, zero_biases

TEXTS_A = ["a man is playing a guitar on the street", "dogs run"]
TEXTS_B = ["someone plays music", "two dogs are running in a big green park"]
RTOL = 1e-5


def batch_inputs(model, texts_a=TEXTS_A, texts_b=TEXTS_B):
    a, b = model.tokenize(texts_a), model.tokenize(texts_b)
    emb_a = model.embed(a["input_ids"], a["attention_mask"]).detach()
    emb_b = model.embed(b["input_ids"], b["attention_mask"]).detach()
    return emb_a, emb_b, a["attention_mask"], b["attention_mask"]


def assert_close(actual, expected, rtol=RTOL):
    scale = expected.abs().max()
    assert (actual - expected).abs().max() <= rtol * scale, float((actual - expected).abs().max() / scale)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_bilrp_equals_per_dimension_loop(architecture, pooling, similarity):
    model = tiny_similarity_model(architecture, pooling, similarity)
    emb_a, emb_b, mask_a, mask_b = batch_inputs(model)  # a padded batch of two pairs
    expected = per_dimension_bilrp(model, emb_a, emb_b, mask_a, mask_b)
    relevance = BiLRP(model, rules="paper").attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))
    assert_close(relevance, expected)


@pytest.mark.parametrize("architecture", ["bert", "gpt-neo"])
def test_padding_does_not_change_relevance(architecture):
    model = tiny_similarity_model(architecture, "mean", "cosine")
    emb_a, emb_b, mask_a, mask_b = batch_inputs(model)
    batched = BiLRP(model, rules="paper").attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))
    for row in range(2):
        na, nb = int(mask_a[row].sum()), int(mask_b[row].sum())
        alone = BiLRP(model, rules="paper").attribute((emb_a[row : row + 1, :na], emb_b[row : row + 1, :nb]))
        assert_close(batched[row, :na, :nb], alone[0])
        assert torch.all(batched[row, na:] == 0) and torch.all(batched[row, :, nb:] == 0)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_engine_modes_agree(architecture):
    model = tiny_similarity_model(architecture, "qkv", "dot")
    emb, _, mask, _ = batch_inputs(model)
    with TransformerComposite().context(model):
        results = {
            mode: token_contributions(model.represent, emb, mask, mode=mode, rules=True, chunk_size=3)[0]
            for mode in ("replay", "forward", "reverse")
        }
    assert_close(results["replay"], results["reverse"])
    assert_close(results["forward"], results["reverse"])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_conservation_without_biases(architecture, similarity):
    model = zero_biases(tiny_similarity_model(architecture, "mean", similarity))
    emb_a, emb_b, mask_a, mask_b = batch_inputs(model)
    relevance, delta = BiLRP(model, rules="paper").attribute(
        (emb_a, emb_b), additional_forward_args=(mask_a, mask_b), return_convergence_delta=True
    )
    score = model(emb_a, emb_b, mask_a, mask_b)
    assert torch.allclose(relevance.sum((1, 2)), score, rtol=RTOL, atol=0)
    assert delta.abs().max() <= RTOL * score.abs().max()


def test_delta_is_score_minus_sum_with_biases():
    model = tiny_similarity_model("bert", "cls", "cosine")
    emb_a, emb_b, mask_a, mask_b = batch_inputs(model)
    relevance, delta = BiLRP(model, rules="paper").attribute(
        (emb_a, emb_b), additional_forward_args=(mask_a, mask_b), return_convergence_delta=True
    )
    score = model(emb_a, emb_b, mask_a, mask_b)
    assert torch.allclose(delta, score - relevance.sum((1, 2)), rtol=0, atol=1e-12)
    assert delta.abs().max() > 1e-3  # biases do carry part of the score


@pytest.mark.slow
@pytest.mark.parametrize(("pooling", "similarity"), [("mean", "cosine"), ("cls", "dot")])
def test_bilrp_on_real_minilm(minilm, pooling, similarity):
    from bilrp import SimilarityModel

    model = SimilarityModel(minilm.encoder, minilm.tokenizer, pooling=pooling, similarity=similarity)
    emb_a, emb_b, mask_a, mask_b = batch_inputs(
        model, ["A man plays guitar.", "Dogs run."], ["Music is played.", "Two dogs are running fast."]
    )
    expected = per_dimension_bilrp(model, emb_a, emb_b, mask_a, mask_b)
    relevance = BiLRP(model, rules="paper").attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))
    assert_close(relevance, expected, rtol=1e-5)


def test_replay_self_check_catches_a_nonlinearity_without_rule():
    model = tiny_similarity_model("bert", "mean", "dot")
    model.pooling = torch.nn.Sequential()  # placeholder replaced below
    from bilrp.models import MeanPooling

    class TanhPooling(MeanPooling):
        def forward(self, hidden, mask):
            return torch.tanh(super().forward(hidden, mask))

    model.pooling = TanhPooling()
    emb, _, mask, _ = batch_inputs(model)
    with TransformerComposite().context(model), pytest.raises(CertificateError, match=r"'pooling' \(.*TanhPooling"):
        token_contributions(model.represent, emb, mask, mode="replay", rules=True, model=model)


def test_captum_conventions():
    model = tiny_similarity_model("bert")
    attribution = BiLRP(model, rules="paper")
    assert attribution.get_name() == "BiLRP"
    assert attribution.has_convergence_delta() and attribution.multiplies_by_inputs
    with pytest.raises(ValueError, match="mask_a must have shape"):
        emb_a, emb_b, mask_a, mask_b = batch_inputs(model)
        attribution.attribute((emb_a, emb_b), additional_forward_args=(mask_a[:, :2], mask_b))
    with pytest.raises(TypeError, match="cannot make a SimilarityModel"):
        BiLRP(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("mode", ["replay", "forward", "reverse"])
def test_zennit_epsilon_rule_runs_in_every_mode_and_equals_the_backward_hook_path(mode):
    """``linear_rule=Epsilon`` runs as its forward-graph form; the reference is zennit's own backward hook."""
    from zennit.rules import Epsilon

    model = randomize_biases(tiny_similarity_model("bert", "mean", "dot"))
    emb_a, emb_b, mask_a, mask_b = batch_inputs(model)
    composite = TransformerComposite(linear_rule=Epsilon(0.1))
    relevance = BiLRP(model, composite=composite, mode=mode).attribute(
        (emb_a, emb_b), additional_forward_args=(mask_a, mask_b)
    )
    hooked = TransformerComposite(linear_rule=Epsilon(0.1), backward_hooks=True)
    expected = per_dimension_bilrp(model, emb_a, emb_b, mask_a, mask_b, composite=hooked)
    assert_close(relevance, expected)


def test_backward_hook_composites_and_untranslatable_rules_are_refused():
    from zennit.rules import Epsilon, Flat

    model = tiny_similarity_model("bert", "mean", "dot")
    with pytest.raises(ValueError, match="backward_hooks"):
        BiLRP(model, composite=TransformerComposite(linear_rule=Epsilon(0.1), backward_hooks=True))
    with pytest.raises(ValueError, match=r"zennit\.rules\.Flat has no forward-graph form"):
        TransformerComposite(linear_rule=Flat())
