"""Corpus runner: shards on disk, resuming after an interruption, refusing a folder of another run."""

import json
import re

import pytest
import torch

import bilrp.analysis.corpus as corpus
from bilrp import datasets, explain_batch
from bilrp._io import write_text
from bilrp.analysis.corpus import (
    CorpusMismatchError,
    CorpusRecord,
    DamagedRunError,
    load_corpus,
    run_corpus,
    run_dataset,
)
from tiny_models import tiny_similarity_model

PAIRS = [
    ("A man plays the guitar.", "Someone plays music.", 4.0),
    ("A dog runs.", "A cat sleeps.", 1.0),
    ("Two kids play.", "Children are playing.", 4.5),
    ("A man plays the guitar.", "A woman sings.", 1.5),
    ("It rains in Berlin.", "Berlin is rainy today.", 3.8),
    ("Stocks fell sharply.", "A dog runs.", 0.0),
]


@pytest.fixture(scope="module")
def model():
    return tiny_similarity_model("bert", "mean", "cosine")


class Counting:
    """Wraps explain_batch: counts explained pairs, raises KeyboardInterrupt on call number ``stop``."""

    def __init__(self, stop=None):
        self.calls, self.pairs, self.stop = 0, [], stop

    def __call__(self, model, pairs, **kwargs):
        self.calls += 1
        if self.calls == self.stop:
            raise KeyboardInterrupt
        self.pairs.extend(pairs)
        return explain_batch(model, pairs, **kwargs)


def test_interrupted_run_resumes_with_the_missing_pairs_only(model, tmp_path, monkeypatch):
    interrupted = Counting(stop=3)  # shards of 2 pairs: interrupted after k = 4 pairs
    monkeypatch.setattr(corpus, "explain_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_corpus(model, PAIRS, tmp_path / "run", shard_size=2, progress=False)
    assert [r.index for r in load_corpus(tmp_path / "run")] == [0, 1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "meta.json",
        "shard-000000-000001.jsonl",
        "shard-000002-000003.jsonl",
    ]
    resumed = Counting()
    monkeypatch.setattr(corpus, "explain_batch", resumed)
    records = run_corpus(model, PAIRS, tmp_path / "run", shard_size=2, progress=False)
    assert resumed.pairs == [p[:2] for p in PAIRS[4:]]
    monkeypatch.undo()
    whole = run_corpus(model, PAIRS, tmp_path / "whole", shard_size=6, progress=False)
    assert [r.index for r in records] == list(range(6)) and [r.gold for r in records] == [p[2] for p in PAIRS]
    for got, expected in zip(records, whole, strict=True):
        assert got.explanation.tokens_a == expected.explanation.tokens_a
        assert torch.allclose(got.explanation.relevance, expected.explanation.relevance, rtol=1e-9, atol=1e-12)
        assert got.score == pytest.approx(expected.score, abs=1e-12)


def test_a_finished_run_is_read_back_without_explaining(model, tmp_path, monkeypatch):
    first = run_corpus(model, PAIRS[:3], tmp_path, progress=False)
    nothing = Counting(stop=1)
    monkeypatch.setattr(corpus, "explain_batch", nothing)
    again = run_corpus(model, PAIRS[:3], tmp_path, progress=False)
    assert nothing.calls == 0
    assert [r.explanation.offsets_a for r in again] == [r.explanation.offsets_a for r in first]
    assert isinstance(again[0].explanation.offsets_a[1], tuple) and again[0].explanation.word_ids_a[0] is None


def test_a_run_grows_from_a_prefix(model, tmp_path, monkeypatch):
    run_corpus(model, PAIRS[:3], tmp_path, shard_size=2, progress=False)
    growing = Counting()
    monkeypatch.setattr(corpus, "explain_batch", growing)
    records = run_corpus(model, PAIRS, tmp_path, shard_size=2, progress=False)
    assert growing.pairs == [p[:2] for p in PAIRS[3:]] and len(records) == 6


def test_a_folder_of_another_run_is_refused(model, tmp_path):
    run_corpus(model, PAIRS[:2], tmp_path, progress=False)
    with pytest.raises(CorpusMismatchError, match="pooling='mean', not 'cls'"):
        run_corpus(tiny_similarity_model("bert", "cls", "cosine"), PAIRS[:2], tmp_path, progress=False)
    with pytest.raises(CorpusMismatchError, match="method='bilrp', not 'hxp'"):
        run_corpus(model, PAIRS[:2], tmp_path, method="hxp", progress=False)
    with pytest.raises(CorpusMismatchError, match="another pair at position 1"):
        run_corpus(model, [PAIRS[0], PAIRS[2]], tmp_path, progress=False)
    with pytest.raises(ValueError, match="shard_size"):
        run_corpus(model, PAIRS, tmp_path, shard_size=0)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda text: text[: len(text) // 2], r"line 2, column \d+: Unterminated string"),  # cut short
        (lambda text: text.replace('"', "", 1), "line 1, column 2: Expecting property name"),
        (lambda text: text + '{"index": 9}\n', r"line 3: not a record \(KeyError 'tokens_a'\)"),
        (lambda text: "\udcff", None),  # not UTF-8
    ],
)
def test_a_damaged_shard_is_named_with_how_to_recover(model, tmp_path, monkeypatch, damage, problem):
    run_corpus(model, PAIRS[:4], tmp_path, shard_size=2, progress=False)
    shard = tmp_path / "shard-000002-000003.jsonl"
    shard.write_bytes(damage(shard.read_text(encoding="utf-8")).encode("utf-8", "surrogateescape"))
    for attempt in (lambda: load_corpus(tmp_path), lambda: run_corpus(model, PAIRS[:4], tmp_path, progress=False)):
        with pytest.raises(DamagedRunError) as error:
            attempt()
        message = str(error.value)
        assert isinstance(error.value, ValueError) and "\n" not in message
        expected = f"cannot read run file {shard}: 'utf-8' codec" if problem is None else f"damaged run file {shard}: "
        assert message.startswith(expected) and (problem is None or re.match(problem, message[len(expected) :]))
        assert message.endswith("; delete the file to recompute its pairs")
    shard.unlink()  # the advice works: the missing pairs are explained again
    explained = Counting()
    monkeypatch.setattr(corpus, "explain_batch", explained)
    assert len(run_corpus(model, PAIRS[:4], tmp_path, shard_size=2, progress=False)) == 4
    assert explained.pairs == [p[:2] for p in PAIRS[2:4]]


def test_a_damaged_meta_file_is_named_with_how_to_recover(model, tmp_path):
    run_corpus(model, PAIRS[:2], tmp_path, progress=False)
    (tmp_path / "meta.json").write_text('{"format": 1, "model"')
    with pytest.raises(DamagedRunError, match=rf"^damaged run file {re.escape(str(tmp_path / 'meta.json'))}: "):
        run_corpus(model, PAIRS[:2], tmp_path, progress=False)
    with pytest.raises(DamagedRunError, match=rf"delete the folder {re.escape(str(tmp_path))} to start this run"):
        run_corpus(model, PAIRS[:2], tmp_path, progress=False)


def test_record_round_trip_keeps_word_ids_and_offsets(model):
    explanation = explain_batch(model, [PAIRS[0][:2]], progress=False)[0]
    record = CorpusRecord.from_dict(json.loads(json.dumps(CorpusRecord(7, 4.0, explanation).to_dict())))
    assert (record.index, record.gold, record.score) == (7, 4.0, explanation.score)
    assert record.explanation.word_ids_b == explanation.word_ids_b
    assert record.explanation.offsets_b == explanation.offsets_b
    assert torch.allclose(record.explanation.relevance, explanation.relevance.double())


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(TypeError):
        write_text(tmp_path / "out.txt", 42)
    assert list(tmp_path.iterdir()) == []


def test_run_dataset_takes_the_first_pairs_with_gold_scores(model, tmp_path, data_dir):
    records = run_dataset(model, "stsb", tmp_path, limit=3, data_dir=data_dir, progress=False)
    expected = datasets.load("stsb", data_dir=data_dir)[:3]
    assert [(r.explanation.text_a, r.gold) for r in records] == [(p.text_a, p.score) for p in expected]
    assert [p.name for p in tmp_path.iterdir()] == ["stsb-test--tiny-bert--mean-cosine--bilrp"]
    with pytest.raises(ValueError, match="limit must be a positive whole number, not 0"):
        run_dataset(model, "stsb", tmp_path, limit=0, data_dir=data_dir)
