"""Spearman, error by gold level, quantile groups and their top word interactions, checked by hand."""

import json
import math

import pytest
import torch

from analysis_helpers import word_explanation
from bilrp.analysis.corpus import CorpusRecord
from bilrp.analysis.metrics import error_by_level, gold_range, spearman
from bilrp.analysis.quantiles import compare_models, quantile_groups, top_interactions


def record(index, score, gold, words_a="a dog", words_b="a dog", relevance=None):
    if relevance is None:
        relevance = torch.zeros(len(words_a.split()) + 2, len(words_b.split()) + 2)
    return CorpusRecord(index, gold, word_explanation(words_a, words_b, relevance, score))


def test_spearman_by_hand():
    records = [record(i, s, g) for i, (s, g) in enumerate(zip([0.1, 0.2, 0.3, 0.4], [1, 2, 4, 3], strict=True))]
    assert spearman(records) == pytest.approx(1 - 6 * 2 / (4 * 15))  # rank differences 0, 0, 1, -1
    with pytest.raises(ValueError, match="at least 2"):
        spearman(records[:1])


def test_error_by_level_by_hand():
    golds, scores = [0.5, 1.5, 5.0, 4.2], [0.2, 0.3, 0.9, 1.0]
    records = [record(i, s, g) for i, (s, g) in enumerate(zip(scores, golds, strict=True))]
    levels = error_by_level(records, (0.0, 5.0))
    assert [(level.low, level.high, level.count) for level in levels] == [
        (0, 1, 1), (1, 2, 1), (2, 3, 0), (3, 4, 0), (4, 5, 2)
    ]  # fmt: skip
    # errors: 0.2-0.1, 0.3-0.3, 0.9-1.0, 1.0-0.84
    assert levels[0].mean_error == pytest.approx(0.1) and levels[1].mean_error == pytest.approx(0.0)
    assert levels[4].mean_error == pytest.approx((-0.1 + 0.16) / 2)
    assert levels[4].mean_absolute_error == pytest.approx((0.1 + 0.16) / 2)
    assert levels[4].std_error == pytest.approx(0.13)
    assert math.isnan(levels[2].mean_error)
    assert [level.count for level in error_by_level(records, (0.0, 5.0), levels=2)] == [2, 2]
    with pytest.raises(ValueError, match="high > low"):
        error_by_level(records, (5.0, 0.0))


def test_gold_ranges():
    assert gold_range("stsb") == (0.0, 5.0) and gold_range("mstsb-en-de") == (0.0, 5.0)
    assert gold_range("sick") == (1.0, 5.0) and gold_range("biosses") == (0.0, 4.0)
    with pytest.raises(ValueError, match="no known gold-score range"):
        gold_range("other")


def test_quantile_groups_take_a_quarter_from_each_end():
    records = [record(i, s, 0.0) for i, s in enumerate([0.5, 0.9, 0.1, 0.7, 0.3, 0.9, 0.2, 0.4])]
    groups = quantile_groups(records, 0.25)
    assert [r.index for r in groups["highest"]] == [1, 5]  # both 0.9, in corpus order
    assert [r.index for r in groups["lowest"]] == [2, 6]  # 0.1, 0.2
    with pytest.raises(ValueError, match="fraction"):
        quantile_groups(records, 0.6)


def test_top_interactions_sum_word_pairs_over_pairs_regardless_of_side():
    # rows [CLS] a dog [SEP] x columns [CLS] the cat [SEP]
    first = record(0, 0.9, 4.0, "a dog", "the cat", [[0, 0, 0, 0], [0, 0.05, 0, 0], [0, 0, 0.4, 0], [0, 0, 0, -0.1]])
    # rows [CLS] cat [SEP] x columns [CLS] dog [SEP]: cat-dog is the same interaction as dog-cat
    second = record(1, 0.8, 4.0, "cat", "Dog", [[0.2, 0, 0], [0, 0.3, -0.2], [0, 0, 0]])
    positive = top_interactions([first, second], k=3)
    assert [(t.word_a, t.word_b, t.occurrences) for t in positive] == [
        ("cat", "dog", 2), ("[CLS]", "[CLS]", 2), ("a", "the", 1)
    ]  # fmt: skip
    assert positive[0].relevance == pytest.approx(0.7) and positive[0].label == "cat – dog"
    negative = top_interactions([first, second], k=3, sign="negative")
    assert [(t.label, t.relevance) for t in negative] == [
        ("[SEP] – cat", pytest.approx(-0.2)),
        ("[SEP] – [SEP]", pytest.approx(-0.1)),
    ]  # only two negative interactions exist
    with pytest.raises(ValueError, match="sign"):
        top_interactions([first], sign="both")


def test_compare_models_and_save(tmp_path):
    records = [record(i, s, g) for i, (s, g) in enumerate([(0.9, 5.0), (0.1, 0.0), (0.5, 2.5), (0.6, 3.0)])]
    flipped = [record(r.index, 1 - r.score, r.gold) for r in records]
    comparison = compare_models({"good": records, "bad": flipped}, "stsb", (0.0, 5.0), fraction=0.25, k=2)
    assert [m.label for m in comparison.models] == ["good", "bad"]
    assert comparison.models[0].spearman == pytest.approx(1.0) and comparison.models[1].spearman == pytest.approx(-1.0)
    written = comparison.save(tmp_path)
    assert sorted(p.name for p in written) == [
        "quantiles.json", "quantiles.md", "quantiles_errors.csv", "quantiles_errors.png",
        "quantiles_interactions.csv", "quantiles_interactions.png",
    ]  # fmt: skip
    data = json.loads((tmp_path / "quantiles.json").read_text())
    assert data["models"][1]["levels"][0]["count"] == 1 and data["fraction"] == 0.25
    assert "| good | 4 | 100 |" in (tmp_path / "quantiles.md").read_text()
