"""Relevance of token groups (words, sentences, spans): one tangent per group equals the sum of its tokens.

The reference is the token-level factor of the same method summed over each group with a plain matrix
product; the grouped factor comes from the engine pushing each group through as one tangent.
"""

import pytest
import torch

from bilrp import BiLRP, EmbeddingInteraction, HessianXProduct, IntegratedJacobians, explain, explain_batch
from bilrp.granularity import check_granularity, sentence_spans, token_groups
from tiny_models import tiny_similarity_model

TEXTS = ["A man plays the guitar. He sings loudly! Then he stops", "Dogs run."]


@pytest.fixture(scope="module")
def model():
    return tiny_similarity_model("bert", similarity="cosine", dtype=torch.float64)


def batch_groups(model, texts, granularity):
    batch = model.tokenize(texts)
    embeddings = model.embed(batch["input_ids"], batch["attention_mask"]).detach()
    mask = batch["attention_mask"]
    found = [
        token_groups(batch["tokens"][row], batch["word_ids"][row], batch["offsets"][row], texts[row], granularity)
        for row in range(len(texts))
    ]
    width = max(g.matrix.shape[0] for g in found)
    groups = torch.zeros(len(texts), width, mask.shape[1], dtype=torch.float64)
    for row, group in enumerate(found):
        groups[row, : group.matrix.shape[0], : group.matrix.shape[1]] = group.matrix
    return embeddings, mask, groups, found


METHODS = {
    "bilrp replay": lambda m: BiLRP(m, rules="paper", mode="replay"),
    "bilrp forward": lambda m: BiLRP(m, rules="attnlrp", mode="forward"),
    "bilrp reverse": lambda m: BiLRP(m, rules="gamma", mode="reverse"),
    "hxp": lambda m: HessianXProduct(m),
    "ij": lambda m: IntegratedJacobians(m, n_steps=3),
    "embedding": lambda m: EmbeddingInteraction(m),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("granularity", ["word", "sentence", [(0, 9), (24, 40)]])
def test_group_contributions_equal_summed_token_contributions(model, method, granularity):
    embeddings, mask, groups, _ = batch_groups(model, TEXTS, granularity)
    attribution = METHODS[method](model)
    tokens, phi = attribution.contributions(embeddings, mask)
    grouped, grouped_phi = attribution.contributions(embeddings, mask, groups=groups)
    expected = torch.einsum("bgs,bsd->bgd", groups, tokens)
    assert grouped.shape == expected.shape
    assert torch.allclose(grouped, expected, atol=1e-10 * float(expected.abs().max()))
    assert torch.allclose(grouped_phi, phi)


def test_groups_must_partition_the_real_tokens(model):
    embeddings, mask, groups, _ = batch_groups(model, TEXTS, "word")
    broken = groups.clone()
    broken[0, 0, 0] = 0  # [CLS] of the first text in no group
    with pytest.raises(ValueError, match="exactly one group"):
        BiLRP(model, rules="paper").contributions(embeddings, mask, groups=broken)
    with pytest.raises(ValueError, match="do not fit a batch"):
        BiLRP(model, rules="paper").contributions(embeddings, mask, groups=groups[:, :, :-1])


def test_token_groups_words_sentences_and_spans(model):
    text = TEXTS[0]
    batch = model.tokenize([text])
    tokens, word_ids, offsets = batch["tokens"][0], batch["word_ids"][0], batch["offsets"][0]
    assert sentence_spans(text) == [(0, 23), (24, 40), (41, 54)]
    sentences = token_groups(tokens, word_ids, offsets, text, "sentence")
    assert sentences.labels == ["[CLS]", "A man plays the guitar.", "He sings loudly!", "Then he stops", "[SEP]"]
    for groups in (sentences, token_groups(tokens, word_ids, offsets, text, "word")):
        assert torch.equal(groups.matrix.sum(0), torch.ones(len(tokens), dtype=torch.float64))
    spans = token_groups(tokens, word_ids, offsets, text, [(2, 9)])
    assert "man plays" in spans.labels and "guitar" in spans.labels  # outside the span: tokens on their own
    assert token_groups(tokens, word_ids, offsets, text, "token").labels == tokens


@pytest.mark.parametrize(
    "granularity, message",
    [("paragraph", "unknown granularity"), ([(5, 2)], "start < end"), ([(0, 5), (3, 8)], "overlap")],
)
def test_bad_granularities_are_one_line_errors(granularity, message):
    with pytest.raises(ValueError, match=message):
        check_granularity(granularity)


@pytest.mark.parametrize("method", ["bilrp", "hxp", "random"])
@pytest.mark.parametrize("granularity", ["word", "sentence", lambda text: [(0, 9)]])
def test_explain_at_a_granularity_equals_token_relevance_summed(model, method, granularity):
    a, b = TEXTS
    options = {"seed": 0} if method == "random" else {}
    tokens = explain(model, a, b, method=method, **options)
    grouped = explain(model, a, b, method=method, granularity=granularity, **options)
    chosen = {text: granularity if isinstance(granularity, str) else granularity(text) for text in (a, b)}
    group_a = token_groups(tokens.tokens_a, tokens.word_ids_a, tokens.offsets_a, a, chosen[a])
    group_b = token_groups(tokens.tokens_b, tokens.word_ids_b, tokens.offsets_b, b, chosen[b])
    expected = group_a.matrix @ tokens.relevance.double() @ group_b.matrix.T
    assert grouped.tokens_a == group_a.labels and grouped.tokens_b == group_b.labels
    assert torch.allclose(grouped.relevance.double(), expected, atol=1e-10)
    assert grouped.score == pytest.approx(tokens.score, abs=1e-12)
    if method == "bilrp":
        assert float(grouped.decomposition().sum()) == pytest.approx(grouped.score, abs=1e-10)


def test_explain_takes_a_pair_of_span_lists_and_refuses_bad_granularities(model):
    a, b = TEXTS
    grouped = explain(model, a, b, granularity=([(0, 22)], "token"))
    assert grouped.tokens_a[1] == "A man plays the guitar"
    assert len(grouped.tokens_b) == len(explain(model, a, b).tokens_b)
    with pytest.raises(ValueError, match="unknown granularity"):
        explain(model, a, b, granularity="chapter")
    with pytest.raises(ValueError, match="one pair of texts"):
        explain_batch(model, [(a, b), (b, a)], granularity=([(0, 3)], [(0, 3)]), progress=False)


def test_the_pair_plot_draws_a_long_text_as_its_sentences(model):
    from bilrp.plotting import plot_pairs, readable

    long_text = " ".join(["The cat sat on the mat near the door."] * 5)  # 52 tokens (the tiny model takes 64)
    explanation = explain(model, "a cat", long_text)
    assert len(explanation.tokens_b) > 40
    shown = readable(explanation, sentences_over=40)
    assert shown.tokens_a == explanation.tokens_a and len(shown.tokens_b) == 5 + 2
    assert torch.allclose(shown.relevance.sum(1), explanation.relevance.double().sum(1), atol=1e-12)
    assert readable(explanation) is explanation  # under the default of 64 tokens
    figure = plot_pairs(explanation, sentences_over=40)
    labels = [text.get_text() for text in figure.axes[0].texts]
    assert "The cat sat on the mat near the door." in labels
    assert readable(explanation, sentences_over=None) is explanation
