"""sentence-transformers' ``encode()`` options at bilrp's doors (issue 21, case 3): ``prompt``, ``prompt_name``,
``truncate_dim``, ``normalize_embeddings`` and ``similarity_fn_name`` give the score the user's own
``st.similarity(st.encode(...))`` gives, and the explanation adds up to it.

Tiny float64 models: against the per-dimension BiLRP loop of a model whose head does the same thing (1e-10).
The real MiniLM: against sentence-transformers' own numbers (1e-5), each test also showing the number bilrp
explained before (the silent wrong one). Unknown keywords are one ``TypeError`` from the function called.
"""

import json
import re

import pytest
import torch

import bilrp
from bilrp import DEFAULT_MODEL, SimilarityModel, cli
from bilrp.models import L2Normalize, TruncateDim, resolve_model_path
from bilrp.models.encode_options import EncodeOptions, EncodeOutput
from references import per_dimension_bilrp
from tiny_models import tiny_similarity_model

A, B = "a man is playing a guitar on the street", "someone plays music"
PROMPTS = {"query": "query: ", "document": "passage: "}
TOL = 1e-10
CAT, DOG = "The cat sits on the mat.", "A dog is lying on the rug."
"""The real MiniLM's pair: 0.4115 plain, 0.5543 with prompt='query: ', 0.4628 with truncate_dim=64."""


# ---------------------------------------------------------------------------------------------- tiny models
def tiny(similarity="dot", head=(), **settings):
    """The tiny BERT (float64) with ``head`` modules and ``settings`` set on it; the same weights every time."""
    model = tiny_similarity_model("bert", "mean", similarity)
    model.head = torch.nn.Sequential(*head).double()
    for key, value in settings.items():
        setattr(model, key, value)
    return model


def reference(model, text_a=A, text_b=B, prompt_a="", prompt_b=""):
    """``(R, score)`` by the per-dimension BiLRP loop (the paper's algorithm) and the model's forward."""
    inputs = []
    for text, prompt in ((text_a, prompt_a), (text_b, prompt_b)):
        model.prompts, model.default_prompt_name = {"p": prompt}, "p"
        batch = model.tokenize([text])
        inputs.append((model.embed(batch["input_ids"], batch["attention_mask"]), batch["attention_mask"]))
    model.prompts, model.default_prompt_name = {}, None
    (emb_a, mask_a), (emb_b, mask_b) = inputs
    with torch.no_grad():
        score = float(model(emb_a, emb_b, mask_a, mask_b))
    return per_dimension_bilrp(model, emb_a, emb_b, mask_a, mask_b)[0], score


def assert_equal_to(explanation, relevance, score):
    assert explanation.relevance.shape == relevance.shape
    assert (explanation.relevance - relevance).abs().max() <= TOL * relevance.abs().max()
    assert explanation.score == pytest.approx(score, abs=TOL)
    assert float(explanation.relevance.double().sum()) + explanation.bias == pytest.approx(score, abs=TOL)


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_truncate_dim_explains_the_first_k_dimensions(similarity):
    relevance, score = reference(tiny(similarity, [TruncateDim(12)]))
    plain = bilrp.explain(tiny(similarity), A, B, rules="paper")
    cut = bilrp.explain(tiny(similarity), A, B, rules="paper", truncate_dim=12)
    assert abs(plain.score - score) > 1e-3  # what bilrp explained before: the full embedding
    assert_equal_to(cut, relevance, score)


def test_normalize_embeddings_turns_a_dot_model_into_its_cosine():
    relevance, score = reference(tiny("cosine"))
    normalized = bilrp.explain(tiny("dot"), A, B, rules="paper", normalize_embeddings=True)
    assert_equal_to(normalized, relevance, score)
    assert bilrp.explain(tiny("cosine"), A, B, rules="paper", normalize_embeddings=True).score == pytest.approx(score)
    # one side only (a normalised query against raw documents): R of the dot divided by |phi_a|
    model = tiny("dot")
    dot_relevance, dot_score = reference(model)
    phi_a = model.encode([A])[0]
    one_side = bilrp.explain(model, A, B, rules="paper", normalize_embeddings=(True, False))
    assert_equal_to(one_side, dot_relevance / phi_a.norm(), dot_score / float(phi_a.norm()))


def test_a_folded_normalize_with_dot_is_cut_after_the_normalisation():
    """sentence-transformers: Normalize module, then truncate_dim, then a dot product (not the cut's cosine)."""
    relevance, score = reference(tiny("dot", [L2Normalize(32), TruncateDim(12)]))
    folded = tiny("cosine", encode_output=EncodeOutput(True, "dot"))  # as bilrp loads such a pipeline
    explanation = bilrp.explain(folded, A, B, rules="paper", truncate_dim=12)
    assert_equal_to(explanation, relevance, score)
    cosine_of_cut = bilrp.explain(tiny("cosine"), A, B, rules="paper", truncate_dim=12)
    assert abs(cosine_of_cut.score - score) > 1e-3  # the cosine of the cut is another number


def test_similarity_fn_name_chooses_the_bilinear_similarity():
    relevance, score = reference(tiny("dot"))
    assert_equal_to(bilrp.explain(tiny("cosine"), A, B, rules="paper", similarity_fn_name="dot"), relevance, score)
    relevance, score = reference(tiny("cosine"))
    assert_equal_to(bilrp.explain(tiny("dot"), A, B, rules="paper", similarity_fn_name="cosine"), relevance, score)


def test_a_literal_prompt_is_put_before_the_text_per_side():
    relevance, score = reference(tiny("dot"), prompt_a="query: ", prompt_b="passage: ")
    explanation = bilrp.explain(tiny("dot"), A, B, rules="paper", prompt=("query: ", "passage: "))
    assert_equal_to(explanation, relevance, score)
    assert (explanation.prompt_a, explanation.prompt_b) == ("query: ", "passage: ")
    assert explanation.tokens_a[: explanation.prompt_length_a] == ["[CLS]", "query", ":"]
    named = bilrp.explain(tiny("dot", prompts=PROMPTS), A, B, rules="paper", prompt_name=("query", "document"))
    assert torch.equal(named.relevance, explanation.relevance) and named.score == explanation.score
    with pytest.warns(UserWarning, match="the prompt is used and the prompt_name ignored"):
        both = bilrp.explain(tiny("dot", prompts=PROMPTS), A, B, prompt="query: ", prompt_name="document")
    assert both.prompt_a == both.prompt_b == "query: "
    assert bilrp.explain(tiny("dot", prompts=PROMPTS, default_prompt_name="query"), A, B, prompt="").prompt_a == ""


def test_explain_batch_and_other_methods_take_the_options():
    model = tiny("dot")
    options = {"truncate_dim": 12, "normalize_embeddings": (False, True), "prompt": "query: "}
    batch = bilrp.explain_batch(model, [(A, B), (B, A)], progress=False, **options)
    for (text_a, text_b), explanation in zip([(A, B), (B, A)], batch, strict=True):
        single = bilrp.explain(model, text_a, text_b, **options)
        assert torch.allclose(single.relevance, explanation.relevance, atol=TOL, rtol=0)
    hxp = bilrp.explain(model, A, B, method="hxp", prompt="query: ")  # a prompt changes the text: any method
    assert hxp.prompt_a == "query: "
    with pytest.raises(ValueError, match=r"method 'hxp' explains the model's own similarity: truncate_dim="):
        bilrp.explain(model, A, B, method="hxp", truncate_dim=12)


def test_the_ranking_follows_the_options_and_equals_explain(tmp_path):
    model = tiny("dot")
    documents = [B, "two dogs run in a park", "a guitar on a stage", "music and a man"]
    index = bilrp.DocumentIndex.build(model, documents, tmp_path / "idx", progress=False)
    options = {"truncate_dim": 12, "normalize_embeddings": True}
    ranking = bilrp.explain_ranking(model, A, index, top_k=None, **options)
    settings = EncodeOptions.resolve(model, **options)
    expected = settings.scores(model.encode([A]), model.encode(documents))
    assert ranking.scores == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-9)
    assert (expected - (model.encode([A]) @ model.encode(documents).T)[0]).abs().min() > 1e-3  # not the plain dot
    for explanation in ranking:
        single = bilrp.explain(model, A, explanation.text_b, **options)
        assert torch.allclose(single.relevance, explanation.relevance.double(), atol=1e-6, rtol=0)
        assert float(explanation.relevance.double().sum()) + explanation.bias == pytest.approx(explanation.score)
    difference = bilrp.explain_difference(model, A, "0", "1", index=index, **options)
    assert difference.score == pytest.approx(float(expected[0] - expected[1]), abs=1e-9)
    with pytest.raises(ValueError, match=r"built with the document prompt None \(''\), not 'passage: '"):
        bilrp.explain_ranking(model, A, index, prompt=("query: ", "passage: "))


# ---------------------------------------------------------------------------------------------- refusals
def test_distances_and_quantisation_are_refused_with_the_reason():
    model = tiny("dot")
    for name in ("euclidean", "manhattan"):
        with pytest.raises(ValueError, match=rf"similarity_fn_name='{name}': .* is a distance, not a bilinear"):
            bilrp.explain(model, A, B, similarity_fn_name=name)
    with pytest.raises(ValueError, match=r"similarity_fn_name='jaccard' is not a sentence-transformers similarity"):
        bilrp.explain(model, A, B, similarity_fn_name="jaccard")
    with pytest.raises(TypeError, match=r"explain\(\) does not take precision=: precision quantises"):
        bilrp.explain(model, A, B, precision="int8")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"truncate_dim": 0}, r"truncate_dim=0: give a positive whole number"),
        ({"truncate_dim": True}, r"truncate_dim=True: give a positive whole number"),
        ({"normalize_embeddings": "yes"}, r"normalize_embeddings='yes': give True or False"),
        ({"prompt": 3}, r"prompt=3 for text A: give the prompt text as a str"),
        ({"prompt": ("a", "b", "c")}, r"prompt=\('a', 'b', 'c'\): give one value for both texts, or a pair"),
        ({"prompt_name": "passage"}, r"unknown prompt_name 'passage': the model's prompts are none"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ValueError, match=message) as refused:
        bilrp.explain(tiny("dot"), A, B, **options)
    assert "\n" not in str(refused.value)


def test_a_cut_beyond_the_models_own_truncate_dim_is_refused():
    with pytest.raises(ValueError, match=r"truncate_dim=20 is more than the model's own truncate_dim 12"):
        bilrp.explain(tiny("dot", [TruncateDim(12)]), A, B, truncate_dim=20)


@pytest.mark.parametrize(
    ("call", "function"),
    [
        (lambda m: bilrp.explain(m, A, B, foo=1), "explain"),
        (lambda m: bilrp.explain_batch(m, [(A, B)], foo=1), "explain_batch"),
        (lambda m: bilrp.explain_ranking(m, A, documents=[B], foo=1), "explain_ranking"),
        (lambda m: bilrp.explain_difference(m, A, B, A, foo=1), "explain_difference"),
    ],
)
def test_an_unknown_keyword_is_one_type_error_from_the_function_called(call, function):
    with pytest.raises(TypeError) as refused:
        call(tiny("dot"))
    message = str(refused.value)
    assert message.startswith(f"{function}() got an unexpected keyword argument 'foo'") and "\n" not in message
    assert all(name in message for name in ("prompt", "prompt_name", "truncate_dim", "normalize_embeddings"))
    assert "BiLRP.__init__" not in message
    with pytest.raises(TypeError, match=r"'n_steps' for method 'bilrp'; valid: .*composite.*mode"):
        bilrp.explain(tiny("dot"), A, B, n_steps=8)


# ---------------------------------------------------------------------------------------------- command line
def run_main(capsys, *args):
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def printed_score(out: str) -> float:
    return float(re.search(r"score\s+([-\d.]+) = sum of R", out).group(1))


def test_the_command_line_takes_the_encode_options(capsys, model_dir):
    options = {"truncate_dim": 16, "similarity_fn_name": "dot", "prompt": ("query: ", "passage: ")}
    expected = bilrp.explain(SimilarityModel.from_pretrained(model_dir), A, B, **options).score
    flags = ["--truncate-dim", 16, "--similarity-fn-name", "dot", "--prompt", "query: ", "--prompt", "passage: "]
    code, out, err = run_main(capsys, "explain", A, B, "--model", model_dir, *flags)
    assert code == 0, err
    assert printed_score(out) == pytest.approx(expected, abs=1e-4)
    code, out, err = run_main(capsys, "explain", A, B, "--model", model_dir, "--similarity-fn-name", "euclidean")
    assert code == 2 and len(err.splitlines()) == 1 and "is a distance, not a bilinear similarity" in err
    code, out, err = run_main(capsys, "explain", A, B, "--model", model_dir, *["--prompt", "x"] * 3)
    assert code == 2 and len(err.splitlines()) == 1 and "--prompt given 3 times" in err


def test_bilrp_rank_takes_the_encode_options(capsys, model_dir, tmp_path):
    documents = [B, "two dogs run in a park", "a guitar on a stage"]
    (tmp_path / "docs.txt").write_text("\n".join(documents) + "\n", encoding="utf-8")
    assert run_main(capsys, "index", tmp_path / "docs.txt", "--out", tmp_path / "idx", "--model", model_dir)[0] == 0
    code, out, err = run_main(
        capsys, "rank", A, "--index", tmp_path / "idx", "--truncate-dim", 8, "--out", tmp_path / "r.json"
    )
    assert code == 0, err
    model = SimilarityModel.from_pretrained(model_dir)
    expected = bilrp.explain_ranking(model, A, documents=documents, truncate_dim=8)
    written = {record["text_b"]: record["score"] for record in json.loads((tmp_path / "r.json").read_text())}
    assert written == {e.text_b: pytest.approx(e.score, abs=1e-5) for e in expected}


# ---------------------------------------------------------------------------------------------- the real MiniLM
@pytest.fixture(scope="module")
def st():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model_path(DEFAULT_MODEL), device="cpu")


def st_similarity(model, text_a=CAT, text_b=DOG, options_a=None, options_b=None, **options):
    """What a sentence-transformers user computes: ``st.similarity`` of the two ``encode`` outputs."""
    a = model.encode([text_a], convert_to_tensor=True, **(options_a or options))
    b = model.encode([text_b], convert_to_tensor=True, **(options_b or options))
    return float(model.similarity(a, b)[0, 0])


def assert_explains(explanation, expected):
    assert explanation.score == pytest.approx(expected, abs=1e-5)
    assert float(explanation.relevance.double().sum()) + explanation.bias == pytest.approx(expected, abs=1e-5)


@pytest.mark.slow
def test_prompt_and_truncate_dim_of_the_real_minilm_are_explained_as_scored(st):
    plain = bilrp.explain(st, CAT, DOG).score
    for options in ({"prompt": "query: "}, {"truncate_dim": 64}, {"prompt": "query: ", "truncate_dim": 64}):
        expected = st_similarity(st, **options)
        assert abs(plain - expected) > 0.05, options  # what bilrp explained before: the plain score
        assert_explains(bilrp.explain(st, CAT, DOG, **options), expected)
    per_side = st_similarity(st, options_a={"prompt": "query: "}, options_b={"prompt": "passage: "})
    assert_explains(bilrp.explain(st, CAT, DOG, prompt=("query: ", "passage: ")), per_side)
    query_only = st_similarity(st, options_a={"prompt_name": "query"}, options_b={"prompt": "passage: "})
    assert_explains(bilrp.explain(st, CAT, DOG, prompt_name=("query", None), prompt=(None, "passage: ")), query_only)


@pytest.mark.slow
def test_normalize_embeddings_of_a_dot_model_is_explained_as_the_cosine(st):
    from sentence_transformers import SentenceTransformer

    raw = SentenceTransformer(modules=[st[0], st[1]], device="cpu", similarity_fn_name="dot")
    plain = bilrp.explain(raw, CAT, DOG).score
    assert plain == pytest.approx(st_similarity(raw), abs=1e-4) and plain > 5  # a dot product of raw embeddings
    expected = st_similarity(raw, normalize_embeddings=True)
    assert_explains(bilrp.explain(raw, CAT, DOG, normalize_embeddings=True), expected)
    one_side = st_similarity(raw, options_a={"normalize_embeddings": True}, options_b={"normalize_embeddings": False})
    assert_explains(bilrp.explain(raw, CAT, DOG, normalize_embeddings=(True, False)), one_side)
    cut = st_similarity(raw, normalize_embeddings=True, truncate_dim=64)
    assert_explains(bilrp.explain(raw, CAT, DOG, normalize_embeddings=True, truncate_dim=64), cut)


@pytest.mark.slow
def test_a_normalize_then_dot_pipeline_cut_by_encode_is_explained_as_scored(st, tmp_path):
    from sentence_transformers import SentenceTransformer

    dot = SentenceTransformer(modules=[st[0], st[1], st[2]], device="cpu", similarity_fn_name="dot")
    expected = st_similarity(dot, truncate_dim=64)  # the dot of the cut unit vectors, not the cut's cosine
    assert abs(expected - st_similarity(st, truncate_dim=64)) > 0.05
    assert_explains(bilrp.explain(dot, CAT, DOG, truncate_dim=64), expected)
    dot.save(str(tmp_path))
    assert_explains(bilrp.explain(SimilarityModel.from_pretrained(tmp_path), CAT, DOG, truncate_dim=64), expected)
    assert_explains(bilrp.explain(st, CAT, DOG, similarity_fn_name="dot", truncate_dim=64), expected)


@pytest.mark.slow
def test_the_command_line_explains_what_sentence_transformers_scores(capsys, st):
    expected = st_similarity(st, truncate_dim=64, prompt="query: ")
    code, out, err = run_main(capsys, "explain", CAT, DOG, "--truncate-dim", 64, "--prompt", "query: ")
    assert code == 0, err
    assert printed_score(out) == pytest.approx(expected, abs=1e-4)
