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
        (["sts", "--limit", "0"], "argument --limit: '0' is not a positive whole number"),
        (["sts", "--seed", "-1"], "argument --seed: '-1' is not a whole number from 0 to 4294967295"),
        (["sts", "--dataset", "nope"], "unknown dataset 'nope'"),
        (["conservation", "--batch-size", "-1"], "argument --batch-size: '-1' is not a positive whole number"),
        (["conservation", "--batch-size", "x"], "argument --batch-size: 'x' is not a positive whole number"),
        (["perturbation", "--limit", "2", "--methods", "bilrp", "lime"], "unknown method 'lime'"),
        (["perturbation", "--ij-steps", "0"], "argument --ij-steps: '0' is not a positive whole number"),
        (["perturbation", "--step", "1.5"], r"argument --step: '1.5' is not a fraction in \(0, 1\]"),
        (["perturbation", "--step", "0"], r"argument --step: '0' is not a fraction in \(0, 1\]"),
        (["ground-truth", "--epochs", "0"], "argument --epochs: '0' is not a positive whole number"),
        (["ground-truth", "--learning-rate", "-0.5"], "argument --learning-rate: '-0.5' is not a positive number"),
        (["ground-truth", "--trainable-layers", "-1"], "argument --trainable-layers: '-1' is not a whole number >= 0"),
        (["ground-truth", "--holdout", "0"], r"argument --holdout: '0' is not a fraction in \(0, 1\]"),
    ],
)
def test_bad_arguments_give_one_error_line_and_status_2(data_dir, model_dir, tmp_path, capsys, args, message):
    assert _run(data_dir, model_dir, tmp_path / "x", *args) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert re.match(rf"bilrp evaluate( {args[0]})?: error: {message}", err), err
    assert not (tmp_path / "x").exists()


def test_the_main_command_line_checks_numbers_before_loading_anything(monkeypatch, capsys):
    from bilrp import cli

    monkeypatch.setattr(cli, "load_model", lambda *a: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "conservation", "--batch-size", "-1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err == (
        "bilrp evaluate conservation: error: argument --batch-size: '-1' is not a positive whole number "
        "(see bilrp evaluate conservation --help)\n"
    )


def test_the_python_api_applies_the_same_rules(model_dir):
    from bilrp.evaluation import evaluate_conservation
    from bilrp.evaluation.errors import check_fraction, check_non_negative, check_positive

    with pytest.raises(EvaluationError, match="^batch_size must be a positive whole number, not -1$"):
        evaluate_conservation(None, [("a", "b")], batch_size=-1)
    assert check_positive("limit", None, allow_none=True) is None and check_fraction("step", 1) == 1.0
    with pytest.raises(EvaluationError, match="trainable_layers must be a whole number >= 0, not -1"):
        check_non_negative("trainable_layers", -1)


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
