"""Hand-made explanations and a whitespace tagger for the analysis tests."""

import torch

from bilrp import Explanation
from bilrp.analysis.tagging import TaggedSpan, Tagger


def word_spans(text):
    """Character spans of the whitespace-separated words of ``text``."""
    spans, start = [], 0
    for word in text.split():
        start = text.index(word, start)
        spans.append((start, start + len(word)))
        start += len(word)
    return spans


class WhitespaceTagger(Tagger):
    """Tags whitespace-separated words with ``tag_of(word)``."""

    def __init__(self, tag_of, language="xx"):
        super().__init__()
        self.tag_of, self.language, self.name = tag_of, language, f"words-{language}"

    def _tag_batch(self, texts):
        return [[TaggedSpan(s, e, self.tag_of(text[s:e])) for s, e in word_spans(text)] for text in texts]


def word_explanation(text_a, text_b, relevance, score=None):
    """An explanation whose tokens are ``[CLS]``, the whitespace words, ``[SEP]``, with word ids and offsets."""

    def side(text):
        spans = word_spans(text)
        tokens = ["[CLS]", *(text[s:e] for s, e in spans), "[SEP]"]
        return tokens, [None, *range(len(spans)), None], [(0, 0), *spans, (0, 0)]

    tokens_a, words_a, offsets_a = side(text_a)
    tokens_b, words_b, offsets_b = side(text_b)
    relevance = torch.as_tensor(relevance, dtype=torch.float64)
    score = float(relevance.sum()) if score is None else score
    return Explanation(
        tokens_a, tokens_b, relevance, score, score - float(relevance.sum()), text_a, text_b, "", "bilrp",
        words_a, words_b, offsets_a, offsets_b,
    )  # fmt: skip
