"""A retriever's own documents and scores at bilrp's door (issue 21, case 4).

Real LangChain ``InMemoryVectorStore`` and LlamaIndex ``VectorStoreIndex`` with an embedding class written here
(backed by bilrp's tiny model, or by the real MiniLM through sentence-transformers): ``explain_ranking`` takes their
results as they are, explains the text they embedded (LlamaIndex's metadata included) and agrees with the
retriever's own score, or refuses with one line saying what probably differs. Also Haystack-like documents and
dicts, ``ids=`` with ``documents=`` without an index, and the error for a list given as the index.
"""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import bilrp
from bilrp import DEFAULT_MODEL
from bilrp.models import resolve_model_path
from bilrp.ranking.documents import as_documents
from bilrp.ranking.score_check import ScoreMismatchError
from tiny_models import tiny_similarity_model

QUERY = "someone plays music on a guitar"
TEXTS = {
    "guitar": ("a man plays the guitar on a stage", {"title": "Concert review", "year": "2021"}),
    "park": ("two dogs run in a green park", {"title": "Pets", "year": "2019"}),
    "market": ("the stock market fell sharply today", {"title": "Finance news", "year": "2020"}),
    "violin": ("a violinist performs for a small crowd", {"title": "Street music", "year": "2022"}),
}


@pytest.fixture(scope="module")
def model():
    return tiny_similarity_model("bert", "mean", "cosine")


class Encoder:
    """``encode(texts) -> (n, dim)`` of a bilrp model or a SentenceTransformer, as lists of floats."""

    def __init__(self, model):
        self.model = model

    def __call__(self, texts: list[str]) -> list[list[float]]:
        if isinstance(self.model, bilrp.SimilarityModel):
            return self.model.encode(list(texts)).tolist()
        return self.model.encode(list(texts), convert_to_numpy=True).astype("float64").tolist()


def langchain_store(model):
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import InMemoryVectorStore

    class ModelEmbeddings(Embeddings):
        def __init__(self, encode):
            self.encode = encode

        def embed_documents(self, texts):
            return self.encode(texts)

        def embed_query(self, text):
            return self.encode([text])[0]

    store = InMemoryVectorStore(embedding=ModelEmbeddings(Encoder(model)))
    store.add_documents([Document(page_content=t, metadata=m, id=k) for k, (t, m) in TEXTS.items()])
    return store


def llama_index(model):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.schema import TextNode
    from pydantic import PrivateAttr

    class ModelEmbedding(BaseEmbedding):
        _encode: Any = PrivateAttr()

        def __init__(self, encode, **kwargs):
            super().__init__(**kwargs)
            self._encode = encode

        def _get_query_embedding(self, query):
            return self._encode([query])[0]

        def _get_text_embedding(self, text):
            return self._encode([text])[0]

        async def _aget_query_embedding(self, query):
            return self._get_query_embedding(query)

    nodes = [TextNode(text=t, metadata=m, id_=k) for k, (t, m) in TEXTS.items()]
    return VectorStoreIndex(nodes, embed_model=ModelEmbedding(Encoder(model)))


# ---------------------------------------------------------------------------------------------- LangChain
def test_langchain_results_are_explained_with_the_stores_own_scores(model):
    results = langchain_store(model).similarity_search_with_score(QUERY, k=3)
    ranking = bilrp.explain_ranking(model, QUERY, documents=results)
    assert ranking.ids == [document.id for document, _ in results]
    assert [e.text_b for e in ranking] == [document.page_content for document, _ in results]  # no metadata
    assert ranking.scores == pytest.approx([score for _, score in results], abs=1e-9)
    for explanation in ranking:
        assert float(explanation.relevance.double().sum()) + explanation.bias == pytest.approx(explanation.score)
    plain = bilrp.explain_ranking(model, QUERY, documents=[document for document, _ in results])  # no scores given
    assert plain.scores == ranking.scores
    difference = bilrp.explain_difference(model, QUERY, results[0], results[1])
    assert difference.score == pytest.approx(results[0][1] - results[1][1], abs=1e-9)


def test_the_wrong_similarity_is_refused_naming_it(model):
    results = langchain_store(model).similarity_search_with_score(QUERY, k=3)
    with pytest.raises(ScoreMismatchError, match=r"are the cosine similarities of these embeddings: pass") as wrong:
        bilrp.explain_ranking(model, QUERY, documents=results, similarity_fn_name="dot")
    assert "\n" not in str(wrong.value)


# ---------------------------------------------------------------------------------------------- LlamaIndex
def test_llama_index_nodes_are_explained_as_embedded_metadata_included(model):
    results = llama_index(model).as_retriever(similarity_top_k=3).retrieve(QUERY)
    ranking = bilrp.explain_ranking(model, QUERY, documents=results)
    assert ranking.scores == pytest.approx([result.score for result in results], abs=1e-9)
    assert ranking.ids == [result.node.node_id for result in results]
    assert all(e.text_b.startswith("title: ") and "year: " in e.text_b for e in ranking)  # what LlamaIndex embedded
    assert ranking[0].tokens_b[1:3] == ["title", ":"]  # the metadata tokens get their relevance


def test_node_get_content_is_not_what_llama_index_scored_and_is_refused(model):
    """The silent case: node.get_content() leaves the embedded metadata out, so bilrp explained another score."""
    results = llama_index(model).as_retriever(similarity_top_k=3).retrieve(QUERY)
    texts, scores = [result.node.get_content() for result in results], [result.score for result in results]
    unchecked = bilrp.explain_ranking(model, QUERY, documents=texts)  # what bilrp explained before: another number
    assert max(abs(a - b) for a, b in zip(unchecked.scores, scores, strict=True)) > 1e-3
    with pytest.raises(ScoreMismatchError, match=r"bilrp's score is .* but the retriever gave .*metadata") as refused:
        bilrp.explain_ranking(model, QUERY, documents=texts, expected_scores=scores)
    assert "\n" not in str(refused.value)
    with pytest.raises(ScoreMismatchError, match="metadata"):
        bilrp.explain_difference(model, QUERY, texts[0], texts[1], expected_scores=scores[:2])


# ---------------------------------------------------------------------------------------------- other shapes
@dataclass
class HaystackDocument:
    """The fields of ``haystack.Document`` that bilrp reads (haystack is not installed)."""

    content: str
    id: str
    meta: dict
    score: float | None = None


def test_haystack_documents_dicts_and_ids_without_an_index(model):
    texts = [text for text, _ in TEXTS.values()]
    expected = bilrp.explain_ranking(model, QUERY, documents=texts).scores
    haystack = [HaystackDocument(t, f"h{i}", {}, s) for i, (t, s) in enumerate(zip(texts, expected, strict=True))]
    ranking = bilrp.explain_ranking(model, QUERY, documents=haystack)
    assert ranking.ids == ["h0", "h1", "h2", "h3"] and ranking.scores == expected
    dicts = [{"text": t, "id": k} for k, t in zip(TEXTS, texts, strict=True)]
    assert bilrp.explain_ranking(model, QUERY, documents=dicts).ids == list(TEXTS)
    labelled = bilrp.explain_ranking(model, QUERY, documents=texts, ids=[10, 11, 12, 13])
    assert labelled.ids == ["10", "11", "12", "13"] and labelled.order == "given"
    assert [d.kind for d in as_documents([texts[0], (texts[0], 0.5), dicts[0], haystack[0]])] == [
        "text",
        "text",
        "dict",
        "Haystack Document",
    ]


def test_faiss_l2_distances_are_refused_as_distances(model):
    """FAISS IndexFlatL2 returns squared L2 distances: not a similarity, so not explainable by BiLRP."""
    texts = [text for text, _ in TEXTS.values()]
    query, documents = model.encode([QUERY]).numpy(), model.encode(texts).numpy()
    distances = ((documents - query) ** 2).sum(-1)  # what faiss.IndexFlatL2.search gives
    with pytest.raises(ScoreMismatchError, match=r"squared L2 distances \(as FAISS IndexFlatL2 returns\).*not a"):
        bilrp.explain_ranking(model, QUERY, documents=texts, expected_scores=distances.tolist())
    inner = (documents @ query.T)[:, 0] / np.linalg.norm(documents, axis=1) / np.linalg.norm(query)
    assert bilrp.explain_ranking(model, QUERY, documents=texts, expected_scores=inner.tolist()).scores == (
        pytest.approx(inner.tolist(), abs=1e-9)
    )


def test_ranking_an_index_with_the_retrievers_ids_checks_its_scores(model, tmp_path):
    texts = [text for text, _ in TEXTS.values()]
    index = bilrp.DocumentIndex.build(model, texts, tmp_path / "idx", ids=list(TEXTS), progress=False)
    ranking = bilrp.explain_ranking(model, QUERY, index, ids=["violin", "guitar"])
    assert bilrp.explain_ranking(model, QUERY, index, ids=["violin", "guitar"], expected_scores=ranking.scores)
    with pytest.raises(ScoreMismatchError, match=r"document 1 \(id 'guitar'\)"):
        bilrp.explain_ranking(model, QUERY, index, ids=["violin", "guitar"], expected_scores=[ranking.scores[0], 0.1])
    with pytest.raises(ValueError, match=r"expected_scores= are a retriever's scores of its results: give them"):
        bilrp.explain_ranking(model, QUERY, index, expected_scores=[0.5])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m: bilrp.explain_ranking(m, QUERY, ["a doc"]), TypeError, r"index= \(the third argument\) is a list"),
        (lambda m: bilrp.explain_ranking(m, QUERY, documents="a doc"), TypeError, r"documents= is a str: give a list"),
        (lambda m: bilrp.explain_ranking(m, QUERY, documents=[3]), TypeError, r"document 0 is a builtins.int"),
        (lambda m: bilrp.explain_ranking(m, QUERY, documents=[{"body": "x"}]), ValueError, r"a dict without 'text'"),
        (lambda m: bilrp.explain_ranking(m, QUERY, documents=[{"text": " "}]), ValueError, r"has the text ' '"),
        (
            lambda m: bilrp.explain_ranking(m, QUERY, documents=["a", "b"], expected_scores=[0.1]),
            ValueError,
            r"got 1 expected_scores for 2 documents",
        ),
        (
            lambda m: bilrp.explain_ranking(m, QUERY, documents=["a"], expected_scores=["high"]),
            ValueError,
            r"expected_scores\[0\] is 'high'",
        ),
    ],
)
def test_bad_documents_are_one_line_errors(model, call, error, message):
    with pytest.raises(error, match=message) as refused:
        call(model)
    assert "\n" not in str(refused.value)


# ---------------------------------------------------------------------------------------------- the real MiniLM
@pytest.fixture(scope="module")
def st():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model_path(DEFAULT_MODEL), device="cpu")


@pytest.mark.slow
def test_the_real_minilm_behind_llama_index_and_langchain(st):
    results = llama_index(st).as_retriever(similarity_top_k=4).retrieve(QUERY)
    ranking = bilrp.explain_ranking(st, QUERY, documents=results)
    assert ranking.scores == pytest.approx([result.score for result in results], abs=1e-5)
    before = bilrp.explain_ranking(st, QUERY, documents=[result.node.get_content() for result in results])
    assert max(abs(a - b.score) for a, b in zip(before.scores, results, strict=True)) > 0.02  # the silent gap
    found = langchain_store(st).similarity_search_with_score(QUERY, k=4)
    assert bilrp.explain_ranking(st, QUERY, documents=found).scores == pytest.approx([s for _, s in found], abs=1e-5)


@pytest.mark.slow
def test_a_truncated_retriever_is_named_and_then_explained(st):
    texts = [text for text, _ in TEXTS.values()]
    query, documents = (torch.as_tensor(st.encode(t, truncate_dim=64)) for t in ([QUERY], texts))
    scores = st.similarity(query, documents)[0].tolist()
    with pytest.raises(ScoreMismatchError, match=r"first 64 dimensions of these embeddings: pass truncate_dim=64"):
        bilrp.explain_ranking(st, QUERY, documents=texts, expected_scores=scores)
    ranking = bilrp.explain_ranking(st, QUERY, documents=texts, expected_scores=scores, truncate_dim=64)
    assert ranking.scores == pytest.approx(scores, abs=1e-5)


@pytest.mark.slow
def test_faiss_over_the_embeddings_before_the_normalize_is_named(st):
    """An inner-product index over SimilarityModel.encode (before MiniLM's folded Normalize) ranks by another number."""
    model = bilrp.models.as_similarity_model(st)
    texts = [text for text, _ in TEXTS.values()]
    scores = (model.encode(texts) @ model.encode([QUERY])[0]).tolist()
    with pytest.raises(ScoreMismatchError, match=r"inner products of the embeddings before the model's final Normal"):
        bilrp.explain_ranking(st, QUERY, documents=texts, expected_scores=scores)


@pytest.mark.slow
def test_the_retriever_example_runs():
    example = Path(__file__).resolve().parents[1] / "examples" / "retriever_scores.py"
    done = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LangChain: bilrp explains the store's own scores" in done.stdout
    assert "LlamaIndex: node.get_content() is refused:" in done.stdout and "metadata" in done.stdout
