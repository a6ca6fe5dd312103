"""``bilrp`` command line: end to end as a subprocess, bad input in process, and hosting of sibling commands."""

import json
import os
import re
import subprocess
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

import bilrp
import bilrp._io
from bilrp import cli

TEXT_A = "Tokenization is unbelievably hard."
TEXT_B = "Splitting words into subwords is difficult."
LONG_TEXT = " ".join(f"word{i % 50}" for i in range(300))


def run_bilrp(*args, cwd):
    """``python -m bilrp ARGS`` in a fresh process with no HF offline settings (the CLI's own default)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MPLBACKEND")}
    return subprocess.run(
        [sys.executable, "-m", "bilrp", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def assert_user_error(returncode, stdout, stderr, pattern):
    assert returncode == 2
    assert "Traceback" not in stderr and stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("bilrp explain: error: ") and re.search(pattern, lines[0]), lines[0]


def files_in(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# ------------------------------------------------------------------------------------------ as a subprocess
@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain")
    outputs = ["pairs.png", "pairs.svg", "pairs.pdf", "view.html", "data.json"]
    result = run_bilrp("explain", TEXT_A, TEXT_B, "--top", "3", *[a for o in outputs for a in ("--out", o)], cwd=folder)
    return folder, result


@pytest.fixture(scope="module")
def api_explanation(minilm):
    return bilrp.explain(minilm, TEXT_A, TEXT_B)


def test_explain_writes_every_format_and_prints_the_table(explained, api_explanation):
    folder, result = explained
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bars, no warnings
    assert files_in(folder) == ["data.json", "pairs.pdf", "pairs.png", "pairs.svg", "view.html"]  # no temp files
    assert (folder / "pairs.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert (folder / "pairs.pdf").read_bytes().startswith(b"%PDF")
    assert ET.parse(folder / "pairs.svg").getroot().tag == "{http://www.w3.org/2000/svg}svg"
    page = (folder / "view.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert re.findall(r"https?://", re.sub(r'xmlns(:\w+)?="http://www\.w3\.org/[^"]*"', "", page)) == []
    best = api_explanation.top(3)["positive"][0]
    out = result.stdout
    assert f"score   {api_explanation.score:.4f} = sum of R" in out and f"bias {api_explanation.bias:.4f}" in out
    assert re.search(rf"\+{best.relevance:.4f}\s+{best.i}\s+{re.escape(best.token_a)}\s+{best.j}\s+", out)
    assert "top 3 positive pairs" in out and "top 3 negative pairs" in out


def test_json_output_equals_the_python_api(explained, api_explanation):
    folder, _ = explained
    data = json.loads((folder / "data.json").read_text())
    expected = api_explanation.to_dict()
    assert set(data) == set(expected) == {
        *("model", "method", "text_a", "text_b", "tokens_a", "tokens_b", "relevance", "score", "bias"),
        *("prompt_a", "prompt_b", "prompt_length_a", "prompt_length_b"),
        *("rules", "bias_share", "tokens_a_with_bias_b", "bias_a_with_tokens_b", "bias_with_bias", "step_error"),
    }
    decomposed = sum(data["tokens_a_with_bias_b"]) + sum(data["bias_a_with_tokens_b"]) + data["bias_with_bias"]
    assert decomposed + data["step_error"] == pytest.approx(data["bias"], abs=1e-6)
    for key in ("model", "method", "text_a", "text_b", "tokens_a", "tokens_b"):
        assert data[key] == expected[key]
    assert data["tokens_a"][0] == "[CLS]" and len(data["relevance"]) == len(data["tokens_a"])
    assert all(len(row) == len(data["tokens_b"]) for row in data["relevance"])
    flat = [v for row in data["relevance"] for v in row]
    reference = [v for row in expected["relevance"] for v in row]
    assert flat == pytest.approx(reference, abs=1e-6)
    assert data["score"] == pytest.approx(api_explanation.score, abs=1e-6)
    assert sum(flat) + data["bias"] == pytest.approx(data["score"], abs=1e-5)


def test_unknown_model_is_one_line_exit_2_and_no_file(tmp_path):
    result = run_bilrp("explain", "a", "b", "--model", "no-such-org/no-such-model", "--out", "x.json", cwd=tmp_path)
    assert_user_error(result.returncode, result.stdout, result.stderr, r"cannot load (model )?'no-such-org/no-such")
    assert files_in(tmp_path) == []


# ------------------------------------------------------------------------------------------ in process
def run_main(capsys, *args):
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_words_aggregate_subtokens_and_conserve_the_total(tmp_path, monkeypatch, capsys, minilm, api_explanation):
    monkeypatch.setattr(cli, "load_model", lambda *a: minilm)
    code, out, err = run_main(capsys, "explain", TEXT_A, TEXT_B, "--words", "--out", str(tmp_path / "words.json"))
    assert (code, err) == (0, "")
    data = json.loads((tmp_path / "words.json").read_text())
    assert data["tokens_a"] == ["[CLS]", "Tokenization", "is", "unbelievably", "hard", ".", "[SEP]"]
    assert len(api_explanation.tokens_a) > len(data["tokens_a"])  # subtokens were merged
    word_sum = sum(v for row in data["relevance"] for v in row)
    assert word_sum == pytest.approx(float(api_explanation.relevance.double().sum()), abs=1e-5)
    assert data["bias"] == pytest.approx(api_explanation.bias, abs=1e-6)
    assert "pairs of words" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"bilrp {bilrp.__version__}"


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["", "b"], r"TEXT_A is empty"),
        (["a", " \t\n"], r"TEXT_B is empty"),
        (["a", "b", "--out", "ok.json", "--out", "notes.txt"], r"unknown extension '\.txt'"),
        (["a", "b", "--out", "noextension"], r"unknown extension '\(none\)'"),
        (["a", "b", "--out", "ok.json", "--out", "missing/x.png"], r"directory 'missing' does not exist"),
        (["a", "b", "--out", "afile.txt/x.png"], r"directory 'afile.txt' does not exist"),
        (["a", "b", "--out", "folder.png"], r"folder.png: it is a directory"),
        (["a", "b", "--model", "./no/such/folder", "--out", "ok.json"], r"model folder '\./no/such/folder' does not"),
        ([LONG_TEXT, "b", "--no-truncate", "--out", "ok.json"], r"text of \d+ tokens exceeds the model maximum"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys, args, pattern):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile.txt").write_text("")
    (tmp_path / "folder.png").mkdir()
    before = files_in(tmp_path)
    assert_user_error(*run_main(capsys, "explain", *args), pattern)
    assert files_in(tmp_path) == before


def test_unwritable_directory_is_refused_before_computing(tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(bilrp._io.tempfile, "TemporaryFile", refuse)
    monkeypatch.setattr(cli, "load_model", lambda *a: pytest.fail("the model was loaded before checking --out"))
    assert_user_error(*run_main(capsys, "explain", "a", "b", "--out", str(tmp_path / "x.png")), "Permission denied")
    assert files_in(tmp_path) == []


def test_an_out_name_too_long_for_the_file_system_is_refused_before_computing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "load_model", lambda *a: pytest.fail("the model was loaded before checking --out"))
    code, out, err = run_main(capsys, "explain", "a", "b", "--out", "ok.png", "--out", "a" * 300 + ".json")
    assert_user_error(
        code, out, err, r"cannot write a+\.\.\.a+\.json: the file name is too long \(305 bytes, at most \d+"
    )
    assert ".partial" not in err and files_in(tmp_path) == []


NOT_UTF8 = b"caf\xe9".decode("utf-8", "surrogateescape")  # what Python makes of Latin-1 bytes in sys.argv


@pytest.mark.parametrize(
    ("argv", "number"),
    [
        (["explain", "\udcff", "b"], 2),
        (["explain", "a", NOT_UTF8], 3),
        (["explain", "a", "b", "--out", NOT_UTF8 + ".json"], 5),
        (["--traceback", "explain", "a", "b", "--model", "\ud800"], 6),
    ],
)
def test_arguments_that_are_not_utf8_are_one_line_exit_2(tmp_path, monkeypatch, capsys, argv, number):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "load_model", lambda *a: pytest.fail("the model was loaded"))
    code, out, err = run_main(capsys, *argv)
    assert (code, out, len(err.splitlines())) == (2, "", 1), err
    assert err.startswith(f"bilrp: error: argument {number} (") and "is not valid UTF-8 text" in err
    assert files_in(tmp_path) == []


def test_invalid_utf8_bytes_on_the_real_command_line(tmp_path):
    env = {**os.environ, "PYTHONUTF8": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "bilrp", "explain", b"caf\xe9", "b"], cwd=tmp_path, env=env, capture_output=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    assert result.stderr.decode() == (
        "bilrp: error: argument 2 (caf\\udce9) is not valid UTF-8 text: pass texts and file names as UTF-8 "
        "(see bilrp --help)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top", "0"], "argument --top: '0' is not a positive whole number"),
        (["--top", "2.5"], "argument --top: '2.5' is not a positive whole number"),
        (["--threshold", "1.5"], r"argument --threshold: '1.5' is not a fraction in \[0, 1\)"),
        (["--threshold", "nan"], r"argument --threshold: 'nan' is not a fraction in \[0, 1\)"),
    ],
)
def test_numeric_arguments_are_checked_before_anything_runs(monkeypatch, capsys, args, message):
    monkeypatch.setattr(cli, "load_model", lambda *a: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["explain", "a", "b", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert re.match(rf"bilrp explain: error: {message} \(see bilrp explain --help\)$", err), err


def test_truncation_warns_how_many_tokens_were_dropped(tmp_path, monkeypatch, capsys, minilm):
    monkeypatch.setattr(cli, "load_model", lambda *a: minilm)
    out_file = str(tmp_path / "r.json")
    code, out, err = run_main(capsys, "explain", LONG_TEXT, "b", "--method", "random", "--out", out_file)
    assert code == 0
    dropped = len(minilm.tokenizer(LONG_TEXT)["input_ids"]) - minilm.max_length
    assert dropped > 0
    (line,) = err.splitlines()
    assert line.startswith("warning: ") and f"{dropped} tokens dropped" in line
    assert len(json.loads((tmp_path / "r.json").read_text())["tokens_a"]) == minilm.max_length


def test_failed_write_leaves_no_file_and_no_temporary(tmp_path):
    def broken(path):
        path.write_text("half")
        raise OSError("disk full")

    targets = [tmp_path / "first.json", tmp_path / "second.json"]
    with pytest.raises(OSError, match="disk full"):
        cli.write_atomically([(targets[0], lambda p: p.write_text("{}")), (targets[1], broken)])
    assert files_in(tmp_path) == []
    cli.write_atomically([(targets[0], lambda p: p.write_text("{}"))])
    assert files_in(tmp_path) == ["first.json"] and (tmp_path / "first.json").stat().st_mode & 0o044


def test_summary_lists_pairs_of_each_sign_or_says_none():
    relevance = torch.tensor([[0.5, 0.0], [0.25, 0.125]])
    explanation = bilrp.Explanation(["[CLS]", "Ġguitar"], ["x", "y"], relevance, score=1.0, bias=0.125)
    lines = cli.format_summary(explanation, k=2).splitlines()
    assert lines[3] == "score   1.0000 = sum of R 0.8750 + bias 0.1250   (bias share 12%)"
    assert lines[lines.index("top 2 positive pairs (raise the similarity)") + 2].split() == [
        "+0.5000",
        "0",
        "[CLS]",
        "0",
        "x",
    ]
    assert lines[lines.index("top 2 positive pairs (raise the similarity)") + 3].split()[2] == "guitar"
    assert lines[-2:] == ["top 0 negative pairs (lower the similarity)", "  (none)"]


def test_summary_shows_the_bias_decomposition_and_rules(tmp_path):
    result = run_bilrp("explain", "a dog runs", "a cat sleeps", "--rules", "epsilon=0.1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "rules epsilon=0.1)" in lines[3] and "bias share" in lines[3]
    assert lines[4].startswith("bias ") and "tokens of A x bias of B" in lines[4] and "bias x bias" in lines[4]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("--rules", "eps"), "unknown rule set 'eps'"),
        (("--rules", "epsilon=-1"), "non-negative number"),
        (("--rules", "paper", "--method", "hxp"), "--rules chooses BiLRP's rules"),
    ],
)
def test_bad_rules_are_one_line_exit_2(tmp_path, arguments, message):
    result = run_bilrp("explain", "a", "b", *arguments, "--out", "x.json", cwd=tmp_path)
    assert_user_error(result.returncode, result.stdout, result.stderr, message)
    assert files_in(tmp_path) == []


def test_argument_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["explain", "a", "b", "--top", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


# ------------------------------------------------------------------------------------------ sibling subcommands
def fake_command_module(name):
    module = types.ModuleType(name)

    def run(args):
        import warnings

        warnings.warn("3 tokens dropped", stacklevel=1)
        if args.fail:
            raise FileNotFoundError(2, "No such file or directory", "data/stsb.tsv")
        return 7

    def register(subparsers):
        parser = subparsers.add_parser("fake", help="a sibling command")
        parser.add_argument("--fail", action="store_true")
        parser.set_defaults(func=run)

    module.register = register
    return module


def test_sibling_subcommands_are_hosted_with_the_same_error_handling(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fake_bilrp_commands", fake_command_module("fake_bilrp_commands"))
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("bilrp.not_written_yet.cli", "fake_bilrp_commands"))
    assert run_main(capsys, "fake") == (7, "", "warning: 3 tokens dropped\n")
    code, out, err = run_main(capsys, "fake", "--fail")
    assert code == 2 and err.splitlines()[-1] == (
        "bilrp fake: error: [Errno 2] No such file or directory: 'data/stsb.tsv'"
    )
    with pytest.raises(FileNotFoundError):
        cli.main(["--traceback", "fake", "--fail"])


def test_a_sibling_module_that_fails_to_import_is_not_hidden(monkeypatch, tmp_path):
    (tmp_path / "broken_bilrp_commands.py").write_text("import no_such_dependency_for_bilrp\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("broken_bilrp_commands",))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_for_bilrp"):
        cli.build_parser()


def test_granularity_sentence_rows_are_sentences(tmp_path):
    result = run_bilrp(
        "explain", "A man plays. People listen.", "Someone sings.", "--granularity", "sentence", "--out", "r.json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "pairs of sentences" in result.stdout.splitlines()[0]
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["tokens_a"] == ["[CLS]", "A man plays.", "People listen.", "[SEP]"]
    assert sum(map(sum, data["relevance"])) + data["bias"] == pytest.approx(data["score"], abs=1e-5)


def test_words_and_granularity_together_are_refused(tmp_path):
    result = run_bilrp("explain", "a", "b", "--words", "--granularity", "sentence", cwd=tmp_path)
    assert_user_error(result.returncode, result.stdout, result.stderr, "both group the tokens")
