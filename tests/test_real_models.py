"""The real all-mpnet-base-v2 (MPNet, 12 layers, 768 dims) against sentence-transformers itself.

The model comes from ``../shared/models/fetch-all-mpnet-base-v2`` (or ``BILRP_MPNET_DIR``) through the
``mpnet`` fixture, which skips these tests when it cannot be fetched.
"""

import pytest
import torch

import bilrp

pytestmark = pytest.mark.slow

PAIRS = [
    ("A man is playing a guitar.", "Someone plays music."),
    ("The cat sits on the mat.", "A dog runs in the park."),
    ("A woman is slicing an onion.", "A woman is cutting an onion into pieces."),
]


@pytest.fixture(scope="module")
def st_mpnet(mpnet):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(mpnet.folder), device="cpu")


def test_mpnet_loads_from_the_fetched_folder(mpnet):
    config = mpnet.encoder.config
    assert config.model_type == "mpnet"
    assert (config.num_hidden_layers, config.hidden_size) == (12, 768)
    assert (mpnet.pooling_name, mpnet.similarity) == ("mean", "cosine")
    assert mpnet.max_length == 384


@pytest.mark.parametrize("text_a, text_b", PAIRS)
def test_mpnet_score_matches_sentence_transformers_and_is_conserved(mpnet, st_mpnet, text_a, text_b):
    explanation = bilrp.explain(mpnet, text_a, text_b)
    expected = st_mpnet.similarity(st_mpnet.encode([text_a]), st_mpnet.encode([text_b])).item()
    assert explanation.score == pytest.approx(expected, abs=1e-5)
    # summed in float64 (as Explanation.bias is): on MPNet the relevance sums to ~170 and the bias to ~-170,
    # so a float32 sum alone is off by ~1e-5
    assert explanation.relevance.double().sum().item() + explanation.bias == pytest.approx(explanation.score, abs=1e-5)
    assert torch.isfinite(explanation.relevance).all()


def test_mpnet_replay_and_forward_mode_agree(mpnet):
    text_a, text_b = PAIRS[0]
    replay = bilrp.explain(mpnet, text_a, text_b, mode="replay").relevance
    forward = bilrp.explain(mpnet, text_a, text_b, mode="forward").relevance
    assert replay.shape == forward.shape
    assert (replay - forward).abs().max().item() <= 1e-4 * replay.abs().max().item()
