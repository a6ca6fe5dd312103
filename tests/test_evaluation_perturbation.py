"""Perturbation analysis: the protocol's pieces by hand, and whole runs on a tiny model against encode()."""

import csv
import io
import json

import numpy as np
import pytest
import torch

import bilrp
from bilrp.evaluation import EvaluationError, evaluate_perturbation
from bilrp.evaluation.perturbation import (
    aupc,
    filler_token_id,
    kept_counts,
    perturbation_fractions,
    perturbed_sequences,
    token_order,
)
from tiny_models import tiny_similarity_model

PAIRS = [("a dog runs", "the cat sleeps"), ("a man plays music", "a dog runs"), ("birds fly", "planes fly high")]


@pytest.fixture(scope="module")
def model():
    return tiny_similarity_model("bert", "mean", "cosine")


def test_fractions_counts_order_and_sequences_by_hand():
    fractions = perturbation_fractions(0.04)
    assert len(fractions) == 26 and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions[1] == pytest.approx(0.04)
    assert perturbation_fractions(0.3).tolist() == pytest.approx([0.0, 0.3, 0.6, 0.9, 1.0])
    # 10 tokens: 0 -> 0, 0.04 * 10 = 0.4 -> 0, 0.08 * 10 = 0.8 -> 1, 0.12 * 10 = 1.2 -> 1, 0.16 * 10 -> 2
    assert kept_counts(10, fractions)[:5].tolist() == [0, 0, 1, 1, 2]
    assert kept_counts(10, fractions)[-1] == 10
    assert kept_counts(2, np.array([0.25, 0.75])).tolist() == [1, 2]  # halves round up
    # positions 1..3 are perturbable; relevance 0.1, 0.7, 0.7 -> 2 before 3 (tie keeps text order), then 1
    assert token_order([9.0, 0.1, 0.7, 0.7, 9.0], [1, 2, 3]).tolist() == [2, 3, 1]
    sequences = perturbed_sequences([101, 7, 8, 9, 102], [2, 3, 1], [0, 1, 3], filler_id=103)
    assert sequences == [(101, 103, 103, 103, 102), (101, 103, 8, 103, 102), (101, 7, 8, 9, 102)]


def test_aupc_is_the_trapezoid_area():
    fractions = np.array([0.0, 0.5, 1.0])
    assert aupc(np.array([1.0, 0.5, 0.0]), fractions) == pytest.approx(0.5)
    assert aupc(np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), fractions).tolist() == pytest.approx([0.75, 0.0])


def test_filler_defaults_to_the_mask_token_and_checks_the_vocabulary(model):
    assert filler_token_id(model.tokenizer) == model.tokenizer.mask_token_id
    assert filler_token_id(model.tokenizer, "[UNK]") == model.tokenizer.unk_token_id
    with pytest.raises(EvaluationError, match="filler 'notatoken' is not a token"):
        filler_token_id(model.tokenizer, "notatoken")

    class NoMask:
        mask_token_id = None
        unk_token = "<unk>"

    with pytest.raises(EvaluationError, match="has no mask token: pass a filler token"):
        filler_token_id(NoMask())


def _unit(model, text):
    phi = model.encode([text])[0].double()
    return phi / phi.norm()


def test_curves_match_encoded_masked_texts(model):
    # three one-token words: with step 1/3 the curve points are 0, 1, 2 and 3 words put back
    result = evaluate_perturbation(model, PAIRS[:1], methods=["bilrp", "random"], step=1 / 3, progress=False, seed=0)
    assert result.fractions.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    curve = result.curves["bilrp"][0]  # text A of pair 0: "a dog runs"
    explanation = bilrp.explain(model, *PAIRS[0])
    rows = explanation.relevance.sum(1)[1:-1]  # the three words, special tokens dropped
    words = ["a", "dog", "runs"]
    first = int(torch.argmax(rows))
    masked = ["[MASK]"] * 3
    reference = _unit(model, "a dog runs")
    assert curve[0] == pytest.approx(float((_unit(model, " ".join(masked)) - reference).norm()), rel=1e-9)
    masked[first] = words[first]
    assert curve[1] == pytest.approx(float((_unit(model, " ".join(masked)) - reference).norm()), rel=1e-9)
    assert curve[-1] == pytest.approx(0.0, abs=1e-12)
    # every method starts from the same all-filler text and ends at the full text
    assert result.curves["random"][:, 0] == pytest.approx(result.curves["bilrp"][:, 0])
    assert result.curves["random"][:, -1] == pytest.approx(0.0, abs=1e-12)


def test_text_b_is_ordered_by_column_sums(model):
    result = evaluate_perturbation(model, PAIRS[:1], methods=["hxp"], step=1 / 3, progress=False)
    explanation = bilrp.explain(model, *PAIRS[0], method="hxp")
    columns = explanation.relevance.sum(0)[1:-1]
    words = ["the", "cat", "sleeps"]
    masked = ["[MASK]"] * 3
    masked[int(torch.argmax(columns))] = words[int(torch.argmax(columns))]
    expected = float((_unit(model, " ".join(masked)) - _unit(model, "the cat sleeps")).norm())
    assert result.curves["hxp"][1][1] == pytest.approx(expected, rel=1e-9)
    assert result.texts[1] == (0, "b", "the cat sleeps")


def test_full_run_gives_aupc_tests_and_files(model):
    result = evaluate_perturbation(
        model, PAIRS, method_options={"ij": {"n_steps": 2}}, progress=False, config={"dataset": "toy"}
    )
    assert list(result.curves) == ["random", "embedding", "hxp", "bilrp", "ij"]
    assert all(curve.shape == (6, 26) for curve in result.curves.values())
    assert [test.other for test in result.tests] == ["random", "embedding", "hxp", "ij"]
    values = result.aupc
    bilrp_test = {test.other: test for test in result.tests}["hxp"]
    assert bilrp_test.mean_difference == pytest.approx(float((values["bilrp"] - values["hxp"]).mean()))
    files = result.files()
    assert set(files) == {"results.md", "summary.json", "aupc.csv", "curves.csv", "curves.png"}
    summary = json.loads(files["summary.json"])
    assert summary["aupc"]["bilrp"]["mean"] == pytest.approx(float(values["bilrp"].mean()))
    assert summary["dataset"] == "toy" and summary["ij_options"] == {"n_steps": 2}
    rows = list(csv.DictReader(io.StringIO(files["aupc.csv"])))
    assert len(rows) == 6 and float(rows[0]["bilrp"]) == pytest.approx(float(values["bilrp"][0]))
    assert "| BiLRP |" in files["results.md"] and files["curves.png"].startswith(b"\x89PNG")


def test_random_orders_follow_the_seed(model):
    one = evaluate_perturbation(model, PAIRS, methods=["random"], progress=False, seed=1)
    again = evaluate_perturbation(model, PAIRS, methods=["random"], progress=False, seed=1)
    other = evaluate_perturbation(model, PAIRS, methods=["random"], progress=False, seed=2)
    assert np.array_equal(one.curves["random"], again.curves["random"])
    assert not np.array_equal(one.curves["random"], other.curves["random"])
    assert one.tests == []  # no BiLRP, nothing to test against


def test_dot_models_use_raw_distances(model):
    dot = tiny_similarity_model("bert", "mean", "dot")
    result = evaluate_perturbation(dot, PAIRS[:1], methods=["bilrp"], step=1 / 3, progress=False)
    masked = dot.encode(["[MASK] [MASK] [MASK]"])[0].double()
    assert result.curves["bilrp"][0][0] == pytest.approx(float((masked - dot.encode(["a dog runs"])[0]).norm()))
    assert result.config["normalize"] is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": ["bilrp", "lime"]}, "unknown method 'lime'"),
        ({"methods": []}, "methods is empty"),
        ({"methods": ["bilrp", "bilrp"]}, "lists a value twice"),
        ({"step": 0.0}, r"step must be a fraction in \(0, 1\], not 0.0"),
        ({"batch_size": 0}, "batch_size must be a positive whole number, not 0"),
        ({"methods": ["bilrp"], "method_options": {"ij": {"n_steps": 2}}}, "method_options given for methods not"),
    ],
)
def test_bad_arguments_raise_one_line_errors(model, kwargs, message):
    with pytest.raises(EvaluationError, match=message) as error:
        evaluate_perturbation(model, PAIRS[:1], progress=False, **kwargs)
    assert "\n" not in str(error.value)
