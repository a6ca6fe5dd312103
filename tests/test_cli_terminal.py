"""Clean terminals: the ``bilrp`` command shows only its own lines; ``--verbose`` brings the libraries' back.

The libraries' chatter comes once per process, when transformers first imports a model family: with transformers
5.25 and the ``kernels`` package three "Skipping publisher trust check" lines, then a "Loading weights" bar per
load; before the fix every error here was four lines. So three fresh processes run at once: the console script
on ``bilrp explain "" x``, one process that runs a quiet model load first and then the other bad inputs (each
one's stderr captured at the file descriptor), and the console script with ``--verbose``.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BILRP = shutil.which("bilrp") or str(Path(sys.executable).with_name("bilrp"))


def _environment():
    environment = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    for key in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_NO_ADVISORY_WARNINGS"):
        environment.pop(key, None)  # the libraries as a user has them
    return environment


SEQUENCE = """
import json, os, sys, tempfile
from bilrp.cli import main

results = {}
for name, argv in json.loads(sys.argv[1]):
    sys.stdout.flush(); sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)  # the file descriptor: whatever stream a library bound, it is caught
        try:
            code = main(argv)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
        captured.seek(0)
        results[name] = [code, captured.read().decode()]
print(json.dumps(results))
"""
"""Runs ``main`` on several argument lists in one process, capturing each one's stderr at the file descriptor."""


@pytest.fixture(scope="module")
def runs(model_dir, tmp_path_factory):
    """``{name: (exit status, stdout or None, stderr)}`` of every command below, in three fresh processes at once.

    The first command of each process meets the libraries' import-time chatter: ``bilrp explain "" x`` alone,
    the quiet model load first in the sequence, and ``--verbose`` alone.
    """
    folder = tmp_path_factory.mktemp("terminal")
    sequence = [
        ("quiet load", ["explain", "A man plays a guitar.", "Someone plays music.", "--model", model_dir]),
        ("unknown rules", ["explain", "a", "b", "--rules", "bogus"]),
        ("missing model", ["explain", "a", "b", "--model", str(folder / "no-such-model")]),
        ("bad --out folder", ["explain", "a", "b", "--out", str(folder / "missing" / "x.png")]),
        ("bad --out extension", ["explain", "a", "b", "--out", str(folder / "x.txt")]),
        ("missing index", ["rank", "a query", "--index", str(folder / "no-index")]),
        ("missing file", ["index", str(folder / "no-such-docs.txt"), "--out", str(folder / "index")]),
    ]
    verbose = ["--verbose", "explain", "A man plays a guitar.", "Someone plays music.", "--model", model_dir]
    commands = {
        "empty text": [BILRP, "explain", "", "x"],
        "sequence": [sys.executable, "-c", SEQUENCE, json.dumps(sequence)],
        "verbose load": [BILRP, *verbose],
    }
    started = {
        name: subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment(), cwd=folder
        )
        for name, argv in commands.items()
    }
    done = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=600)
        done[name] = (process.returncode, stdout, stderr)
    code, stdout, stderr = done.pop("sequence")
    assert code == 0 and stderr == "", stderr
    *printed, last = stdout.splitlines()
    for name, (status, captured) in json.loads(last).items():
        done[name] = (status, "\n".join(printed) + "\n" if name == "quiet load" else None, captured)
    return done


@pytest.mark.parametrize(
    "name, command, message",
    [
        ("empty text", "explain", "TEXT_A is empty"),
        ("unknown rules", "explain", "unknown rule set 'bogus'"),
        ("missing model", "explain", "does not exist"),
        ("bad --out folder", "explain", "does not exist; create it first"),
        ("bad --out extension", "explain", "unknown extension '.txt'"),
        ("missing index", "rank", "no index at"),
        ("missing file", "index", "no such file"),
    ],
)
def test_bad_input_is_exactly_one_line_on_stderr(runs, name, command, message):
    status, stdout, stderr = runs[name]
    assert status == 2, stderr
    assert stdout in ("", None)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"bilrp {command}: error: ") and message in lines[0]


def test_a_quiet_run_prints_nothing_but_its_result(runs):
    status, stdout, stderr = runs["quiet load"]
    assert status == 0, stderr
    assert stderr == ""
    assert stdout.startswith("model ") and "score " in stdout


def test_verbose_shows_the_libraries_own_lines(runs):
    status, stdout, stderr = runs["verbose load"]
    assert status == 0, stderr
    assert "Loading weights" in stderr  # transformers' progress bar
    if importlib.util.find_spec("kernels") is not None:  # transformers 5.25's offline trust-check warnings
        assert "Skipping publisher trust check" in stderr
    assert stdout == runs["quiet load"][1]  # the same result; only the chatter differs


class RecordingBar:
    """A stand-in for tqdm that records the bar's position after every update."""

    instances: list["RecordingBar"] = []

    def __init__(self, *args, total=None, disable=False, **kwargs):
        self.total, self.disable, self.n, self.positions = total, disable, 0, []
        RecordingBar.instances.append(self)

    def update(self, count=1):
        self.n += count
        self.positions.append(self.n)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_the_perturbation_bar_ticks_per_pair_not_per_chunk(monkeypatch):
    """Six pairs make one 32-pair chunk: the bar used to sit at 0/6, then jump to 6/6."""
    import bilrp.corpus_runs.local as local
    from bilrp.evaluation import evaluate_perturbation
    from bilrp.evaluation.units import PAIRS_PER_STEP
    from tiny_models import tiny_similarity_model

    monkeypatch.setattr(local, "tqdm", RecordingBar)
    RecordingBar.instances.clear()
    pairs = [(f"A man plays guitar number {n}.", f"Someone plays music {n}.") for n in range(6)]
    evaluate_perturbation(tiny_similarity_model(), pairs, methods=["random", "bilrp"], step=0.25, progress=True)
    (bar,) = RecordingBar.instances
    steps = [later - earlier for earlier, later in zip([0, *bar.positions[:-1]], bar.positions, strict=True)]
    assert bar.positions[-1] == bar.total == 6
    assert len(bar.positions) >= 4 and max(steps) <= PAIRS_PER_STEP / 2  # half a step: bilrp, then the curves
    assert bar.positions == sorted(bar.positions)


def test_the_curves_bar_ticks_per_pair(monkeypatch):
    """``perturbation_curves`` (``bilrp evaluate rules``) ticks as its forward batches finish, not per 128 pairs."""
    import bilrp.evaluation.perturbation_curves as curves_module
    from bilrp import explain_batch
    from bilrp.evaluation.perturbation_curves import filler_token_id, perturbation_curves, perturbation_fractions
    from tiny_models import tiny_similarity_model

    model = tiny_similarity_model()
    pairs = [(f"A man plays guitar number {n}.", f"Someone plays music {n}.") for n in range(5)]
    relevance = {"bilrp": [e.relevance for e in explain_batch(model, pairs, progress=False)]}
    monkeypatch.setattr(curves_module, "tqdm", RecordingBar)
    RecordingBar.instances.clear()
    reported = []
    fractions, filler = perturbation_fractions(0.25), filler_token_id(model.tokenizer)
    perturbation_curves(
        model, pairs, relevance, ["bilrp"], fractions, filler, False, batch_size=4, progress=True,
        on_progress=reported.append,
    )  # fmt: skip
    (bar,) = RecordingBar.instances
    assert bar.positions == list(range(1, 6))  # one tick per pair
    assert len(reported) > 5 and abs(sum(reported) - 5) < 1e-9


def test_analyze_prints_its_result_table(model_dir, fixture_data_dir, tmp_path, capsys):
    """Like ``bilrp evaluate``: the table first, then the files written (not only their paths)."""
    import argparse

    from bilrp.analysis.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    argv = ["analyze", "pos", "--limit", "2", "--model", model_dir, "--data-dir", str(fixture_data_dir)]
    args = parser.parse_args([*argv, "--out", str(tmp_path), "--no-progress"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# POS interactions: ") and "\n| dataset | model | method |" in printed
    assert printed.rstrip().endswith(f"wrote {tmp_path / 'pos.png'}")
    assert printed.index("## Summary") < printed.index(f"wrote {tmp_path / 'pos.md'}")
