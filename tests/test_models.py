"""``SimilarityModel``: loading (checkpoints, sentence-transformers folders and objects), the attribution
steps (embed -> hidden states -> pool -> compare) and the poolings.

Scores are compared with sentence-transformers' own model to 1e-5 (float32); the steps of tiny float64
models with direct computations to 1e-10.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from bilrp import DEFAULT_MODEL, SimilarityModel
from bilrp.models import ModelLoadError, resolve_model_path
from tiny_models import ARCHITECTURES, save_tiny_bert, tiny_similarity_model

TEXTS_A = ["A man is playing a guitar.", "A woman is slicing an onion.", "The cat sleeps.", "Stocks fell sharply."]
TEXTS_B = ["Someone plays music on a guitar.", "A chef cuts vegetables.", "A dog runs outside.", "Markets dropped."]
TOL = 1e-10


@pytest.fixture(scope="module")
def st_model():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model_path(DEFAULT_MODEL), device="cpu")


def st_cosines(st_model, texts_a=TEXTS_A, texts_b=TEXTS_B) -> torch.Tensor:
    a = st_model.encode(texts_a, convert_to_tensor=True, normalize_embeddings=True)
    b = st_model.encode(texts_b, convert_to_tensor=True, normalize_embeddings=True)
    return (a * b).sum(-1)


# ---------------------------------------------------------------------------------------------- loading
@pytest.mark.slow
def test_from_pretrained_minilm_matches_sentence_transformers(minilm, st_model):
    assert (minilm.pooling_name, minilm.similarity, minilm.max_length) == ("mean", "cosine", 256)
    scores = minilm.score(TEXTS_A, TEXTS_B)
    assert torch.allclose(scores, st_cosines(st_model), atol=1e-5, rtol=0)
    assert scores[0] > scores[2]  # the guitar pair is the most similar: the comparison is not vacuous


@pytest.mark.slow
def test_from_sentence_transformer_matches_and_shares_the_encoder(st_model):
    model = SimilarityModel.from_sentence_transformer(st_model)
    assert (model.pooling_name, model.similarity, model.max_length) == ("mean", "cosine", 256)
    assert model.encoder is st_model[0].auto_model
    assert torch.allclose(model.score(TEXTS_A, TEXTS_B), st_cosines(st_model), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_pooling_and_similarity_overrides(minilm, st_model):
    for model in (
        SimilarityModel.from_pretrained(DEFAULT_MODEL, pooling="cls", similarity="dot"),
        SimilarityModel.from_sentence_transformer(st_model, pooling="cls", similarity="dot"),
    ):
        assert (model.pooling_name, model.similarity) == ("cls", "dot")
        encoded = model.tokenizer(TEXTS_A + TEXTS_B, padding=True, return_tensors="pt")
        with torch.no_grad():
            cls = st_model[0].auto_model(**encoded).last_hidden_state[:, 0]
        expected = (cls[: len(TEXTS_A)] * cls[len(TEXTS_A) :]).sum(-1)
        assert torch.allclose(model.score(TEXTS_A, TEXTS_B), expected, atol=1e-5 * expected.abs().max(), rtol=0)


@pytest.mark.slow
def test_sentence_transformers_folder_written_by_sentence_transformers(st_model, tmp_path):
    st_model.save(str(tmp_path))
    model = SimilarityModel.from_pretrained(tmp_path)
    assert (model.pooling_name, model.similarity, model.max_length) == ("mean", "cosine", 256)
    assert torch.allclose(model.score(TEXTS_A, TEXTS_B), st_cosines(st_model), atol=1e-5, rtol=0)


def write_sentence_transformers_folder(folder, pooling_config: dict, similarity: str | None, normalize: bool):
    """A sentence-transformers folder around a tiny random BERT (legacy or current config formats)."""
    save_tiny_bert(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **pooling_config}))
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 48}))
    if similarity is not None:
        (folder / "config_sentence_transformers.json").write_text(json.dumps({"similarity_fn_name": similarity}))
    return folder


LEGACY_CLS = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False}


@pytest.mark.parametrize(
    ("pooling_config", "similarity", "normalize", "expected"),
    [
        (LEGACY_CLS, "dot", False, ("cls", "dot")),
        ({"pooling_mode": "weightedmean"}, None, False, ("weighted_mean", "cosine")),
        ({"pooling_mode": ["mean"]}, "dot", True, ("mean", "cosine")),  # dot of normalised vectors is cosine
        ({"pooling_mode": "lasttoken"}, "dot", False, ("last_token", "dot")),
        ({"pooling_mode": "max"}, None, True, ("max", "cosine")),
        ({"pooling_mode_mean_sqrt_len_tokens": True}, None, False, ("mean_sqrt_len", "cosine")),
    ],
)
def test_sentence_transformers_folder_sets_the_defaults(tmp_path, pooling_config, similarity, normalize, expected):
    folder = write_sentence_transformers_folder(tmp_path, pooling_config, similarity, normalize)
    model = SimilarityModel.from_pretrained(folder)
    assert (model.pooling_name, model.similarity, model.max_length) == (*expected, 48)


def test_unsupported_sentence_transformers_pooling_is_refused_unless_overridden(tmp_path):
    folder = write_sentence_transformers_folder(tmp_path, {"pooling_mode": ["mean", "max"]}, None, False)
    with pytest.raises(ModelLoadError, match=r"unsupported sentence-transformers pooling \['mean', 'max'\].*pooling="):
        SimilarityModel.from_pretrained(folder)
    assert SimilarityModel.from_pretrained(folder, pooling="mean").pooling_name == "mean"


def test_unknown_model_name_fails_with_one_clear_line():
    with pytest.raises(ModelLoadError) as error:
        SimilarityModel.from_pretrained("no-such-organisation/no-such-model")
    message = str(error.value)
    assert "'no-such-organisation/no-such-model'" in message and "\n" not in message


# ---------------------------------------------------------------------------------------------- the steps
def direct_embedding_output(encoder, ids: torch.Tensor) -> torch.Tensor:
    """The embedding output computed from the encoder's own embedding modules, not through bilrp."""
    if encoder.config.model_type == "gpt_neo":
        return encoder.wte(ids) + encoder.wpe(torch.arange(ids.shape[1]))[None]
    return encoder.embeddings(input_ids=ids)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_embed_and_hidden_states_split_the_encoder(architecture):
    model = tiny_similarity_model(architecture)
    batch = model.tokenize(TEXTS_A[:2])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        emb = model.embed(ids, mask)
        assert torch.allclose(emb, direct_embedding_output(model.encoder, ids), atol=TOL, rtol=0)
        expected = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.allclose(model.hidden_states(emb, mask), expected, atol=TOL, rtol=0)


def test_tokenize_reports_tokens_and_refuses_empty_texts():
    model = tiny_similarity_model("bert")
    batch = model.tokenize(["a guitar", "someone plays music loudly"])
    assert batch["tokens"][0] == ["[CLS]", "a", "guitar", "[SEP]"]
    assert batch["attention_mask"].sum(1).tolist() == [4, 6]
    with pytest.raises(ValueError, match="empty text"):
        model.tokenize(["   "])


def test_poolings_and_similarities():
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 32, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    expected = {
        "cls": hidden[:, 0],
        "mean": torch.stack([hidden[0].mean(0), hidden[1, :3].mean(0)]),
        "weighted_mean": torch.stack(
            [
                (hidden[0] * torch.arange(1.0, 6)[:, None]).sum(0) / 15,
                (hidden[1, :3] * torch.tensor([[1.0], [2], [3]])).sum(0) / 6,
            ]
        ),
    }
    for name, value in expected.items():
        pooled = tiny_similarity_model("bert", pooling=name).pooling(hidden, mask)
        assert torch.allclose(pooled, value, atol=TOL, rtol=0), name
    qkv = tiny_similarity_model("bert", pooling="qkv").pooling.double()
    for row, length in enumerate((5, 3)):
        h = hidden[row, :length]
        p = torch.softmax(qkv.key(h) @ qkv.query / math.sqrt(32), 0)
        assert torch.allclose(qkv(hidden, mask)[row], (p[:, None] * qkv.value(h)).sum(0), atol=TOL, rtol=0)
    a, b = torch.randn(3, 32, dtype=torch.float64), torch.randn(3, 32, dtype=torch.float64)
    assert torch.allclose(tiny_similarity_model(similarity="dot").compare(a, b), (a * b).sum(-1), atol=TOL)
    assert torch.allclose(tiny_similarity_model(similarity="cosine").compare(a, b), F.cosine_similarity(a, b), atol=TOL)


def test_forward_on_embedding_outputs_equals_score():
    model = tiny_similarity_model("bert", "mean", "cosine")
    a, b = model.tokenize(TEXTS_A), model.tokenize(TEXTS_B)
    with torch.no_grad():
        emb_a, emb_b = (
            model.embed(a["input_ids"], a["attention_mask"]),
            model.embed(b["input_ids"], b["attention_mask"]),
        )
        similarity = model(emb_a, emb_b, a["attention_mask"], b["attention_mask"])
    assert torch.allclose(similarity, model.score(TEXTS_A, TEXTS_B), atol=TOL, rtol=0)


def test_invalid_pooling_and_similarity_names():
    with pytest.raises(ValueError, match="unknown pooling 'median'"):
        tiny_similarity_model(pooling="median")
    with pytest.raises(ValueError, match="unknown similarity 'l2'"):
        tiny_similarity_model(similarity="l2")


@pytest.mark.parametrize("name", ["./no/such/folder", "~/no-such-folder-bilrp", "/no/such/folder"])
def test_missing_folder_is_a_clear_error(name):
    with pytest.raises(ModelLoadError, match=r"model folder .* does not exist: give an existing"):
        SimilarityModel.from_pretrained(name)
