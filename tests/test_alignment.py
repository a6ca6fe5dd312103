"""Subtoken -> word -> tagged span alignment, on hand-made offsets and on tricky real texts."""

import pytest

from bilrp import Explanation
from bilrp.analysis.alignment import align, tag_explanation
from bilrp.analysis.tagging import TaggedSpan, TaggerUnavailableError, load_tagger, stts_to_upos
from tiny_models import tokenizer


def spans(*items):
    return [TaggedSpan(start, end, tag) for start, end, tag in items]


def encode(text):
    encoded = tokenizer()(text, return_offsets_mapping=True)
    return encoded.tokens(), encoded.word_ids(), [tuple(o) for o in encoded["offset_mapping"]]


def test_largest_overlap_wins_and_special_tokens_keep_their_tag():
    # "I don't." : the tokenizer splits don ' t, spaCy splits do n't
    tagged = spans((0, 1, "PRON"), (2, 4, "AUX"), (4, 7, "PART"), (7, 8, "PUNCT"))
    tokens = ["<s>", "I", "don", "'", "t", ".", "</s>"]
    words = [None, 0, 1, 2, 3, 4, None]
    offsets = [(0, 0), (0, 1), (2, 5), (5, 6), (6, 7), (7, 8), (0, 0)]
    alignment = align(tokens, words, offsets, tagged)
    assert alignment.tags == ["<s>", "PRON", "AUX", "PART", "PART", "PUNCT", "</s>"]
    assert alignment.spans == [None, 0, 1, 2, 2, 3, None]


@pytest.mark.parametrize("space_offsets", [(1, 1), (1, 2)])
def test_token_without_text_takes_its_words_tag(space_offsets):
    # sentencepiece-style "▁" token before "3": empty span or only the space
    tagged = spans((0, 1, "DET"), (2, 3, "NUM"))
    tokens = ["<s>", "▁a", "▁", "3", "</s>"]
    alignment = align(tokens, [None, 0, 1, 1, None], [(0, 0), (0, 1), space_offsets, (2, 3), (0, 0)], tagged)
    assert alignment.tags == ["<s>", "DET", "NUM", "NUM", "</s>"]


def test_token_without_text_or_word_partner_takes_the_next_span():
    tagged = spans((0, 1, "DET"), (2, 3, "NOUN"))
    alignment = align(["▁", "x"], [0, 1], [(1, 1), (2, 3)], tagged)
    assert alignment.tags == ["NOUN", "NOUN"]
    assert align(["x"], [0], [(0, 1)], []).tags == ["X"]


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="differ in length"):
        align(["a", "b"], [0], [(0, 1)], [])


@pytest.fixture(scope="module")
def english():
    return load_tagger("en")


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "I don't like the café's well-known 3.5-inch pizzas!",
            # [CLS] i don ' t like the cafe ' s well - known 3 . 5 - inch pizza ##s ! [SEP]
            "[CLS] PRON AUX PART PART VERB DET NOUN PART PART ADV PUNCT VERB NUM NUM NUM PUNCT NOUN NOUN NOUN PUNCT"
            " [SEP]",
        ),
        (
            # one word in 7 subtokens; spaCy keeps "p<0.05" whole (as PROPN) while the tokenizer cuts it in 5
            "The patient took hydroxychloroquine (p<0.05).",
            "[CLS] DET NOUN VERB " + "NOUN " * 7 + "PUNCT " + "PROPN " * 5 + "PUNCT PUNCT [SEP]",
        ),
        (
            # the tokenizer keeps "cannot" whole, spaCy splits can|not: equal overlap, the first span wins
            "You cannot go.",
            "[CLS] PRON AUX VERB PUNCT [SEP]",
        ),
    ],
)
def test_real_tokenizer_and_spacy_on_tricky_text(english, text, expected):
    tokens, words, offsets = encode(text)
    alignment = align(tokens, words, offsets, english(text))
    assert alignment.tags == expected.split()


def test_tag_explanation_tags_both_sides(english):
    tokens_a, words_a, offsets_a = encode("A dog is barking.")
    tokens_b, words_b, offsets_b = encode("The patient took hydroxychloroquine.")
    explanation = Explanation(
        tokens_a, tokens_b, None, 0.0, 0.0, "A dog is barking.", "The patient took hydroxychloroquine.", "", "bilrp",
        words_a, words_b, offsets_a, offsets_b,
    )  # fmt: skip
    tags_a, tags_b = tag_explanation(explanation, english)
    assert tags_a == ["[CLS]", "DET", "NOUN", "AUX", "VERB", "PUNCT", "[SEP]"]
    assert tags_b == ["[CLS]", "DET", "NOUN", "VERB"] + ["NOUN"] * 7 + ["PUNCT", "[SEP]"]
    explanation.word_ids_a = None
    with pytest.raises(ValueError, match="word ids and offsets"):
        tag_explanation(explanation, english)


def test_german_tags_from_hanta_align_with_subtokens():
    german = load_tagger("de")
    text = "Der Käsebrötchen-Verkäufer hat's nicht gewusst."
    assert [s.tag for s in german(text)] == ["DET", "NOUN", "AUX", "PART", "VERB", "PUNCT"]
    tokens, words, offsets = encode(text)
    tags = align(tokens, words, offsets, german(text)).tags
    # der | ka se bro tch en - ve rka uf er | hat ' s | nic ht | ge wu ss t | .
    assert tags == ["[CLS]", "DET"] + ["NOUN"] * 10 + ["AUX"] * 3 + ["PART"] * 2 + ["VERB"] * 4 + ["PUNCT", "[SEP]"]


@pytest.mark.parametrize(
    "stts, upos",
    [("VV(FIN)", "VERB"), ("VM(FIN)", "AUX"), ("ADJ(A)", "ADJ"), ("APPRART", "ADP"), ("$.", "PUNCT"), ("??", "X")],
)
def test_stts_to_upos(stts, upos):
    assert stts_to_upos(stts) == upos


def test_language_without_tagger_says_which_exist():
    with pytest.raises(TaggerUnavailableError, match="available are 'en'"):
        load_tagger("fr")
