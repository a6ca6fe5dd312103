"""POS-tag interaction aggregates, checked by hand on two small explanations."""

import csv
import gzip
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from analysis_helpers import WhitespaceTagger, word_explanation
from bilrp import explain_batch
from bilrp.analysis.pos import PosInteractions, order_tags, pos_interactions, save_pos
from bilrp.analysis.tagging import HanTaTagger, load_tagger
from bilrp.nlp import load_spacy, pipeline_names
from tiny_models import tiny_similarity_model

WORD_TAGS = {"dogs": "NOUN", "cats": "NOUN", "run": "VERB"}


# rows [CLS] dogs run [SEP], columns [CLS] cats run [SEP]
FIRST = [[0.1, 0.0, -0.1, 0.0], [0.0, 0.5, -0.2, 0.0], [0.0, 0.1, 0.3, -0.05], [0.0, 0.0, 0.0, 0.2]]
# rows [CLS] run [SEP], columns [CLS] dogs run [SEP]
SECOND = [[0.0, 0.0, 0.0, 0.0], [0.0, -0.4, 0.6, 0.0], [0.0, 0.0, 0.0, 0.1]]


@pytest.fixture
def interactions():
    explanations = [word_explanation("dogs run", "cats run", FIRST), word_explanation("run", "dogs run", SECOND)]
    return pos_interactions(explanations, WhitespaceTagger(WORD_TAGS.get))


def value(interactions, array, tag_a, tag_b):
    return array[interactions.tags_a.index(tag_a), interactions.tags_b.index(tag_b)]


def test_sums_and_counts_by_hand(interactions):
    assert interactions.tags_a == ["NOUN", "VERB", "[CLS]", "[SEP]"] == interactions.tags_b
    expected = {  # (tag_a, tag_b): (positive, negative, count)
        ("NOUN", "NOUN"): (0.5, 0.0, 1),  # dogs-cats
        ("NOUN", "VERB"): (0.0, -0.2, 1),  # dogs-run
        ("VERB", "NOUN"): (0.1, -0.4, 2),  # run-cats, run-dogs
        ("VERB", "VERB"): (0.9, 0.0, 2),  # run-run twice
        ("[CLS]", "[CLS]"): (0.1, 0.0, 2),
        ("[CLS]", "VERB"): (0.0, -0.1, 2),
        ("VERB", "[SEP]"): (0.0, -0.05, 2),
        ("[SEP]", "[SEP]"): (0.3, 0.0, 2),
        ("[SEP]", "NOUN"): (0.0, 0.0, 2),
    }
    for (tag_a, tag_b), (positive, negative, count) in expected.items():
        assert value(interactions, interactions.positive, tag_a, tag_b) == pytest.approx(positive)
        assert value(interactions, interactions.negative, tag_a, tag_b) == pytest.approx(negative)
        assert value(interactions, interactions.count, tag_a, tag_b) == count
    assert value(interactions, interactions.count, "NOUN", "[CLS]") == 1  # only the first pair has a NOUN in A
    assert interactions.count.sum() == 4 * 4 + 3 * 4
    assert interactions.n_pairs == 2


def test_normalised_mean_and_shares_by_hand(interactions):
    assert interactions.scale == pytest.approx(0.9)  # VERB-VERB positive is the largest absolute total
    positive, negative = interactions.normalised()
    assert value(interactions, positive, "VERB", "VERB") == pytest.approx(1.0)
    assert value(interactions, negative, "VERB", "NOUN") == pytest.approx(-0.4 / 0.9)
    mean_positive, mean_negative = interactions.mean()
    assert value(interactions, mean_positive, "VERB", "VERB") == pytest.approx(0.45)
    assert value(interactions, mean_negative, "VERB", "NOUN") == pytest.approx(-0.2)
    share_positive, share_negative = interactions.shares()
    assert value(interactions, share_positive, "VERB", "VERB") == pytest.approx(0.9 / 1.9)  # 0.5+0.1+0.9+0.1+0.3
    assert value(interactions, share_negative, "VERB", "NOUN") == pytest.approx(0.4 / 0.75)  # 0.2+0.4+0.1+0.05


def test_mean_is_nan_where_a_pair_never_occurs():
    never = PosInteractions(["A"], ["B", "C"], np.array([[1.0, 0.0]]), np.zeros((1, 2)), np.array([[2, 0]]), 1)
    mean_positive, _ = never.mean()
    assert mean_positive[0, 0] == 0.5 and np.isnan(mean_positive[0, 1])
    assert [row["tag_b"] for row in never.rows()] == ["B"]


def test_top_and_round_trip(interactions):
    assert [(r["tag_a"], r["tag_b"]) for r in interactions.top(2)] == [("VERB", "VERB"), ("NOUN", "NOUN")]
    assert [(r["tag_a"], r["tag_b"]) for r in interactions.top(1, "negative")] == [("VERB", "NOUN")]
    assert [(r["tag_a"], r["tag_b"]) for r in interactions.top(1, "positive", "mean", min_count=2)] == [
        ("VERB", "VERB")
    ]
    with pytest.raises(ValueError, match="sign must be"):
        interactions.top(1, "both")
    again = PosInteractions.from_dict(json.loads(json.dumps(interactions.to_dict())))
    assert again.tags_a == interactions.tags_a and np.array_equal(again.count, interactions.count)
    assert np.allclose(again.positive, interactions.positive) and np.allclose(again.negative, interactions.negative)


def test_order_tags_puts_upos_first():
    assert order_tags(["[SEP]", "VERB", "<s>", "NOUN", "PUNCT"]) == ["NOUN", "VERB", "PUNCT", "<s>", "[SEP]"]


def test_save_writes_json_csv_markdown_and_figure(interactions, tmp_path):
    written = save_pos(interactions, tmp_path, "test", {"dataset": "toy"}, k=3, min_count=2)
    assert sorted(p.name for p in written) == ["pos.csv", "pos.json", "pos.md", "pos.png"]
    data = json.loads((tmp_path / "pos.json").read_text())
    assert data["summary"] == {"dataset": "toy", "pairs": 2} and data["interactions"]["scale"] == pytest.approx(0.9)
    rows = list(csv.DictReader((tmp_path / "pos.csv").open()))
    assert len(rows) == int((interactions.count > 0).sum())
    assert "| VERB | VERB | 2 | 1 |" in (tmp_path / "pos.md").read_text()
    assert (tmp_path / "pos.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".*.tmp"))


def test_real_explanations_conserve_relevance_and_count_every_token_pair():
    model = tiny_similarity_model("bert", "mean", "cosine")
    pairs = [("A man plays the guitar.", "Someone plays music."), ("Two dogs run.", "A dog is running.")]
    explanations = explain_batch(model, pairs, progress=False)
    interactions = pos_interactions(explanations, load_tagger("en"))
    total = sum(float(e.relevance.double().sum()) for e in explanations)
    assert interactions.positive.sum() + interactions.negative.sum() == pytest.approx(total, abs=1e-12)
    assert interactions.count.sum() == sum(len(e.tokens_a) * len(e.tokens_b) for e in explanations)
    assert (
        value(interactions, interactions.count, "NOUN", "VERB") == 2 * 1 + 1 * 1
    )  # man/guitar x plays; dogs x running


class _Marks:
    """Unpickling this writes a marker file: stands for code planted in a model file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('planted code ran')",))


def test_the_german_tagger_never_loads_a_model_planted_in_the_working_directory(tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    with gzip.open(tmp_path / "morphmodel_ger.pgz", "wb") as file:
        pickle.dump(_Marks(marker), file)
    monkeypatch.chdir(tmp_path)
    tagger = HanTaTagger()
    assert not marker.exists()
    assert tagger.model_file.is_absolute() and tagger.model_file.parent != tmp_path
    assert [span.tag for span in tagger("Der Hund läuft.")] == ["DET", "NOUN", "VERB", "PUNCT"]


def test_spacy_pipelines_are_never_loaded_from_a_folder_in_the_working_directory(tmp_path, monkeypatch):
    import spacy

    for name in pipeline_names("en"):  # loadable pipelines that are not the installed ones
        spacy.blank("en").to_disk(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    load_spacy.cache_clear()
    try:
        nlp = load_spacy("en")
    finally:
        load_spacy.cache_clear()
    assert nlp.meta["name"].startswith("core_web_sm") and tmp_path not in Path(nlp.path).parents
