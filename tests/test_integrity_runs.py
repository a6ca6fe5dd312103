"""Corpus runs never read back a stale, foreign or damaged result, and one run folder has one writer (issue 22).

The fault-injection suite runs over the run shards of both engines: the analysis run folders (JSONL shards of
the local engine, Parquet shards of the Ray engine) and the corpus-run store of the evaluations (Parquet shards
and ``run.json``), with the faults kill, corrupt (an edited value that still parses), truncate, swap (a shard of
another run, shards renamed) and a concurrent writer (another process). The Parquet shards of the Ray engine
are made here by its shard path run in this process (fast); the tests at the end run the real Ray engine.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

import bilrp.analysis.corpus as corpus
from bilrp import explain_batch
from bilrp._integrity import FolderBusyError, folder_lock
from bilrp.analysis.corpus import CorpusMismatchError, DamagedRunError, load_corpus, run_corpus
from bilrp.corpus_runs import RayOptions, Record, WorkUnit, run_unit
from bilrp.corpus_runs.identity import run_digest
from bilrp.corpus_runs.shards import DamagedShardError, RunMismatchError, read_shard, shard_bytes
from bilrp.evaluation.runs import run_evaluation
from bilrp.evaluation.units import EncodeTexts, text_records
from tiny_models import tiny_similarity_model

TESTS = Path(__file__).resolve().parent
PAIRS = [
    ("A man plays the guitar.", "Someone plays music.", 4.0),
    ("A dog runs.", "A cat sleeps.", 1.0),
    ("Two kids play.", "Children are playing.", 4.5),
    ("A man plays the guitar.", "A woman sings.", 1.5),
]
ONE_LINE_ADVICE = re.compile(r"delete the (file|folder)")


@pytest.fixture(scope="module")
def model():
    return tiny_similarity_model("bert", "mean", "cosine")


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message and ONE_LINE_ADVICE.search(message), message
    return message


def ray_branch_here(monkeypatch):
    """Run ``run_corpus(ray=...)`` through the Ray engine's shard path (run_unit, Parquet) in this process."""
    real = corpus.run_unit

    def local(unit, records, *, ray=None, **kwargs):
        report = real(unit, records, **kwargs)
        report.engine = "ray"
        return report

    monkeypatch.setattr(corpus, "run_unit", local)
    return RayOptions(source=None)


def explained(records) -> list[tuple]:
    return [(r.index, r.gold, r.explanation.tokens_a, r.explanation.relevance.tolist()) for r in records]


# ---------------------------------------------------------------------------------------------- case 5: identity
def test_changed_weights_in_the_same_folder_are_refused_not_read_back(model, tmp_path):
    """Before: the rerun read the old shards back and returned the old numbers (the name and pooling matched)."""
    run_corpus(model, PAIRS[:2], tmp_path, progress=False)
    retrained = tiny_similarity_model("bert", "mean", "cosine", seed=1)  # the same name, other weights
    assert retrained.name == model.name
    with pytest.raises(CorpusMismatchError, match=r"another model \(other weights; run with 'tiny-bert'\)") as error:
        run_corpus(retrained, PAIRS[:2], tmp_path, progress=False)
    assert str(tmp_path) in one_line(error.value)
    edited = tiny_similarity_model("bert", "mean", "cosine")  # changed in place after its fingerprint was taken
    run_corpus(edited, PAIRS[:2], tmp_path, progress=False)
    with torch.no_grad():
        edited.encoder.encoder.layer[0].output.dense.weight[0, 0] += 1e-3
    with pytest.raises(CorpusMismatchError, match="other weights"):
        run_corpus(edited, PAIRS[:2], tmp_path, progress=False)


def saved_model(folder: Path, seed: int) -> Path:
    from tiny_models import tiny_encoder, tokenizer

    tiny_encoder("bert", seed=seed, dtype=torch.float32).save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder


def test_the_command_refuses_a_rerun_after_the_weights_changed_in_the_same_folder(data_dir, tmp_path, capsys):
    """The issue's case: ``bilrp analyze pos --out same`` after fine-tuning in place wrote the old numbers again."""
    from bilrp.cli import main

    model = saved_model(tmp_path / "model", 0)
    out = tmp_path / "out"
    argv = ["analyze", "pos", "--dataset", "stsb", "--limit", "3", "--data-dir", str(data_dir), "--model", str(model)]
    argv += ["--out", str(out), "--no-progress"]
    assert main(argv) == 0
    before = (out / "pos.json").read_text()
    saved_model(model, 1)  # the same folder and name, other weights
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another model (other weights" in err and "delete the folder" in err
    assert (out / "pos.json").read_text() == before  # not rewritten
    shutil.rmtree(out / "runs")  # the advice works: the run is recomputed with the new weights
    assert main(argv) == 0 and (out / "pos.json").read_text() != before


def test_other_rules_or_length_are_refused_and_one_rule_spelled_two_ways_is_reused(model, tmp_path, monkeypatch):
    run_corpus(model, PAIRS[:2], tmp_path, progress=False, rules="epsilon")
    with pytest.raises(CorpusMismatchError, match=r"option rules='epsilon=0.1', not 'gamma=0.25'"):
        run_corpus(model, PAIRS[:2], tmp_path, progress=False, rules="gamma")
    shorter = tiny_similarity_model("bert", "mean", "cosine")
    shorter.max_length = 16
    with pytest.raises(CorpusMismatchError, match="max_length=64, not 16"):
        run_corpus(shorter, PAIRS[:2], tmp_path, progress=False, rules="epsilon")
    calls = []
    monkeypatch.setattr(corpus, "explain_batch", lambda *a, **k: calls.append(a) or explain_batch(*a, **k))
    run_corpus(model, PAIRS[:2], tmp_path, progress=False, rules="epsilon=0.1")
    assert calls == []


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_shard_of_a_run_with_other_rules_is_refused(model, tmp_path, monkeypatch, engine):
    """Before: a shard copied in from a run with other rules was mixed in silently."""
    ray = ray_branch_here(monkeypatch) if engine == "ray" else None
    mine, theirs = tmp_path / "paper", tmp_path / "epsilon"
    run_corpus(model, PAIRS, mine, shard_size=2, progress=False, ray=ray, rules="paper")
    run_corpus(model, PAIRS, theirs, shard_size=2, progress=False, ray=ray, rules="epsilon")
    (shard,) = [p for p in theirs.iterdir() if p.name.startswith(("shard-", "part-")) and "0002" in p.name]
    shutil.copy(shard, mine / shard.name)
    rerun = lambda: run_corpus(model, PAIRS, mine, shard_size=2, progress=False, ray=ray, rules="paper")  # noqa: E731
    for attempt in (lambda: load_corpus(mine), rerun):
        with pytest.raises(CorpusMismatchError, match="belongs to another run") as error:
            attempt()
        assert str(mine / shard.name) in one_line(error.value)


def test_an_evaluation_store_is_bound_to_the_model_and_its_shards_to_the_run(model, tmp_path):
    texts = ["one text", "another text", "a third one", "and a fourth"]
    first = run_evaluation(EncodeTexts(2), model, text_records(texts), shards=tmp_path / "a", shard_size=2)
    stored = json.loads((tmp_path / "a" / "run.json").read_text())
    assert stored["fingerprint"]["weights"] and stored["options"] == {"batch_size": 2}
    retrained = tiny_similarity_model("bert", "mean", "cosine", seed=1)
    with pytest.raises(RunMismatchError, match=r"another model \(other weights") as error:
        run_evaluation(EncodeTexts(2), retrained, text_records(texts), shards=tmp_path / "a", shard_size=2)
    one_line(error.value)
    run_evaluation(EncodeTexts(4), model, text_records(texts), shards=tmp_path / "b", shard_size=2)
    shutil.copy(tmp_path / "b" / "part-00000000-00000001.parquet", tmp_path / "a")
    with pytest.raises(RunMismatchError, match="belongs to another run"):
        run_evaluation(EncodeTexts(2), model, text_records(texts), shards=tmp_path / "a", shard_size=2)
    (tmp_path / "a" / "part-00000000-00000001.parquet").unlink()  # the advice works
    again = run_evaluation(EncodeTexts(2), model, text_records(texts), shards=tmp_path / "a", shard_size=2)
    assert again.computed == 1 and again.results(EncodeTexts(2)).keys() == first.results(EncodeTexts(2)).keys()


# ---------------------------------------------------------------------------------------------- faults
def edit_a_value(file: Path) -> None:
    """Change one stored number so that the file still parses (a JSONL digit, a Parquet row rewritten)."""
    if file.suffix == ".jsonl":
        text = file.read_text(encoding="utf-8")
        at = text.index('"score": ') + len('"score": ') + 3
        digit = text[at]
        assert digit.isdigit()
        file.write_text(text[:at] + str((int(digit) + 1) % 10) + text[at + 1 :], encoding="utf-8")
        return
    (row, *_) = read_shard(file)
    edit_a_value_of(file, replace(row, data=row.data.replace(b'"score": ', b'"score": 1', 1)))


def edit_a_value_of(file: Path, row) -> None:
    """Rewrite row ``row.key`` of a Parquet shard with ``row``, keeping the shard's metadata (run, check)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(file)
    data = table.column("data").to_pylist()
    data[table.column("key").to_pylist().index(row.key)] = row.data
    pq.write_table(table.set_column(table.schema.get_field_index("data"), "data", pa.array(data, pa.binary())), file)


@pytest.mark.parametrize("engine", ["local", "ray"])
@pytest.mark.parametrize("fault", ["corrupt", "truncate", "empty"])
def test_a_damaged_shard_is_refused_with_one_line_and_recomputed_once_deleted(
    model, tmp_path, monkeypatch, engine, fault
):
    ray = ray_branch_here(monkeypatch) if engine == "ray" else None
    whole = run_corpus(model, PAIRS, tmp_path / "whole", shard_size=4, progress=False)
    run_corpus(model, PAIRS, tmp_path / "run", shard_size=2, progress=False, ray=ray)
    (shard,) = [p for p in (tmp_path / "run").iterdir() if p.name.startswith(("shard-", "part-")) and "0002" in p.name]
    if fault == "corrupt":
        edit_a_value(shard)
    else:
        data = shard.read_bytes()
        shard.write_bytes(data[: len(data) // 2] if fault == "truncate" else b"")
    with pytest.raises((DamagedRunError, CorpusMismatchError)) as error:
        run_corpus(model, PAIRS, tmp_path / "run", shard_size=2, progress=False, ray=ray)
    assert str(shard) in one_line(error.value)
    shard.unlink()
    resumed = run_corpus(model, PAIRS, tmp_path / "run", shard_size=2, progress=False, ray=ray)
    assert explained(resumed) == explained(whole)


def test_a_damaged_store_shard_is_refused(tmp_path):
    rows_unit = Echo()
    records = [Record(key, f"r{key}", (f"text {key}",)) for key in range(4)]
    run_unit(rows_unit, records, model=object(), folder=tmp_path, meta={"model": "echo"}, shard_size=2)
    (first, second) = sorted(tmp_path.glob("part-*.parquet"))
    rows = read_shard(first, run_of(tmp_path))
    edit_a_value_of(first, replace(rows[1], data=b"forged"))
    with pytest.raises(DamagedShardError, match="does not match its check"):
        read_shard(first, run_of(tmp_path))
    first.write_bytes(shard_bytes(rows, run_of(tmp_path)))  # restored: read back whole
    assert run_unit(rows_unit, records, model=object(), folder=tmp_path, meta={"model": "echo"}).computed == 0
    second.write_bytes(second.read_bytes()[:100])
    with pytest.raises(DamagedShardError, match=f"cannot read shard {re.escape(str(second))}"):
        run_unit(rows_unit, records, model=object(), folder=tmp_path, meta={"model": "echo"}, shard_size=2)


def test_swapped_shards_of_one_run_are_read_back_by_their_records(model, tmp_path):
    whole = run_corpus(model, PAIRS, tmp_path / "whole", shard_size=4, progress=False)
    run_corpus(model, PAIRS, tmp_path / "run", shard_size=2, progress=False)
    first, second = sorted((tmp_path / "run").glob("shard-*.jsonl"))
    first.rename(tmp_path / "x")
    second.rename(first)
    (tmp_path / "x").rename(second)
    assert explained(load_corpus(tmp_path / "run")) == explained(whole)
    assert explained(run_corpus(model, PAIRS, tmp_path / "run", progress=False)) == explained(whole)


def test_line_breaks_inside_a_text_survive_a_shard(model, tmp_path):
    pairs = [("A first\u2028line and\u0085more.", "Another\x1ctext.", 1.0)]
    written = run_corpus(model, pairs, tmp_path, progress=False)
    assert explained(load_corpus(tmp_path)) == explained(written)
    assert load_corpus(tmp_path)[0].explanation.text_a == pairs[0][0]


# ---------------------------------------------------------------------------------------------- writers
@dataclass(frozen=True)
class Echo(WorkUnit):
    """A unit without a model: each text reversed. Blocks on its second chunk when BILRP_TEST_BLOCK names a file."""

    name = "echo"

    def compute(self, state, records):
        block = os.environ.get("BILRP_TEST_BLOCK")
        if block and int(records[0].key) > 0:
            Path(block).write_text(str(os.getpid()))
            time.sleep(600)
        return [record.texts[0][::-1].encode() for record in records]


def run_of(folder: Path) -> str:
    return run_digest(json.loads((folder / "run.json").read_text()))


CHILD = {
    "corpus": """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
import bilrp.analysis.corpus as corpus
from bilrp import explain_batch
from test_integrity_runs import PAIRS
from tiny_models import tiny_similarity_model
def slow(model, pairs, **kwargs):
    if pairs[0][0] == PAIRS[2][0]:
        Path({flag!r}).write_text("busy")
        time.sleep(600)
    return explain_batch(model, pairs, **kwargs)
corpus.explain_batch = slow
model = tiny_similarity_model("bert", "mean", "cosine")
corpus.run_corpus(model, PAIRS, Path({folder!r}), shard_size=2, progress=False)
""",
    "store": """
import os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
os.environ["BILRP_TEST_BLOCK"] = {flag!r}
from bilrp.corpus_runs import Record, run_unit
from test_integrity_runs import Echo
records = [Record(key, f"r{{key}}", (f"text {{key}}",)) for key in range(4)]
run_unit(Echo(), records, model=object(), folder=Path({folder!r}), meta={{"model": "echo"}}, shard_size=2)
""",
}


def start_writer(kind: str, folder: Path, flag: Path) -> subprocess.Popen:
    code = CHILD[kind].format(tests=str(TESTS), flag=str(flag), folder=str(folder))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 240
    while not flag.exists():
        assert process.poll() is None, process.stderr.read()[-2000:]
        assert time.monotonic() < end, "the writer never reached its second chunk"
        time.sleep(0.05)
    return process


@pytest.mark.parametrize("kind", ["corpus", "store"])
def test_a_second_writer_is_refused_and_a_killed_writer_resumes_exactly(model, tmp_path, kind):
    """Two processes on one run folder: the second is refused at once (one line: the folder, the holder's pid).
    The first is then killed (SIGKILL) in its second chunk: its lock is free, and the next run computes only
    what it had not written, giving the uninterrupted run's results."""
    folder, flag = tmp_path / "run", tmp_path / "busy"
    writer = start_writer(kind, folder, flag)
    try:
        with pytest.raises(FolderBusyError, match=rf"pid {writer.pid}") as error:
            if kind == "corpus":
                run_corpus(model, PAIRS, folder, shard_size=2, progress=False)
            else:
                run_unit(Echo(), [Record(0, "r0", ("text 0",))], model=object(), folder=folder, meta={"model": "echo"})
        assert str(folder) in str(error.value) and "\n" not in str(error.value)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    if kind == "corpus":
        assert len(list(folder.glob("shard-*.jsonl"))) == 1
        resumed = run_corpus(model, PAIRS, folder, shard_size=2, progress=False)
        assert explained(resumed) == explained(run_corpus(model, PAIRS, tmp_path / "whole", progress=False))
    else:
        records = [Record(key, f"r{key}", (f"text {key}",)) for key in range(4)]
        report = run_unit(Echo(), records, model=object(), folder=folder, meta={"model": "echo"}, shard_size=2)
        assert (report.reused, report.computed) == (1, 1)
        assert report.results(Echo()) == {key: f"{key} txet".encode() for key in range(4)}


def test_a_thread_of_the_same_process_is_refused_too(tmp_path):
    import threading

    held, release = threading.Event(), threading.Event()

    def hold():
        with folder_lock(tmp_path, "testing"):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(30)
        with pytest.raises(FolderBusyError):
            run_unit(Echo(), [Record(0, "r0", ("x",))], model=object(), folder=tmp_path, meta={"model": "echo"})
    finally:
        release.set()
        thread.join()


# ---------------------------------------------------------------------------------------------- the Ray engine
def _ray_available() -> bool:
    from bilrp.corpus_runs.ray_engine import ray_available

    return ray_available()


needs_ray = pytest.mark.skipif(
    not _ray_available(), reason="the Ray engine needs the ray extra (Ray Data, pyarrow): pip install -e '.[ray]'"
)


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance (2 CPUs) for the Ray tests of this module."""
    import ray

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


@needs_ray
def test_on_ray_a_damaged_or_foreign_shard_and_a_worker_with_another_model_are_refused(cluster, tmp_path):
    from bilrp.corpus_runs import ModelSource
    from bilrp.corpus_runs.ray_engine import WorkerModelError

    folder_a, folder_b = saved_model(tmp_path / "a", 0), saved_model(tmp_path / "b", 1)
    model = ModelSource(str(folder_a)).load()
    ray = RayOptions(ModelSource(str(folder_a)), workers=1)
    run = tmp_path / "run"
    whole = run_corpus(model, PAIRS, run, shard_size=2, progress=False, ray=ray)
    parts = sorted(run.glob("part-*.parquet"))
    identity = run_digest(json.loads((run / "meta.json").read_text()))
    assert len(parts) == 2 and all(read_shard(part, identity) for part in parts)
    edit_a_value(parts[1])
    with pytest.raises(DamagedRunError, match="does not match its check") as error:
        run_corpus(model, PAIRS, run, shard_size=2, progress=False, ray=ray)
    assert str(parts[1]) in one_line(error.value)
    parts[1].unlink()
    assert explained(run_corpus(model, PAIRS, run, shard_size=2, progress=False, ray=ray)) == explained(whole)
    # a node whose copy of the model differs: its shards are refused before anything of them is written
    other = RayOptions(ModelSource(str(folder_b)), workers=1)
    with pytest.raises(WorkerModelError, match=r"loaded another model than this process .* \(other weights\)") as error:
        run_corpus(model, PAIRS, tmp_path / "mixed", shard_size=2, progress=False, ray=other)
    assert "\n" not in str(error.value) and not list((tmp_path / "mixed").glob("part-*"))
