"""Docs that match the code: every figure docs/quickstart.md and docs/search.md show is what bilrp prints now.

``scripts/docs_figures.py`` runs the documented commands on the real all-MiniLM-L6-v2 (offline) and compares them
with the docs: each generated block character for character, each number in the prose to its printed precision,
and the scores of the linked ranking page. ``python scripts/docs_figures.py --write --images`` regenerates them.
Before this test, docs/search.md showed the paper's rules (sum R 1.1866) where the default gives 0.9661.
"""

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "docs_figures.py"


@pytest.fixture(scope="module")
def docs_figures():
    spec = importlib.util.spec_from_file_location("docs_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(docs_figures, tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs-figures")
    blocks, numbers = docs_figures.generate(folder)
    return folder, blocks, numbers


def test_every_documented_figure_is_what_the_code_produces(docs_figures, generated):
    folder, blocks, numbers = generated
    found = docs_figures.problems(blocks, numbers) + docs_figures.page_problems(folder)
    assert not found, "\n".join(found) + "\nrun: python scripts/docs_figures.py --write --images"


def test_the_search_page_shows_the_default_rules(generated):
    _, blocks, _ = generated
    assert "rules epsilon=0.01" in blocks["search-index"] and "0.8287 =  0.9661 -  0.1374" in blocks["search-rank"]


def test_a_drifted_block_or_number_is_caught(docs_figures, generated):
    """The check can fail: one changed digit in a block, or a number of the prose, is reported by name."""
    _, blocks, numbers = generated
    drifted = dict(blocks, **{"search-rank": blocks["search-rank"].replace("0.9661", "0.9662")})
    assert docs_figures.problems(drifted, numbers) == [
        "docs/search.md: block search-rank differs from what the code prints now"
    ]
    moved = dict(numbers, paper_score=numbers["paper_score"] + 1e-3)
    (problem,) = docs_figures.problems(blocks, moved)
    assert problem.startswith("docs/quickstart.md: expected the sentence ") and "`--rules paper` gives" in problem
    assert f"(score {moved['paper_score']:.4f} = sum of R" in problem


def test_sentences_are_found_across_line_breaks(docs_figures):
    template = "score {value:.2f} = sum"
    pattern = docs_figures._sentence_pattern(template)
    match = pattern.search("the score 0.12\n= sum of R")
    assert match and match.group(1) == "0.12"
    assert docs_figures.formatted("{x:.1e} and {y:.0e}", {"x": 3.3e-4, "y": 1e-6}) == "3.3e-4 and 1e-6"


def test_rounding_figures_hold_within_a_factor_and_are_caught_beyond(docs_figures, generated):
    """Rounding sizes move with the thread count: a factor 1.5 passes, a factor 3 is reported."""
    _, blocks, numbers = generated
    assert docs_figures.problems(blocks, dict(numbers, float16_error=numbers["float16_error"] * 1.5)) == []
    (problem,) = docs_figures.problems(blocks, dict(numbers, float16_error=numbers["float16_error"] * 3))
    assert "float16" in problem
