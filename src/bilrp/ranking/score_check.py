"""Checking bilrp's scores against the scores a retriever gave, and saying what probably differs when they disagree.

bilrp explains the score it computes; a retriever (LangChain, LlamaIndex, FAISS, a vector database) ranked by its
own. When the user gives the retriever's scores, they must agree to float tolerance, or the explanation is of
another number: :func:`check_scores` refuses that with one line. It tries the usual culprits on the embeddings it
has (a distance instead of a similarity, the other bilinear similarity, a Matryoshka cut) and names the one that
reproduces the retriever's numbers; otherwise it lists what usually differs (metadata in the embedded text, a
prompt, truncation, normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["SCORE_TOLERANCE", "ScoreMismatchError", "check_scores", "score_forms", "unnormalized_forms"]

SCORE_TOLERANCE = 1e-4
"""Default agreement asked of bilrp's and the retriever's scores: ``|ours - theirs| <= tol * max(1, |theirs|)``."""
MATRYOSHKA_DIMS = (32, 64, 128, 256, 512, 768, 1024)
"""Cuts tried when the retriever's scores disagree (the usual Matryoshka sizes)."""
_DISTANCE = (
    "a distance is not a bilinear similarity, so BiLRP cannot explain it exactly: rank by a similarity "
    "(inner product or cosine) and give those scores"
)
_GENERIC = (
    "the retriever embedded or scored something else: the text with its metadata (LlamaIndex embeds "
    "node.get_content(metadata_mode=EMBED): pass the nodes themselves), a prompt or instruction (prompt=, "
    "prompt_name=), truncate_dim=, normalize_embeddings=, another similarity_fn_name=, another model, or a distance "
    "rather than a similarity"
)


class ScoreMismatchError(ValueError):
    """bilrp's score of a document differs from the score the user's retriever gave it."""


def score_forms(query: torch.Tensor, documents: torch.Tensor) -> dict[str, tuple[torch.Tensor, str]]:
    """What a retriever may have computed from these embeddings (``(dim,)`` and ``(n, dim)``), with the fix.

    Returns ``{description: (scores (n,), what to do)}``.
    """
    query, documents = query.double(), documents.double()
    dot = documents @ query
    norms = (documents.norm(dim=-1) * query.norm()).clamp_min(1e-12)
    cosine = dot / norms
    l2 = (documents - query).norm(dim=-1)
    forms = {
        "cosine similarities": (cosine, "pass similarity_fn_name='cosine' (or normalize_embeddings=True)"),
        "dot products": (dot, "pass similarity_fn_name='dot'"),
        "squared L2 distances (as FAISS IndexFlatL2 returns)": (l2**2, _DISTANCE),
        "L2 distances": (l2, _DISTANCE),
        "negative L2 distances (sentence-transformers' euclidean)": (-l2, _DISTANCE),
        "negative L1 distances (sentence-transformers' manhattan)": (-(documents - query).abs().sum(-1), _DISTANCE),
        "cosine distances (1 - cosine)": (1 - cosine, _DISTANCE),
        "relevance scores (1 + cosine) / 2": (
            (1 + cosine) / 2,
            "an affine map of the cosine: give 2 * score - 1 as expected_scores (bilrp explains the cosine)",
        ),
        "relevance scores 1 - L2 / sqrt(2)": (1 - l2 / 2**0.5, _DISTANCE),
    }
    for k in (k for k in MATRYOSHKA_DIMS if k < query.shape[-1]):
        cut_dot = documents[:, :k] @ query[:k]
        cut_norms = (documents[:, :k].norm(dim=-1) * query[:k].norm()).clamp_min(1e-12)
        forms[f"cosine similarities of the first {k} dimensions"] = (
            cut_dot / cut_norms,
            f"pass truncate_dim={k} (with similarity_fn_name='cosine')",
        )
        forms[f"dot products of the first {k} dimensions"] = (
            cut_dot,
            f"pass truncate_dim={k} (with similarity_fn_name='dot')",
        )
    return forms


def unnormalized_forms(query: torch.Tensor, documents: torch.Tensor) -> dict[str, tuple[torch.Tensor, str]]:
    """What a retriever computes from the embeddings *before* a model's final ``Normalize`` (which bilrp folds into
    the cosine, and which ``SimilarityModel.encode`` leaves out): their inner products and squared L2 distances.
    """
    query, documents = query.double(), documents.double()
    where = "of the embeddings before the model's final Normalize (SimilarityModel.encode gives those)"
    advice = "normalise them as the model does (e.g. faiss.normalize_L2) before indexing, then rank by inner product"
    return {
        f"inner products {where}": (documents @ query, advice),
        f"squared L2 distances {where}": (((documents - query) ** 2).sum(-1), advice),
    }


def check_scores(
    ours: Sequence[float],
    expected: Sequence[float | None],
    labels: Sequence[str],
    embeddings: tuple[torch.Tensor, torch.Tensor] | None,
    tolerance: float = SCORE_TOLERANCE,
    unnormalized: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> None:
    """Raise :class:`ScoreMismatchError` (one line) unless every given expected score matches bilrp's.

    Parameters
    ----------
    ours
        bilrp's scores, in result order.
    expected
        The retriever's scores in the same order (``None``: not given for that document).
    labels
        How to name each document in the message.
    embeddings
        The query's and the documents' embeddings as the score compares them (``(dim,)``, ``(n, dim)``), to name
        what the retriever computed instead; ``None`` to skip that.
    tolerance
        ``|ours - theirs| <= tolerance * max(1, |theirs|)``.
    unnormalized
        For a model whose final ``Normalize`` bilrp folded: the embeddings before it (:func:`unnormalized_forms`).

    """
    pairs = [(i, float(o), float(e)) for i, (o, e) in enumerate(zip(ours, expected, strict=True)) if e is not None]
    bad = [(i, o, e) for i, o, e in pairs if not _close(o, e, tolerance)]
    if not bad:
        return
    position, mine, theirs = max(bad, key=lambda item: abs(item[1] - item[2]))
    head = (
        f"{labels[position]}: bilrp's score is {mine:.6g} but the retriever gave {theirs:.6g} "
        f"({len(bad)} of {len(pairs)} scores differ beyond {tolerance:g}), so the explanation would be of another "
        "number"
    )
    forms: dict[str, tuple[torch.Tensor, str]] = {}
    positions = [i for i, _, _ in pairs]
    if embeddings is not None:
        query, documents = embeddings
        found = score_forms(query, documents[positions])
        forms |= {f"{name} of these embeddings": form for name, form in found.items()}
    if unnormalized is not None:
        forms |= unnormalized_forms(unnormalized[0], unnormalized[1][positions])
    raise ScoreMismatchError(f"{head}: {_likely_cause(pairs, forms, tolerance)}")


def _likely_cause(pairs: list[tuple[int, float, float]], forms: dict[str, Any], tolerance: float) -> str:
    """The form that reproduces every given score, and its fix; else the usual causes."""
    for description, (values, advice) in forms.items():
        if all(_close(float(v), e, tolerance) for v, (_, _, e) in zip(values, pairs, strict=True)):
            return f"the retriever's scores are the {description}: {advice}"
    return _GENERIC


def _close(ours: float, theirs: float, tolerance: float) -> bool:
    return abs(ours - theirs) <= tolerance * max(1.0, abs(theirs))
