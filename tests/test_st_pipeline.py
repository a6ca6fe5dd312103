"""sentence-transformers pipelines as they are: every pooling mode, Dense and Normalize modules, ``truncate_dim``,
prompts and the similarity function. Poolings are checked by hand and against sentence-transformers' own
``Pooling`` (right and left padding); BiLRP in every engine mode against the per-dimension reference on tiny
float64 models (1e-10 relative); scores and explanations of the real MiniLM against ``st.similarity`` (1e-5).
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bilrp
from bilrp import DEFAULT_MODEL, BiLRP, SimilarityModel
from bilrp.engine import CertificateError
from bilrp.models import DenseLayer, L2Normalize, ModelLoadError, TruncateDim, make_pooling, resolve_model_path
from references import per_dimension_bilrp
from tiny_models import tiny_similarity_model

TEXT_A, TEXT_B = "A man is playing a guitar.", "Someone plays music on a guitar."
TEXTS_A = ["a man is playing a guitar on the street", "dogs run"]
TEXTS_B = ["someone plays music", "two dogs are running in a big green park"]
MODES = ("replay", "forward", "reverse")
PROMPTS = {"query": "query: ", "document": "passage: "}
TOL = 1e-10


# ---------------------------------------------------------------------------------------------- poolings
def padded_batches():
    """The same two texts' token states (5 and 3 tokens) padded right and left; padding holds large junk."""
    torch.manual_seed(0)
    states = torch.randn(2, 5, 4, dtype=torch.float64)
    right, left = torch.full((2, 5, 4), 100.0, dtype=torch.float64), torch.full((2, 5, 4), 100.0, dtype=torch.float64)
    right[0], left[0], right[1, :3], left[1, 2:] = states[0], states[0], states[1, :3], states[1, :3]
    masks = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]), torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    return [states[0], states[1, :3]], {"right": (right, masks[0]), "left": (left, masks[1])}


def by_hand(name: str, h: torch.Tensor) -> torch.Tensor:
    """The pooling of one text's real token states ``h`` (n, dim), written out."""
    n = h.shape[0]
    positions = torch.arange(1.0, n + 1, dtype=h.dtype)[:, None]
    return {
        "cls": h[0],
        "last_token": h[-1],
        "mean": h.mean(0),
        "max": h.max(0).values,
        "mean_sqrt_len": h.sum(0) / n**0.5,
        "weighted_mean": (h * positions).sum(0) / positions.sum(),
    }[name]


ST_MODES = {"cls": "cls", "last_token": "lasttoken", "mean": "mean", "max": "max"}
ST_MODES |= {"mean_sqrt_len": "mean_sqrt_len_tokens", "weighted_mean": "weightedmean"}


@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("name", list(ST_MODES))
def test_pooling_by_hand_and_as_sentence_transformers(name, padding):
    from sentence_transformers.sentence_transformer.modules import Pooling

    texts, batches = padded_batches()
    hidden, mask = batches[padding]
    pooled = make_pooling(name, 4)(hidden, mask)
    expected = torch.stack([by_hand(name, h) for h in texts])
    assert torch.allclose(pooled, expected, atol=TOL, rtol=0)
    theirs = Pooling(4, pooling_mode=ST_MODES[name])({"token_embeddings": hidden, "attention_mask": mask})
    assert torch.allclose(pooled, theirs["sentence_embedding"], atol=TOL, rtol=0)


def tiny_model(pooling: str, similarity: str = "dot", padding: str = "right", head=()):
    model = tiny_similarity_model("bert", pooling, similarity)
    if padding == "left":
        model.tokenizer = copy.deepcopy(model.tokenizer)
        model.tokenizer.padding_side = "left"
    model.head = nn.Sequential(*head).double()
    return model


def padded_inputs(model):
    a, b = model.tokenize(TEXTS_A), model.tokenize(TEXTS_B)
    emb_a = model.embed(a["input_ids"], a["attention_mask"]).detach()
    emb_b = model.embed(b["input_ids"], b["attention_mask"]).detach()
    return emb_a, emb_b, a["attention_mask"], b["attention_mask"]


def assert_bilrp_equals_reference(model):
    """BiLRP in every engine mode equals the per-dimension loop; relevance + delta equals the score."""
    emb_a, emb_b, mask_a, mask_b = inputs = padded_inputs(model)
    expected = per_dimension_bilrp(model, *inputs)
    with torch.no_grad():
        score = model(*inputs)
    for mode in MODES:
        relevance, delta = BiLRP(model, rules="paper", mode=mode).attribute(
            (emb_a, emb_b), additional_forward_args=(mask_a, mask_b), return_convergence_delta=True
        )
        assert (relevance - expected).abs().max() <= TOL * expected.abs().max(), mode
        assert torch.allclose(relevance.sum((1, 2)) + delta, score, atol=TOL, rtol=0), mode


@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("pooling", ["last_token", "max", "mean_sqrt_len"])
def test_new_poolings_bilrp_in_every_mode_equals_the_reference(pooling, padding):
    model = tiny_model(pooling, "cosine", padding)
    assert model.tokenize(TEXTS_A)["attention_mask"][1, 0 if padding == "left" else -1] == 0  # really padded
    assert_bilrp_equals_reference(model)


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_a_head_bilrp_in_every_mode_equals_the_reference(similarity):
    torch.manual_seed(1)
    head = (
        DenseLayer(nn.Linear(32, 24), nn.Tanh()),
        L2Normalize(24),
        DenseLayer(nn.Linear(24, 24), None, use_residual=True),
        DenseLayer(nn.Linear(24, 16), nn.ReLU(), use_residual=True, residual=nn.Linear(24, 16, bias=False)),
        TruncateDim(8),
    )
    assert_bilrp_equals_reference(tiny_model("max", similarity, head=head))


@pytest.mark.parametrize("activation", [nn.Sigmoid(), torch.sigmoid], ids=["module", "function"])
def test_an_activation_without_a_rule_is_refused_naming_it(activation):
    model = tiny_model("mean", head=[DenseLayer(nn.Linear(32, 16), activation)])
    emb_a, emb_b, mask_a, mask_b = padded_inputs(model)
    with pytest.raises(CertificateError, match=r"'head\.0\.activation_function'"):
        BiLRP(model, rules="paper").attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))


class PlainMax(nn.Module):
    """Max pooling with its argmax computed from the input, not as a rule constant."""

    def forward(self, hidden, mask):
        return hidden.masked_fill(mask[..., None] == 0, float("-inf")).max(1).values


def test_max_pooling_without_its_rule_constant_is_refused():
    model = tiny_model("mean")
    model.pooling = PlainMax()
    emb_a, emb_b, mask_a, mask_b = padded_inputs(model)
    with pytest.raises(CertificateError, match=r"'pooling' \(PlainMax"):
        BiLRP(model, rules="paper", mode="replay").attribute((emb_a, emb_b), additional_forward_args=(mask_a, mask_b))


def test_normalize_computes_and_differentiates_as_torch_normalize():
    x = torch.randn(3, 16, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3, 16, dtype=torch.float64)
    normalize = L2Normalize(16)
    assert torch.allclose(normalize(x), F.normalize(x, dim=-1), atol=TOL, rtol=0)
    (ours,) = torch.autograd.grad((normalize(x) * weights).sum(), x)  # plain gradients see the true function
    (theirs,) = torch.autograd.grad((F.normalize(x, dim=-1) * weights).sum(), x)
    assert torch.allclose(ours, theirs, atol=TOL, rtol=0)


@pytest.mark.parametrize("fast", [True, False])
def test_prompt_tokens_are_counted_with_fast_and_slow_tokenizers(fast):
    from transformers import BertTokenizer

    model = tiny_model("mean")
    if not fast:
        model.tokenizer = BertTokenizer.from_pretrained(resolve_model_path(DEFAULT_MODEL))
    model.prompts, model.default_prompt_name = dict(PROMPTS), "query"
    batch = model.tokenize(["a guitar", "music"])
    assert batch["tokens"][1] == ["[CLS]", "query", ":", "music", "[SEP]"] and batch["prompt_lengths"] == [3, 3]
    assert model.tokenize(["music"], prompt_name="document")["prompt_lengths"] == [3]
    with pytest.raises(ValueError, match="default_prompt_name 'passage' is not one of the prompts"):
        SimilarityModel(model.encoder, model.tokenizer, prompts=PROMPTS, default_prompt_name="passage")


# ---------------------------------------------------------------------------------------------- real MiniLM
@pytest.fixture(scope="module")
def base():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model_path(DEFAULT_MODEL), device="cpu")


def pipeline(base, *modules, pooling=None, **settings):
    """A SentenceTransformer sharing ``base``'s Transformer, with ``base``'s (or a new) Pooling and ``modules``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    pool = base[1] if pooling is None else Pooling(384, pooling_mode=pooling)
    return SentenceTransformer(modules=[base[0], pool, *modules], device="cpu", **settings)


def st_score(st, text_a=TEXT_A, text_b=TEXT_B, **kwargs) -> float:
    a, b = (st.encode([t], convert_to_tensor=True, **kwargs) for t in (text_a, text_b))
    return float(st.similarity(a, b)[0, 0])


def modules(*names):
    """sentence-transformers head modules by short name, with fixed random Dense weights."""
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    torch.manual_seed(0)
    make = {
        "dense": lambda: Dense(384, 128),
        "dense-identity": lambda: Dense(128, 96, activation_function=None),
        "dense-relu-residual": lambda: Dense(384, 384, activation_function=nn.ReLU(), use_residual=True),
        "normalize": Normalize,
    }
    return [make[name]() for name in names]


CASES = {
    "dense": (("dense",), {}),
    "dense-normalize": (("dense", "normalize"), {}),
    "normalize-dense": (("normalize", "dense"), {}),
    "dense-relu-residual": (("dense-relu-residual", "normalize"), {}),
    "truncate": (("normalize",), {"truncate_dim": 64}),
    "truncate-dot": (("normalize",), {"truncate_dim": 64, "similarity_fn_name": "dot"}),
    "prompt": (("normalize",), {"prompts": PROMPTS, "default_prompt_name": "query"}),
    "all": (
        ("dense", "dense-identity", "normalize"),
        {"truncate_dim": 64, "prompts": PROMPTS, "default_prompt_name": "query", "similarity_fn_name": "dot"},
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_every_supported_pipeline_is_explained_as_it_scores(base, case):
    names, settings = CASES[case]
    st = pipeline(base, *modules(*names), **settings)
    expected = st_score(st)
    model = SimilarityModel.from_sentence_transformer(st)
    assert abs(model.score([TEXT_A], [TEXT_B]).item() - expected) < 1e-5
    explanation = bilrp.explain(model, TEXT_A, TEXT_B)
    assert abs(explanation.score - expected) < 1e-5
    assert abs(float(explanation.relevance.sum()) + explanation.bias - explanation.score) < 1e-5
    assert bilrp.explain(st, TEXT_A, TEXT_B).score == pytest.approx(explanation.score, abs=1e-6)  # any entry point


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["max", "lasttoken", "mean_sqrt_len_tokens", "weightedmean", "cls"])
def test_every_pooling_mode_of_a_sentence_transformer_is_explained_as_it_scores(base, mode):
    st = pipeline(base, *modules("normalize"), pooling=mode)
    model = SimilarityModel.from_sentence_transformer(st)
    explanation = bilrp.explain(model, TEXT_A, TEXT_B)
    assert abs(explanation.score - st_score(st)) < 1e-5
    assert abs(float(explanation.relevance.sum()) + explanation.bias - explanation.score) < 1e-5


@pytest.mark.slow
def test_a_dense_module_is_no_longer_silently_dropped(base):
    plain = SimilarityModel.from_sentence_transformer(base).score([TEXT_A], [TEXT_B]).item()
    st = pipeline(base, *modules("dense"))
    model = SimilarityModel.from_sentence_transformer(st)
    assert [type(m) for m in model.head] == [DenseLayer] and model.head[0].linear is st[2].linear  # shared
    score = model.score([TEXT_A], [TEXT_B]).item()
    assert abs(score - st_score(st)) < 1e-5
    # the old silent case: MiniLM's 0.8143 explained (Dense dropped) where the model says 0.8477
    assert plain == pytest.approx(0.8143, abs=1e-4) and score == pytest.approx(0.8477, abs=1e-4)
    assert bilrp.explain(st, TEXT_A, TEXT_B).score == pytest.approx(score, abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("safe_serialization", [True, False])
def test_a_saved_pipeline_loads_as_sentence_transformers_runs_it(base, tmp_path, safe_serialization):
    names, settings = CASES["all"]
    st = pipeline(base, *modules(*names), **settings)
    st.save(str(tmp_path), safe_serialization=safe_serialization)
    model = SimilarityModel.from_pretrained(tmp_path)
    assert [type(m) for m in model.head] == [DenseLayer, DenseLayer, L2Normalize, TruncateDim]
    assert (model.similarity, model.default_prompt_name, model.prompts["query"]) == ("dot", "query", "query: ")
    assert abs(model.score([TEXT_A], [TEXT_B]).item() - st_score(st)) < 1e-5
    explanation = bilrp.explain(model, TEXT_A, TEXT_B)
    assert abs(explanation.score - st_score(st)) < 1e-5


@pytest.mark.slow
def test_prompts_are_put_before_the_text_and_their_tokens_counted(base):
    st = pipeline(base, *modules("normalize"), prompts=PROMPTS, default_prompt_name="query")
    model = SimilarityModel.from_sentence_transformer(st)
    batch = model.tokenize([TEXT_A, "hi"])
    assert batch["tokens"][0][:4] == ["[CLS]", "query", ":", "a"] and batch["prompt_lengths"] == [3, 3]
    assert batch["prompt_lengths"][0] == st.preprocess([TEXT_A], prompt="query: ")["prompt_length"]
    assert model.tokenize(["hi"], prompt_name="document")["tokens"][0] == ["[CLS]", "passage", ":", "hi", "[SEP]"]
    assert SimilarityModel.from_sentence_transformer(base).tokenize(["hi"])["prompt_lengths"] == [0]
    explanation = bilrp.explain(model, TEXT_A, TEXT_B)
    assert explanation.tokens_a[:3] == ["[CLS]", "query", ":"]  # prompt tokens are kept and shown
    ours = model.score([TEXT_A], [TEXT_B], prompt_name=("query", "document")).item()
    theirs = st.similarity(
        st.encode([TEXT_A], prompt_name="query", convert_to_tensor=True),
        st.encode([TEXT_B], prompt_name="document", convert_to_tensor=True),
    )
    assert abs(ours - theirs.item()) < 1e-5
    with pytest.raises(ValueError, match=r"unknown prompt_name 'passage'.*\['document', 'query'\]"):
        model.tokenize(["hi"], prompt_name="passage")


@pytest.mark.slow
@pytest.mark.parametrize("function", ["euclidean", "manhattan"])
def test_distances_are_refused_as_not_bilinear(base, function):
    st = pipeline(base, *modules("normalize"), similarity_fn_name=function)
    with pytest.raises(ModelLoadError, match=rf"similarity '{function}' is a distance, not a bilinear similarity"):
        SimilarityModel.from_sentence_transformer(st)


class Dense(nn.Module):
    """A module named like sentence-transformers' Dense, from another package."""

    def forward(self, features):
        return features


@pytest.mark.slow
def test_modules_bilrp_does_not_implement_are_still_refused(base):
    from sentence_transformers.sentence_transformer.modules import Dense as STDense
    from sentence_transformers.sentence_transformer.modules import LayerNorm

    cases = [
        (LayerNorm(384), r"module 2 \(LayerNorm, sentence_transformers\..*bilrp cannot explain this module yet"),
        (Dense(), r"module 2 \(Dense, test_st_pipeline\.Dense"),
        (STDense(384, 384, module_input_name="token_embeddings"), r"module_input_name 'token_embeddings'"),
    ]
    for module, match in cases:
        with pytest.raises(ModelLoadError, match=match):
            SimilarityModel.from_sentence_transformer(pipeline(base, module))


@pytest.mark.slow
def test_explain_takes_a_prompt_per_side_and_counts_its_tokens(minilm):
    """A query prompt on text A only: the explanation equals sentence-transformers' score with that prompt."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(resolve_model_path(DEFAULT_MODEL), device="cpu", prompts={"query": "query: "})
    a, b = "a man is playing a guitar", "someone plays music"
    explanation = bilrp.explain(st, a, b, prompt_name=("query", None))
    expected = float(st.similarity(st.encode([a], prompt_name="query"), st.encode([b])))
    assert explanation.score == pytest.approx(expected, abs=1e-5)
    assert explanation.prompt_a == "query: " and explanation.prompt_b == ""
    assert explanation.tokens_a[: explanation.prompt_length_a] == ["[CLS]", "query", ":"]
    assert explanation.prompt_length_b == 0
    words = explanation.to_words()
    assert words.tokens_a[:3] == ["[CLS]", "query", ":"] and words.prompt_length_a == 3
    assert float(words.relevance.sum()) == pytest.approx(float(explanation.relevance.sum()), abs=1e-6)
