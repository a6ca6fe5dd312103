"""sentence-transformers' ``encode()`` options, as bilrp explains them: the score the user's own code computes.

``e = st.encode(text, prompt=..., truncate_dim=k, normalize_embeddings=n)`` is the pipeline's output (after its
``Normalize`` module, if any), cut to its first ``k`` dimensions, then normalised when ``n``; the score is
``similarity_fn(e_a, e_b)``. A :class:`~bilrp.SimilarityModel` represents a text by ``phi``, the embedding
*before* a final ``Normalize`` (which it folds into the cosine), so every option amounts to

    ``e = phi[:k] * s``, with one positive number ``s`` per text,

``s = 1 / |phi|`` (a folded ``Normalize``, applied before the cut), ``1 / |phi[:k]|`` (``normalize_embeddings``,
or a cosine, which divides once more) or ``1``. The score is ``(phi_a[:k] . phi_b[:k]) s_a s_b``: the cut is a
linear selection of dimensions, and ``s`` is a constant at the input, held constant exactly as BiLRP holds the
norms of a cosine. The explanation ``R = C_a[:, :k] C_b[:, :k]^T s_a s_b`` therefore adds up (with its bias) to
the score the user sees, certified like any other. Distances (``euclidean``, ``manhattan``) are not bilinear in
the two embeddings and are refused, as are options that quantise the embedding.

Prompts are literal texts put before each text (``prompt=``) or the model's named prompts (``prompt_name=``),
for both texts or per side ``(text A / the query, text B / the documents)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from .heads import NORMALIZE_FLOOR, TruncateDim

__all__ = [
    "ENCODE_OPTIONS",
    "SIMILARITY_FUNCTIONS",
    "NOT_BILINEAR",
    "REFUSED_OPTIONS",
    "EncodeOutput",
    "EncodeOptions",
    "encode_output",
    "sentence_transformers_output",
    "similarity_function",
    "side_values",
]

ENCODE_OPTIONS = ("prompt", "prompt_name", "truncate_dim", "normalize_embeddings", "similarity_fn_name")
"""The ``encode()`` options bilrp's entry points take, under their sentence-transformers names."""

SIMILARITY_FUNCTIONS = {"cosine": "cosine", "dot": "dot", "dot_product": "dot"}
"""``similarity_fn_name`` values bilrp explains (sentence-transformers' names) -> the bilinear similarity."""

NOT_BILINEAR = {
    "euclidean": "the euclidean similarity (minus the L2 distance) is a distance, not a bilinear similarity",
    "manhattan": "the manhattan similarity (minus the L1 distance) is a distance, not a bilinear similarity",
}
"""``similarity_fn_name`` values sentence-transformers offers and bilrp refuses, with the reason."""

REFUSED_OPTIONS = {
    "precision": (
        "quantises the embeddings (int8, binary) before the similarity, which is not a bilinear function of "
        "them, so no exact BiLRP explanation exists; bilrp explains the float32 embeddings (leave precision out)"
    ),
    "output_value": "selects token embeddings, not a sentence embedding: bilrp explains a sentence similarity",
}
"""Other ``encode()`` options that change the score and that bilrp refuses, with the reason."""


@dataclass(frozen=True)
class EncodeOutput:
    """What a model's ``encode()`` returns, relative to bilrp's ``phi``, and the similarity applied to it.

    Attributes
    ----------
    normalized
        The encode() output is ``phi / |phi|``: a final ``Normalize`` module that bilrp folded into the cosine.
    similarity_fn_name
        The similarity sentence-transformers applies to it (``"cosine"`` or ``"dot"``).

    """

    normalized: bool = False
    similarity_fn_name: str = "cosine"


def encode_output(model: Any) -> EncodeOutput:
    """The :class:`EncodeOutput` of ``model``: recorded when it was loaded from sentence-transformers, else
    ``phi`` itself with the model's similarity.
    """
    recorded = getattr(model, "encode_output", None)
    return recorded if isinstance(recorded, EncodeOutput) else EncodeOutput(False, model.similarity)


def sentence_transformers_output(function: Any, normalized: bool) -> EncodeOutput:
    """The :class:`EncodeOutput` of a sentence-transformers pipeline with ``similarity_fn_name`` ``function``
    (``None``: cosine) whose final ``Normalize`` bilrp folded (``normalized``).
    """
    return EncodeOutput(bool(normalized), similarity_function("cosine" if function is None else function))


def similarity_function(name: Any, option: str = "similarity_fn_name") -> str:
    """The bilinear similarity (``"cosine"`` or ``"dot"``) for a sentence-transformers similarity name or enum.

    Distances and unknown names raise a one-line ``ValueError`` saying why.
    """
    value = getattr(name, "value", name)  # sentence_transformers.SimilarityFunction
    if isinstance(value, str) and value in SIMILARITY_FUNCTIONS:
        return SIMILARITY_FUNCTIONS[value]
    if isinstance(value, str) and value in NOT_BILINEAR:
        raise ValueError(
            f"{option}={value!r}: {NOT_BILINEAR[value]}, so BiLRP cannot explain it exactly; bilrp explains "
            f"{' or '.join(repr(n) for n in ('cosine', 'dot'))}"
        )
    known = ", ".join(repr(n) for n in (*SIMILARITY_FUNCTIONS, *NOT_BILINEAR))
    raise ValueError(f"{option}={name!r} is not a sentence-transformers similarity: choose one of {known}")


def side_values(value: Any, option: str) -> tuple[Any, Any]:
    """``value`` for both sides, or the pair ``(for text A / the query, for text B / the documents)`` it is."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(
                f"{option}={value!r}: give one value for both texts, or a pair (for text A / the query, "
                "for text B / the documents)"
            )
        return value[0], value[1]
    return value, value


@dataclass(frozen=True)
class EncodeOptions:
    """Checked ``encode()`` options for the two sides of a pair (side 0: text A / the query, 1: text B / documents).

    Build with :meth:`resolve`. ``prompts`` are literal prompt texts (``None``: the side's default).
    """

    prompts: tuple[str | None, str | None] = (None, None)
    truncate_dim: int | None = None
    normalize: tuple[bool, bool] = (False, False)
    similarity_fn_name: str = "cosine"
    output: EncodeOutput = EncodeOutput()
    model_similarity: str = "cosine"

    @classmethod
    def resolve(
        cls,
        model: Any,
        prompt: Any = None,
        prompt_name: Any = None,
        truncate_dim: Any = None,
        normalize_embeddings: Any = False,
        similarity_fn_name: Any = None,
    ) -> EncodeOptions:
        """Check the options against ``model`` (a :class:`~bilrp.SimilarityModel`); one-line errors name the option.

        ``prompt`` wins over ``prompt_name`` on a side where both are given, as in sentence-transformers (with a
        warning); a prompt name must be one of the model's prompts.
        """
        prompts = tuple(
            _side_prompt(model, text, name, side)
            for side, text, name in zip(
                ("A", "B"), side_values(prompt, "prompt"), side_values(prompt_name, "prompt_name"), strict=True
            )
        )
        output = encode_output(model)
        return cls(
            prompts=prompts,  # type: ignore[arg-type]
            truncate_dim=_checked_truncate_dim(model, truncate_dim),
            normalize=tuple(_checked_flag(v) for v in side_values(normalize_embeddings, "normalize_embeddings")),
            similarity_fn_name=(
                output.similarity_fn_name if similarity_fn_name is None else similarity_function(similarity_fn_name)
            ),
            output=output,
            model_similarity=model.similarity,
        )

    def prompt(self, model: Any, side: int, default: str | None = None) -> str:
        """The literal prompt of ``side``: the one given, else ``default``, else the model's default prompt."""
        given = self.prompts[side]
        if given is not None:
            return given
        return model.prompt(None) if default is None else default

    @property
    def changes_score(self) -> bool:
        """True when the options give another score than the model's own similarity of its ``phi``."""
        return self.truncate_dim is not None or self._untruncated_similarity() != self.model_similarity

    def _untruncated_similarity(self) -> str:
        """The similarity of the two ``phi`` without a cut: cosine, dot, or ``"mixed"`` (one side normalised)."""
        if self.similarity_fn_name == "cosine":
            return "cosine"
        unit = [self.output.normalized or flag for flag in self.normalize]
        return "cosine" if all(unit) else "dot" if not any(unit) else "mixed"

    def scaled(self, tensor: torch.Tensor, phi: torch.Tensor, side: int) -> torch.Tensor:
        """``tensor[..., :k] * s`` for ``side``, where ``e = phi[:k] * s`` is what the similarity is a dot product of.

        ``tensor`` is ``phi`` itself, a bias vector ``(..., dim)`` or contributions ``(..., n, dim)``; ``phi`` is
        ``(..., dim)``.
        """
        cut = phi[..., : self.truncate_dim]
        scale = torch.ones_like(phi[..., 0])
        if self.normalize[side] or self.similarity_fn_name == "cosine":
            scale = 1.0 / cut.norm(dim=-1).clamp_min(NORMALIZE_FLOOR)
        elif self.output.normalized:
            scale = 1.0 / phi.norm(dim=-1).clamp_min(NORMALIZE_FLOOR)
        scale = scale[..., None]
        if tensor.dim() > phi.dim():  # contributions: one scale per text, broadcast over its tokens
            scale = scale[..., None]
        return tensor[..., : self.truncate_dim] * scale

    def embeddings(self, phi: torch.Tensor, side: int) -> torch.Tensor:
        """The embedding ``st.encode`` returns for ``phi`` on ``side`` (cut, normalised as the options say)."""
        cut = phi[..., : self.truncate_dim]
        if self.normalize[side]:
            return cut / cut.norm(dim=-1, keepdim=True).clamp_min(NORMALIZE_FLOOR)
        if self.output.normalized:
            return cut / phi.norm(dim=-1, keepdim=True).clamp_min(NORMALIZE_FLOOR)
        return cut

    def scores(self, phi_a: torch.Tensor, phi_b: torch.Tensor) -> torch.Tensor:
        """The score the user's code computes for ``phi_a`` and ``phi_b`` (broadcast over leading dimensions)."""
        return (self.scaled(phi_a, phi_a, 0) * self.scaled(phi_b, phi_b, 1)).sum(-1)


def _side_prompt(model: Any, text: Any, name: Any, side: str) -> str | None:
    """The literal prompt of one side: ``text``, else the model's prompt ``name``, else ``None`` (the default)."""
    if text is not None and not isinstance(text, str):
        raise ValueError(f"prompt={text!r} for text {side}: give the prompt text as a str (or None)")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"prompt_name={name!r} for text {side}: give one of the model's prompt names (or None)")
    if text is not None:
        if name is not None:
            warnings.warn(
                f"text {side}: both prompt={text!r} and prompt_name={name!r} given; the prompt is used and the "
                "prompt_name ignored, as sentence-transformers does",
                stacklevel=4,
            )
        return text
    return None if name is None else model.prompt(name)  # an unknown name fails here, naming the model's prompts


def _checked_truncate_dim(model: Any, truncate_dim: Any) -> int | None:
    """``truncate_dim`` if it is a positive int the model's embedding can be cut to, else a one-line error."""
    if truncate_dim is None:
        return None
    if isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int) or truncate_dim < 1:
        raise ValueError(f"truncate_dim={truncate_dim!r}: give a positive whole number of dimensions (or None)")
    head = list(getattr(model, "head", ()))
    if head and isinstance(head[-1], TruncateDim) and truncate_dim > head[-1].dim:
        raise ValueError(
            f"truncate_dim={truncate_dim} is more than the model's own truncate_dim {head[-1].dim}, which bilrp's "
            f"model applies already: pass truncate_dim <= {head[-1].dim}, or load the model with truncate_dim=None"
        )
    return truncate_dim


def _checked_flag(value: Any) -> bool:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise ValueError(f"normalize_embeddings={value!r}: give True or False (or a pair of them, one per text)")
