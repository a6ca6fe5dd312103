"""STS evaluation against scipy on the model's own scores, and the STS files."""

import json

import numpy as np
import pytest
from scipy import stats

from bilrp.datasets import SimilarityPair
from bilrp.evaluation import EvaluationError, evaluate_sts
from tiny_models import tiny_similarity_model

PAIRS = [
    SimilarityPair("a dog runs", "a dog is running", 4.5),
    SimilarityPair("a man plays guitar", "the sky is blue", 0.2),
    SimilarityPair("birds fly", "planes fly high", 2.0),
    SimilarityPair("the cat sleeps", "a cat is sleeping", 4.8),
    SimilarityPair("she reads a book", "he cooks dinner", 0.5),
]


@pytest.fixture(scope="module")
def model():
    return tiny_similarity_model("bert", "mean", "cosine")


def test_spearman_and_pearson_match_scipy_on_model_scores(model):
    result = evaluate_sts(model, PAIRS, batch_size=2, progress=False, config={"dataset": "toy"})
    expected = np.array([float(model.score([p.text_a], [p.text_b])[0]) for p in PAIRS])
    assert result.predictions == pytest.approx(expected, rel=1e-9)
    gold = [p.score for p in PAIRS]
    assert result.spearman == pytest.approx(100 * stats.spearmanr(expected, gold).statistic)
    assert result.pearson == pytest.approx(100 * stats.pearsonr(expected, gold).statistic)
    assert result.n == 5


def test_tuples_are_accepted_and_files_written(model):
    result = evaluate_sts(model, [(p.text_a, p.text_b, p.score) for p in PAIRS], progress=False)
    files = result.files()
    assert set(files) == {"results.md", "summary.json", "scores.csv", "scatter.png"}
    assert json.loads(files["summary.json"])["n"] == 5
    assert files["scores.csv"].count("\n") == 6


def test_too_few_pairs_or_missing_gold_raise(model):
    with pytest.raises(EvaluationError, match="at least two pairs, each with a gold score"):
        evaluate_sts(model, PAIRS[:1], progress=False)
    with pytest.raises(EvaluationError, match="at least two pairs, each with a gold score"):
        evaluate_sts(model, [("a", "b"), ("c", "d")], progress=False)
    with pytest.raises(EvaluationError, match="no pairs to evaluate"):
        evaluate_sts(model, [], progress=False)
    with pytest.raises(EvaluationError, match="pair 0 is str"):
        evaluate_sts(model, ["a dog"], progress=False)
