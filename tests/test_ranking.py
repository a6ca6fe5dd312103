"""Explaining search results: DocumentIndex, explain_ranking and explain_difference on a tiny cosine model."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

import bilrp
from bilrp.plotting import difference_html, plot_difference, ranking_html
from bilrp.ranking import DamagedIndexError, IndexMismatchError, Ranking, UnknownDocumentError
from bilrp.ranking import index_build as index_module  # where the shards are computed and written
from tiny_models import tiny_similarity_model

DOCUMENTS = [
    "A man is playing a guitar.",
    "Someone plays music on a guitar.",
    "A woman slices an onion.",
    "The cat sleeps on the sofa.",
    "Children are playing football in the park.",
    "A dog runs along the beach.",
    "The chef is cutting vegetables in the kitchen.",
    "Two people are dancing to loud music.",
    "A violinist performs on a small stage.",
    "Rain falls on the quiet city streets.",
]
QUERY = "A person plays the guitar."
IDS = [f"doc-{i}" for i in range(len(DOCUMENTS))]
SRC = Path(__file__).resolve().parents[1] / "src" / "bilrp"


@pytest.fixture(scope="module")
def model():
    return tiny_similarity_model("bert", similarity="cosine")


@pytest.fixture(scope="module")
def index(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("index") / "idx"
    return bilrp.DocumentIndex.build(model, DOCUMENTS, folder, ids=IDS, shard_size=4, progress=False)


@pytest.fixture(scope="module")
def ranking(model, index):
    return bilrp.explain_ranking(model, QUERY, index, top_k=None)


def assert_same_explanation(got, expected, atol=1e-5):
    assert got.tokens_a == expected.tokens_a and got.tokens_b == expected.tokens_b
    assert torch.allclose(got.relevance.double(), expected.relevance.double(), atol=atol, rtol=0)
    assert got.score == pytest.approx(expected.score, abs=atol)
    assert got.bias == pytest.approx(expected.bias, abs=atol)
    assert got.rules == expected.rules and got.method == expected.method and got.model == expected.model
    for name in ("tokens_a_with_bias_b", "bias_a_with_tokens_b"):
        assert torch.allclose(getattr(got, name), getattr(expected, name), atol=atol, rtol=0), name
    assert got.bias_with_bias == pytest.approx(expected.bias_with_bias, abs=atol)
    assert float(got.decomposition().sum()) + got.step_error == pytest.approx(got.score, abs=1e-12)
    assert abs(got.step_error) < 1e-6  # the float32 storage of a float64 model's factors


# ------------------------------------------------------------------------------------------ exactness
def test_every_ranked_explanation_equals_pairwise_explain(model, ranking):
    assert len(ranking) == len(DOCUMENTS) and ranking.ranked == len(DOCUMENTS) and ranking.order == "score"
    for explanation in ranking:
        expected = bilrp.explain(model, QUERY, explanation.text_b)
        assert_same_explanation(explanation, expected)
        assert explanation.document_id == IDS[DOCUMENTS.index(explanation.text_b)]
        assert explanation.text_a == QUERY
        assert float(explanation.relevance.double().sum()) + explanation.bias == pytest.approx(explanation.score)


def test_top_k_is_ordered_by_the_models_scores(model, index):
    scores = model.score([QUERY] * len(DOCUMENTS), DOCUMENTS)
    expected = [IDS[int(i)] for i in torch.argsort(scores, descending=True)[:4]]
    top = bilrp.explain_ranking(model, QUERY, index, top_k=4)
    assert top.ids == expected and len(top) == 4
    assert top.scores == sorted(top.scores, reverse=True)
    assert top.scores == pytest.approx([float(scores[IDS.index(i)]) for i in expected], abs=1e-6)
    assert [e.document_id for e in top] == top.ids and top[0].document_id == expected[0]


def test_ids_and_texts_from_your_own_retriever_keep_its_order(model, index):
    chosen = ["doc-7", "doc-0", "doc-3"]
    given = bilrp.explain_ranking(model, QUERY, index, ids=chosen)
    assert given.ids == chosen and given.order == "given" and given.ranked == 3
    new_text = "An electric guitar lies on the floor."
    texts = bilrp.explain_ranking(model, QUERY, index, documents=[DOCUMENTS[5], new_text])
    assert texts.ids == ["doc-5", None]
    without_index = bilrp.explain_ranking(model, QUERY, documents=[new_text, DOCUMENTS[5]])
    assert without_index.ids == [None, None]
    for explanation in [*given, *texts, *without_index]:
        assert_same_explanation(explanation, bilrp.explain(model, QUERY, explanation.text_b))


def test_explain_batch_is_unchanged_by_the_factor_functions(model):
    from bilrp.explainer import explanation_from_factors, text_factors

    attribution = bilrp.BiLRP(model)
    query, document = text_factors(model, attribution, [QUERY, DOCUMENTS[1]])
    from_factors = explanation_from_factors(model, attribution, query, document, QUERY, DOCUMENTS[1])
    (batched,) = bilrp.explain_batch(model, [(QUERY, DOCUMENTS[1])], progress=False)
    assert_same_explanation(from_factors, batched, atol=1e-10)


# ------------------------------------------------------------------------------------------ the index on disk
def test_an_interrupted_build_resumes_without_losing_or_duplicating(model, tmp_path, monkeypatch, index):
    folder = tmp_path / "idx"
    real_write, written = index_module.write_shard, []

    def write_then_fail(*args):
        if written:
            raise KeyboardInterrupt  # as if stopped while computing the second shard
        written.append(real_write(*args))
        return written[-1]

    monkeypatch.setattr(index_module, "write_shard", write_then_fail)
    with pytest.raises(KeyboardInterrupt):
        bilrp.DocumentIndex.build(model, DOCUMENTS, folder, ids=IDS, shard_size=4, progress=False)
    assert json.loads((folder / "manifest.json").read_text())["documents"] == 4
    monkeypatch.setattr(index_module, "write_shard", real_write)
    real_factors, computed = index_module.text_factors, []

    def counting(model_, attribution, texts, *args):
        computed.extend(texts)
        return real_factors(model_, attribution, texts, *args)

    monkeypatch.setattr(index_module, "text_factors", counting)
    resumed = bilrp.DocumentIndex.build(model, DOCUMENTS, folder, ids=IDS, shard_size=4, progress=False)
    assert computed == DOCUMENTS[4:]  # only what the first run did not store
    assert resumed.ids == IDS and resumed.texts == DOCUMENTS
    assert [(s["first"], s["count"]) for s in resumed.manifest["shards"]] == [(0, 4), (4, 4), (8, 2)]
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        *(f"shard-{n:08d}.safetensors" for n in (0, 4, 8)),
    ]
    assert torch.equal(resumed.phi, index.phi) and torch.equal(resumed.bias, index.bias)
    for name in IDS:
        assert torch.equal(resumed.factor(name)["contributions"], index.factor(name)["contributions"])
    again = bilrp.DocumentIndex.build(model, DOCUMENTS, folder, ids=IDS, shard_size=4, progress=False)
    assert computed == DOCUMENTS[4:] and len(again) == len(DOCUMENTS)  # complete: nothing recomputed


REOPEN_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from tiny_models import tiny_similarity_model
import bilrp
model = tiny_similarity_model("bert", similarity="cosine")
index = bilrp.DocumentIndex.open({folder!r}, model)
print(bilrp.explain_ranking(model, {query!r}, index, top_k=3).to_json(indent=None))
"""


def test_an_index_reopened_in_a_new_process_gives_the_same_explanations(model, index):
    script = REOPEN_SCRIPT.format(tests=str(Path(__file__).parent), folder=str(index.path), query=QUERY)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    reopened = Ranking.from_records(json.loads(result.stdout.strip().splitlines()[-1]))
    here = bilrp.explain_ranking(model, QUERY, index, top_k=3)
    assert reopened.ids == here.ids
    for got, expected in zip(reopened, here, strict=True):
        assert_same_explanation(got, expected, atol=1e-9)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"seed": 1}, r"another model \(other weights; built with 'tiny-bert'\)"),
        ({"similarity": "dot"}, r"another model \(similarity 'cosine', not 'dot'"),
        ({"pooling": "cls", "similarity": "cosine"}, r"another model \(pooling 'mean', not 'cls'"),
    ],
)
def test_an_index_refuses_another_model_in_one_line(index, other, message):
    options = {"similarity": "cosine", **other}
    with pytest.raises(IndexMismatchError, match=message) as refused:
        bilrp.DocumentIndex.open(index.path, tiny_similarity_model("bert", **options))
    assert "\n" not in str(refused.value)


def test_an_index_refuses_another_rule_set(model, index):
    built = re.escape(repr(bilrp.rule_sets.default_rule_set(model)))  # the family's default rules
    assert built != "'gamma'" and built != "'epsilon'"
    with pytest.raises(IndexMismatchError, match=rf"built with rules {built}, not 'gamma'"):
        bilrp.DocumentIndex.open(index.path, model, rules="gamma")
    with pytest.raises(IndexMismatchError, match=rf"built with rules {built}, not 'epsilon'"):
        bilrp.explain_ranking(model, QUERY, index, rules="epsilon")
    with pytest.raises(IndexMismatchError, match=rf"rules {built}, not 'gamma': build into another folder"):
        bilrp.DocumentIndex.build(model, DOCUMENTS, index.path, ids=IDS, rules="gamma", progress=False)
    default = bilrp.rule_sets.default_rule_set(model)
    assert bilrp.DocumentIndex.open(index.path, model, rules=default).rules == default
    assert index.manifest["rules"] == default


def test_other_documents_in_an_index_folder_are_refused(model, index, tmp_path):
    with pytest.raises(IndexMismatchError, match=r"other documents at positions 0-3"):
        bilrp.DocumentIndex.build(model, DOCUMENTS[::-1], index.path, ids=IDS, progress=False)
    with pytest.raises(IndexMismatchError, match=r"holds 10 documents but 3 were given"):
        bilrp.DocumentIndex.build(model, DOCUMENTS[:3], index.path, ids=IDS[:3], progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(IndexMismatchError, match=r"holds other files \('notes.txt'\)"):
        bilrp.DocumentIndex.build(model, DOCUMENTS, tmp_path, progress=False)


@pytest.mark.parametrize(("dtype", "bound"), [("float16", 2e-3), ("bfloat16", 2e-2)])
def test_half_precision_storage_halves_the_factors_within_an_error_bound(model, index, tmp_path, dtype, bound):
    half = bilrp.DocumentIndex.build(model, DOCUMENTS, tmp_path, ids=IDS, dtype=dtype, shard_size=4, progress=False)
    assert half.factor(IDS[0])["contributions"].dtype == getattr(torch, dtype)
    contributions = sum(half.factor(i)["contributions"].numel() for i in IDS)
    assert index.nbytes - half.nbytes == pytest.approx(2 * contributions, rel=0.05)  # 2 bytes saved per number
    full, reduced = (bilrp.explain_ranking(model, QUERY, i, top_k=None) for i in (index, half))
    assert reduced.ids == full.ids
    for a, b in zip(full, reduced, strict=True):
        largest = float(a.relevance.abs().max())
        assert float((a.relevance - b.relevance).abs().max()) <= bound * largest
        assert b.score == pytest.approx(a.score, abs=1e-12)  # phi is stored in full precision
        assert float(b.relevance.double().sum()) + b.bias == pytest.approx(b.score, abs=1e-9)


def test_a_damaged_shard_is_one_line(model, index, tmp_path):
    import shutil

    copy = shutil.copytree(index.path, tmp_path / "copy")
    shard = copy / "shard-00000004.safetensors"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(DamagedIndexError, match=r"cannot read index shard .*shard-00000004") as damaged:
        bilrp.DocumentIndex.open(copy, model)
    assert "\n" not in str(damaged.value)
    with pytest.raises(FileNotFoundError, match=r"no index at .*nowhere: it holds no manifest.json"):
        bilrp.DocumentIndex.open(tmp_path / "nowhere", model)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, i: bilrp.explain_ranking(m, "  ", i), r"the query is '  '"),
        (lambda m, i: bilrp.explain_ranking(m, QUERY, i, ids=["doc-1", "nope"]), r"unknown document id 'nope'"),
        (lambda m, i: bilrp.explain_ranking(m, QUERY, ids=["doc-1"]), r"ids= name documents"),
        (lambda m, i: bilrp.explain_ranking(m, QUERY, ids=["a", "b"], documents=["x"]), r"2 ids for 1 documents"),
        (lambda m, i: bilrp.explain_ranking(m, QUERY), r"nothing to rank"),
        (lambda m, i: bilrp.explain_ranking(m, QUERY, i, top_k=0), r"top_k"),
        (lambda m, i: bilrp.explain_difference(m, QUERY, "doc-1", "doc-99", index=i), r"unknown document id 'doc-99'"),
        (lambda m, i: bilrp.DocumentIndex.build(m, ["a", "b"], "x", ids=["1", "1"]), r"id '1' is given twice"),
        (lambda m, i: bilrp.DocumentIndex.build(m, ["a", " "], "x"), r"document '1' is ' '"),
        (lambda m, i: bilrp.DocumentIndex.build(m, [], "x"), r"no documents given"),
        (lambda m, i: bilrp.DocumentIndex.build(m, ["a"], "x", ids=["1", "2"]), r"2 ids for 1 documents"),
        (lambda m, i: bilrp.DocumentIndex.build(m, ["a"], "x", dtype="int8"), r"unknown storage dtype 'int8'"),
    ],
)
def test_bad_input_is_a_one_line_value_error(model, index, call, message):
    with pytest.raises(ValueError, match=message) as refused:
        call(model, index)
    assert "\n" not in str(refused.value)
    assert not Path("x").exists()


def test_unknown_ids_are_their_own_error(index):
    with pytest.raises(UnknownDocumentError):
        index.factor("nope")
    assert "doc-1" in index and "nope" not in index and index.text("doc-2") == DOCUMENTS[2]


# ------------------------------------------------------------------------------------------ contrast and views
def test_the_contrast_splits_the_score_difference_over_the_query_tokens(model, index):
    by_id = bilrp.explain_difference(model, QUERY, "doc-0", "doc-3", index=index)
    by_text = bilrp.explain_difference(model, QUERY, DOCUMENTS[0], DOCUMENTS[3])
    for difference in (by_id, by_text):
        a, b = difference.explanation_a, difference.explanation_b
        assert float(difference.query_relevance.sum()) + difference.bias == pytest.approx(difference.score, abs=1e-6)
        assert difference.score == pytest.approx(a.score - b.score, abs=1e-12)
        assert difference.bias == pytest.approx(a.bias - b.bias, abs=1e-12)
        expected = a.relevance.double().sum(1) - b.relevance.double().sum(1)
        assert torch.allclose(difference.query_relevance, expected) and len(difference.tokens) == len(expected)
        assert difference.query == QUERY and difference.top(2)[0][2] == max(expected.tolist(), key=abs)
    assert (by_id.id_a, by_id.id_b, by_text.id_a) == ("doc-0", "doc-3", None)
    assert torch.allclose(by_id.query_relevance, by_text.query_relevance, atol=1e-5)
    figure = plot_difference(by_id)
    assert isinstance(figure, Figure) and len(figure.axes) == 4  # A, B, the bars and the colour bar
    data = json.loads(by_id.to_json())
    assert sum(data["query_relevance"]) + data["bias"] == pytest.approx(data["score"], abs=1e-6)
    assert (data["a"]["id"], data["b"]["id"]) == ("doc-0", "doc-3")
    page = difference_html(by_id)
    assert page.count("<details>") == 2 and "<svg" in page and "<script" not in page and page.isascii()


def test_the_ranking_page_and_json(ranking, tmp_path):
    page = ranking_html(ranking, k=2, full_page=True)
    assert page.startswith("<!DOCTYPE html>") and page.isascii() and "<script" not in page
    assert page.count("<details>") == len(ranking) and page.count('class="result"') == len(ranking)
    assert all(f"<code>{name}</code>" in page for name in ranking.ids)
    assert ranking_html(ranking).startswith('<div class="bilrp-rank">')
    assert "<details>" not in ranking_html(ranking, details=False)
    records = json.loads(ranking.to_json(tmp_path / "ranking.json"))
    assert json.loads((tmp_path / "ranking.json").read_text()) == records
    assert [r["rank"] for r in records] == list(range(1, len(ranking) + 1))
    assert {"id", "score", "bias", "tokens_a", "tokens_b", "relevance", "document_id"} <= set(records[0])
    again = Ranking.from_records(records)
    assert again.ids == ranking.ids and again.query == QUERY
    assert torch.allclose(again[0].relevance, ranking[0].relevance.double())


def test_explanation_json_keeps_the_document_id_only_when_there_is_one(ranking, model):
    assert "document_id" not in bilrp.explain(model, QUERY, DOCUMENTS[0]).to_dict()
    data = ranking[0].to_dict()
    assert bilrp.Explanation.from_dict(data).document_id == ranking[0].document_id
    assert ranking[0].to_words().document_id == ranking[0].document_id


def test_nothing_below_the_ranking_package_imports_it():
    above = {SRC / "__init__.py", SRC / "cli.py"}  # the package's lazy table and the CLI's module list
    # the pictures (bilrp.plotting) and the explorer (bilrp.server) sit above ranking and may import it
    for file in SRC.rglob("*.py"):
        if file in above or {"ranking", "plotting", "server"} & set(file.relative_to(SRC).parts):
            continue
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert "ranking" not in (node.module or ""), file
            elif isinstance(node, ast.Import):
                assert all("ranking" not in alias.name for alias in node.names), file
