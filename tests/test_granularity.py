"""Relevance of token groups (words, sentences, spans): one tangent per group equals the sum of its tokens.

The reference is the token-level factor of the same method summed over each group with a plain matrix
product; the grouped factor comes from the engine pushing each group through as one tangent.
"""

import pytest
import torch

from bilrp import BiLRP, EmbeddingInteraction, HessianXProduct, IntegratedJacobians
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
