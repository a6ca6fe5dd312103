"""Pictures: pair plot, heatmap and HTML view drawn from hand-made explanations with known relevance."""

import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from bilrp import Explanation
from bilrp.plotting import (
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    display_token,
    is_special_token,
    plot_heatmap,
    plot_pairs,
    to_html,
)

RELEVANCE = torch.tensor(
    [
        [0.01, 0.00, -0.02, 0.00],
        [0.00, 0.80, 0.10, -0.40],
        [0.00, 0.05, 0.00, 0.00],
    ]
)


def make_explanation(tokens_a=("[CLS]", "guitar", "[SEP]"), tokens_b=("[CLS]", "music", "plays", "[SEP]"), r=None):
    relevance = RELEVANCE if r is None else r
    return Explanation(list(tokens_a), list(tokens_b), relevance, score=0.7, bias=0.7 - float(relevance.sum()))


def long_explanation(n_a=45, n_b=42, seed=0):
    generator = torch.Generator().manual_seed(seed)
    relevance = torch.randn(n_a, n_b, generator=generator) ** 3
    return make_explanation([f"token{i}" for i in range(n_a)], [f"word{j}" for j in range(n_b)], relevance)


def curves(figure):
    (collection,) = [c for c in figure.axes[0].collections if isinstance(c, LineCollection)]
    return collection


def labels(figure):
    return [t for t in figure.axes[0].texts if t.get_text() not in ("text A", "text B")]


def test_pair_plot_draws_one_curve_per_pair_from_token_to_token():
    explanation = make_explanation()
    figure = plot_pairs(explanation, threshold=0.0)
    collection = curves(figure)
    nonzero = int((RELEVANCE != 0).sum())
    assert len(collection.get_segments()) == nonzero
    positions_a = {t.get_text(): t.xy[1] for t in labels(figure) if t.xy[0] == 0.0}
    positions_b = {t.get_text(): t.xy[1] for t in labels(figure) if t.xy[0] == 1.0}
    assert list(positions_a) == ["[CLS]", "guitar", "[SEP]"]
    assert list(positions_b) == ["[CLS]", "music", "plays", "[SEP]"]
    # drawn weakest first: the last curve is the strongest pair, guitar -> music (0.8), red
    strongest = collection.get_segments()[-1]
    assert strongest[0] == pytest.approx([0.0, positions_a["guitar"]])
    assert strongest[-1] == pytest.approx([1.0, positions_b["music"]])
    colours = collection.get_colors()
    assert tuple(colours[-1][:3]) == pytest.approx(to_rgb(POSITIVE_COLOR))
    assert colours[-1][3] == pytest.approx(1.0)
    # the second strongest, guitar -> [SEP] (-0.4), is blue and half as opaque (above the floor)
    assert tuple(colours[-2][:3]) == pytest.approx(to_rgb(NEGATIVE_COLOR))
    assert colours[-2][3] < colours[-1][3]
    assert list(colours[:, 3]) == sorted(colours[:, 3])
    assert strongest[0][1] > positions_a["[SEP]"] and positions_a["[CLS]"] > positions_a["guitar"]  # top to bottom


def test_pair_plot_threshold_and_max_pairs_hide_weak_pairs():
    explanation = make_explanation()
    assert len(curves(plot_pairs(explanation, threshold=0.1)).get_segments()) == 3  # 0.8, -0.4, 0.1 of max 0.8
    assert len(curves(plot_pairs(explanation, threshold=0.0, max_pairs=2)).get_segments()) == 2
    with pytest.raises(ValueError, match="threshold"):
        plot_pairs(explanation, threshold=1.5)


def test_pair_plot_title_reports_score_sum_and_bias():
    explanation = make_explanation()
    title = plot_pairs(explanation).axes[0].get_title()
    assert "0.700" in title and f"{float(RELEVANCE.sum()):.3f}" in title and f"{explanation.bias:.3f}" in title


def test_special_tokens_are_grey_and_other_tokens_black():
    figure = plot_pairs(make_explanation())
    colour = {t.get_text(): t.get_color() for t in labels(figure)}
    assert colour["[CLS]"] != colour["guitar"] and colour["[SEP]"] == colour["[CLS]"]


def text_boxes(figure, column_x):
    renderer = FigureCanvasAgg(figure).get_renderer()
    return [t.get_window_extent(renderer) for t in labels(figure) if t.xy[0] == column_x]


@pytest.mark.parametrize("size", [(5, 4), (45, 42)])
def test_long_texts_keep_labels_readable_and_apart(size):
    figure = plot_pairs(long_explanation(*size))
    for column in (0.0, 1.0):
        boxes = text_boxes(figure, column)
        assert len(boxes) == size[int(column)]
        for upper, lower in zip(boxes, boxes[1:], strict=False):
            assert upper.y0 >= lower.y1, "token labels overlap"
    assert all(t.get_fontsize() >= 10 for t in labels(figure))
    # the title, the column headers and the labels do not collide either
    renderer = FigureCanvasAgg(figure).get_renderer()
    title = figure.axes[0].title.get_window_extent(renderer)
    headers = [t.get_window_extent(renderer) for t in figure.axes[0].texts if t.get_text() in ("text A", "text B")]
    assert all(title.y0 >= h.y1 for h in headers)
    assert all(h.y0 >= max(b.y1 for b in text_boxes(figure, 0.0)) for h in headers[:1])


def test_figure_grows_with_the_number_of_tokens():
    short, long = plot_pairs(long_explanation(5, 4)), plot_pairs(long_explanation(45, 42))
    assert long.get_figheight() > 3 * short.get_figheight()


def test_mismatched_tokens_and_relevance_are_refused():
    with pytest.raises(ValueError, match="3 tokens of A and 2 of B"):
        plot_pairs(make_explanation(tokens_b=("x", "y")))


@pytest.mark.parametrize("draw", [plot_pairs, plot_heatmap])
def test_new_figures_show_themselves_in_jupyter_as_png(draw):
    assert draw(make_explanation())._repr_png_().startswith(b"\x89PNG\r\n\x1a\n")


def test_pair_plot_draws_into_given_axes():
    figure = Figure()
    ax = figure.add_subplot()
    assert plot_pairs(make_explanation(), ax=ax) is figure
    assert curves(figure) is not None


def test_heatmap_shows_the_matrix_centred_at_zero_with_a_colour_bar():
    figure = plot_heatmap(make_explanation())
    (image,) = [a for a in figure.axes[0].get_children() if isinstance(a, AxesImage)]
    np.testing.assert_allclose(image.get_array(), RELEVANCE.double().numpy())
    assert image.norm.vmin == pytest.approx(-0.8) and image.norm.vmax == pytest.approx(0.8)
    assert len(figure.axes) == 2  # matrix and colour bar
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["[CLS]", "music", "plays", "[SEP]"]
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["[CLS]", "guitar", "[SEP]"]


def test_heatmap_of_positive_relevance_is_still_centred_at_zero():
    explanation = make_explanation(("a", "b"), ("c", "d"), torch.tensor([[0.1, 0.3], [0.2, 0.05]]))
    figure = plot_heatmap(explanation)
    (image,) = [a for a in figure.axes[0].get_children() if isinstance(a, AxesImage)]
    assert image.norm.vmin == pytest.approx(-0.3) and image.norm(0.0) == pytest.approx(0.5)


def test_dollar_signs_are_shown_literally_and_render():
    explanation = make_explanation(tokens_a=("$", "x_1$", "$y$"))
    for draw in (plot_pairs, plot_heatmap):
        figure = draw(explanation)
        figure.savefig(io.BytesIO(), format="png")
    texts = [t.get_text() for t in labels(plot_pairs(explanation))]
    assert "$y$" in texts and "x_1$" in texts


def test_display_token_drops_word_start_markers_only():
    assert [display_token(t) for t in ["Ġguitar", "▁the", "##ing", "Ġ", "Ċ", "New▁York"]] == [
        "guitar",
        "the",
        "##ing",
        "␣",
        "\\n",
        "New York",
    ]
    assert [is_special_token(t) for t in ["[CLS]", "</s>", "<|endoftext|>", "<b>x", "guitar", "[x"]] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def external_references(page):
    """http(s) URLs in a page other than XML namespace names (which are identifiers, never fetched)."""
    return re.findall(r"https?://", re.sub(r'xmlns(:\w+)?="http://www\.w3\.org/[^"]*"', "", page))


def test_html_is_self_contained_ascii_and_shows_pairs_and_table():
    explanation = make_explanation(tokens_b=("[CLS]", "<b>mü", "plays", "[SEP]"))
    page = to_html(explanation, full_page=True)
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert external_references(page) == []
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", page) and "@import" not in page
    references = re.findall(r"(?:href|src)\s*=\s*[\"']([^\"']*)", page) + re.findall(r"url\(\s*['\"]?([^)'\"]*)", page)
    assert references and all(reference.startswith("#") for reference in references)  # only in-page links
    assert page.isascii()
    (svg,) = re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL)
    assert ET.fromstring(svg).tag.endswith("svg")
    assert "&lt;b&gt;m&#252;" in page and "<b>mü" not in page  # escaped token
    assert "+0.8000" in page and "-0.4000" in page  # the top positive and negative pairs are listed


def test_html_fragment_is_one_div_and_pictures_are_not_methods_of_the_data():
    explanation = make_explanation()
    fragment = to_html(explanation)
    assert fragment.startswith('<div class="bilrp">') and fragment.endswith("</div>")
    # the layers: Explanation (below) never imports the pictures (above), so it has no picture methods; Jupyter's
    # _repr_html_ asks the display registry, which the pictures fill (tests/test_notebook.py)
    assert not any(hasattr(explanation, name) for name in ("plot", "heatmap", "to_html"))
    without_svg = r"<svg\b.*?</svg>"  # its clip-path ids are drawn at random
    assert re.sub(without_svg, "", explanation._repr_html_(), flags=re.DOTALL) == re.sub(
        without_svg, "", fragment, flags=re.DOTALL
    )
