"""The silent-wrong cases of the trust issue: each is now exact (against an independent reference) or refused.

Each test reproduces a situation that gave a wrong result with no error before: train mode, two threads
on one model, Captum's positional order, ``x = inputs_embeds`` encoders, zennit composites mixed in,
Captum's layer attributions beside bilrp, half precision and sentence-transformers objects.
"""

import json
import threading

import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, LayerIntegratedGradients, Saliency
from torch import nn
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonPlus, EpsilonPlusFlat, MixedComposite
from zennit.rules import Epsilon

import bilrp
from bilrp import BiLRP, IntegratedJacobians, SimilarityModel, TransformerComposite
from bilrp.architectures import BertCanonizer, TransformerCanonizer
from own_encoders import IdsOnlyEncoder, OwnEncoder
from reference_models import assert_same_state, model_state, randomize_biases
from references import per_dimension_bilrp
from tiny_models import tiny_similarity_model, tokenizer

PAIR = ("a man is playing a guitar on the street", "someone plays music")
PAIRS = [PAIR, ("dogs run in the park", "two dogs are running"), ("a cat sleeps", "the stock market fell")]


def inputs_of(model, texts=PAIR):
    a, b = model.tokenize([texts[0]]), model.tokenize([texts[1]])
    emb_a = model.embed(a["input_ids"], a["attention_mask"]).detach()
    emb_b = model.embed(b["input_ids"], b["attention_mask"]).detach()
    return (emb_a, emb_b), (a["attention_mask"], b["attention_mask"])


def padded_inputs(model):
    texts_a, texts_b = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    a, b = model.tokenize(texts_a), model.tokenize(texts_b)
    emb_a = model.embed(a["input_ids"], a["attention_mask"]).detach()
    emb_b = model.embed(b["input_ids"], b["attention_mask"]).detach()
    return (emb_a, emb_b), (a["attention_mask"], b["attention_mask"])


# ---------------------------------------------------------------------------------------------- 1. train mode
def test_train_mode_model_is_explained_in_eval_mode_and_left_in_train_mode():
    model = tiny_similarity_model("bert", "mean", "cosine")
    expected = bilrp.explain(model, *PAIR)
    model.train()
    scores = [bilrp.explain(model, *PAIR).score for _ in range(3)]
    assert scores == [expected.score] * 3
    assert all(module.training for module in model.modules())
    again = bilrp.explain(model, *PAIR)
    assert torch.equal(again.relevance, expected.relevance)


# ---------------------------------------------------------------------------------------------- 2. threads
def test_concurrent_explanations_on_one_model_are_correct_and_restore_it():
    model = tiny_similarity_model("bert", "mean", "cosine")
    expected = {pair: bilrp.explain(model, *pair) for pair in PAIRS}
    before = model_state(model)
    results, failures = [], []

    def work(pair):
        try:
            for _ in range(3):
                results.append((pair, bilrp.explain(model, *pair)))
        except Exception as error:  # noqa: BLE001 -- reported below
            failures.append(error)

    threads = [threading.Thread(target=work, args=(pair,)) for pair in PAIRS * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures
    assert len(results) == 18
    for pair, explanation in results:
        assert explanation.score == pytest.approx(expected[pair].score, abs=1e-12)
        assert torch.allclose(explanation.relevance, expected[pair].relevance, atol=1e-12)
    assert_same_state(before, model_state(model))


def test_plain_encoding_in_another_thread_never_sees_the_rules():
    """While one thread explains (model canonized), another thread's plain gradient is the model's own."""
    model = tiny_similarity_model("bert", "mean", "dot")
    (emb, _), (mask, _) = inputs_of(model)

    def plain_gradient():
        x = emb.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.represent(x, mask).sum(), x)
        return grad

    expected = plain_gradient()
    gradients = []
    worker = threading.Thread(target=lambda: [bilrp.explain(model, *PAIR) for _ in range(3)])
    worker.start()
    while worker.is_alive():
        gradients.append(plain_gradient())
    worker.join()
    gradients.append(plain_gradient())
    assert all(torch.allclose(g, expected, atol=1e-12) for g in gradients)


# ---------------------------------------------------------------------------------------------- 5. Captum's order
def test_captum_positional_order_binds_masks_to_additional_forward_args():
    model = tiny_similarity_model("bert", "mean", "cosine")
    inputs, masks = padded_inputs(model)
    by_keyword = BiLRP(model, rules="paper").attribute(inputs, additional_forward_args=masks)
    positional = BiLRP(model, rules="paper").attribute(inputs, None, None, masks)
    assert torch.equal(positional, by_keyword)
    for row in range(len(PAIRS)):  # padding gets nothing; each row equals the unpadded pair alone
        alone_inputs, alone_masks = inputs_of(model, PAIRS[row])
        alone = BiLRP(model, rules="paper").attribute(alone_inputs, additional_forward_args=alone_masks)[0]
        na, nb = alone.shape
        assert torch.allclose(by_keyword[row, :na, :nb], alone, atol=1e-12)
        assert float(by_keyword[row].abs().sum()) == pytest.approx(float(alone.abs().sum()), rel=1e-10)


@pytest.mark.parametrize("method", [bilrp.BiLRP, bilrp.HessianXProduct, bilrp.EmbeddingInteraction])
def test_baselines_and_target_are_refused_where_they_mean_nothing(method):
    model = tiny_similarity_model("bert", "mean", "cosine")
    inputs, masks = inputs_of(model)
    with pytest.raises(ValueError, match="baselines must be None"):
        method(model).attribute(inputs, masks)  # masks passed where Captum puts baselines
    with pytest.raises(ValueError, match="target"):
        method(model).attribute(inputs, target=0, additional_forward_args=masks)


def test_integrated_jacobians_baselines_equal_the_constructor_reference():
    model = tiny_similarity_model("bert", "mean", "cosine")
    inputs, masks = inputs_of(model)
    given = IntegratedJacobians(model, n_steps=8).attribute(inputs, (0.5, 0.5), additional_forward_args=masks)
    made = IntegratedJacobians(model, n_steps=8, baseline=lambda e, m: torch.full_like(e, 0.5))
    expected = made.attribute(inputs, additional_forward_args=masks)
    assert torch.allclose(given, expected, atol=1e-12)


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda m: m.masked_fill(m == 1, 2), "only 0 .* and 1"),
        (lambda m: m[:, :-1], "must have shape"),
        (lambda m: torch.zeros_like(m), "no real token"),
    ],
)
def test_bad_masks_are_refused(bad, message):
    model = tiny_similarity_model("bert", "mean", "cosine")
    inputs, (mask_a, mask_b) = inputs_of(model)
    with pytest.raises(ValueError, match=message):
        BiLRP(model, rules="paper").attribute(inputs, additional_forward_args=(bad(mask_a), mask_b))


@pytest.mark.parametrize("size", [0, -1, 1.5])
def test_bad_internal_batch_size_is_refused(size):
    model = tiny_similarity_model("bert", "mean", "cosine")
    inputs, masks = inputs_of(model)
    with pytest.raises(ValueError, match="internal_batch_size"):
        BiLRP(model, rules="paper").attribute(inputs, additional_forward_args=masks, internal_batch_size=size)
    with pytest.raises(ValueError, match="batch_size"):
        bilrp.explain_batch(model, PAIRS, batch_size=size, progress=False)


# ---------------------------------------------------------------------------------------------- 6. inputs_embeds
def own(encoder):
    return SimilarityModel(encoder.double().eval(), tokenizer(), "mean", "dot", max_length=32, name="own")


@pytest.mark.parametrize("idiom", ["inputs_embeds", "ids_only"])
def test_encoders_that_skip_their_embedding_for_inputs_embeds_are_explained_exactly(idiom):
    """``x = inputs_embeds`` (and no inputs_embeds at all): the explained input still replaces the embedding."""
    reference = own(OwnEncoder(idiom="hf", seed=3))
    model = own(OwnEncoder(idiom="inputs_embeds", seed=3) if idiom == "inputs_embeds" else IdsOnlyEncoder(seed=3))
    expected = bilrp.explain(reference, *PAIR)
    explanation = bilrp.explain(model, *PAIR)
    assert explanation.score == pytest.approx(expected.score, rel=1e-12)
    assert torch.allclose(explanation.relevance, expected.relevance, atol=1e-12)
    inputs, masks = inputs_of(model)
    assert torch.allclose(
        BiLRP(model, rules="paper").attribute(inputs, additional_forward_args=masks),
        per_dimension_bilrp(model, *inputs, *masks),
    )


class Ignoring(OwnEncoder):
    """Never calls ``self.embeddings`` (it embeds with a second table)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(30522, 16)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        x = inputs_embeds if inputs_embeds is not None else self.table(input_ids)
        return (self.encode(x, attention_mask),)


def test_encoder_that_never_calls_its_embedding_layer_is_refused():
    model = own(Ignoring())
    with pytest.raises(ValueError, match="embedding_layer="):
        bilrp.explain(model, *PAIR)


# ---------------------------------------------------------------------------------------------- 7. zennit composites
def bert():
    return randomize_biases(tiny_similarity_model("bert", "mean", "dot"))


def test_zennit_epsilon_plus_is_translated_exactly():
    model = bert()
    inputs, masks = inputs_of(model)
    for composite in (EpsilonPlus(), EpsilonPlus(canonizers=[TransformerCanonizer()])):
        relevance = BiLRP(model, composite=composite).attribute(inputs, additional_forward_args=masks)
        hooked = TransformerComposite(linear_rule=Epsilon(), backward_hooks=True)  # zennit's own hook
        expected = per_dimension_bilrp(model, *inputs, *masks, composite=hooked)
        assert torch.allclose(relevance, expected, atol=1e-10 * float(expected.abs().max()))


@pytest.mark.parametrize("make", [EpsilonPlusFlat, lambda: MixedComposite([EpsilonPlusFlat(), EpsilonPlus()])])
def test_zennit_composites_with_flat_are_refused_naming_rule_and_module(make):
    model = bert()
    with pytest.raises(ValueError, match=r"zennit\.rules\.Flat on module '[\w.]+' \(Linear\) clashes with bilrp's"):
        BiLRP(model, composite=make())
    with pytest.raises(ValueError, match="Flat"):
        bilrp.LRP(model, composite=make())


def test_stacked_bilrp_canonizers_apply_each_rule_once():
    model = bert()
    inputs, masks = inputs_of(model)
    expected = BiLRP(model, rules="paper").attribute(inputs, additional_forward_args=masks)
    stacked = TransformerComposite(canonizers=[TransformerCanonizer(), BertCanonizer()])
    assert torch.allclose(BiLRP(model, composite=stacked).attribute(inputs, additional_forward_args=masks), expected)


class BatchNormHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear, self.norm = nn.Linear(32, 32), nn.BatchNorm1d(32)
        with torch.no_grad():
            self.norm.running_mean.normal_()
            self.norm.running_var.uniform_(0.5, 2.0)

    def forward(self, hidden, mask):
        weights = mask[..., None].to(hidden.dtype)
        return self.norm(self.linear((hidden * weights).sum(1) / weights.sum(1)))


def test_batchnorm_head_and_zennit_merge_canonizer_are_exact():
    model = bert()
    model.pooling = BatchNormHead().double().eval()
    inputs, masks = inputs_of(model)
    reference = per_dimension_bilrp(model, *inputs, *masks)
    plain = BiLRP(model, rules="paper").attribute(inputs, additional_forward_args=masks)
    assert torch.allclose(plain, reference, atol=1e-10 * float(reference.abs().max()))
    merged = TransformerComposite(canonizers=[SequentialMergeBatchNorm(), TransformerCanonizer()])
    assert torch.allclose(BiLRP(model, composite=merged).attribute(inputs, additional_forward_args=masks), plain)


# ---------------------------------------------------------------------------------------------- 8. Captum beside bilrp
def test_captum_methods_and_bilrp_in_one_loop():
    """LIG on the embedding layer equals IG on the embedding outputs (the same path); bilrp stays exact."""
    model = tiny_similarity_model("bert", "mean", "cosine")
    a, b = model.tokenize([PAIR[0]]), model.tokenize([PAIR[1]])
    ids_a, mask_a, mask_b = a["input_ids"], a["attention_mask"], b["attention_mask"]
    base_a = torch.zeros_like(ids_a)

    (emb_a, emb_b), _ = inputs_of(model)

    def from_ids(x_a):  # text B held fixed: Captum's layer hooks see one call of the embedding layer
        return model(model.embed(x_a, mask_a), emb_b, mask_a, mask_b)

    lig = LayerIntegratedGradients(from_ids, model.embedding_layer)
    lig_a = lig.attribute(ids_a, base_a, n_steps=64)
    ref_a = model.embed(base_a, mask_a).detach()
    ig_a = IntegratedGradients(model).attribute(
        emb_a, ref_a, additional_forward_args=(emb_b, mask_a, mask_b), n_steps=64
    )
    assert float(lig_a.abs().sum()) > 0
    assert torch.allclose(lig_a, ig_a, atol=1e-10)
    for method in (Saliency(model), InputXGradient(model)):
        first = method.attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))
        assert all(float(t.abs().sum()) > 0 for t in first)
    masks = (mask_a, mask_b)
    relevance = BiLRP(model, rules="paper").attribute((emb_a, emb_b), additional_forward_args=masks)
    assert torch.allclose(relevance, per_dimension_bilrp(model, emb_a, emb_b, mask_a, mask_b))
    again_a = lig.attribute(ids_a, base_a, n_steps=64)
    assert torch.allclose(again_a, lig_a, atol=1e-12)  # bilrp left nothing behind on the layer


# ---------------------------------------------------------------------------------------------- 10. half precision
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_are_explained_in_float32_and_restored(dtype):
    half = tiny_similarity_model("bert", "mean", "cosine", dtype=torch.float32).to(dtype)
    upcast = tiny_similarity_model("bert", "mean", "cosine", dtype=torch.float32).to(dtype).float()
    originals = {name: p for name, p in half.named_parameters()}
    storage = {name: (p.data_ptr(), p.detach().clone()) for name, p in half.named_parameters()}
    explanation = bilrp.explain(half, *PAIR)
    expected = bilrp.explain(upcast, *PAIR)
    assert explanation.relevance.dtype == torch.float32
    assert torch.allclose(explanation.relevance, expected.relevance, atol=1e-6)
    assert explanation.score == pytest.approx(expected.score, abs=1e-6)
    for name, parameter in half.named_parameters():
        pointer, value = storage[name]
        assert parameter is originals[name] and parameter.dtype == dtype
        assert parameter.data_ptr() == pointer and torch.equal(parameter.detach(), value)


# ------------------------------------------------------------------------------------------- 11. sentence-transformers
@pytest.mark.slow
def test_sentence_transformer_objects_are_accepted_everywhere(minilm):
    from sentence_transformers import SentenceTransformer

    from bilrp.models import resolve_model_path

    st = SentenceTransformer(resolve_model_path(bilrp.DEFAULT_MODEL), device="cpu")
    expected = bilrp.explain(minilm, *PAIR)
    via_st = bilrp.explain(st, *PAIR)
    assert via_st.score == pytest.approx(float(st.similarity(st.encode([PAIR[0]]), st.encode([PAIR[1]]))), abs=1e-5)
    assert torch.allclose(via_st.relevance, expected.relevance, atol=1e-6)
    assert bilrp.explain_batch(st, [PAIR], progress=False)[0].score == pytest.approx(via_st.score, abs=1e-6)
    inputs, masks = inputs_of(minilm)
    assert torch.allclose(
        BiLRP(st).attribute(inputs, additional_forward_args=masks),
        BiLRP(minilm).attribute(inputs, additional_forward_args=masks),
        atol=1e-6,
    )


# ---------------------------------------------------------------------------------------------- crashes and messages
class ZeroPooling(nn.Module):
    """An embedding that is exactly zero: a cosine of it is 0, never NaN."""

    def forward(self, hidden, mask):
        return hidden[:, 0] * 0.0


@pytest.mark.parametrize("method", ["hxp", "ij", "bilrp"])
def test_cosine_of_a_zero_embedding_gives_finite_relevance(method):
    model = tiny_similarity_model("bert", "mean", "cosine")
    model.pooling = ZeroPooling()
    explanation = bilrp.explain(model, *PAIR, method=method)
    assert torch.isfinite(explanation.relevance).all() and explanation.score == 0.0


def test_json_of_a_non_finite_relevance_is_valid_json(tmp_path):
    import json

    explanation = bilrp.explain(tiny_similarity_model("bert", "mean", "cosine"), *PAIR)
    explanation.relevance[0, 0] = float("nan")
    text = explanation.to_json(tmp_path / "e.json")
    assert json.loads(text)["relevance"][0][0] is None
    assert json.loads((tmp_path / "e.json").read_text()) == json.loads(text)


def test_truncation_warning_quotes_what_was_dropped():
    model = tiny_similarity_model("bert", "mean", "cosine")
    model.max_length = 6
    with pytest.warns(UserWarning, match=r"5 tokens dropped: 'a guitar on the street'"):
        model.tokenize(["a man is playing a guitar on the street"])


@pytest.mark.parametrize("pairs", [[("only one text",)], [("a", 3)], ["ab"]])
def test_bad_pairs_are_refused_naming_the_pair(pairs):
    with pytest.raises(ValueError, match="pair 0"):
        bilrp.explain_batch(tiny_similarity_model("bert"), pairs, progress=False)


def test_a_known_model_name_is_not_resolved_against_the_working_directory(tmp_path, monkeypatch):
    from bilrp.models import resolve_model_path

    planted = tmp_path / "sentence-transformers" / "all-MiniLM-L6-v2"
    planted.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert not resolve_model_path(bilrp.DEFAULT_MODEL).startswith(str(tmp_path))
    assert not resolve_model_path(bilrp.DEFAULT_MODEL).startswith("sentence-transformers")


def test_a_nan_written_as_null_reads_back_as_nan():
    explanation = bilrp.explain(tiny_similarity_model("bert", "mean", "cosine"), *PAIR)
    explanation.relevance[0, 0] = float("nan")
    again = bilrp.Explanation.from_dict(json.loads(explanation.to_json()))
    assert torch.isnan(again.relevance[0, 0]) and again.relevance.shape == explanation.relevance.shape
