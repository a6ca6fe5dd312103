"""Conservation: BiLRP with zeroed biases sums exactly to the score; the original model is left alone."""

import json

import numpy as np
import pytest
import torch

import bilrp
from bilrp.evaluation.conservation import evaluate_conservation, zero_biases
from tiny_models import tiny_similarity_model

PAIRS = [("a dog runs", "the cat sleeps"), ("a man plays music", "a dog runs"), ("birds fly", "planes fly high")]


@pytest.fixture(scope="module")
def model():
    return tiny_similarity_model("bert", "mean", "cosine")


def test_zero_biases_copies_and_zeroes_every_bias(model):
    before = {name: p.clone() for name, p in model.named_parameters()}
    zeroed = zero_biases(model)
    biases = [p for name, p in zeroed.named_parameters() if name.endswith("bias")]
    assert biases and all(float(p.detach().abs().max()) == 0.0 for p in biases)
    assert any(float(p.detach().abs().max()) > 0 for name, p in model.named_parameters() if name.endswith("bias"))
    assert all(torch.equal(before[name], p) for name, p in model.named_parameters())


def test_conservation_of_each_variant(model):
    result = evaluate_conservation(model, PAIRS, batch_size=2, progress=False, config={"dataset": "toy"})
    assert list(result.scores) == ["hxp", "bilrp", "bilrp_zero_bias"]
    expected = np.array([float(model.score([a], [b])[0]) for a, b in PAIRS])
    assert result.scores["bilrp"] == pytest.approx(expected, rel=1e-9)
    zero_model = zero_biases(model)
    assert result.scores["bilrp_zero_bias"] == pytest.approx(
        [float(zero_model.score([a], [b])[0]) for a, b in PAIRS], rel=1e-9
    )
    # without biases BiLRP conserves exactly; with them the bias term is what is missing
    assert result.sums["bilrp_zero_bias"] == pytest.approx(result.scores["bilrp_zero_bias"], rel=1e-6)
    biases = [bilrp.explain(model, a, b, rules="paper").bias for a, b in PAIRS]
    assert result.scores["bilrp"] - result.sums["bilrp"] == pytest.approx(biases, abs=1e-9)
    statistics = result.statistics()
    assert statistics["bilrp_zero_bias"]["max_abs_gap"] < 1e-6
    assert statistics["bilrp"]["mean_abs_gap"] == pytest.approx(float(np.mean(np.abs(biases))))
    files = result.files()
    assert set(files) == {"results.md", "summary.json", "conservation.csv", "conservation.png"}
    assert json.loads(files["summary.json"])["n"] == 3
    assert files["conservation.csv"].splitlines()[0] == (
        "text_a,text_b,hxp_score,hxp_sum,bilrp_score,bilrp_sum,bilrp_zero_bias_score,bilrp_zero_bias_sum"
    )
