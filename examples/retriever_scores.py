"""Explain your retriever's own results, as they are: LangChain and LlamaIndex, no adapter.

Both stacks embed with the real all-MiniLM-L6-v2 through sentence-transformers (offline). ``bilrp.explain_ranking``
takes their results as they come back (LangChain ``(Document, score)`` pairs, LlamaIndex ``NodeWithScore``),
explains the text each one *embedded* (LlamaIndex puts the node's metadata into it), and checks that every
explanation adds up to the score the retriever ranked by. Given texts that are not what the retriever embedded
(``node.get_content()``), it refuses with one line saying what probably differs, instead of explaining another
number.

Run: python examples/retriever_scores.py   (needs langchain-core and llama-index-core)
"""

import sys
from typing import Any

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import InMemoryVectorStore
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.schema import TextNode
    from pydantic import PrivateAttr
except ImportError:
    print("skipped: needs langchain-core and llama-index-core (pip install langchain-core llama-index-core)")
    sys.exit(0)

from sentence_transformers import SentenceTransformer

import bilrp
from bilrp.models import resolve_model_path
from bilrp.ranking.score_check import ScoreMismatchError

DOCUMENTS = {
    "guitar": ("A man is playing a guitar on stage.", {"section": "Concerts"}),
    "onion": ("A woman is slicing an onion in the kitchen.", {"section": "Cooking"}),
    "band": ("A band performs a song in front of a large crowd.", {"section": "Concerts"}),
    "dogs": ("Two dogs are running through a field.", {"section": "Pets"}),
}
QUERY = "Someone plays the guitar."

st = SentenceTransformer(resolve_model_path(bilrp.DEFAULT_MODEL), device="cpu")


def encode(texts: list[str]) -> list[list[float]]:
    return st.encode(list(texts)).tolist()


class MiniLM(Embeddings):  # LangChain's embedding interface
    def embed_documents(self, texts):
        return encode(texts)

    def embed_query(self, text):
        return encode([text])[0]


class MiniLMEmbedding(BaseEmbedding):  # LlamaIndex's embedding interface
    _unused: Any = PrivateAttr(default=None)

    def _get_query_embedding(self, query):
        return encode([query])[0]

    def _get_text_embedding(self, text):
        return encode([text])[0]

    async def _aget_query_embedding(self, query):
        return self._get_query_embedding(query)


def show(ranking, theirs: list[float]) -> None:
    for rank, (explanation, score) in enumerate(zip(ranking, theirs, strict=True), start=1):
        total = float(explanation.relevance.double().sum())
        best = explanation.top(1)["positive"][0]
        print(
            f"  {rank}. {explanation.document_id:<7} retriever {score:.4f}  bilrp {explanation.score:.4f} = "
            f"sum R {total:.4f} + bias {explanation.bias:.4f}   strongest pair {best.token_a}-{best.token_b}"
        )


# LangChain: the store's (Document, score) pairs, as they are
store = InMemoryVectorStore(embedding=MiniLM())
store.add_documents([Document(page_content=text, metadata=meta, id=key) for key, (text, meta) in DOCUMENTS.items()])
found = store.similarity_search_with_score(QUERY, k=3)
print("LangChain: bilrp explains the store's own scores")
show(bilrp.explain_ranking(st, QUERY, documents=found), [score for _, score in found])

# LlamaIndex: NodeWithScore results; the embedded text holds the metadata ("section: Concerts\n\n...")
nodes = [TextNode(text=text, metadata=meta, id_=key) for key, (text, meta) in DOCUMENTS.items()]
retrieved = VectorStoreIndex(nodes, embed_model=MiniLMEmbedding()).as_retriever(similarity_top_k=3).retrieve(QUERY)
print("LlamaIndex: explained as embedded, metadata included")
show(bilrp.explain_ranking(st, QUERY, documents=retrieved), [result.score for result in retrieved])

try:  # the text LlamaIndex shows is not the text it embedded: refused, not explained as another number
    shown = [result.node.get_content() for result in retrieved]
    bilrp.explain_ranking(st, QUERY, documents=shown, expected_scores=[result.score for result in retrieved])
except ScoreMismatchError as error:
    print(f"LlamaIndex: node.get_content() is refused: {error}")
