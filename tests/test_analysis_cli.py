"""``bilrp analyze pos|multilingual|quantiles`` end to end on a tiny saved model and a few dataset pairs."""

import argparse
import json

import pytest

import bilrp.analysis.corpus as corpus
from bilrp.analysis.cli import register


def run(*argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["analyze", *argv])
    return args.func(args)


def common(model_dir, data_dir, out, *more):
    return ["--model", model_dir, "--data-dir", str(data_dir), "--out", str(out), "--no-progress", *more]


def test_pos_then_quantiles_share_the_explanations(model_dir, data_dir, tmp_path, monkeypatch, capsys):
    runs = str(tmp_path / "runs")
    assert run("pos", "--dataset", "stsb", "--limit", "4", "--runs", runs, *common(model_dir, data_dir, tmp_path)) == 0
    data = json.loads((tmp_path / "pos.json").read_text())
    assert data["summary"]["pairs"] == 4 and "Spearman x100" in data["summary"]
    counts = data["interactions"]["count"]
    assert sum(map(sum, counts)) > 4 and {"NOUN", "[CLS]", "[SEP]"} <= set(data["interactions"]["tags_a"])
    assert str(tmp_path / "pos.png") in capsys.readouterr().out

    explained = []
    original = corpus.explain_batch
    monkeypatch.setattr(corpus, "explain_batch", lambda model, pairs, **kw: explained.append(len(pairs)) or original(
        model, pairs, **kw))  # fmt: skip
    out = tmp_path / "quantiles"
    argv = ["quantiles", "--dataset", "stsb", "--limit", "4", "--pooling", "mean", "cls", "--k", "2", "--runs", runs]
    assert run(*argv, *common(model_dir, data_dir, out)) == 0
    assert explained == [4]  # the mean-pooling run is reused; only CLS pooling is explained
    result = json.loads((out / "quantiles.json").read_text())
    assert [m["label"].split(" ")[-2:] for m in result["models"]] == [["(mean,", "cosine)"], ["(cls,", "cosine)"]]
    assert all(len(m["top"]["highest"]["positive"]) <= 2 for m in result["models"])
    assert (out / "quantiles_interactions.png").exists() and (out / "quantiles_errors.csv").exists()


def test_multilingual_writes_every_setting(model_dir, data_dir, tmp_path):
    assert run("multilingual", "--limit", "3", *common(model_dir, data_dir, tmp_path)) == 0
    data = json.loads((tmp_path / "multilingual.json").read_text())
    assert [s["setting"] for s in data["settings"]] == ["EN-EN", "DE-DE", "EN-DE"]
    assert data["taggers"]["de"] == "hanta:morphmodel_ger" and data["taggers"]["en"].startswith("spacy:en_core_web_sm")
    assert set(data["changes"]) == {"EN-EN", "DE-DE"} and len(data["changes"]["EN-EN"]["negative"]) == 10
    assert {p.name for p in tmp_path.glob("multilingual_pos_*.png")} == {
        "multilingual_pos_en-en.png", "multilingual_pos_de-de.png", "multilingual_pos_en-de.png"
    }  # fmt: skip


def test_bad_arguments_fail_with_one_clear_message(model_dir, data_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        run("pos", "--dataset", "nope", *common(model_dir, data_dir, tmp_path))
    with pytest.raises(ValueError, match="no POS tagger for language 'fr'"):
        run("pos", "--dataset", "mstsb-fr", *common(model_dir, data_dir, tmp_path))
    with pytest.raises(SystemExit):
        run("quantiles", "--fraction", "0.7", "--out", str(tmp_path))
    with pytest.raises(SystemExit):
        run("pos", "--limit", "0", "--out", str(tmp_path))
    err = capsys.readouterr().err
    assert "'0.7' is not a fraction in (0, 0.5]" in err and "'0' is not a positive whole number" in err
