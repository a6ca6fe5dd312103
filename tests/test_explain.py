"""explain / explain_batch / Explanation: consistency with the attributions, cache, words, JSON."""

import json

import pytest
import torch

import bilrp
from bilrp import BiLRP, Explanation, explain, explain_batch
from test_bilrp import batch_inputs
from tiny_models import tiny_similarity_model


@pytest.fixture(scope="module")
def model():
    return tiny_similarity_model("bert", "mean", "cosine")


@pytest.mark.parametrize("method", list(bilrp.METHODS))
def test_explain_matches_attribute_and_conserves(model, method):
    explanation = explain(model, "a man is playing a guitar", "someone plays music", method=method)
    assert explanation.relevance.shape == (len(explanation.tokens_a), len(explanation.tokens_b))
    assert explanation.tokens_a[0] == "[CLS]" and explanation.tokens_a[-1] == "[SEP]"
    assert explanation.score == pytest.approx(
        float(model.score(["a man is playing a guitar"], ["someone plays music"]))
    )
    assert explanation.relevance.double().sum() + explanation.bias == pytest.approx(explanation.score, abs=1e-9)
    if method == "bilrp":
        emb_a, emb_b, mask_a, mask_b = batch_inputs(model, ["a man is playing a guitar"], ["someone plays music"])
        expected = BiLRP(model).attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))[0]
        assert torch.allclose(explanation.relevance, expected, rtol=1e-9, atol=1e-12)


def test_explain_batch_cache_gives_the_same_as_single_pairs(model):
    pairs = [("a dog runs", "a cat sleeps"), ("a dog runs", "the dog is running fast"), ("birds fly", "a dog runs")]
    batch = explain_batch(model, pairs, progress=False, batch_size=2)
    for (text_a, text_b), explanation in zip(pairs, batch, strict=True):
        single = explain(model, text_a, text_b)
        assert explanation.tokens_a == single.tokens_a and explanation.tokens_b == single.tokens_b
        assert torch.allclose(explanation.relevance, single.relevance, rtol=1e-9, atol=1e-12)
        assert explanation.score == pytest.approx(single.score, abs=1e-12)


def test_to_words_conserves_and_groups_subtokens(model):
    explanation = explain(model, "unbelievably tokenization", "a tokenizer")
    words = explanation.to_words()
    assert words.tokens_a == ["[CLS]", "unbelievably", "tokenization", "[SEP]"]
    assert len(explanation.tokens_a) > len(words.tokens_a)
    assert float(words.relevance.sum()) == pytest.approx(float(explanation.relevance.double().sum()), abs=1e-10)
    assert words.bias == explanation.bias


def test_top_orders_pairs_by_sign_and_size():
    relevance = torch.tensor([[0.5, -0.2], [0.1, -0.7]])
    explanation = Explanation(["a", "b"], ["x", "y"], relevance, score=-0.3, bias=0.0)
    top = explanation.top(5)
    assert [(p.token_a, p.token_b) for p in top["positive"]] == [("a", "x"), ("b", "x")]
    assert [(p.token_a, p.token_b, p.relevance) for p in top["negative"]][0] == ("b", "y", pytest.approx(-0.7))
    assert len(explanation.top(1)["negative"]) == 1


def test_json_round_trip(model, tmp_path):
    explanation = explain(model, "a dog runs", "a cat sleeps")
    path = tmp_path / "e.json"
    explanation.to_json(path)
    loaded = Explanation.from_dict(json.loads(path.read_text()))
    assert loaded.tokens_a == explanation.tokens_a and loaded.method == "bilrp"
    assert torch.allclose(loaded.relevance, explanation.relevance.double())
    assert set(explanation.to_dict()) == {
        "model",
        "method",
        "text_a",
        "text_b",
        "tokens_a",
        "tokens_b",
        "relevance",
        "score",
        "bias",
        "prompt_a",
        "prompt_b",
        "prompt_length_a",
        "prompt_length_b",
        "rules",
        "bias_share",
        "tokens_a_with_bias_b",
        "bias_a_with_tokens_b",
        "bias_with_bias",
        "step_error",
    }
    assert loaded.rules == explanation.rules and loaded.has_decomposition
    assert torch.allclose(loaded.decomposition(), explanation.decomposition())
    assert abs(loaded.bias_share - explanation.bias_share) < 1e-12


def test_bad_inputs_raise_clear_errors(model):
    with pytest.raises(ValueError, match="empty text"):
        explain(model, "   ", "a cat")
    with pytest.raises(ValueError, match="unknown method"):
        explain(model, "a dog", "a cat", method="shap")
    long_text = " ".join(["word"] * 100)
    with pytest.warns(UserWarning, match="tokens dropped"):
        explanation = explain(model, long_text, "a cat")
    assert len(explanation.tokens_a) == model.max_length
    with pytest.raises(bilrp.models.TextTooLongError, match="exceeds the model maximum"):
        explain(model, long_text, "a cat", truncate=False)
