"""Notebooks: every result object shows itself in a real Jupyter kernel as HTML, a PNG and a short text.

The notebook is built with nbformat and executed headlessly with nbclient (a real ipykernel), so what is checked
is what Jupyter receives: the mime types of each cell's result. The models are tiny (tests/tiny_models.py).
"""

import base64
import functools
import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TESTS = Path(__file__).resolve().parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SETUP = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import bilrp
from tiny_models import tiny_similarity_model

model = tiny_similarity_model()
DOCS = ["A man plays a guitar on stage.", "The cat sleeps on the sofa.", "A band plays a song."]
explanation = bilrp.explain(model, "A man plays guitar.", "Someone makes music.")
ranking = bilrp.explain_ranking(model, "guitar music", documents=DOCS)
difference = bilrp.explain_difference(model, "guitar music", DOCS[0], DOCS[1])
print(sorted(name for name in ("bilrp.plotting",) if name in sys.modules))
"""

SHOWN = {
    "explanation": ("Explanation(score=", 'class="bilrp"'),
    "ranking": ("Ranking(query='guitar music', results=3 of 3", 'class="bilrp-rank"'),
    "difference": ("Difference(query='guitar music'", 'class="bilrp-rank"'),
    "bilrp.plotting.ranking_html(ranking)": ("<bilrp HTML, ", 'class="bilrp-rank"'),
}
"""Cell source -> (start of its text/plain, a mark of its HTML)."""


@pytest.fixture(scope="module")
def executed():
    cells = [nbformat.v4.new_code_cell(SETUP)] + [nbformat.v4.new_code_cell(source) for source in SHOWN]
    cells.append(nbformat.v4.new_code_cell('print(sorted(n for n in ("bilrp.plotting",) if n in sys.modules))'))
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {}})
    client.execute()
    return notebook


def _result(cell):
    results = [output for output in cell.outputs if output.output_type == "execute_result"]
    assert len(results) == 1, cell.outputs
    return results[0]["data"]


def test_the_pictures_load_on_the_first_rich_display(executed):
    streams = [output for output in executed.cells[0].outputs if output.output_type == "stream"]
    assert "".join(output.text for output in streams if output.name == "stdout").strip() == "[]"
    assert "".join(o.text for o in executed.cells[-1].outputs if o.output_type == "stream").strip() == (
        "['bilrp.plotting']"
    )  # loaded by the first rich display, not before


@pytest.mark.parametrize("position, source", list(enumerate(SHOWN, start=1)), ids=list(SHOWN))
def test_every_result_object_displays_html_png_and_a_short_text(executed, position, source):
    cell = executed.cells[position]
    assert cell.source == source
    assert not [output for output in cell.outputs if output.output_type in ("error", "stream")], cell.outputs
    data = _result(cell)
    assert {"text/plain", "text/html", "image/png"} <= set(data), sorted(data)
    text_start, html_mark = SHOWN[source]
    assert data["text/plain"].startswith(text_start) and len(data["text/plain"]) < 700, data["text/plain"]
    assert "tensor(" not in data["text/plain"]
    assert html_mark in data["text/html"] and "&lt;div" not in data["text/html"]  # markup, not escaped text
    assert base64.b64decode(data["image/png"]).startswith(PNG_MAGIC)


def test_the_notebook_round_trips_as_json(executed):
    """The executed notebook is valid nbformat (what Jupyter would save)."""
    nbformat.validate(executed)
    assert json.loads(nbformat.writes(executed))["cells"][1]["outputs"][0]["output_type"] == "execute_result"


def test_python_side_without_a_kernel():
    """The same protocol in-process: include/exclude are honoured, and HTML text stays a str on disk."""
    sys.path.insert(0, str(TESTS))
    import pickle

    import bilrp
    from tiny_models import tiny_similarity_model

    model = tiny_similarity_model()
    explanation = bilrp.explain(model, "A man plays guitar.", "Someone makes music.")
    assert set(explanation._repr_mimebundle_(include=["text/plain"])) == {"text/plain"}
    assert set(explanation._repr_mimebundle_(exclude=["image/png"])) == {"text/plain", "text/html"}
    without_svg = functools.partial(re.sub, r"<svg.*?</svg>", "", flags=re.DOTALL)  # SVG ids are random
    assert without_svg(explanation._repr_html_()) == without_svg(str(bilrp.plotting.to_html(explanation)))
    page = bilrp.plotting.to_html(explanation, full_page=True)
    assert isinstance(page, str) and page.startswith("<!DOCTYPE html>")
    assert type(pickle.loads(pickle.dumps(page))) is str and str(page) == pickle.loads(pickle.dumps(page))
    assert page._repr_png_().startswith(PNG_MAGIC)
