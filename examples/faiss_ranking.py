"""Explain your own retriever's ranking: FAISS finds the documents, bilrp explains why they came first.

FAISS ranks by the inner product of unit-length embeddings (the model's cosine); bilrp explains exactly those
results from a DocumentIndex: each explanation's relevance plus its bias is the score FAISS ranked by.

Run: python examples/faiss_ranking.py   (needs faiss-cpu: pip install -e ".[search]")
"""

import sys
import tempfile

try:
    import faiss
except ImportError:
    print("skipped: faiss is not installed (pip install faiss-cpu, or pip install -e '.[search]')")
    sys.exit(0)

import bilrp

DOCUMENTS = [
    "A man is playing a guitar on stage.",
    "A woman is slicing an onion in the kitchen.",
    "Two dogs are running through a field.",
    "A band performs a song in front of a large crowd.",
    "Someone is cutting vegetables with a sharp knife.",
    "A child is riding a bicycle down the street.",
    "A musician tunes his acoustic guitar.",
    "The cat is sleeping on the warm sofa.",
    "A chef prepares a meal for the guests.",
    "People are dancing to loud music at a party.",
    "A boy kicks a football across the park.",
    "A violinist plays a solo in the concert hall.",
]
QUERY = "Someone plays the guitar."
TOP = 3

model = bilrp.SimilarityModel.from_pretrained()  # sentence-transformers/all-MiniLM-L6-v2, offline

# your retriever: FAISS over unit-length embeddings, so the inner product is the model's cosine
embeddings = model.encode(DOCUMENTS).numpy().astype("float32")
faiss.normalize_L2(embeddings)
search = faiss.IndexFlatIP(embeddings.shape[1])
search.add(embeddings)
query = model.encode([QUERY]).numpy().astype("float32")
faiss.normalize_L2(query)
faiss_scores, positions = search.search(query, TOP)

with tempfile.TemporaryDirectory() as folder:
    # every document's factor, once (ids "0", "1", ...: the positions FAISS returns)
    index = bilrp.DocumentIndex.build(model, DOCUMENTS, f"{folder}/index", progress=False)
    ranking = bilrp.explain_ranking(model, QUERY, index, ids=[str(p) for p in positions[0]])
    print(f"query: {QUERY}")
    for rank, (faiss_score, explanation) in enumerate(zip(faiss_scores[0], ranking, strict=True), start=1):
        best = explanation.top(1)["positive"][0]
        total = float(explanation.relevance.sum())
        print(
            f"{rank}. id {explanation.document_id:>2}  faiss {faiss_score:.4f}  bilrp {explanation.score:.4f} = "
            f"sum R {total:.4f} + bias {explanation.bias:.4f}  strongest pair {best.token_a!r}-{best.token_b!r}  "
            f"{explanation.text_b}"
        )
    gap = max(abs(float(f) - e.score) for f, e in zip(faiss_scores[0], ranking, strict=True))
    print(f"largest |faiss score - bilrp score|: {gap:.1e}")

    # why the first and not the second?
    difference = bilrp.explain_difference(model, QUERY, ranking.ids[0], ranking.ids[1], index=index)
    i, token, value = difference.top(1)[0]
    print(
        f"why {ranking.ids[0]} and not {ranking.ids[1]}: score difference {difference.score:+.4f} = query tokens "
        f"{float(difference.query_relevance.sum()):+.4f} + bias {difference.bias:+.4f}; "
        f"the query token that decides most: {token!r} ({value:+.4f})"
    )
