"""Multilingual comparison: settings, share changes by hand, and honest handling of a missing tagger."""

import json

import numpy as np
import pytest

from analysis_helpers import WhitespaceTagger, word_explanation
from bilrp.analysis.corpus import CorpusRecord
from bilrp.analysis.multilingual import LanguageSetting, compare_settings, relevance_changes, settings_for
from bilrp.analysis.pos import PosInteractions
from bilrp.analysis.tagging import TaggerUnavailableError


def interactions(tags, positive, negative):
    count = (np.abs(np.array(positive)) + np.abs(np.array(negative)) > 0).astype(int)
    return PosInteractions(tags, tags, np.array(positive, float), np.array(negative, float), count, 1)


def test_settings_and_dataset_names():
    settings = settings_for("en", "de")
    assert [s.name for s in settings] == ["EN-EN", "DE-DE", "EN-DE"]
    assert [s.dataset for s in settings] == ["mstsb-en", "mstsb-de", "mstsb-en-de"]
    with pytest.raises(ValueError, match="two different languages"):
        settings_for("en", "en")


def test_share_changes_by_hand():
    # monolingual: NOUN-NOUN has 3/4 of the positive relevance, VERB-VERB 1/4; negative all on NOUN-VERB
    mono = interactions(["NOUN", "VERB"], [[3.0, 0.0], [0.0, 1.0]], [[0.0, -2.0], [0.0, 0.0]])
    # mixed: NOUN-NOUN 1/2, VERB-VERB 1/4, VERB-NOUN 1/4 positive; negative split NOUN-VERB 1/2, VERB-NOUN 1/2
    mixed = interactions(["NOUN", "VERB"], [[1.0, 0.0], [0.5, 0.5]], [[0.0, -0.5], [-0.5, 0.0]])
    changes = relevance_changes(mixed, mono, k=2)
    assert [(c.tag_a, c.tag_b, c.change) for c in changes["positive"]] == [
        ("NOUN", "NOUN", pytest.approx(-0.25)),
        ("VERB", "NOUN", pytest.approx(0.25)),
    ]
    assert [(c.tag_a, c.tag_b, c.mixed, c.mono) for c in changes["negative"]] == [
        ("NOUN", "VERB", pytest.approx(0.5), pytest.approx(1.0)),
        ("VERB", "NOUN", pytest.approx(0.5), pytest.approx(0.0)),
    ]


def record(index, text_a, text_b, score, gold):
    return CorpusRecord(index, gold, word_explanation(text_a, text_b, [[0, 0, 0], [0, score, 0], [0, 0, 0]]))


def tagger_for(language):
    if language == "fr":
        raise TaggerUnavailableError("no POS tagger for language 'fr'")
    return WhitespaceTagger(lambda word: "NOUN", language)


def test_a_language_without_tagger_keeps_spearman_and_reports_pos_unavailable(tmp_path):
    scores = {"EN-EN": [0.9, 0.1, 0.5], "FR-FR": [0.8, 0.2, 0.3], "EN-FR": [0.4, 0.3, 0.1]}
    golds = [5.0, 0.0, 2.0]
    records = {
        setting: [
            record(i, "dog", "chien", s, g) for i, (s, g) in enumerate(zip(scores[setting.name], golds, strict=True))
        ]
        for setting in settings_for("en", "fr")
    }
    comparison = compare_settings(records, tagger_for, "toy")
    by_name = {r.setting.name: r for r in comparison.results}
    assert by_name["EN-EN"].spearman == pytest.approx(1.0) and by_name["EN-FR"].spearman == pytest.approx(0.5)
    assert by_name["EN-EN"].interactions is not None and by_name["EN-EN"].unavailable is None
    assert by_name["FR-FR"].interactions is None and "no POS tagger for language 'fr'" in by_name["FR-FR"].unavailable
    assert by_name["EN-FR"].interactions is None
    assert comparison.changes == {}
    assert comparison.taggers == {"en": "words-en", "fr": "none (POS analyses unavailable)"}
    written = {p.name for p in comparison.save(tmp_path)}
    assert written == {"multilingual.json", "multilingual.md", "multilingual_changes.csv", "multilingual_pos_en-en.png",
                       "multilingual_shares.png"}  # fmt: skip
    assert "unavailable" in (tmp_path / "multilingual.md").read_text()


def test_changes_compare_the_mixed_setting_with_each_monolingual_one(tmp_path):
    records = {setting: [record(0, "a", "b", 0.5, 1.0), record(1, "c", "d", 0.2, 0.0)] for setting in
               settings_for("en", "de")}  # fmt: skip
    comparison = compare_settings(records, tagger_for, "toy", k=3)
    assert set(comparison.changes) == {"EN-EN", "DE-DE"}
    assert comparison.changes["EN-EN"]["positive"][0].tag_a == "NOUN"
    comparison.save(tmp_path)
    data = json.loads((tmp_path / "multilingual.json").read_text())
    assert [s["setting"] for s in data["settings"]] == ["EN-EN", "DE-DE", "EN-DE"]
    assert data["changes"]["DE-DE"]["positive"][0]["change"] == pytest.approx(0.0)
    assert (tmp_path / "multilingual_changes.png").stat().st_size > 1000
    assert LanguageSetting("en", "de").mono is False
