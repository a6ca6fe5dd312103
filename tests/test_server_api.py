"""The explorer's server (``bilrp serve``): its JSON API against ``bilrp.explain``, its refusals, its limits
(body size, text length, timeout), concurrency on a real uvicorn server, search, downloads and the command.

Most checks run on a tiny random BERT; the comparisons with bilrp, the concurrency and the timeout run on
the real all-MiniLM-L6-v2 with short texts (few calls: the suite shares 2 cores).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

pytest.importorskip("fastapi", reason="the server needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="the server needs the serve extra: pip install -e '.[serve]'")
httpx = pytest.importorskip("httpx", reason="the API tests need httpx (the test extra)")

import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import bilrp  # noqa: E402
from bilrp._io import json_text  # noqa: E402
from bilrp.cli import main  # noqa: E402
from bilrp.server import ServerSettings, create_app  # noqa: E402
from bilrp.server import deadline as deadline_module  # noqa: E402

PAIR = {"text_a": "A man is playing a guitar.", "text_b": "Someone plays music on a guitar."}
WORDS = ("the quick brown fox jumps over the lazy dog near a river bank while children play " * 12).split()


def local_client(app) -> TestClient:
    """A test client of ``app`` as the explorer's page calls it: addressed to 127.0.0.1:8000 (the request policy
    answers only its own host names), bodies sent as JSON.
    """
    return TestClient(app, base_url="http://127.0.0.1:8000", headers={"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def tiny():
    from tiny_models import tiny_similarity_model

    return tiny_similarity_model()


@pytest.fixture(scope="module")
def client(tiny):
    settings = ServerSettings(max_text_chars=2000, max_body_bytes=8192, max_top_k=3)
    return local_client(create_app({"tiny": tiny, "tiny-copy": tiny}, settings=settings))


def assert_same_explanation(answer: dict, expected: bilrp.Explanation) -> None:
    """``answer`` (an API body) holds ``expected.to_dict()``: relevance to 1e-6, the rest equal."""
    reference = json.loads(json_text(expected.to_dict()))
    for key, value in reference.items():
        if key == "relevance":
            assert torch.allclose(torch.tensor(answer[key]), torch.tensor(value), atol=1e-6, rtol=0), key
        elif isinstance(value, float):
            assert answer[key] == pytest.approx(value, abs=1e-6), key
        elif key in ("tokens_a_with_bias_b", "bias_a_with_tokens_b") and value is not None:
            assert answer[key] == pytest.approx(value, abs=1e-6), key
        else:
            assert answer[key] == value, key


def assert_error(response, status: int, fragment: str) -> str:
    """``response`` is a JSON ``{"error": one line}`` with ``status`` and ``fragment`` in the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"]
    message = body["error"]
    assert isinstance(message, str) and message and "\n" not in message
    assert fragment in message, message
    return message


@contextmanager
def uvicorn_server(app):
    """``app`` served by uvicorn on a free loopback port in a thread (as the browser tests start it)."""
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        for _ in range(300):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(20)
        listener.close()


# ---------------------------------------------------------------------------------------------- page, health
def test_health_reports_the_models_methods_and_limits(client):
    answer = client.get("/api/health")
    assert answer.status_code == 200
    health = answer.json()
    assert health["status"] == "ok" and health["version"] == bilrp.__version__
    assert health["models"] == ["tiny", "tiny-copy"] and health["default_model"] == "tiny"
    assert health["methods"] == list(bilrp.METHODS)
    assert health["granularities"] == ["auto", "token", "word", "sentence"]
    assert "paper" in health["rule_sets"] and health["index"] is None
    assert health["limits"] == {"timeout_s": 30.0, "max_body_bytes": 8192, "max_text_chars": 2000, "max_top_k": 3}
    assert health["auto_word_from"] == 40 and health["auto_sentence_from"] == 80


def test_the_page_and_its_files_come_from_the_package(client):
    from bilrp.server.app import STATIC_FOLDER

    if not (STATIC_FOLDER / "index.html").is_file():
        pytest.skip("the page (src/bilrp/server/static/index.html) is not there yet")
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == (STATIC_FOLDER / "index.html").read_text("utf-8")
    shipped = sorted(path.name for path in STATIC_FOLDER.iterdir() if path.is_file())
    answer = client.get(f"/static/{shipped[0]}")
    assert answer.status_code == 200 and answer.content == (STATIC_FOLDER / shipped[0]).read_bytes()
    assert_error(client.get("/static/no-such-file.js"), 404, "/static/no-such-file.js")


# ---------------------------------------------------------------------------------------------- explain = bilrp
@pytest.fixture(scope="module")
def minilm_app(minilm):
    return create_app(minilm)


@pytest.mark.parametrize(
    ("method", "granularity"), [("bilrp", "token"), ("bilrp", "word"), ("hxp", "sentence"), ("embedding", "token")]
)
def test_explain_answers_equal_bilrp_explain_on_minilm(minilm, minilm_app, method, granularity):
    texts = {"text_a": "A man plays a guitar. He sings.", "text_b": "Someone makes music on stage."}
    answer = local_client(minilm_app).post("/api/explain", json={**texts, "method": method, "granularity": granularity})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert_same_explanation(body, bilrp.explain(minilm, **texts, method=method, granularity=granularity))
    assert body["granularity"] == granularity and body["notes"] == [] and body["cached"] is False
    assert body["elapsed_s"] >= 0


def test_explain_defaults_rules_and_the_second_model(client, tiny):
    body = client.post("/api/explain", json={**PAIR, "model": "tiny-copy", "rules": "gamma=0.1"}).json()
    assert body["method"] == "bilrp" and body["granularity"] == "token"
    assert_same_explanation(body, bilrp.explain(tiny, **PAIR, rules="gamma=0.1"))


def test_the_servers_rules_apply_to_bilrp_requests_that_name_none(tiny):
    app = local_client(create_app(tiny, settings=ServerSettings(rules="gamma=0.1")))
    body = app.post("/api/explain", json=PAIR).json()
    assert body["rules"] == "gamma=0.1"
    assert_same_explanation(body, bilrp.explain(tiny, **PAIR, rules="gamma=0.1"))
    baseline = app.post("/api/explain", json={**PAIR, "method": "embedding"})
    assert baseline.status_code == 200 and baseline.json()["method"] == "embedding"


def test_auto_granularity_explains_words_then_sentences_past_the_limits(tiny):
    app = local_client(create_app(tiny, settings=ServerSettings(auto_word_from=5, auto_sentence_from=8)))

    def used(text_a: str) -> dict:
        return app.post("/api/explain", json={"text_a": text_a, "text_b": "a dog"}).json()

    assert used("one two three four five")["granularity"] == "token"
    words = used("one two three four five six")
    assert words["granularity"] == "word"
    assert words["tokens_a"] == ["[CLS]", "one", "two", "three", "four", "five", "six", "[SEP]"]
    sentences = used("One two three. Four five six seven eight nine.")
    assert sentences["granularity"] == "sentence"
    assert sentences["tokens_a"] == ["[CLS]", "One two three.", "Four five six seven eight nine.", "[SEP]"]
    with pytest.raises(ValueError, match="auto_sentence_from \\(3\\) must be at least auto_word_from \\(5\\)"):
        ServerSettings(auto_word_from=5, auto_sentence_from=3)


def test_an_over_long_text_is_truncated_with_a_note(client, tiny):
    text = " ".join(WORDS[:100])  # over the tiny model's 64 tokens
    body = client.post("/api/explain", json={"text_a": text, "text_b": "a dog", "granularity": "token"}).json()
    assert len(body["tokens_a"]) == tiny.max_length
    assert len(body["notes"]) == 1 and "truncat" in body["notes"][0] and "\n" not in body["notes"][0]


# ---------------------------------------------------------------------------------------------- refusals
BAD_REQUESTS = [
    ("/api/explain", b'{"text_a": "a",', 400, "not valid JSON"),
    ("/api/explain", b"[1, 2]", 400, "not a JSON object"),
    ("/api/explain", b'"text"', 400, "not a JSON object"),
    ("/api/explain", '{"text_a": "caf\xe9"}'.encode("latin-1"), 400, "not UTF-8"),
    ("/api/explain", {"text_b": "b"}, 400, "text_a is missing"),
    ("/api/explain", {"text_a": 3, "text_b": "b"}, 400, "text_a must be a string, not a number"),
    ("/api/explain", {"text_a": "a", "text_b": ["b"]}, 400, "text_b must be a string, not an array"),
    ("/api/explain", b'{"text_a": "\\ud800", "text_b": "b"}', 400, "lone surrogate"),
    ("/api/explain", {"text_a": "", "text_b": "b"}, 422, "text_a is empty"),
    ("/api/explain", {"text_a": "a", "text_b": " \n\t"}, 422, "text_b is empty"),
    ("/api/explain", {"text_a": "a" * 2001, "text_b": "b"}, 422, "2001 characters, more than this server's limit"),
    ("/api/explain", {**PAIR, "method": "shap"}, 400, "unknown method 'shap': choose one of bilrp"),
    ("/api/explain", {**PAIR, "method": 1}, 400, "method must be a string"),
    ("/api/explain", {**PAIR, "granularity": "paragraph"}, 400, "unknown granularity 'paragraph'"),
    ("/api/explain", {**PAIR, "model": "gpt"}, 400, "unknown model 'gpt': choose one of tiny, tiny-copy"),
    ("/api/explain", {**PAIR, "rules": "lrp-z"}, 400, "unknown rule set 'lrp-z'"),
    ("/api/explain", {**PAIR, "rules": 3}, 400, "rules must be a string or null"),
    ("/api/explain", {**PAIR, "method": "hxp", "rules": "paper"}, 400, "method 'hxp' has none"),
    ("/api/figure", {**PAIR, "kind": "bars"}, 400, "unknown kind 'bars': choose one of pairs, heatmap"),
    ("/api/figure", {**PAIR, "format": "pdf"}, 400, "unknown format 'pdf': choose one of png, svg, json"),
    ("/api/rank", {"query": "q"}, 404, "no document index loaded: start the server with bilrp serve --index INDEX"),
    ("/api/contrast", {"query": "q", "a": "1", "b": "2"}, 404, "no document index loaded"),
    ("/api/rank/figure", {"query": "q", "document_id": "1"}, 404, "no document index loaded"),
    ("/api/contrast/figure", {"query": "q", "a": "1", "b": "2"}, 404, "no document index loaded"),
]


@pytest.mark.parametrize(("route", "body", "status", "fragment"), BAD_REQUESTS)
def test_bad_requests_get_a_one_line_json_error_and_the_server_keeps_serving(client, route, body, status, fragment):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert_error(client.post(route, content=content), status, fragment)
    assert client.get("/api/health").status_code == 200


def test_unknown_routes_and_methods_are_json_errors(client):
    assert_error(client.get("/api/nothing"), 404, "/api/nothing")
    assert_error(client.post("/api/health"), 405, "POST is not allowed on /api/health: use GET, HEAD")
    assert_error(client.get("/api/explain"), 405, "GET is not allowed on /api/explain: use POST")


def test_oversized_bodies_are_refused_with_413_before_they_are_read(client):
    big = json.dumps({**PAIR, "text_a": "x" * 9000}).encode()
    assert_error(
        client.post("/api/explain", content=big), 413, f"{len(big)} bytes, more than this server's limit of 8192"
    )

    def chunks():  # no Content-Length: transfer-encoding chunked
        for _ in range(1000):
            yield b"x" * 1024

    assert_error(client.post("/api/explain", content=chunks()), 413, "larger than this server's limit of 8192 bytes")
    assert client.get("/api/health").status_code == 200


def test_a_chunked_body_is_read_only_up_to_the_limit(client):
    import asyncio

    received, sent = [], []

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": b"x" * 1024, "more_body": len(received) < 1000}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/explain",
        "raw_path": b"/api/explain",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"transfer-encoding", b"chunked"),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(client.app(scope, receive, send))
    assert sent[0]["status"] == 413 and len(received) <= 9  # 8 KiB, then it stopped reading
    assert json.loads(sent[1]["body"])["error"].startswith("the body is larger than this server's limit")


def test_a_bug_answers_json_500_and_the_server_keeps_serving(client, monkeypatch):
    explorer = client.app.state.explorer

    def broken(request):
        raise RuntimeError("boom")

    monkeypatch.setattr(explorer, "explain", broken)
    assert_error(client.post("/api/explain", json={**PAIR, "text_a": "never seen"}), 500, "RuntimeError")
    monkeypatch.undo()
    assert client.post("/api/explain", json={**PAIR, "text_a": "never seen"}).status_code == 200


def test_settings_refuse_bad_limits_in_one_line():
    with pytest.raises(ValueError, match="timeout_s must be a positive number, not 0"):
        ServerSettings(timeout_s=0)
    with pytest.raises(ValueError, match="workers must be a positive whole number"):
        ServerSettings(workers=0)


# ---------------------------------------------------------------------------------------------- downloads
def test_figures_are_the_files_the_cli_writes_and_reuse_the_cached_explanation(client, tiny, monkeypatch):
    explorer = client.app.state.explorer
    texts = {"text_a": "A cat sleeps on the mat.", "text_b": "A kitten naps."}
    first = client.post("/api/explain", json=texts).json()
    computed = []
    original = explorer.explain
    monkeypatch.setattr(explorer, "explain", lambda request: computed.append(request) or original(request))
    for kind, format_, magic in [("pairs", "png", b"\x89PNG\r\n\x1a\n"), ("heatmap", "svg", b"<?xml")]:
        answer = client.post("/api/figure", json={**texts, "kind": kind, "format": format_})
        assert answer.status_code == 200 and answer.content.startswith(magic)
        assert answer.headers["content-disposition"] == f'attachment; filename="explanation.{format_}"'
    saved = client.post("/api/figure", json={**texts, "format": "json"})
    assert saved.headers["content-type"] == "application/json"
    assert saved.text == json_text(bilrp.explain(tiny, **texts).to_dict())
    assert computed == []  # every download reused the explanation of the explain request
    again = client.post("/api/explain", json=texts).json()
    assert again["cached"] is True and again["relevance"] == first["relevance"]


# ---------------------------------------------------------------------------------------------- search
@pytest.fixture(scope="module")
def search_client(tiny, tmp_path_factory):
    documents = ["A man plays a guitar.", "A cat sleeps on the mat.", "Music on stage tonight.", "Stock prices fell."]
    folder = tmp_path_factory.mktemp("index")
    index = bilrp.DocumentIndex.build(tiny, documents, folder, ids=["g", "c", "m", "s"], progress=False)
    return local_client(create_app(tiny, index=index, settings=ServerSettings(max_top_k=3))), index


def test_rank_and_contrast_answer_what_bilrp_rank_writes(search_client, tiny):
    client, index = search_client
    assert client.get("/api/health").json()["index"] == {"documents": 4, "rules": index.rules, "model": "tiny-bert"}
    ranked = client.post("/api/rank", json={"query": "someone making music", "top_k": 2})
    assert ranked.status_code == 200
    expected = bilrp.explain_ranking(tiny, "someone making music", index, top_k=2)
    assert ranked.text == expected.to_json()
    assert json.loads(ranked.headers["x-bilrp-notes"]) == []
    contrast = client.post("/api/contrast", json={"query": "someone making music", "a": "m", "b": "g"})
    assert contrast.status_code == 200
    assert contrast.text == bilrp.explain_difference(tiny, "someone making music", "m", "g", index=index).to_json()


@pytest.mark.parametrize(
    ("route", "body", "status", "fragment"),
    [
        ("/api/rank", {"query": ""}, 422, "query is empty"),
        ("/api/rank", {"query": "q", "top_k": 4}, 422, "top_k is 4: give a whole number from 1 to 3"),
        ("/api/rank", {"query": "q", "top_k": 0}, 422, "top_k is 0"),
        ("/api/rank", {"query": "q", "top_k": "2"}, 400, "top_k must be a whole number, not a string"),
        ("/api/rank", {"query": "q", "top_k": True}, 400, "top_k must be a whole number, not a boolean"),
        ("/api/contrast", {"query": "q", "a": "m"}, 400, "b is missing"),
        ("/api/contrast", {"query": "q", "a": "m", "b": "zz"}, 404, "unknown document id 'zz'"),
        ("/api/rank/figure", {"query": "q", "document_id": "zz"}, 404, "unknown document id 'zz'"),
        ("/api/rank/figure", {"query": "q"}, 400, "document_id is missing"),
        ("/api/rank/figure", {"query": "", "document_id": "g"}, 422, "query is empty"),
        ("/api/rank/figure", {"query": "q", "document_id": "g", "kind": "bars"}, 400, "unknown kind 'bars'"),
        ("/api/rank/figure", {"query": "q", "document_id": ["g"]}, 400, "document_id must be a document id"),
        ("/api/contrast/figure", {"query": "q", "a": "m", "b": "zz"}, 404, "unknown document id 'zz'"),
        ("/api/contrast/figure", {"query": "q", "a": "m", "b": "g", "format": "pdf"}, 400, "unknown format 'pdf'"),
    ],
)
def test_bad_search_requests_are_refused(search_client, route, body, status, fragment):
    client, _ = search_client
    assert_error(client.post(route, json=body), status, fragment)
    assert client.get("/api/health").status_code == 200


PNG = b"\x89PNG\r\n\x1a\n"
QUERY = "someone making music"


def drawn(explanation: bilrp.Explanation, kind: str = "pairs") -> bytes:
    """The PNG ``bilrp.plotting`` draws for ``explanation`` (``bilrp explain --plot KIND`` with its threshold)."""
    from bilrp import plotting
    from bilrp._io import figure_bytes

    figure = plotting.plot_pairs(explanation, threshold=0.02) if kind == "pairs" else plotting.plot_heatmap(explanation)
    return figure_bytes(figure, "png")


@pytest.fixture(scope="module")
def half_client(tiny, tmp_path_factory):
    """A server over a float16 index: its explanations differ from ``bilrp.explain`` by the storage rounding."""
    documents = ["A man plays a guitar.", "A cat sleeps on the mat.", "Music on stage tonight.", "Stock prices fell."]
    folder = tmp_path_factory.mktemp("half-index")
    ids = ["g", "c", "m", "s/1"]
    index = bilrp.DocumentIndex.build(tiny, documents, folder, ids=ids, dtype="float16", progress=False)
    return local_client(create_app(tiny, index=index)), index


def test_a_search_results_files_are_the_ranking_explanation_not_a_recomputation(half_client, tiny, monkeypatch):
    client, index = half_client
    ranked = client.post("/api/rank", json={"query": QUERY, "top_k": 4})
    records = json.loads(ranked.text)
    explorer = client.app.state.explorer
    computed = []
    original = explorer.rank_one
    monkeypatch.setattr(explorer, "rank_one", lambda request: computed.append(request) or original(request))
    for position, record in enumerate(records):
        name = record["id"]
        alone = bilrp.explain_ranking(tiny, QUERY, index, ids=[name])
        expected = {**alone.to_records()[0], "rank": position + 1}
        saved = client.post("/api/rank/figure", json={"query": QUERY, "document_id": name, "format": "json"})
        assert saved.status_code == 200 and saved.headers["content-type"] == "application/json"
        assert json.loads(saved.text) == record == expected  # the /api/rank record, exactly
        assert saved.text == json_text(record)
        file_id = name.replace("/", "_")
        assert saved.headers["content-disposition"] == f'attachment; filename="ranking-{file_id}.json"'
        if position != 1:
            continue
        picture = client.post("/api/rank/figure", json={"query": QUERY, "document_id": name})
        assert picture.status_code == 200 and picture.content.startswith(PNG)
        assert picture.headers["content-disposition"] == f'attachment; filename="ranking-{file_id}.png"'
        assert picture.content == drawn(alone[0])
        heatmap = client.post("/api/rank/figure", json={"query": QUERY, "document_id": name, "kind": "heatmap"})
        assert heatmap.content == drawn(alone[0], "heatmap")
        svg = client.post("/api/rank/figure", json={"query": QUERY, "document_id": name, "format": "svg"})
        assert svg.headers["content-type"] == "image/svg+xml" and svg.content.startswith(b"<?xml")
        plain = bilrp.explain(tiny, QUERY, index.text(name))  # what the page used to download
        assert not torch.equal(plain.relevance, alone[0].relevance)
        again = client.post("/api/figure", json={"text_a": QUERY, "text_b": index.text(name), "granularity": "token"})
        assert again.content.startswith(PNG) and again.content != picture.content
    assert computed == []  # every file reused the /api/rank answer


def test_a_result_in_no_recent_ranking_is_explained_alone_with_no_rank(half_client, tiny):
    client, index = half_client
    query = "a pet resting at home"
    saved = client.post("/api/rank/figure", json={"query": query, "document_id": "c", "format": "json"})
    assert saved.status_code == 200
    expected = {**bilrp.explain_ranking(tiny, query, index, ids=["c"]).to_records()[0], "rank": None}
    assert json.loads(saved.text) == expected
    client.post("/api/rank", json={"query": query, "top_k": 4})  # now it has a rank
    rank = bilrp.explain_ranking(tiny, query, index, top_k=4).ids.index("c") + 1
    saved = client.post("/api/rank/figure", json={"query": query, "document_id": "c", "format": "json"})
    assert json.loads(saved.text)["rank"] == rank


def test_contrast_downloads_are_the_contrast_shown(half_client, tiny, monkeypatch):
    client, index = half_client
    body = {"query": QUERY, "a": "m", "b": "s/1"}
    shown = client.post("/api/contrast", json=body)
    explorer = client.app.state.explorer
    monkeypatch.setattr(explorer, "contrast", lambda request: pytest.fail("the contrast was computed again"))
    saved = client.post("/api/contrast/figure", json={**body, "format": "json"})
    assert saved.status_code == 200 and saved.text == shown.text
    assert saved.headers["content-disposition"] == 'attachment; filename="contrast-m-vs-s_1.json"'
    picture = client.post("/api/contrast/figure", json=body)
    assert picture.content.startswith(PNG)
    assert picture.headers["content-disposition"] == 'attachment; filename="contrast-m-vs-s_1.png"'
    from bilrp import plotting
    from bilrp._io import figure_bytes

    difference = bilrp.explain_difference(tiny, QUERY, "m", "s/1", index=index)
    assert picture.content == figure_bytes(plotting.plot_difference(difference), "png")
    svg = client.post("/api/contrast/figure", json={**body, "format": "svg"})
    assert svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content[:2000]
    monkeypatch.undo()
    other = client.post("/api/contrast/figure", json={"query": "prices", "a": "s/1", "b": "g", "format": "json"})
    assert other.text == bilrp.explain_difference(tiny, "prices", "s/1", "g", index=index).to_json()


def test_a_truncated_query_is_noted_in_the_header_of_every_search_answer(search_client, tiny):
    client, _ = search_client
    query = " ".join(WORDS[:100])  # over the tiny model's 64 tokens
    answers = [
        client.post("/api/rank", json={"query": query, "top_k": 2}),
        client.post("/api/rank/figure", json={"query": query, "document_id": "m", "format": "json"}),
        client.post("/api/contrast", json={"query": query, "a": "m", "b": "g"}),
        client.post("/api/contrast/figure", json={"query": query, "a": "m", "b": "g", "format": "json"}),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        notes = json.loads(answer.headers["x-bilrp-notes"])
        assert len(notes) == 1 and "truncat" in notes[0] and "\n" not in notes[0], notes
    records = json.loads(answers[0].text)
    with pytest.warns(UserWarning, match="truncated to the model maximum of 64"):
        ranking = bilrp.explain_ranking(tiny, query, search_client[1], top_k=2)
    assert answers[0].text == ranking.to_json()
    assert len(records[0]["tokens_a"]) == tiny.max_length  # the body is only what bilrp rank --out writes


def test_download_names_keep_ids_readable():
    from bilrp.server.app import file_name

    assert file_name("ranking", "doc-7.v2") == "ranking-doc-7.v2"
    assert file_name("contrast", "a b/c", "vs", "../x") == "contrast-a_b_c-vs-x"
    assert file_name("ranking", "é") == "ranking-_"


# ---------------------------------------------------------------------------------------------- load
@pytest.mark.parametrize("workers", [1, 2])
def test_eight_concurrent_requests_on_uvicorn_each_get_their_own_answer(minilm, workers):
    pairs = [(f"A man plays guitar number {i}.", f"Someone plays {i + workers} songs on stage.") for i in range(8)]
    app = create_app(minilm, settings=ServerSettings(workers=workers))
    with uvicorn_server(app) as url, httpx.Client(base_url=url, timeout=120) as http:

        def ask(pair):
            return http.post("/api/explain", json={"text_a": pair[0], "text_b": pair[1]})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, pairs))
    for pair, answer in zip(pairs, answers, strict=True):
        assert answer.status_code == 200, answer.text
        assert_same_explanation(answer.json(), bilrp.explain(minilm, *pair))


def test_a_request_over_the_timeout_gets_504_and_stops_using_the_cpu(minilm):
    probe = ("A man plays guitar.", "Someone plays music.")
    reference = bilrp.explain(minilm, *probe)  # also warms the model up
    state = {name: tensor.clone() for name, tensor in minilm.state_dict().items()}
    long_a, long_b = " ".join(WORDS[:150]), " ".join(reversed(WORDS[:150]))  # about 40 s at token level
    app = create_app(minilm, settings=ServerSettings(timeout_s=2.0))
    with uvicorn_server(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            slow = pool.submit(
                http.post, "/api/explain", json={"text_a": long_a, "text_b": long_b, "granularity": "token"}
            )
            time.sleep(0.5)
            health = http.get("/api/health")
            assert health.status_code == 200 and not slow.done()  # answered while the explanation runs
            message = assert_error(slow.result(), 504, "the explanation took longer than 2 s")
            assert time.monotonic() - started < 8.0
        assert "--timeout" in message
        started = time.monotonic()
        follow = http.post("/api/explain", json={"text_a": probe[0], "text_b": probe[1]})
        assert follow.status_code == 200 and time.monotonic() - started < 10.0  # the long one (40 s) stopped
    assert_same_explanation(follow.json(), reference)
    assert not deadline_module.hook_installed()
    assert not torch.nn.modules.module._global_forward_pre_hooks
    for module in minilm.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
    assert all(torch.equal(state[name], tensor) for name, tensor in minilm.state_dict().items())
    assert torch.equal(bilrp.explain(minilm, *probe).relevance, reference.relevance)


# ---------------------------------------------------------------------------------------------- command
@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--port", "70000"], "argument --port: '70000' is not a port from 0 to 65535"),
        (["--timeout", "0"], "argument --timeout: '0' is not a positive number"),
        (["--rules", "nonsense"], "unknown rule set 'nonsense'"),
        (["--model", "m", "--model", "m"], "--model m is given twice"),
        (["--index", "/no/such/index"], "no index at /no/such/index"),
    ],
)
def test_serve_argument_errors_exit_2_with_one_line(argv, fragment, capsys):
    error = capsys.readouterr().err.strip().splitlines() if exit_status(["serve", *argv]) == 2 else ["not 2"]
    assert len(error) == 1 and error[0].startswith("bilrp serve: error: "), error
    assert fragment in error[0]


def exit_status(argv: list[str]) -> int:
    """The exit status of ``bilrp ARGV`` run in this process (argparse errors exit)."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code)


def test_a_busy_port_and_a_public_host_are_reported_before_the_model_loads(capsys):
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("0.0.0.0", 0))
    blocker.listen()
    try:
        started = time.monotonic()
        status = main(["serve", "--host", "0.0.0.0", "--port", str(blocker.getsockname()[1]), "--model", "/nowhere"])
    finally:
        blocker.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and time.monotonic() - started < 10
    assert lines[0].startswith("warning: --host 0.0.0.0 makes the explorer reachable from other machines")
    assert "reverse proxy" in lines[0]
    assert lines[1].startswith("bilrp serve: error: cannot listen on 0.0.0.0:") and "--port" in lines[1]


def test_serve_help_imports_no_heavy_library():
    code = (
        "import sys\nfrom bilrp.cli import main\ntry:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(n for n in ('torch', 'fastapi', 'uvicorn', 'transformers') if n in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stderr


def test_bilrp_serve_starts_prints_the_url_answers_and_stops_on_sigint(model_dir):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "bilrp", "serve", "--port", "0", "--model", model_dir]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        line = _read_line(process, timeout=120)
        assert re.fullmatch(r"bilrp explorer: http://127\.0\.0\.1:[0-9]+/", line), line
        url = line.split()[2]
        health = httpx.get(f"{url}api/health", timeout=30).json()
        assert health["models"] == [model_dir]
        answer = httpx.post(f"{url}api/explain", json=PAIR, timeout=60)
        assert answer.status_code == 200 and answer.json()["tokens_a"][0] == "[CLS]"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "bilrp explorer: stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    """The first line of ``process``'s stdout, waiting at most ``timeout`` seconds."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert lines and lines[0], f"no address printed in {timeout} s: {process.poll()=}"
    return lines[0].strip()
