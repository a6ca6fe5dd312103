"""Browser tests of the explorer page of ``bilrp serve``: Playwright drives Debian's Chromium, headless.

One real server (the real all-MiniLM-L6-v2 and a small document index) and one browser serve the whole module.
The tests are skipped when playwright, fastapi, uvicorn or Chromium is missing, unless
``BILRP_BROWSER_TESTS=required`` (CI), which makes them fail instead. ``BILRP_CHROMIUM`` names the browser
binary when it is not ``chromium`` on the PATH. ``test_screenshots`` writes the pictures of ``docs/images``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

PAIR = ("A man is playing a guitar.", "Someone plays music on a guitar.")
DOCUMENTS = [
    "A man is playing a guitar.",
    "A woman is slicing an onion.",
    "Someone plays music on a guitar.",
    "A child is riding a horse.",
    "The stock market fell sharply today.",
    "A man plays the violin on stage.",
]
QUERY = "someone making music"
LONG_A = (
    "The old lighthouse stood at the edge of the rocky cape, where the wind blew hard from the sea for most of the "
    "year. Every evening the keeper climbed the narrow spiral stairs, cleaned the heavy lens and lit the lamp before "
    "the sun went down. Ships passing in the dark relied on its steady beam to avoid the dangerous reef that lay "
    "hidden below the waves. In winter, storms sometimes cut the village off for days, and the keeper lived alone "
    "with his books, his radio and a grey cat. He kept a careful log of the weather, the passing vessels and the "
    "birds that rested on the gallery during their long migrations. When the light was finally automated, he moved "
    "to a small house in the harbour town, but he still walked to the cape each week to watch the lamp turn on at "
    "dusk and to remember the long quiet nights he had spent there."
)
LONG_B = (
    "A solitary keeper tended the coastal beacon for decades, climbing its winding steps each night to polish the "
    "great glass lens. Sailors trusted the turning light to guide them past a hidden reef near the shore. During "
    "fierce winter gales the nearby village was cut off, so the keeper read, listened to the radio and looked after "
    "his cat. He wrote down the weather, the ships and the migrating birds that landed on the tower. After the "
    "beacon was automated he retired to the harbour, yet he kept returning to the headland every week to see the "
    "lamp come on at nightfall, thinking of the many peaceful nights he had spent keeping it burning. Fishermen in "
    "the town still tell stories about him and about the storm when he kept the light burning for three nights."
)
DEFAULT_PAIRS = 20
IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
VIEWPORT = {"width": 1280, "height": 900}


# ---------------------------------------------------------------------------------------------- requirements
def _chromium() -> str | None:
    named = os.environ.get("BILRP_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _missing() -> str | None:
    for module in ("playwright", "fastapi", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed: pip install -e '.[test,serve]'"
    if _chromium() is None:
        return "no Chromium found: apt-get install chromium, or set BILRP_CHROMIUM to the browser binary"
    return None


@pytest.fixture(scope="module")
def chromium_path():
    reason = _missing()
    if reason is not None:
        if os.environ.get("BILRP_BROWSER_TESTS") == "required":
            pytest.fail(f"BILRP_BROWSER_TESTS=required but {reason}")
        pytest.skip(reason)
    return _chromium()


# ---------------------------------------------------------------------------------------------- display rules
def label(token: str) -> str:
    """What the page shows for a token (WordPiece/BPE/SentencePiece markers dropped)."""
    shown = token.replace("\n", "\\n").replace("Ċ", "\\n")
    for marker in ("##", "Ġ", "▁"):
        if shown.startswith(marker):
            shown = shown[len(marker) :]
            break
    return shown.replace("Ġ", " ").replace("▁", " ") or "␣"


def top_pairs(explanation, k: int = DEFAULT_PAIRS) -> list[tuple[int, int, float]]:
    """The page's pairs: the ``k`` largest |R| (NaN as 0, zeros left out), ties in row-major order."""
    pairs = []
    for i, row in enumerate(explanation.relevance.tolist()):
        for j, value in enumerate(row):
            value = 0.0 if math.isnan(value) else value
            if value != 0.0:
                pairs.append((i, j, value))
    return sorted(pairs, key=lambda pair: -abs(pair[2]))[:k]


# ---------------------------------------------------------------------------------------------- server, browser
@pytest.fixture(scope="module")
def index(minilm, tmp_path_factory, chromium_path):
    import bilrp

    return bilrp.DocumentIndex.build(
        minilm, DOCUMENTS, tmp_path_factory.mktemp("explorer-index") / "index", progress=False
    )


@contextlib.contextmanager
def serving(app):
    """``app`` served by uvicorn in a daemon thread on a free loopback port: ``{"base", "health"}``."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/health", timeout=2) as answer:
                health = json.load(answer)
            break
        except OSError:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the explorer server did not start") from None
            time.sleep(0.1)
    try:
        yield {"base": base, "health": health}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def server(minilm, index, chromium_path):
    from bilrp.server import create_app

    with serving(create_app(minilm, index=index)) as served:
        yield served


@pytest.fixture(scope="module")
def plain_server(minilm, chromium_path):
    """Two (names for one) models and no index: a model selector, no search panel."""
    from bilrp.server import create_app

    with serving(create_app({"minilm": minilm, "minilm-again": minilm})) as served:
        yield served


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def expected(minilm):
    """``bilrp.explain`` of the docs pair: what the page must show for it."""
    import bilrp

    return bilrp.explain(minilm, *PAIR)


class Watcher:
    """What a page did: console errors, uncaught exceptions, requests (and those refused: not on 127.0.0.1)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.refused: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[tuple[str, str | None]] = []

    def console(self, message) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def route(self, route) -> None:
        url = route.request.url
        self.requests.append((route.request.method, url))
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.refused.append(url)
            route.abort()

    def expect_http_errors(self) -> None:
        """Forget Chromium's "Failed to load resource" lines (a test that asks for an error answer)."""
        self.errors = [e for e in self.errors if "Failed to load resource" not in e]


@contextlib.contextmanager
def opened(browser, served):
    """A fresh page on ``served``'s explorer, watched; no script error and no non-local request allowed."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, accept_downloads=True)
    watcher = Watcher()
    context.route("**/*", watcher.route)
    page = context.new_page()
    page.on("console", watcher.console)
    page.on("pageerror", lambda error: watcher.errors.append(f"page error: {error}"))
    page.on("request", lambda request: watcher.bodies.append((request.url, request.post_data)))
    page.watcher = watcher
    page.goto(served["base"] + "/")
    page.wait_for_function("document.querySelector('#server-info').textContent.startsWith('bilrp')")
    try:
        yield page
    finally:
        context.close()
    assert watcher.errors == [], watcher.errors
    assert watcher.refused == [], f"the page asked for non-local resources: {watcher.refused}"


@pytest.fixture
def page(browser, server):
    with opened(browser, server) as page:
        yield page


def explain(page, text_a: str, text_b: str, method: str | None = None, granularity: str | None = None) -> None:
    page.fill("#text-a", text_a)
    page.fill("#text-b", text_b)
    if method:
        page.select_option("#method", method)
    if granularity:
        page.select_option("#granularity", granularity)
    page.click("#explain")
    wait_idle(page)


def wait_idle(page, timeout: float = 60_000) -> None:
    page.wait_for_function("!document.body.classList.contains('computing')", timeout=timeout)


def labels(page, view: str, side: str) -> list[str]:
    return page.eval_on_selector_all(
        f"#{view}-svg .token[data-side='{side}'] text", "nodes => nodes.map(n => n.textContent)"
    )


MIDDLE_OF_CURVE = """path => {
  path.ownerSVGElement.scrollIntoView({block: 'center'});
  const point = path.getPointAtLength(path.getTotalLength() / 2);
  const box = path.ownerSVGElement.getBoundingClientRect();
  return [box.left + point.x, box.top + point.y];
}"""


def fact(page, name: str) -> str:
    return page.inner_text(f"#summary [data-fact='{name}'] dd")


# ---------------------------------------------------------------------------------------------- tests
def test_page_loads_offline_with_the_servers_choices(page, server):
    health = server["health"]
    assert page.title() == "bilrp explorer"
    methods = page.eval_on_selector_all("#method option", "nodes => nodes.map(n => n.value)")
    assert methods == health["methods"]
    granularities = page.eval_on_selector_all("#granularity option", "nodes => nodes.map(n => n.value)")
    assert granularities == health["granularities"]
    assert page.is_hidden("#model-control"), "one model: no model selector"
    assert page.is_visible("#search-panel"), "the server holds an index"
    assert f"{len(DOCUMENTS)} documents" in page.inner_text("#index-info")
    assert page.is_hidden("#error") and page.is_hidden("#result")
    loaded = {urlsplit(url).path for _, url in page.watcher.requests}
    assert {"/", "/static/explorer.js", "/static/explorer.css", "/api/health"} <= loaded
    assert all(urlsplit(url).hostname == "127.0.0.1" for _, url in page.watcher.requests)


def test_screenshots(page):
    # early in the module: the server has not cached the docs pair yet, so the summary shows its real time
    IMAGES.mkdir(parents=True, exist_ok=True)
    explain(page, *PAIR)
    page.hover("#pairs-svg .token[data-side='a'][data-index='6']")
    page.screenshot(path=IMAGES / "explorer.png", full_page=True)
    page.click("#view-heatmap")
    page.hover("#heatmap-svg rect.cell[data-i='6'][data-j='6']")
    page.screenshot(path=IMAGES / "explorer_heatmap.png", full_page=True)
    page.fill("#query", QUERY)
    page.click("#search")
    page.wait_for_selector("#results .result-item")
    wait_idle(page)
    page.click("#results .result-item:nth-child(1) button[data-pick='a']")
    page.click("#results .result-item:nth-child(2) button[data-pick='b']")
    page.click("#contrast")
    page.wait_for_selector("#contrast-list li")
    page.click("#view-pairs")
    page.screenshot(path=IMAGES / "explorer_search.png", full_page=True)
    for name in ("explorer.png", "explorer_heatmap.png", "explorer_search.png"):
        size = (IMAGES / name).stat().st_size
        assert 10_000 < size < 400_000, (name, size)


def test_explain_draws_the_pair_view(page, expected):
    explain(page, *PAIR)
    assert page.is_hidden("#error")
    score = page.inner_text("#score-line")
    assert score.startswith(f"score {expected.score:.3f} = ΣR {float(expected.relevance.sum()):.3f} + bias")
    assert f"bias share {round(expected.bias_share * 100)}%" in score
    assert labels(page, "pairs", "a") == [label(t) for t in expected.tokens_a]
    assert labels(page, "pairs", "b") == [label(t) for t in expected.tokens_b]
    specials = page.eval_on_selector_all("#pairs-svg .token.special", "nodes => nodes.map(n => n.dataset.token)")
    assert specials == ["[CLS]", "[SEP]", "[CLS]", "[SEP]"]
    drawn = page.eval_on_selector_all(
        "#pairs-svg path.pair",
        "nodes => nodes.map(n => [+n.dataset.i, +n.dataset.j, n.classList.contains('positive')])",
    )
    wanted = top_pairs(expected)
    assert sorted(drawn) == sorted([i, j, v > 0] for i, j, v in wanted)
    assert fact(page, "method") == "BiLRP"
    assert fact(page, "granularity") == "token (auto)"
    assert fact(page, "rules") == expected.rules
    assert page.get_attribute("#summary", "aria-live") == "polite"


def test_hovering_a_token_highlights_exactly_its_pairs(page, expected):
    explain(page, *PAIR)
    wanted = top_pairs(expected)
    for side, index in (("a", expected.tokens_a.index("guitar")), ("b", expected.tokens_b.index("plays"))):
        page.hover(f"#pairs-svg .token[data-side='{side}'][data-index='{index}']")
        mine = [(i, j) for i, j, _ in wanted if (i if side == "a" else j) == index]
        highlighted = page.eval_on_selector_all(
            "#pairs-svg .pair.highlighted", "nodes => nodes.map(n => [+n.dataset.i, +n.dataset.j])"
        )
        assert sorted(map(tuple, highlighted)) == sorted(mine)
        assert page.eval_on_selector("#pairs-svg", "n => n.classList.contains('focused')")
        row = expected.relevance[index] if side == "a" else expected.relevance[:, index]
        strongest = float(row[int(row.abs().argmax())])
        details = page.inner_text("#details")
        assert f"{strongest:+.3g}".replace("-", "−") in details
    page.mouse.move(2, 2)
    assert page.locator("#pairs-svg .pair.highlighted").count() == 0
    i, j, value = wanted[0]
    x, y = page.eval_on_selector(f"#pairs-svg path.pair[data-i='{i}'][data-j='{j}']", MIDDLE_OF_CURVE)
    page.mouse.move(x, y)
    tooltip = page.inner_text("#tooltip")
    assert label(expected.tokens_a[i]) in tooltip and f"{value:+.3g}" in tooltip


def test_slider_and_sign_filter(page, expected):
    explain(page, *PAIR)
    page.fill("#pair-count", "5")
    assert page.locator("#pairs-svg path.pair").count() == 5
    page.select_option("#sign", "negative")
    negative = [p for p in top_pairs(expected, 10**6) if p[2] < 0][:5]
    assert page.locator("#pairs-svg path.pair").count() == len(negative)
    assert page.locator("#pairs-svg path.pair.positive").count() == 0


def test_heatmap_draws_every_cell(page, expected):
    explain(page, *PAIR)
    page.click("#view-heatmap")
    n, m = len(expected.tokens_a), len(expected.tokens_b)
    assert page.locator("#heatmap-svg rect.cell").count() == n * m
    assert page.is_hidden("#pairs-panel") and page.is_visible("#heatmap-panel")
    assert page.get_attribute("#view-heatmap", "aria-selected") == "true"
    i, j = expected.tokens_a.index("guitar"), expected.tokens_b.index("guitar")
    page.hover(f"#heatmap-svg rect.cell[data-i='{i}'][data-j='{j}']")
    assert f"{float(expected.relevance[i, j]):+.3g}" in page.inner_text("#tooltip")
    active = page.eval_on_selector_all(
        "#heatmap-svg .token.active", "ns => ns.map(n => [n.dataset.side, +n.dataset.index])"
    )
    assert sorted(map(tuple, active)) == [("a", i), ("b", j)]
    assert labels(page, "heatmap", "a") == [label(t) for t in expected.tokens_a]
    page.click("#view-pairs")
    assert page.locator("#pairs-svg path.pair").count() == DEFAULT_PAIRS


def test_word_granularity_shows_words(page, minilm):
    import bilrp

    text_a, text_b = "The guitarist strums unbelievably.", "Music."
    words = bilrp.explain(minilm, text_a, text_b, granularity="word")
    explain(page, text_a, text_b, granularity="token")
    assert "##rum" in page.eval_on_selector_all("#pairs-svg .token", "ns => ns.map(n => n.dataset.token)")
    page.select_option("#granularity", "word")  # re-explains the pair shown
    page.wait_for_function("document.querySelector(\"[data-fact='granularity'] dd\")?.textContent === 'word'")
    wait_idle(page)
    assert (
        labels(page, "pairs", "a")
        == words.tokens_a
        == ["[CLS]", "The", "guitarist", "strums", "unbelievably", ".", "[SEP]"]
    )
    assert page.inner_text("#score-line").startswith(f"score {words.score:.3f}")


def test_empty_text_shows_the_servers_error_and_no_stale_picture(page, server):
    explain(page, *PAIR)
    assert page.locator("#pairs-svg path.pair").count() > 0
    explain(page, PAIR[0], "   ")
    request = urllib.request.Request(
        server["base"] + "/api/explain",
        json.dumps({"text_a": PAIR[0], "text_b": "   "}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    message = json.loads(refused.value.read())["error"]
    assert page.get_attribute("#error", "role") == "alert"
    assert page.is_visible("#error") and page.inner_text("#error") == message
    assert "empty" in message
    assert page.is_hidden("#result")
    assert page.locator("#pairs-svg *").count() == 0
    page.watcher.expect_http_errors()
    explain(page, *PAIR)
    assert page.is_hidden("#error") and page.locator("#pairs-svg path.pair").count() > 0


def test_ctrl_enter_explains_and_a_second_click_sends_nothing(page, expected):
    page.fill("#text-a", PAIR[0])
    page.fill("#text-b", PAIR[1])
    state = page.evaluate(
        """() => {
          const button = document.getElementById('explain');
          button.click();
          button.click();
          return [button.disabled, document.getElementById('busy').hidden];
        }"""
    )
    assert state == [True, False], "while computing: the button is disabled and 'computing…' shown"
    wait_idle(page)
    posts = [url for method, url in page.watcher.requests if method == "POST" and url.endswith("/api/explain")]
    assert len(posts) == 1
    page.fill("#text-b", "A woman is slicing an onion.")
    page.focus("#text-b")
    page.keyboard.press("Control+Enter")
    wait_idle(page)
    assert labels(page, "pairs", "b")[1:4] == ["a", "woman", "is"]


def auto_granularity(health, text_a: str, text_b: str) -> str:
    """What the server's ``auto`` granularity picks, from the thresholds ``/api/health`` gives."""
    words = max(len(text_a.split()), len(text_b.split()))
    sentence_from = health.get("auto_sentence_from")
    if sentence_from is not None and words > sentence_from:
        return "sentence"
    return "word" if words > health["auto_word_from"] else "token"


def test_long_texts_are_grouped_and_stay_inside_the_page(page, server):
    health = server["health"]
    assert len(LONG_A.split()) > 140 and len(LONG_B.split()) > 120
    medium_a, medium_b = " ".join(LONG_A.split()[:60]), " ".join(LONG_B.split()[:50])
    # the embedding baseline is cheap: BiLRP on 150 words takes tens of seconds on two busy cores
    for text_a, text_b in ((medium_a, medium_b), (LONG_A, LONG_B)):
        explain(page, text_a, text_b, method="embedding")
        used = auto_granularity(health, text_a, text_b)
        assert used != "token"
        assert fact(page, "granularity") == f"{used} (auto)"
    page.select_option("#granularity", "word")  # re-explains: 150 words a side, the hardest layout
    page.wait_for_function("document.querySelector(\"[data-fact='granularity'] dd\")?.textContent === 'word'")
    wait_idle(page)
    shown = labels(page, "pairs", "a")
    assert "lighthouse" in shown and len(shown) > 140
    for view in ("pairs", "heatmap"):
        page.click(f"#view-{view}")
        sizes = page.evaluate(
            """(view) => {
              const page = document.getElementById('page');
              const panel = document.getElementById(view + '-panel');
              return {document: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
                      page: [page.scrollWidth, page.clientWidth],
                      panel: [panel.getBoundingClientRect().right, page.getBoundingClientRect().right],
                      overflow: getComputedStyle(panel).overflow};
            }""",
            view,
        )
        assert sizes["document"][0] <= sizes["document"][1], sizes
        assert sizes["page"][0] <= sizes["page"][1], sizes
        assert sizes["panel"][0] <= sizes["panel"][1], sizes
        assert sizes["overflow"] == "auto"
    page.click("#view-pairs")
    boxes = page.eval_on_selector_all(
        "#pairs-svg .token[data-side='a'] text",
        "nodes => nodes.map(n => { const b = n.getBBox(); return [b.y, b.y + b.height]; })",
    )
    assert all(low[1] <= high[0] + 0.5 for low, high in zip(boxes, boxes[1:], strict=False)), "labels overlap"


def test_downloads_give_the_clis_files(page, expected):
    explain(page, *PAIR)
    with page.expect_download() as download:
        page.click("#download-json")
    data = json.loads(Path(download.value.path()).read_text())
    assert data["tokens_a"] == expected.tokens_a
    assert np.allclose(data["relevance"], expected.relevance.numpy(), atol=1e-6, rtol=0)
    with page.expect_download() as download:
        page.click("#download-png")
    assert Path(download.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.click("#view-heatmap")
    with page.expect_download() as download:
        page.click("#download-svg")
    assert b"<svg" in Path(download.value.path()).read_bytes()[:2000]


def test_search_lists_results_and_contrasts_two(page, minilm, index):
    import bilrp

    ranking = bilrp.explain_ranking(minilm, QUERY, index, top_k=3)
    page.fill("#query", QUERY)
    page.fill("#top-k", "3")
    page.click("#search")
    page.wait_for_function(
        "document.querySelectorAll('#results .result-item').length === 3 && !document.getElementById('search').disabled"
    )
    ids = page.eval_on_selector_all("#results .result-item", "ns => ns.map(n => n.dataset.id)")
    assert ids == ranking.ids
    scores = page.eval_on_selector_all("#results .doc-score", "ns => ns.map(n => n.textContent)")
    assert scores == [f"{s:.3f}" for s in ranking.scores]
    page.click("#results .result-item:nth-child(2) .result-main")
    assert page.inner_text("#score-line").startswith(f"score {ranking.scores[1]:.3f}")
    assert labels(page, "pairs", "b") == [label(t) for t in ranking[1].tokens_b]
    assert page.text_content("#pairs-svg .heading >> nth=1") == f"document {ranking.ids[1]}"
    with page.expect_download() as download:
        page.click("#download-json")  # a search result's JSON: the ranking's record, from /api/rank/figure
    assert json.loads(Path(download.value.path()).read_text()) == ranking.to_records()[1]
    assert download.value.suggested_filename == f"ranking-{ranking.ids[1]}.json"
    page.click("#results .result-item:nth-child(1) button[data-pick='a']")
    page.click("#results .result-item:nth-child(3) button[data-pick='b']")
    page.click("#contrast")
    page.wait_for_selector("#contrast-list li")
    difference = bilrp.explain_difference(minilm, QUERY, ranking.ids[0], ranking.ids[2], index=index)
    line = page.inner_text("#contrast-score")
    assert line.startswith(f"A {ranking.scores[0]:.3f} − B {ranking.scores[2]:.3f} = {difference.score:+.3g}")
    top_token = difference.top(1)[0]
    assert page.inner_text("#contrast-list li:first-child .token-name") == label(top_token[1])
    assert page.is_hidden("#contrast-notes"), "a short query: no notes"
    body = {"query": QUERY, "a": ranking.ids[0], "b": ranking.ids[2]}
    with page.expect_download() as download, page.expect_request("**/api/contrast/figure") as sent:
        page.click("#contrast-download-json")
    assert json.loads(sent.value.post_data) == {**body, "format": "json"}
    assert json.loads(Path(download.value.path()).read_text()) == difference.to_dict()
    with page.expect_download() as download, page.expect_request("**/api/contrast/figure") as sent:
        page.click("#contrast-download-png")
    assert json.loads(sent.value.post_data) == {**body, "format": "png"}
    assert download.value.suggested_filename == f"contrast-{ranking.ids[0]}-vs-{ranking.ids[2]}.png"
    assert Path(download.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_search_results_picture_comes_from_the_ranking_route(page, minilm, index):
    """PNG/SVG of a search result: /api/rank/figure draws the ranking's explanation (not /api/figure again)."""
    import bilrp
    from bilrp import plotting
    from bilrp._io import figure_bytes

    page.fill("#query", QUERY)
    page.fill("#top-k", "2")
    page.click("#search")
    page.wait_for_function("document.querySelectorAll('#results .result-item').length === 2")
    page.click("#results .result-item:nth-child(2) .result-main")
    name = page.get_attribute("#results .result-item:nth-child(2)", "data-id")
    with page.expect_download() as download, page.expect_request("**/api/rank/figure") as sent:
        page.click("#download-png")
    assert sent.value.method == "POST"
    assert json.loads(sent.value.post_data) == {"query": QUERY, "document_id": name, "kind": "pairs", "format": "png"}
    assert download.value.suggested_filename == f"ranking-{name}.png"
    (explanation,) = bilrp.explain_ranking(minilm, QUERY, index, ids=[name])
    picture = figure_bytes(plotting.plot_pairs(explanation, threshold=0.02), "png")
    assert Path(download.value.path()).read_bytes() == picture
    page.click("#view-heatmap")
    with page.expect_download() as download, page.expect_request("**/api/rank/figure") as sent:
        page.click("#download-svg")
    assert json.loads(sent.value.post_data)["kind"] == "heatmap"
    assert download.value.suggested_filename == f"ranking-{name}.svg"
    figures = [url for url, _ in page.watcher.bodies if urlsplit(url).path == "/api/figure"]
    assert figures == [], "a search result is never explained again without the index"


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory, chromium_path):
    """A tiny random BERT (64 tokens at most) and its index: a query over the maximum is quick to explain."""
    import bilrp
    from bilrp.server import create_app
    from tiny_models import tiny_similarity_model

    model = tiny_similarity_model()
    folder = tmp_path_factory.mktemp("tiny-index") / "index"
    index = bilrp.DocumentIndex.build(model, DOCUMENTS[:3], folder, progress=False)
    with serving(create_app(model, index=index)) as served:
        served["model"] = model
        yield served


def test_the_notes_of_a_too_long_query_are_shown(browser, tiny_server):
    query = " ".join(["someone making music"] * 30)  # over 64 tokens
    with opened(browser, tiny_server) as page:
        page.fill("#query", query)
        page.fill("#top-k", "2")
        with page.expect_response("**/api/rank") as answered:
            page.click("#search")
        notes = json.loads(answered.value.headers["x-bilrp-notes"])
        assert len(notes) == 1 and "truncated to the model maximum of 64" in notes[0]
        page.wait_for_selector("#results .result-item")
        page.wait_for_function("!document.getElementById('search').disabled")
        assert page.is_visible("#search-notes") and page.inner_text("#search-notes") == notes[0]
        assert page.is_visible("#notes") and page.inner_text("#notes") == notes[0]  # the result shown
        page.click("#results .result-item:nth-child(1) button[data-pick='a']")
        page.click("#results .result-item:nth-child(2) button[data-pick='b']")
        page.click("#contrast")
        page.wait_for_selector("#contrast-list li")
        assert page.is_visible("#contrast-notes") and page.inner_text("#contrast-notes") == notes[0]
        page.fill("#query", QUERY)  # a short query: the notes go
        page.click("#search")
        page.wait_for_function("document.getElementById('search-notes').hidden")
        page.wait_for_function("!document.getElementById('search').disabled")
        assert page.is_hidden("#notes")


def test_several_models_give_a_selector_and_no_index_no_search(browser, plain_server):
    with opened(browser, plain_server) as page:
        assert page.is_visible("#model-control")
        models = page.eval_on_selector_all("#model option", "nodes => nodes.map(n => n.value)")
        assert models == ["minilm", "minilm-again"]
        assert page.is_hidden("#search-panel")
        page.select_option("#model", "minilm-again")
        explain(page, *PAIR)
        sent = [json.loads(body) for url, body in page.watcher.bodies if url.endswith("/api/explain")]
        assert sent[-1]["model"] == "minilm-again"
        assert page.locator("#pairs-svg path.pair").count() == DEFAULT_PAIRS


def test_odd_answers_never_break_the_page(page):
    """NaN written as null, BPE and SentencePiece markers, notes: a made-up answer drawn without a script error."""
    answer = {
        "model": "made-up",
        "method": "bilrp",
        "tokens_a": ["<s>", "Ġman", "▁plays", "</s>"],
        "tokens_b": ["<s>", "Ġguitar", "</s>"],
        "relevance": [[0.1, None, 0.0], [None, 0.5, -0.2], [0.0, 0.3, None], [0.01, None, 0.02]],
        "score": 0.9,
        "bias": 0.17,
        "bias_share": 0.15,
        "granularity": "token",
        "notes": ["text B was truncated to 512 tokens"],
        "elapsed_s": 0.25,
    }
    page.route("**/api/explain", lambda route: route.fulfill(json=answer))
    explain(page, "a", "b")
    assert labels(page, "pairs", "a") == ["<s>", "man", "plays", "</s>"]
    assert page.locator("#pairs-svg .token.special").count() == 4
    assert page.inner_text("#notes") == "text B was truncated to 512 tokens"
    assert page.inner_text("#score-line") == "score 0.900 = ΣR 0.730 + bias 0.170 (bias share 15%)"
    assert page.locator("#pairs-svg path.pair").count() == 6  # the non-zero cells
    page.click("#view-heatmap")
    assert page.locator("#heatmap-svg rect.cell").count() == 12
    assert page.get_attribute("#heatmap-svg rect.cell[data-i='0'][data-j='1']", "fill") == "rgb(255,255,255)"
