"""``bilrp index`` and ``bilrp rank``: round trips against the Python API, one-line errors, nothing half-written."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import bilrp
from bilrp import cli
from bilrp.ranking import cli as ranking_cli
from bilrp.ranking.storage import STORAGE_DTYPES

DOCUMENTS = [
    "A man is playing a guitar.",
    "Someone plays music on a guitar.",
    "A woman slices an onion.",
    "The cat sleeps on the sofa.",
    "Children are playing football in the park.",
    "A violinist performs on a small stage.",
]
QUERY = "A person plays the guitar."


def run_main(capsys, *args):
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(result, command, pattern):
    code, out, err = result
    assert code == 2 and "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"bilrp {command}: error: ") and re.search(pattern, lines[0]), lines[0]


def files_in(folder):
    return sorted(p.name for p in Path(folder).iterdir())


@pytest.fixture(scope="module")
def built(model_dir, tmp_path_factory):
    """A documents file (with a blank line) indexed by ``bilrp index``: (folder, index path, stdout)."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "docs.txt").write_text("\n".join(DOCUMENTS[:3] + [""] + DOCUMENTS[3:]) + "\n", encoding="utf-8")
    code = cli.main(["index", str(folder / "docs.txt"), "--out", str(folder / "idx"), "--model", model_dir])
    assert code == 0
    return folder, folder / "idx"


@pytest.fixture(scope="module")
def api(built, model_dir):
    model = bilrp.SimilarityModel.from_pretrained(model_dir)
    return model, bilrp.DocumentIndex.open(built[1], model)


def test_index_stores_every_line_with_its_line_number(built, api):
    model, index = api
    assert index.ids == ["1", "2", "3", "5", "6", "7"] and index.texts == DOCUMENTS  # the blank line 4 is skipped
    assert files_in(built[1]) == ["manifest.json", "shard-00000000.safetensors"]
    assert Path(index.manifest["source"]).is_absolute() and index.rules == bilrp.rule_sets.default_rule_set(model)


def test_rank_writes_json_and_html_equal_to_the_python_api(built, api, capsys):
    folder, index_path = built
    outputs = [folder / "ranking.json", folder / "ranking.html"]
    args = ["rank", QUERY, "--index", index_path, "--top", 3, *sum((["--out", o] for o in outputs), [])]
    code, out, err = run_main(capsys, *args)
    assert code == 0 and err == "", err
    model, index = api
    expected = bilrp.explain_ranking(model, QUERY, index, top_k=3)
    records = json.loads(outputs[0].read_text())
    assert [r["id"] for r in records] == expected.ids and [r["rank"] for r in records] == [1, 2, 3]
    assert {"id", "score", "bias", "tokens_a", "tokens_b", "relevance", "rules", "tokens_a_with_bias_b"} <= set(
        records[0]
    )
    for record, explanation in zip(records, expected, strict=True):
        assert record["score"] == pytest.approx(explanation.score, abs=1e-6)
        assert torch.allclose(torch.tensor(record["relevance"]), explanation.relevance.float(), atol=1e-6)
        assert sum(map(sum, record["relevance"])) + record["bias"] == pytest.approx(record["score"], abs=1e-5)
    page = outputs[1].read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<details>") == 3
    assert re.findall(r"https?://", re.sub(r'xmlns(:\w+)?="http://www\.w3\.org/[^"]*"', "", page)) == []
    assert f"   1  {expected.ids[0]} " in out and f"{expected.scores[0]:.4f} =" in out
    assert out.splitlines()[-2:] == [f"wrote {outputs[0]}", f"wrote {outputs[1]}"]


def test_rank_versus_explains_the_contrast(built, api, capsys):
    folder, index_path = built
    outputs = [folder / "versus.json", folder / "versus.png", folder / "versus.html"]
    args = ["rank", QUERY, "--index", index_path, "--versus", "1", "5", *sum((["--out", o] for o in outputs), [])]
    code, out, err = run_main(capsys, *args)
    assert code == 0 and err == "", err
    data = json.loads(outputs[0].read_text())
    assert sum(data["query_relevance"]) + data["bias"] == pytest.approx(data["score"], abs=1e-6)
    assert data["score"] == pytest.approx(data["a"]["score"] - data["b"]["score"], abs=1e-9)
    assert (data["a"]["id"], data["b"]["id"]) == ("1", "5") and data["a"]["text_b"] == DOCUMENTS[0]
    model, index = api
    expected = bilrp.explain_difference(model, QUERY, "1", "5", index=index)
    assert data["query_relevance"] == pytest.approx(expected.query_relevance.tolist(), abs=1e-6)
    assert outputs[1].read_bytes().startswith(b"\x89PNG") and "<svg" in outputs[2].read_text()
    assert f"score A - score B = {expected.score:+.4f}" in out


def test_jsonl_documents_keep_their_ids_and_a_rerun_continues(model_dir, tmp_path, capsys):
    lines = [json.dumps({"id": f"d{i}", "text": text}) for i, text in enumerate(DOCUMENTS)]
    (tmp_path / "docs.jsonl").write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")
    args = ["index", tmp_path / "docs.jsonl", "--out", tmp_path / "idx", "--model", model_dir, "--no-progress"]
    assert run_main(capsys, *args, "--dtype", "float16")[0] == 0
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")  # two more documents
    code, out, _ = run_main(capsys, *args, "--dtype", "float16")
    assert code == 0 and out.startswith(f"indexed {len(DOCUMENTS)} documents") and "float16" in out
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert [(s["first"], s["count"]) for s in manifest["shards"]] == [(0, 4), (4, 2)]
    code, out, _ = run_main(capsys, "rank", QUERY, "--index", tmp_path / "idx", "--top", 2)
    assert code == 0 and re.search(r"^\s+1  d\d ", out, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["rank", QUERY, "--index", "{idx}", "--versus", "1", "99", "--out", "x.json"], r"unknown document id '99'"),
        (["rank", QUERY, "--index", "{idx}", "--similarity", "dot", "--out", "x.json"], r"another model \(similarity"),
        (["rank", QUERY, "--index", "{idx}", "--pooling", "cls", "--out", "x.json"], r"another model \(pooling"),
        (["rank", QUERY, "--index", "{idx}", "--rules", "gamma"], r"built with rules '[^']+', not 'gamma'"),
        (["rank", QUERY, "--index", "{idx}", "--rules", "nonsense"], r"unknown rule set 'nonsense'"),
        (["rank", " ", "--index", "{idx}", "--out", "x.json"], r"QUERY is empty"),
        (["rank", QUERY, "--index", "missing", "--out", "x.json"], r"no index at missing"),
        (
            ["rank", QUERY, "--index", "{idx}", "--out", "x.png"],
            r"unknown extension '\.png'; use \.html",
        ),
        (["rank", QUERY, "--index", "{idx}", "--out", "nodir/x.json"], r"directory 'nodir' does not exist"),
        (["index", "missing.txt", "--out", "new"], r"cannot read DOCS 'missing.txt': no such file"),
        (["index", "empty.txt", "--out", "new"], r"DOCS 'empty.txt' holds no documents"),
        (["index", "bad.jsonl", "--out", "new"], r"DOCS bad.jsonl line 2: not JSON"),
        (["index", "noid.jsonl", "--out", "new"], r'line 1: give an object \{"id": ..., "text": "..."\}'),
        (["index", "twice.jsonl", "--out", "new"], r"document id 'a' is given twice"),
        (["index", "empty.txt", "--out", "nodir/new"], r"holds no documents"),
        (["index", "twice.txt", "--out", "twice.txt"], r"it is a file; give a folder"),
        (["index", "twice.txt", "--out", "nodir/new"], r"directory 'nodir' does not exist"),
        (["index", "twice.txt", "--out", "new", "--dtype", "int8"], r"argument --dtype: invalid choice"),
        (["index", "twice.txt", "--out", "{idx}", "--similarity", "dot"], r"another model .*build into another folder"),
        (["index", "twice.txt", "--out", "{idx}"], r"holds 6 documents but 2 were given"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    built, model_dir, tmp_path, monkeypatch, capsys, args, pattern
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "twice.txt").write_text("one\ntwo\n")
    (tmp_path / "bad.jsonl").write_text('{"id": 1, "text": "a"}\n{oops\n')
    (tmp_path / "noid.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "twice.jsonl").write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    before = files_in(tmp_path)
    argv = [str(a).format(idx=built[1]) for a in args] + (["--model", model_dir] if args[0] == "index" else [])
    if args[-1] == "int8":
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2 and re.search(pattern, capsys.readouterr().err)
    else:
        assert_one_line_error(run_main(capsys, *argv), args[0], pattern)
    assert files_in(tmp_path) == before


def test_a_failed_render_leaves_no_output_at_all(built, tmp_path, monkeypatch, capsys):
    from bilrp import plotting

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plotting, "ranking_html", broken)
    outputs = ["--out", tmp_path / "r.json", "--out", tmp_path / "r.html"]
    assert_one_line_error(run_main(capsys, "rank", QUERY, "--index", built[1], *outputs), "rank", "No space left")
    assert files_in(tmp_path) == []


def test_the_storage_names_match_and_help_imports_no_torch():
    assert ranking_cli.STORAGE_NAMES == tuple(STORAGE_DTYPES)
    assert "bilrp.ranking.cli" in cli.SUBCOMMAND_MODULES
    heavy = ("torch", "transformers", "safetensors", "matplotlib", "zennit", "captum")
    script = (
        "import sys\nfrom bilrp.cli import main\n"
        "for argv in (['--help'], ['index', '--help'], ['rank', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0\n"
        f"print('HEAVY', sorted(n for n in {heavy!r} if n in sys.modules), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "HEAVY []"
    assert "index" in result.stdout and "--versus ID_A ID_B" in result.stdout


def test_the_faiss_example_explains_the_retrievers_own_ranking():
    example = Path(__file__).resolve().parents[1] / "examples" / "faiss_ranking.py"
    result = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    try:
        import faiss  # noqa: F401
    except ImportError:
        assert result.stdout.splitlines() == [
            "skipped: faiss is not installed (pip install faiss-cpu, or pip install -e '.[search]')"
        ]
        return
    ranked = [line for line in result.stdout.splitlines() if re.match(r"\d\. id", line)]
    assert len(ranked) == 3
    for line in ranked:
        faiss_score, score, total, bias = map(
            float, re.search(r"faiss ([-\d.]+)  bilrp ([-\d.]+) = sum R ([-\d.]+) \+ bias ([-\d.]+)", line).groups()
        )
        assert abs(faiss_score - score) < 1e-3 and abs(total + bias - score) < 2e-4
    gap = float(re.search(r"largest \|faiss score - bilrp score\|: ([-\d.e+]+)", result.stdout).group(1))
    assert gap < 1e-5
    assert "why " in result.stdout and "the query token that decides most" in result.stdout
