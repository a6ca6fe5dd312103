"""Page titles are escaped exactly once (issue 22, case 11: the ``--versus`` title showed ``&lt;img...`` literally)."""

import html
import re

import pytest

from bilrp.plotting import difference_html, ranking_html
from bilrp.ranking import explain_difference, explain_ranking
from tiny_models import tiny_similarity_model

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def model():
    return tiny_similarity_model("bert", "mean", "cosine")


def title(page: str) -> str:
    (found,) = re.findall(r"<title>(.*?)</title>", page)
    return found


def test_the_versus_title_escapes_the_ids_once(model):
    difference = explain_difference(model, "a query", "first document", "second document")
    difference.explanation_a.document_id, difference.explanation_b.document_id = HOSTILE, 'B & "C"'
    page = difference_html(difference, full_page=True)
    assert title(page) == "bilrp: &lt;img src=x onerror=alert(1)&gt; versus B &amp; &quot;C&quot;"
    assert html.unescape(title(page)) == f'bilrp: {HOSTILE} versus B & "C"'
    assert HOSTILE not in page and "&amp;lt;" not in page and "&amp;amp;" not in page


def test_the_ranking_title_escapes_the_query_once(model):
    ranking = explain_ranking(model, HOSTILE, documents=["a document"])
    page = ranking_html(ranking, full_page=True)
    assert html.unescape(title(page)) == f"bilrp: ranking for {HOSTILE}" and "&amp;lt;" not in page
