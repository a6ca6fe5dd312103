"""``explain`` and ``explain_batch``: from texts to :class:`~bilrp.explanation.Explanation` objects."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tqdm.auto import tqdm

from ._validation import optional_positive_int, positive_int
from .attr import (
    BiLRP,
    EmbeddingInteraction,
    HessianXProduct,
    IntegratedJacobians,
    InteractionAttribution,
    PairAttribution,
    RandomInteraction,
)
from .explaining import explaining
from .explanation import Explanation
from .granular import GranularityLike, attach_groups, group_relevance, resolve_granularity
from .models import SimilarityModel, as_similarity_model
from .models.encode_options import REFUSED_OPTIONS, EncodeOptions
from .text_encoding import (
    TextFactor,
    encode_texts,
    explanation_from_factors,
    fill_factors,
    make_explanation,
    text_factors,
)

__all__ = [
    "explain",
    "explain_batch",
    "METHODS",
    "make_attribution",
    "PromptNames",
    "PromptTexts",
    "check_keywords",
    "keywords_listed",
    "TextFactor",
    "text_factors",
    "explanation_from_factors",
]

METHODS: dict[str, type[PairAttribution]] = {
    "bilrp": BiLRP,
    "hxp": HessianXProduct,
    "embedding": EmbeddingInteraction,
    "random": RandomInteraction,
    "ij": IntegratedJacobians,
}

PromptNames = str | None | tuple[str | None, str | None]
"""A prompt name for both texts of a pair, or a pair ``(for text A, for text B)``; ``None``: the default."""
F = TypeVar("F", bound=Callable[..., Any])
PromptTexts = str | None | tuple[str | None, str | None]
"""A literal prompt text for both texts of a pair, or a pair ``(for text A, for text B)``; ``None``: none given."""
Flags = bool | tuple[bool, bool]
"""A flag for both texts of a pair, or a pair ``(for text A, for text B)``."""


def check_keywords(function: str, given: Any, valid: Any, context: str = "") -> None:
    """Raise one ``TypeError`` from ``function`` naming the first keyword of ``given`` not in ``valid``.

    ``explain() got an unexpected keyword argument 'foo'; valid: ...`` lists the valid names; an ``encode()``
    option bilrp refuses (``precision=``) says why instead.
    """
    valid = sorted(set(valid))
    for name in given:
        if name in valid:
            continue
        if name in REFUSED_OPTIONS:
            raise TypeError(f"{function}() does not take {name}=: {name} {REFUSED_OPTIONS[name]}")
        raise TypeError(
            f"{function}() got an unexpected keyword argument {name!r}{context}; valid: {', '.join(valid)}"
        )


def keywords_listed(function: F) -> F:
    """Make an unknown keyword of ``function`` one ``TypeError`` listing its valid keywords (:func:`check_keywords`)."""
    valid = [name for name, p in inspect.signature(function).parameters.items() if p.kind is not p.VAR_KEYWORD]

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check_keywords(function.__name__, kwargs, valid)
        return function(*args, **kwargs)

    return checked  # type: ignore[return-value]


def _method_keywords(method: str) -> list[str]:
    """The keyword options the attribution class of ``method`` takes (``composite``, ``mode``, ...)."""
    parameters = inspect.signature(METHODS[method].__init__).parameters
    return [name for name in list(parameters)[2:] if parameters[name].kind is not inspect.Parameter.VAR_KEYWORD]


def _checked_options(function: str, method: str, options: dict[str, Any], own: Any) -> None:
    """Refuse keywords that neither ``function`` (its parameters ``own``) nor ``method``'s class takes."""
    if method in METHODS:  # an unknown method is refused by make_attribution, naming the methods
        check_keywords(function, options, [*own, *_method_keywords(method)], f" for method {method!r}")


def make_attribution(model: SimilarityModel, method: str = "bilrp", **options: Any) -> PairAttribution:
    """The attribution object for a method name (``bilrp``, ``hxp``, ``embedding``, ``random``, ``ij``)."""
    model = as_similarity_model(model)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    return METHODS[method](model, **options)


def explain(
    model: SimilarityModel | Any,
    text_a: str,
    text_b: str,
    method: str = "bilrp",
    truncate: bool = True,
    prompt_name: PromptNames = None,
    granularity: GranularityLike = "token",
    *,
    prompt: PromptTexts = None,
    truncate_dim: int | None = None,
    normalize_embeddings: Flags = False,
    similarity_fn_name: str | None = None,
    **options: Any,
) -> Explanation:
    """Explain the similarity of two texts with token-pair relevance.

    Parameters
    ----------
    model
        The similarity model: a :class:`~bilrp.SimilarityModel`, a ``sentence_transformers.SentenceTransformer``
        or a model name or folder (see :func:`bilrp.models.as_similarity_model`).
    text_a, text_b
        The two texts.
    method
        ``"bilrp"`` (default), ``"hxp"``, ``"embedding"``, ``"random"`` or ``"ij"``.
    truncate
        Truncate texts longer than the model maximum with a warning (``False``: raise).
    prompt_name
        The model's prompt for both texts, or ``(for text A, for text B)`` (a query and a document);
        ``None``: the model's default prompt. Prompt tokens are explained like the text's own and counted in
        ``Explanation.prompt_length_a`` / ``prompt_length_b``.
    granularity
        What the rows and columns of ``R`` are: ``"token"`` (default), ``"word"``, ``"sentence"`` (spaCy's
        sentencizer), a function ``text -> [(start, end), ...]`` of character spans, or a pair ``(for text A,
        for text B)`` of these or of span lists. Groups are computed directly (one engine tangent per group,
        exactly the sum of its tokens), so long texts cost as many passes as groups, not tokens. Special tokens
        and tokens outside every span stay on their own.
    prompt, truncate_dim, normalize_embeddings, similarity_fn_name
        sentence-transformers' ``encode()`` options, with their meanings there, so that the explained score is
        ``st.similarity(st.encode(a, **opts), st.encode(b, **opts))`` (:mod:`bilrp.models.encode_options`):
        a literal prompt text (wins over ``prompt_name``), the Matryoshka cut of the embedding, its
        normalisation, and the similarity function (``"cosine"`` or ``"dot"``; the distances ``"euclidean"``
        and ``"manhattan"`` are not bilinear and are refused). ``prompt`` and ``normalize_embeddings`` may be
        pairs ``(for text A, for text B)``. Options that change the score are explained by ``method="bilrp"``.
    **options
        Passed to the attribution class (``composite=``, ``rules=``, ``mode=``, ``n_steps=``, ``seed=``); any
        other keyword is a ``TypeError`` listing the valid ones.

    Examples
    --------
    >>> model = bilrp.SimilarityModel.from_pretrained()
    >>> explanation = bilrp.explain(model, "A man plays guitar.", "Someone plays music.")
    >>> explanation.top(3)["positive"]
    >>> bilrp.explain(model, "a query", "a passage", prompt=("query: ", "passage: "), truncate_dim=64)

    """
    _checked_options("explain", method, options, _PARAMETERS["explain"])
    encode = dict(
        prompt=prompt,
        truncate_dim=truncate_dim,
        normalize_embeddings=normalize_embeddings,
        similarity_fn_name=similarity_fn_name,
    )
    return _explain_pairs(
        model, [(text_a, text_b)], method, 32, None, False, truncate, prompt_name, granularity, encode, options
    )[0]


def explain_batch(
    model: SimilarityModel | Any,
    pairs: Sequence[tuple[str, str]],
    method: str = "bilrp",
    batch_size: int = 32,
    internal_batch_size: int | None = None,
    progress: bool = True,
    truncate: bool = True,
    prompt_name: PromptNames = None,
    granularity: GranularityLike = "token",
    *,
    prompt: PromptTexts = None,
    truncate_dim: int | None = None,
    normalize_embeddings: Flags = False,
    similarity_fn_name: str | None = None,
    **options: Any,
) -> list[Explanation]:
    """Explain many pairs: texts are padded into batches and each distinct text is computed once.

    Methods that factorise (``R = C_a C_b^T``: BiLRP, H x P, Embedding, IJ) compute the per-text factor
    once per distinct text (a per-sentence cache), then pair the factors.

    Parameters
    ----------
    model
        The similarity model, as for :func:`explain`.
    pairs
        ``(text_a, text_b)`` tuples.
    method
        As for :func:`explain`.
    batch_size
        Texts per padded batch.
    internal_batch_size
        Tangents per batched engine pass (bounds memory).
    progress
        Show a progress bar.
    truncate
        Truncate over-long texts with a warning (``False``: raise).
    prompt_name
        As for :func:`explain`, for every pair.
    granularity
        As for :func:`explain` (a pair of span lists only with one pair).
    prompt, truncate_dim, normalize_embeddings, similarity_fn_name
        sentence-transformers' ``encode()`` options, as for :func:`explain`, for every pair.
    **options
        Passed to the attribution class; any other keyword is a ``TypeError`` listing the valid ones.

    """
    _checked_options("explain_batch", method, options, _PARAMETERS["explain_batch"])
    encode = dict(
        prompt=prompt,
        truncate_dim=truncate_dim,
        normalize_embeddings=normalize_embeddings,
        similarity_fn_name=similarity_fn_name,
    )
    return _explain_pairs(
        model, pairs, method, batch_size, internal_batch_size, progress, truncate, prompt_name, granularity, encode,
        options,
    )


def _explain_pairs(
    model, pairs, method, batch_size, internal_batch_size, progress, truncate, prompt_name, granularity, encode, options
) -> list[Explanation]:
    """:func:`explain_batch` once its keywords are checked (``encode``: the ``encode()`` options)."""
    model = as_similarity_model(model)
    positive_int("batch_size", batch_size)
    optional_positive_int("internal_batch_size", internal_batch_size)
    checked = _checked_pairs(pairs)
    granularity_of = resolve_granularity(granularity, checked)
    settings = EncodeOptions.resolve(model, prompt_name=prompt_name, **encode)
    if settings.changes_score and method != "bilrp" and method in METHODS:
        raise ValueError(
            f"method {method!r} explains the model's own similarity: truncate_dim=, normalize_embeddings= and "
            "similarity_fn_name= change the score, and are explained exactly by method='bilrp'"
        )
    prompt_a, prompt_b = settings.prompt(model, 0), settings.prompt(model, 1)
    pairs = [((prompt_a, a), (prompt_b, b)) for a, b in checked]
    attribution = make_attribution(model, method, **options)
    combined = settings if settings.changes_score else None
    with explaining(model):  # eval mode (embedding dropout off), exclusive, float32: for every step
        keys = list(dict.fromkeys(key for pair in pairs for key in pair))
        encoded = encode_texts(model, keys, batch_size, truncate)
        if granularity_of is not None:
            attach_groups(encoded, granularity_of)
        if isinstance(attribution, InteractionAttribution):
            return _explain_factorised(
                model, attribution, pairs, encoded, batch_size, internal_batch_size, progress, method, combined
            )
        return _explain_pairwise(model, attribution, pairs, encoded, internal_batch_size, progress, method)


def _checked_pairs(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """``pairs`` as a list of two-text tuples, or a one-line ``ValueError`` naming the first bad entry."""
    checked = []
    for index, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(isinstance(t, str) for t in pair):
            raise ValueError(f"pair {index} is {pair!r}: every pair must be two texts (text_a, text_b)")
        checked.append((pair[0], pair[1]))
    return checked


def _explain_pairwise(model, attribution, pairs, encoded, internal_batch_size, progress, method):
    results = []
    for key_a, key_b in tqdm(pairs, desc=f"explaining ({method})", disable=not progress, unit="pair"):
        a, b = encoded[key_a], encoded[key_b]
        relevance, delta = attribution.attribute(
            (a["embeddings"][None], b["embeddings"][None]),
            additional_forward_args=(
                a["embeddings"].new_ones(1, a["length"]).long(),
                b["embeddings"].new_ones(1, b["length"]).long(),
            ),
            internal_batch_size=internal_batch_size,
            return_convergence_delta=True,
        )
        score = float(relevance.sum() + delta.sum())
        grouped = group_relevance(relevance[0], a, b)
        results.append(make_explanation(model, method, key_a[1], key_b[1], a, b, grouped, score))
    return results


def _explain_factorised(
    model, attribution, pairs, encoded, batch_size, internal_batch_size, progress, method, options=None
):
    bar = tqdm(total=len(encoded) + len(pairs), desc=f"explaining ({method})", disable=not progress, unit="item")
    fill_factors(model, attribution, encoded, batch_size, internal_batch_size, bar.update)
    results = []
    for key_a, key_b in pairs:
        a, b = encoded[key_a], encoded[key_b]
        results.append(explanation_from_factors(model, attribution, a, b, key_a[1], key_b[1], method, options))
        bar.update(1)
    bar.close()
    return results


def _keyword_names(function: Callable) -> list[str]:
    """The named parameters of ``function`` after its positional texts (what its ``TypeError`` lists)."""
    return [name for name, p in inspect.signature(function).parameters.items() if p.kind is not p.VAR_KEYWORD]


_PARAMETERS = {function.__name__: _keyword_names(function)[1:] for function in (explain, explain_batch)}
"""Per entry point, the parameter names its unknown-keyword ``TypeError`` lists with the method's options."""
