"""The Captum door: a Captum user's own inputs, loops, metrics and visualisation reach bilrp without adapters.

Issue 21, cases 2, 6 and part of 7. Each silent-wrong case is checked against an independent reference (the
user's own function written with HuggingFace alone, the autograd Hessian, the paper's per-dimension loop, a
by-hand recomputation of Captum's metric), or refused in one line.
"""

import pytest
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from captum.attr import visualization as viz
from captum.metrics import infidelity, sensitivity_max
from torch import nn

import bilrp
from bilrp import BiLRP, CertificateError, SimilarityModel
from bilrp.attr import InputsEmbedsModel, TokenRemoval, per_text
from own_encoders import IdsOnlyEncoder
from references import hessian_x_product, per_dimension_bilrp
from tiny_models import tiny_encoder, tiny_similarity_model, tokenizer

TEXTS_A = ["a man is playing a guitar on the street", "dogs run"]
TEXTS_B = ["someone plays music", "two dogs are running in the park"]


class UsersFunction(nn.Module):
    """What a Captum user writes around a HuggingFace encoder: mean pooling and cosine from ``inputs_embeds``.

    No bilrp inside: this is the independent reference of the score.
    """

    similarity = "cosine"

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def represent(self, inputs_embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(inputs_embeds=inputs_embeds, attention_mask=mask).last_hidden_state
        weights = mask[..., None].to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1)

    def forward(self, x_a, x_b, mask_a, mask_b) -> torch.Tensor:
        return torch.cosine_similarity(self.represent(x_a, mask_a), self.represent(x_b, mask_b), dim=-1)


def users_inputs(model, texts_a=TEXTS_A, texts_b=TEXTS_B):
    """HuggingFace's ``inputs_embeds`` (the word embeddings) and masks, as a Captum user makes them."""
    a, b = model.tokenize(texts_a), model.tokenize(texts_b)
    word = model.encoder.get_input_embeddings()
    with torch.no_grad():
        inputs = (word(a["input_ids"]), word(b["input_ids"]))
    return inputs, (a["attention_mask"], b["attention_mask"]), (a, b)


def embedding_outputs(model, texts_a=TEXTS_A, texts_b=TEXTS_B):
    a, b = model.tokenize(texts_a), model.tokenize(texts_b)
    with torch.no_grad():
        inputs = (model.embed(a["input_ids"], a["attention_mask"]), model.embed(b["input_ids"], b["attention_mask"]))
    return inputs, (a["attention_mask"], b["attention_mask"]), (a, b)


def one_line(error_type, match, call):
    with pytest.raises(error_type, match=match) as caught:
        call()
    assert "\n" not in str(caught.value), str(caught.value)
    return str(caught.value)


# ------------------------------------------------------------------------------- case 2: inputs_embeds
@pytest.mark.parametrize("architecture", ["bert", "roberta", "distilbert", "gpt-neo"])
def test_inputs_embeds_explain_the_users_own_function_and_are_refused_as_embedding_outputs(architecture):
    """Before: the user's inputs_embeds were taken as embedding outputs; R.sum() + delta gave another score."""
    model = tiny_similarity_model(architecture, "mean", "cosine")
    inputs, masks, _ = users_inputs(model)
    with torch.no_grad():
        expected = UsersFunction(model.encoder)(*inputs, *masks)
        other = model(*inputs, *masks)  # what bilrp explained before: the encoder run from *after* its embeddings
    assert (expected - other).abs().max() > 1e-2  # the silent wrong score of the issue
    one_line(
        ValueError,
        r"inputs\[0\] holds rows of the word-embedding matrix .*attribute_to='inputs_embeds'",
        lambda: BiLRP(model).attribute(inputs, additional_forward_args=masks),
    )
    attribution = BiLRP(model, attribute_to="inputs_embeds")
    relevance, delta = attribution.attribute(inputs, additional_forward_args=masks, return_convergence_delta=True)
    assert attribution.attribute_to == "inputs_embeds" and isinstance(attribution.forward_func, InputsEmbedsModel)
    torch.testing.assert_close(relevance.sum((1, 2)) + delta, expected, atol=1e-10, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(attribution.forward_func(*inputs, *masks), expected, atol=1e-12, rtol=0)


def test_inputs_embeds_relevance_equals_the_references_on_the_users_function():
    """BiLRP against the paper's per-dimension loop, H x P against the autograd Hessian, both of the user's module."""
    model = tiny_similarity_model("bert", "mean", "cosine")
    (x_a, x_b), (mask_a, mask_b), _ = users_inputs(model, TEXTS_A[:1], TEXTS_B[:1])
    users = UsersFunction(model.encoder)
    relevance = BiLRP(model, rules="paper", attribute_to="inputs_embeds").attribute(
        (x_a, x_b), additional_forward_args=(mask_a, mask_b)
    )
    reference = per_dimension_bilrp(users, x_a, x_b, mask_a, mask_b)
    torch.testing.assert_close(relevance, reference, atol=1e-10 * float(reference.abs().max()), rtol=0)
    hxp = bilrp.HessianXProduct(model, attribute_to="inputs_embeds").attribute(
        (x_a, x_b), additional_forward_args=(mask_a, mask_b)
    )
    reference = hessian_x_product(users, x_a, x_b, mask_a, mask_b)
    torch.testing.assert_close(hxp, reference, atol=1e-8 * float(reference.abs().max()), rtol=0)


def test_every_method_explains_the_users_score_from_inputs_embeds():
    model = tiny_similarity_model("bert", "mean", "cosine")
    inputs, masks, _ = users_inputs(model)
    with torch.no_grad():
        expected = UsersFunction(model.encoder)(*inputs, *masks)
    methods = [
        BiLRP(model, attribute_to="inputs_embeds"),
        bilrp.HessianXProduct(model, attribute_to="inputs_embeds"),
        bilrp.IntegratedJacobians(model, n_steps=4, attribute_to="inputs_embeds"),
        bilrp.EmbeddingInteraction(model, attribute_to="inputs_embeds"),
        bilrp.RandomInteraction(model, attribute_to="inputs_embeds"),
    ]
    for method in methods:
        relevance, delta = method.attribute(inputs, additional_forward_args=masks, return_convergence_delta=True)
        torch.testing.assert_close(relevance.sum((1, 2)) + delta, expected, atol=1e-10, rtol=0, msg=method.get_name())
    ij = methods[2]
    pad_ids = torch.full_like(masks[0], model.tokenizer.pad_token_id)
    reference = ij.reference_input(inputs[0], masks[0])
    word = model.encoder.get_input_embeddings()
    real = masks[0].bool()
    inner = real & (real.long().cumsum(1) > 1) & (real.long().cumsum(1) < real.long().sum(1, keepdim=True))
    torch.testing.assert_close(reference[inner], word(pad_ids)[inner].detach())  # PAD's word embedding


def test_embedding_outputs_given_as_inputs_embeds_are_refused_but_perturbed_inputs_pass():
    model = tiny_similarity_model("bert", "mean", "cosine")
    outputs, masks, _ = embedding_outputs(model)
    one_line(
        ValueError,
        r"inputs\[0\] holds embedding outputs .*get_input_embeddings\(\)\(input_ids\)",
        lambda: BiLRP(model, attribute_to="inputs_embeds").attribute(outputs, additional_forward_args=masks),
    )
    words, _, _ = users_inputs(model)
    noise = torch.Generator().manual_seed(0)
    for point, inputs in (("embedding_output", outputs), ("inputs_embeds", words)):
        perturbed = tuple(x + 0.02 * torch.rand(x.shape, generator=noise, dtype=x.dtype) for x in inputs)
        attribution = BiLRP(model, attribute_to=point)
        relevance, delta = attribution.attribute(
            perturbed, additional_forward_args=masks, return_convergence_delta=True
        )
        with torch.no_grad():
            score = attribution.forward_func(*perturbed, *masks)
        torch.testing.assert_close(relevance.sum((1, 2)) + delta, score, atol=1e-10, rtol=0)


def test_inputs_embeds_put_the_embedding_layernorm_under_the_certificate():
    """A hand-written embedding norm without a rule is refused at inputs_embeds (it is not on the path otherwise)."""

    class HandNorm(nn.Module):
        def __init__(self, norm: nn.LayerNorm) -> None:
            super().__init__()
            self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

        def forward(self, x):
            centred = x - x.mean(-1, keepdim=True)
            return centred / (centred.pow(2).mean(-1, keepdim=True) + self.eps).sqrt() * self.weight + self.bias

    model = tiny_similarity_model("bert", "mean", "cosine")
    model.encoder.embeddings.LayerNorm = HandNorm(model.encoder.embeddings.LayerNorm)
    words, masks, _ = users_inputs(model)
    with pytest.raises(CertificateError, match="HandNorm"):
        BiLRP(model, attribute_to="inputs_embeds").attribute(words, additional_forward_args=masks)
    outputs, _, _ = embedding_outputs(model)
    BiLRP(model).attribute(outputs, additional_forward_args=masks)  # the embedding layer is not explained here


@pytest.mark.parametrize("architecture", ["llama", "t5"])
def test_models_whose_embedding_output_is_the_word_embedding_accept_both_points(architecture):
    model = tiny_similarity_model(architecture, "mean", "cosine")
    inputs, masks, _ = users_inputs(model)
    at_output = BiLRP(model).attribute(inputs, additional_forward_args=masks)
    at_words = BiLRP(model, attribute_to="inputs_embeds").attribute(inputs, additional_forward_args=masks)
    torch.testing.assert_close(at_output, at_words, atol=1e-7 * float(at_output.abs().max()), rtol=0)


def test_bad_input_points_are_refused_in_one_line():
    model = tiny_similarity_model("bert", "mean", "cosine")
    words, masks, _ = users_inputs(model)
    one_line(ValueError, "attribute_to='input_embeds': choose", lambda: BiLRP(model, attribute_to="input_embeds"))
    narrow = tuple(x[..., :8] for x in words)
    one_line(
        ValueError,
        r"inputs\[0\] has width 8, but the inputs_embeds of .* have width 32",
        lambda: BiLRP(model, attribute_to="inputs_embeds").attribute(narrow, additional_forward_args=masks),
    )
    one_line(
        ValueError,
        r"inputs\[0\] has width 8, but the embedding output of .* has width 32",
        lambda: BiLRP(model).attribute(narrow, additional_forward_args=masks),
    )
    ids = (masks[0].clone(), masks[1].clone())
    one_line(
        ValueError,
        r"inputs\[0\] must be a float tensor .*embed token ids first",
        lambda: BiLRP(model).attribute(ids, additional_forward_args=masks),
    )
    own = SimilarityModel(IdsOnlyEncoder().double(), tokenizer(), max_length=32)
    one_line(TypeError, "takes no inputs_embeds argument", lambda: BiLRP(own, attribute_to="inputs_embeds"))


def test_layer_integrated_gradients_on_the_word_embeddings_equal_integrated_gradients_on_inputs_embeds():
    """Captum's layer attribution at the module that makes inputs_embeds sees what bilrp's inputs_embeds point is."""
    model = tiny_similarity_model("bert", "mean", "cosine")
    explained = BiLRP(model, attribute_to="inputs_embeds").forward_func
    (x_a, x_b), (mask_a, mask_b), (a, _) = users_inputs(model, TEXTS_A[:1], TEXTS_B[:1])
    ids_a, base_a = a["input_ids"], torch.zeros_like(a["input_ids"])

    def from_ids(ids):
        return explained(explained.embed(ids), x_b, mask_a, mask_b)

    lig = LayerIntegratedGradients(from_ids, explained.word_embeddings)
    by_layer = lig.attribute(ids_a, base_a, n_steps=32)
    by_inputs = IntegratedGradients(explained).attribute(
        x_a, explained.embed(base_a).detach(), additional_forward_args=(x_b, mask_a, mask_b), n_steps=32
    )
    assert float(by_layer.abs().sum()) > 0
    torch.testing.assert_close(by_layer, by_inputs, atol=1e-10, rtol=0)


@pytest.mark.slow
def test_real_minilm_inputs_embeds_give_the_users_score(minilm):
    """The issue's numbers: the user's function gives 0.8143 where the embedding-output reading gave 0.9997."""
    inputs, masks, _ = users_inputs(minilm, ["A man is playing a guitar."], ["Someone plays music on a guitar."])
    with torch.no_grad():
        expected = UsersFunction(minilm.encoder)(*inputs, *masks)
        other = minilm(*inputs, *masks)
    assert float(expected) == pytest.approx(0.8143, abs=1e-4) and float(other) == pytest.approx(0.9997, abs=1e-4)
    one_line(
        ValueError,
        "holds rows of the word-embedding matrix",
        lambda: BiLRP(minilm).attribute(inputs, additional_forward_args=masks),
    )
    relevance, delta = BiLRP(minilm, attribute_to="inputs_embeds").attribute(
        inputs, additional_forward_args=masks, return_convergence_delta=True
    )
    assert float(relevance.sum() + delta) == pytest.approx(float(expected), abs=1e-5)
    outputs, _, _ = embedding_outputs(minilm, ["A man is playing a guitar."], ["Someone plays music on a guitar."])
    one_line(
        ValueError,
        "holds embedding outputs",
        lambda: BiLRP(minilm, attribute_to="inputs_embeds").attribute(outputs, additional_forward_args=masks),
    )


# ------------------------------------------------------------------------------- case 6: metrics and visualisation
def compare_methods(model):
    return [
        BiLRP(model),
        bilrp.HessianXProduct(model),
        bilrp.IntegratedJacobians(model, n_steps=4),
        bilrp.EmbeddingInteraction(model),
        bilrp.RandomInteraction(model, seed=0),
        IntegratedGradients(model),
    ]


def test_per_text_projections_follow_captums_tuple_convention_and_add_up_to_the_score():
    model = tiny_similarity_model("bert", "mean", "cosine")
    inputs, masks, _ = embedding_outputs(model)
    for method in compare_methods(model)[:-1]:
        relevance, delta = method.attribute(inputs, additional_forward_args=masks, return_convergence_delta=True)
        tokens, same_delta = method.attribute(
            inputs, additional_forward_args=masks, per_text="tokens", return_convergence_delta=True
        )
        spread = method.attribute(inputs, additional_forward_args=masks, per_text="inputs")
        torch.testing.assert_close(same_delta, delta)
        assert len(tokens) == len(spread) == len(inputs)
        for index, (projection, wide, x, summed) in enumerate(zip(tokens, spread, inputs, (2, 1), strict=True)):
            assert projection.shape == x.shape[:2] and wide.shape == x.shape and projection.is_contiguous()
            torch.testing.assert_close(projection, relevance.sum(summed), msg=f"{method.get_name()} text {index}")
            torch.testing.assert_close(wide.sum(-1), projection)
            torch.testing.assert_close(projection.sum(1) + delta, relevance.sum((1, 2)) + delta)
        torch.testing.assert_close(per_text(relevance)[0], tokens[0])
    one_line(ValueError, "per_text='pairs': choose", lambda: BiLRP(model).attribute(inputs, per_text="pairs"))


def test_sensitivity_max_takes_the_attribute_method_directly():
    """Before: a tensor-size error until the user returned a 1-tuple. Now Captum's call works, and equals the metric
    recomputed by hand from the same perturbation."""
    model = tiny_similarity_model("bert", "mean", "cosine")
    inputs, masks, _ = embedding_outputs(model)
    generator = torch.Generator().manual_seed(1)
    noise = tuple(0.02 * torch.randn(x.shape, generator=generator, dtype=x.dtype) for x in inputs)

    def fixed_perturbation(expanded):  # n_perturb_samples=1: the expanded batch is the batch
        return tuple(x + n for x, n in zip(expanded, noise, strict=True))

    for method in compare_methods(model):
        options = {} if isinstance(method, IntegratedGradients) else {"per_text": "tokens"}
        measured = sensitivity_max(
            method.attribute, inputs, additional_forward_args=masks, n_perturb_samples=3, **options
        )
        assert measured.shape == (2,) and bool(torch.isfinite(measured).all())
        if isinstance(method, bilrp.RandomInteraction | IntegratedGradients):
            continue
        unmoved = sensitivity_max(
            method.attribute, inputs, additional_forward_args=masks, perturb_radius=0.0, n_perturb_samples=2, **options
        )
        assert float(unmoved.abs().max()) < 1e-9, method.get_name()
        measured = sensitivity_max(
            method.attribute,
            inputs,
            perturb_func=fixed_perturbation,
            additional_forward_args=masks,
            n_perturb_samples=1,
            **options,
        )
        before = method.attribute(inputs, additional_forward_args=masks, **options)
        after = method.attribute(fixed_perturbation(inputs), additional_forward_args=masks, **options)
        change = torch.cat([(x - y).flatten(1) for x, y in zip(before, after, strict=True)], 1).norm(dim=1)
        expected = change / torch.cat([x.flatten(1) for x in before], 1).norm(dim=1)
        torch.testing.assert_close(measured, expected, msg=method.get_name())


def test_infidelity_with_token_removal_equals_the_metric_by_hand():
    model = tiny_similarity_model("bert", "mean", "cosine")
    inputs, masks, _ = embedding_outputs(model)
    samples = 4
    for method in compare_methods(model):
        options = {} if isinstance(method, IntegratedGradients) else {"per_text": "inputs"}
        attributions = method.attribute(inputs, additional_forward_args=masks, **options)
        measured = infidelity(
            method.forward_func,
            TokenRemoval(0.3, seed=5),
            inputs,
            attributions,
            additional_forward_args=masks,
            n_perturb_samples=samples,
        )
        expanded = tuple(x.repeat_interleave(samples, 0) for x in inputs)
        removed, perturbed = TokenRemoval(0.3, seed=5)(expanded)
        for mask_index, (indicator, x) in enumerate(zip(removed, expanded, strict=True)):
            assert set(indicator.unique().tolist()) <= {0.0, 1.0}
            torch.testing.assert_close(perturbed[mask_index], x * (1 - indicator))
        assert bool(((removed[0].sum((1, 2)) == 0) | (removed[1].sum((1, 2)) == 0)).all())  # one text per example
        big_masks = tuple(m.repeat_interleave(samples, 0) for m in masks)
        with torch.no_grad():
            drop = method.forward_func(*expanded, *big_masks) - method.forward_func(*perturbed, *big_masks)
        predicted = sum(
            (a.repeat_interleave(samples, 0) * i).flatten(1).sum(1) for a, i in zip(attributions, removed, strict=True)
        )
        expected = (predicted - drop).pow(2).view(-1, samples).mean(1)
        torch.testing.assert_close(measured, expected, msg=method.get_name())


def test_token_removal_predicts_bilrp_exactly_on_a_linear_model():
    """With a token-wise linear encoder (no mixing, no biases) and dot similarity, removing tokens of one text changes
    the score by exactly their per-text relevance: infidelity is 0, so the metric measures what it should."""
    model = tiny_similarity_model("bert", "mean", "dot")
    model.encoder.encoder.layer = nn.ModuleList()  # no Transformer layers: phi is the mean of the inputs
    inputs, masks, _ = embedding_outputs(model)
    attribution = BiLRP(model)
    spread = attribution.attribute(inputs, additional_forward_args=masks, per_text="inputs")
    measured = infidelity(
        attribution.forward_func,
        TokenRemoval(0.5, seed=2),
        inputs,
        spread,
        additional_forward_args=masks,
        n_perturb_samples=6,
    )
    assert float(measured.max()) < 1e-20
    noisy = infidelity(
        attribution.forward_func,
        TokenRemoval(0.5, seed=2),
        inputs,
        tuple(2 * s for s in spread),
        additional_forward_args=masks,
        n_perturb_samples=6,
    )
    assert float(noisy.min()) > 1e-6  # a wrong attribution is seen


def test_visualize_text_shows_the_per_text_projection():
    model = tiny_similarity_model("bert", "mean", "cosine")
    inputs, masks, (a, b) = embedding_outputs(model)
    relevance, delta = BiLRP(model).attribute(inputs, additional_forward_args=masks, return_convergence_delta=True)
    tokens_a, tokens_b = per_text(relevance)
    records = []
    for tokens, words in ((tokens_a, a["tokens"][0]), (tokens_b, b["tokens"][0])):
        row = tokens[0, : len(words)]
        records.append(
            viz.VisualizationDataRecord(
                row / row.abs().max(),
                float(relevance[0].sum() + delta[0]),
                "similar",
                "similar",
                "text",
                float(row.sum()),
                words,
                float(delta[0]),
            )
        )
    html = viz.visualize_text(records).data
    for words in (a["tokens"][0], b["tokens"][0]):
        assert all(word.strip("#") in html for word in words)
    strongest = int(tokens_a[0].abs().argmax())
    colour = "hsl(120, 75%, 50%)" if float(tokens_a[0, strongest]) > 0 else "hsl(0, 75%, 60%)"
    assert colour in html  # the strongest token of A gets the full colour of its sign


# ------------------------------------------------------------------------------- case 7: errors that say what to pass
def test_errors_say_what_to_pass():
    one_line(
        TypeError,
        r"the function .*SimilarityModel\(encoder, tokenizer",
        lambda: BiLRP(lambda emb_a, emb_b: (emb_a * emb_b).sum()),
    )
    one_line(
        TypeError,
        r"an encoder alone has no pooling .*SimilarityModel\(encoder, tokenizer",
        lambda: BiLRP(tiny_encoder("bert")),
    )

    class PositionalEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = tiny_encoder("bert")
            self.embeddings = self.inner.embeddings

        def forward(self, ids, mask):
            return self.inner(input_ids=ids, attention_mask=mask)

    one_line(
        TypeError,
        r"forward\(ids, mask\).*forward\(input_ids=\.\.\., attention_mask=\.\.\.\)",
        lambda: SimilarityModel(PositionalEncoder(), tokenizer()),
    )
    bare = SimilarityModel(tiny_encoder("bert"), max_length=32)
    for call in (lambda: bilrp.explain(bare, "a man", "a woman"), lambda: bare.tokenize(["a man"])):
        one_line(ValueError, r"has no tokenizer.*SimilarityModel\(encoder, tokenizer\)", call)
