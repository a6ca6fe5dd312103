"""H x P, Integrated Jacobians, Embedding and Random baselines against independent references."""

import pytest
import torch

from bilrp import EmbeddingInteraction, HessianXProduct, IntegratedJacobians, RandomInteraction
from references import hessian_x_product
from test_bilrp import assert_close, batch_inputs
from tiny_models import tiny_similarity_model


@pytest.mark.parametrize("architecture", ["bert", "mpnet", "gpt-neo"])
@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_hessian_x_product_equals_autograd_hessian(architecture, similarity):
    model = tiny_similarity_model(architecture, "mean", similarity)
    emb_a, emb_b, mask_a, mask_b = batch_inputs(model, ["a man plays"], ["music is nice"])
    expected = hessian_x_product(model, emb_a, emb_b, mask_a, mask_b)
    relevance = HessianXProduct(model).attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))
    assert_close(relevance, expected)


def test_hessian_x_product_modes_agree_and_pad_to_zero():
    model = tiny_similarity_model("bert", "cls", "cosine")
    emb_a, emb_b, mask_a, mask_b = batch_inputs(model)
    forward = HessianXProduct(model, mode="forward").attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))
    reverse = HessianXProduct(model, mode="reverse").attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))
    assert_close(forward, reverse)
    assert torch.all(forward[1, int(mask_a[1].sum()) :] == 0)


def test_integrated_jacobians_completeness():
    """sum(R) = s(x,x') - s(r,x') - s(x,r') + s(r,r') for a reference r (midpoint rule, 64 steps)."""
    model = tiny_similarity_model("bert", "mean", "dot")
    emb_a, emb_b, mask_a, mask_b = batch_inputs(model, ["a man plays"], ["music is nice"])

    def reference(embeddings, mask):  # other tokens' embeddings: a path that stays away from zero
        return embeddings.roll(1, dims=1)

    attribution = IntegratedJacobians(model, n_steps=64, baseline=reference)
    relevance = attribution.attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))
    zero_a, zero_b = reference(emb_a, mask_a), reference(emb_b, mask_b)
    with torch.no_grad():
        expected = (
            model(emb_a, emb_b, mask_a, mask_b)
            - model(zero_a, emb_b, mask_a, mask_b)
            - model(emb_a, zero_b, mask_a, mask_b)
            + model(zero_a, zero_b, mask_a, mask_b)
        )
    assert torch.allclose(relevance.sum((1, 2)), expected, rtol=1e-3)


def test_integrated_jacobians_rejects_bad_steps():
    with pytest.raises(ValueError, match="n_steps must be a positive whole number"):
        IntegratedJacobians(tiny_similarity_model("bert"), n_steps=0)


def test_embedding_interaction_is_pooled_token_dot_products():
    model = tiny_similarity_model("bert", "mean", "dot")
    emb_a, emb_b, mask_a, mask_b = batch_inputs(model)
    relevance, delta = EmbeddingInteraction(model).attribute(
        (emb_a, emb_b), additional_forward_args=(mask_a, mask_b), return_convergence_delta=True
    )
    with torch.no_grad():
        h_a, h_b = model.hidden_states(emb_a, mask_a), model.hidden_states(emb_b, mask_b)
    na, nb = int(mask_a[0].sum()), int(mask_b[0].sum())
    expected = h_a[0, :na] @ h_b[0, :nb].T / (na * nb)
    assert_close(relevance[0, :na, :nb], expected)
    assert delta.abs().max() < 1e-10  # mean pooling + dot: the token dot products sum to the score


def test_random_interaction_is_seeded_and_masked():
    model = tiny_similarity_model("bert")
    emb_a, emb_b, mask_a, mask_b = batch_inputs(model)
    first = RandomInteraction(model, seed=3).attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))
    again = RandomInteraction(model, seed=3).attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))
    other = RandomInteraction(model, seed=4).attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.all(first[1, int(mask_a[1].sum()) :] == 0)
    assert RandomInteraction.get_name() == "Random"
