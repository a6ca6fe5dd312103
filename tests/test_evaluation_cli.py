"""``bilrp evaluate``: register() on a local parser, every command end to end on a saved tiny model, errors."""

import argparse
import json
import os
import re

import pytest

from bilrp.evaluation import EvaluationError, write_outputs
from bilrp.evaluation.cli import main, register


def _run(data_dir, model_dir, out, *args):
    return main(["evaluate", *args, "--data-dir", str(data_dir), "--model", model_dir, "--out", str(out)])


def test_register_adds_evaluate_with_four_commands():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", "perturbation", "--dataset", "biosses", "--limit", "5", "--seed", "3"])
    assert (args.evaluation, args.dataset, args.limit, args.seed, args.step) == ("perturbation", "biosses", 5, 3, 0.04)
    assert callable(args.func)
    for command in ("sts", "conservation", "ground-truth"):
        assert callable(parser.parse_args(["evaluate", command]).func)
    assert parser.parse_args(["evaluate", "ground-truth"]).split == "dev"


def test_sts_and_conservation_write_their_files(data_dir, model_dir, tmp_path, capsys):
    assert _run(data_dir, model_dir, tmp_path / "sts", "sts", "--limit", "6", "--no-progress") == 0
    assert sorted(os.listdir(tmp_path / "sts")) == ["results.md", "scatter.png", "scores.csv", "summary.json"]
    summary = json.loads((tmp_path / "sts" / "summary.json").read_text())
    assert summary["n"] == 6 and summary["dataset"] == "stsb" and summary["limit"] == 6
    assert "Spearman x100" in capsys.readouterr().out
    assert _run(data_dir, model_dir, tmp_path / "c", "conservation", "--dataset", "biosses", "--limit", "2") == 0
    assert (tmp_path / "c" / "conservation.png").stat().st_size > 0


def test_perturbation_and_ground_truth_write_their_files(data_dir, model_dir, tmp_path):
    code = _run(
        data_dir, model_dir, tmp_path / "p", "perturbation", "--limit", "3", "--methods", "random", "bilrp", "ij",
        "--ij-steps", "2", "--no-progress",
    )  # fmt: skip
    assert code == 0
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert set(summary["aupc"]) == {"random", "bilrp", "ij"} and summary["texts"] == 6
    assert summary["ij_options"] == {"n_steps": 2}
    code = _run(data_dir, model_dir, tmp_path / "g", "ground-truth", "--limit", "12", "--epochs", "1", "--no-progress")
    assert code == 0
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["split"] == "dev" and summary["train_pairs"] + summary["holdout_pairs"] == 12
    assert not [name for name in os.listdir(tmp_path / "g") if name.startswith(".")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sts", "--limit", "0"], "limit must be a positive integer, got 0"),
        (["sts", "--dataset", "nope"], "unknown dataset 'nope'"),
        (["perturbation", "--limit", "2", "--methods", "bilrp", "lime"], "unknown method 'lime'"),
        (["perturbation", "--ij-steps", "0"], "--ij-steps must be a positive integer"),
        (["perturbation", "--limit", "2", "--step", "1.5"], r"step must be in \(0, 1\]"),
    ],
)
def test_bad_arguments_give_one_error_line_and_status_2(data_dir, model_dir, tmp_path, capsys, args, message):
    assert _run(data_dir, model_dir, tmp_path / "x", *args) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("bilrp evaluate: error: ")
    assert re.search(message, error)


def test_out_must_be_a_folder(data_dir, model_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert _run(data_dir, model_dir, tmp_path / "file", "sts", "--limit", "2") == 2
    assert "is a file: give a folder for --out" in capsys.readouterr().err


def test_outputs_are_atomic(tmp_path, monkeypatch):
    write_outputs(tmp_path, {"a.md": "old a", "b.md": "old b"})
    real_replace = os.replace

    def failing_replace(source, target):
        if str(target).endswith("b.md"):
            raise OSError("disk full")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_outputs(tmp_path, {"a.md": "new a", "b.md": "new b"})
    assert (tmp_path / "a.md").read_text() == "new a"
    assert (tmp_path / "b.md").read_text() == "old b"  # never half-written
    assert sorted(os.listdir(tmp_path)) == ["a.md", "b.md"]  # no temporary file left behind
    with pytest.raises(EvaluationError, match="is a file"):
        write_outputs(tmp_path / "a.md", {"c.md": "x"})
