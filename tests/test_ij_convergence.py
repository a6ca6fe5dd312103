"""Integrated Jacobians: references (PAD, MASK, zero, callable), step error and the decomposition of the score."""

import copy

import pytest
import torch

from bilrp import IntegratedJacobians, SimilarityModel
from test_bilrp import assert_close, batch_inputs
from tiny_models import tiny_encoder, tiny_similarity_model

TEXTS_A = ["a man is playing a guitar", "dogs run"]
TEXTS_B = ["someone plays music", "two dogs are running in a park"]


def token_reference_ids(model, texts, token_id):
    """Hand-made reference ids: ``[CLS] token ... token [SEP]`` on each text's real positions, pad after."""
    tokens = model.tokenize(texts)
    rows = []
    for ids, mask in zip(tokens["input_ids"].tolist(), tokens["attention_mask"].tolist(), strict=True):
        real = sum(mask)
        row = [ids[0]] + [token_id] * (real - 2) + [ids[real - 1]] + [model.tokenizer.pad_token_id] * (len(ids) - real)
        rows.append(row)
    return torch.tensor(rows), tokens["attention_mask"]


def normalised(model, embeddings, mask):
    """``n(x)`` written out: the representation, divided by its norm for cosine."""
    phi = model.represent(embeddings, mask)
    return phi / phi.norm(dim=-1, keepdim=True) if model.similarity == "cosine" else phi


def midpoint_contributions(model, x, reference, mask, steps):
    """Slow reference: one autograd backward per dimension and path midpoint, ``C[b, i, m]``."""
    direction = (x - reference) * mask[..., None]
    total = 0.0
    for k in range(steps):
        point = (reference + (k + 0.5) / steps * (x - reference)).detach().requires_grad_(True)
        out = normalised(model, point, mask)
        rows = []
        for m in range(out.shape[-1]):
            (grad,) = torch.autograd.grad(out[:, m].sum(), point, retain_graph=True)
            rows.append((grad * direction).sum(-1))  # (batch, seq)
        total = total + torch.stack(rows, dim=-1) / steps
    return total.detach()


@pytest.mark.parametrize("reference", ["pad", "mask"])
def test_token_reference_is_the_embedded_token_sequence(reference):
    model = tiny_similarity_model("bert", "mean", "cosine")
    emb, _, mask, _ = batch_inputs(model, TEXTS_A, TEXTS_B)
    token_id = getattr(model.tokenizer, f"{reference}_token_id")
    ids, _ = token_reference_ids(model, TEXTS_A, token_id)
    assert ids[1].tolist()[:5] == [101, token_id, token_id, 102, 0]  # [CLS] dogs run [SEP] -> [CLS] t t [SEP]
    with torch.no_grad():
        expected = model.encoder.embeddings(input_ids=ids)  # the model's embedding module, called directly
    made = IntegratedJacobians(model, reference=reference).reference_input(emb, mask)
    assert_close(made, expected, rtol=1e-12)


def test_pad_reference_on_mpnet_keeps_the_special_tokens():
    model = tiny_similarity_model("mpnet", "mean", "cosine")
    emb, _, mask, _ = batch_inputs(model, TEXTS_A, TEXTS_B)
    ids, _ = token_reference_ids(model, TEXTS_A, model.tokenizer.pad_token_id)
    with torch.no_grad():
        expected = model.encoder.embeddings(input_ids=ids)
    real = mask.bool()
    made = IntegratedJacobians(model).reference_input(emb, mask)
    assert_close(made[real], expected[real], rtol=1e-12)


@pytest.mark.parametrize("architecture", ["bert", "mpnet"])
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_contributions_equal_a_per_dimension_midpoint_integral(architecture, similarity):
    model = tiny_similarity_model(architecture, "mean", similarity)
    emb, _, mask, _ = batch_inputs(model, TEXTS_A, TEXTS_B)
    ids, _ = token_reference_ids(model, TEXTS_A, model.tokenizer.pad_token_id)
    with torch.no_grad():
        reference = model.embed(ids, mask)
    expected = midpoint_contributions(model, emb, reference, mask, steps=3)
    contributions, phi = IntegratedJacobians(model, n_steps=3).contributions(emb, mask)
    assert_close(contributions, expected)
    assert torch.all(contributions[1, int(mask[1].sum()) :] == 0)
    with torch.no_grad():
        assert_close(phi, normalised(model, emb, mask))


def test_step_error_completes_the_decomposition_and_shrinks_with_steps():
    model = tiny_similarity_model("bert", "mean", "cosine")
    emb, _, mask, _ = batch_inputs(model, ["dogs run"], ["music"])
    ids, _ = token_reference_ids(model, ["dogs run"], model.tokenizer.pad_token_id)
    with torch.no_grad():
        reference_phi = normalised(model, model.embed(ids, mask), mask)  # n(r), computed independently
    errors = []
    for steps in (10, 400):
        ij = IntegratedJacobians(model, n_steps=steps, mode="reverse")  # one batched backward per step: fast
        contributions, phi = ij.contributions(emb, mask)
        assert_close(ij.reference_representation(emb, mask), reference_phi, rtol=1e-12)
        error = ij.step_error(contributions, phi, reference_phi)
        assert_close(contributions.sum(1) + reference_phi + error, normalised(model, emb, mask).detach(), rtol=1e-12)
        errors.append(error.norm(dim=-1).max())
    assert errors[0] > 1e-6 and errors[1] < errors[0] / 300  # midpoint rule: about (400 / 10) ** 2 smaller


def test_delta_is_reference_terms_plus_pair_step_error():
    model = tiny_similarity_model("bert", "mean", "cosine")
    emb_a, emb_b, mask_a, mask_b = batch_inputs(model, TEXTS_A, TEXTS_B)
    ij = IntegratedJacobians(model, n_steps=5)
    relevance, delta = ij.attribute(
        (emb_a, emb_b), additional_forward_args=(mask_a, mask_b), return_convergence_delta=True
    )
    ref_a, ref_b = ij.reference_input(emb_a, mask_a), ij.reference_input(emb_b, mask_b)
    with torch.no_grad():  # exact reference terms s(r, x') + s(x, r') - s(r, r'), from the model itself
        terms = (
            model(ref_a, emb_b, mask_a, mask_b)
            + model(emb_a, ref_b, mask_a, mask_b)
            - model(ref_a, ref_b, mask_a, mask_b)
        )
    pieces = []
    for emb, mask in ((emb_a, mask_a), (emb_b, mask_b)):
        contributions, phi = ij.contributions(emb, mask)
        pieces.append((contributions.sum(1), ij.step_error(contributions, phi, ij.reference_representation(emb, mask))))
    (total_a, e_a), (total_b, e_b) = pieces
    pair_error = (total_a * e_b + e_a * total_b + e_a * e_b).sum(-1)
    assert pair_error.abs().max() > 1e-6  # 5 steps leave a visible step error ...
    assert_close(delta, terms + pair_error, rtol=1e-9)  # ... which with the reference terms is all of delta
    assert_close(relevance.sum((1, 2)), (total_a * total_b).sum(-1), rtol=1e-9)


def test_captum_baselines_take_precedence_and_baseline_keyword_is_a_callable_reference():
    model = tiny_similarity_model("bert", "mean", "cosine")
    emb_a, emb_b, mask_a, mask_b = batch_inputs(model, TEXTS_A, TEXTS_B)
    masks = (mask_a, mask_b)
    given = IntegratedJacobians(model, n_steps=4, reference="mask").attribute((emb_a, emb_b), (0.5, 0.5), None, masks)
    for made in (
        IntegratedJacobians(model, n_steps=4, reference=lambda e, m: torch.full_like(e, 0.5)),
        IntegratedJacobians(model, n_steps=4, baseline=lambda e, m: torch.full_like(e, 0.5)),
    ):
        assert_close(made.attribute((emb_a, emb_b), additional_forward_args=masks), given, rtol=1e-12)
    zero = IntegratedJacobians(model, n_steps=4, reference="zero")
    assert_close(
        zero.attribute((emb_a, emb_b), 0.0, None, masks), zero.attribute((emb_a, emb_b), None, None, masks), 1e-12
    )
    assert not torch.allclose(zero.attribute((emb_a, emb_b), None, None, masks), given)


def one_line_error(build, match):
    with pytest.raises(ValueError, match=match) as caught:
        build()
    assert "\n" not in str(caught.value)


def test_bad_references_are_refused_in_one_line():
    model = tiny_similarity_model("bert")
    one_line_error(lambda: IntegratedJacobians(model, reference="pads"), "unknown reference 'pads'")
    one_line_error(lambda: IntegratedJacobians(model, reference=None), "unknown reference None")
    one_line_error(
        lambda: IntegratedJacobians(model, reference="mask", baseline=lambda e, m: e), "reference= or baseline="
    )
    without_mask = copy.copy(model)
    without_mask.tokenizer = copy.deepcopy(model.tokenizer)
    without_mask.tokenizer.mask_token = None
    one_line_error(lambda: IntegratedJacobians(without_mask, reference="mask"), "has no mask token")
    bare = SimilarityModel(tiny_encoder("bert"), tokenizer=None, max_length=64)
    one_line_error(lambda: IntegratedJacobians(bare), "needs the model's tokenizer")
    IntegratedJacobians(bare, reference="zero")  # needs no tokenizer
    emb, _, mask, _ = batch_inputs(model, TEXTS_A, TEXTS_B)
    wrong = IntegratedJacobians(model, reference=lambda e, m: e[:, :1])
    one_line_error(lambda: wrong.contributions(emb, mask), "returned shape")
