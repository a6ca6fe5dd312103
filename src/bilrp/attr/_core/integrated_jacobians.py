"""Integrated Jacobians (Moeller et al. 2023): path-integrated pair attributions for Siamese encoders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from ..._validation import positive_int
from ...composites import PlainComposite
from ...engine import Mode
from ...explaining import explaining
from ...models.input_points import InputPoint
from .hessian_x_product import HessianXProduct
from .pair_attribution import PairSimilarityModel, _computable

__all__ = ["IntegratedJacobians", "REFERENCES", "DEFAULT_REFERENCE", "DEFAULT_STEPS", "Reference"]

ReferenceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Reference = Literal["pad", "mask", "zero"] | ReferenceFn
REFERENCES = ("pad", "mask", "zero")
"""Named references: the PAD-token or MASK-token sequence (special tokens kept), or all-zero embeddings."""
DEFAULT_REFERENCE = "pad"
"""Default reference (measured in ``benchmarks/ij_step_error.py``; see docs/compare_methods.md)."""
DEFAULT_STEPS = 50
"""Default number of path points (measured in ``benchmarks/ij_step_error.py``)."""


class IntegratedJacobians(HessianXProduct):
    r"""``R[i, j] = sum_m [(x_i - r_i) . IJ_m(x)_i] [(x'_j - r'_j) . IJ_m(x')_j]``.

    ``IJ_m(x)`` is the Jacobian of the (normalised) embedding dimension ``m`` averaged over ``n_steps``
    midpoints of the straight path from the reference ``r`` to ``x``. Per text, with ``n`` the normalised
    representation and ``C`` the contributions (:meth:`contributions`), ``n(x) = C.sum(1) + n(r) + e``:
    ``e`` is the step error of the midpoint rule (:meth:`step_error`), 0 in the limit of many steps. The
    score then splits into ``R.sum()``, the exact reference terms ``s(r, x') + s(x, r') - s(r, r')`` and a
    pair step error ``(n(x) - n(r)) . (n(x') - n(r')) - R.sum()``; ``delta`` of ``attribute`` holds the
    last two.

    Parameters
    ----------
    forward_func
        A :class:`~bilrp.SimilarityModel` or compatible module (``"pad"`` and ``"mask"`` need its
        ``tokenizer`` and ``embed``).
    n_steps
        Points on the path (midpoint rule). Default 50: with the PAD reference the pair step error stays
        under 1e-3 of the score on STSb test pairs for all-MiniLM-L6-v2 (at most 4.2e-4 on 50 pairs, against
        7.7e-3 at 20 steps; ``benchmarks/ij_step_error.py``). Some models' paths are not smooth enough for
        any practical count (all-mpnet-base-v2: step error up to the size of the score); check
        :meth:`step_error` (docs: "Integrated Jacobians: reference and steps").
    mode
        Engine mode, as for :class:`~bilrp.BiLRP`.
    reference
        The path's start, as in xplainsim (Moeller et al.'s toolkit): ``"pad"`` (default) is the
        embedding output of the text's own sequence with every real token replaced by the tokenizer's pad
        token, except the special tokens the tokenizer adds around a text (``[CLS]``/``[SEP]``,
        ``<s>``/``</s>``), which are kept at the first and last real positions, as xplainsim keeps them
        (its reference ids are ``<s> <pad> ... <pad> </s>``). Positions, token types and the attention
        mask are the text's own; the embedding layer places the ids as it places any ids (RoBERTa and
        MPNet give pad tokens the padding position, as they do in xplainsim). ``"mask"`` is the same with
        the mask token; ``"zero"`` is all-zero embeddings; a callable ``(embeddings, mask) -> reference``
        returns a tensor shaped like ``embeddings``. ``attribute(baselines=...)`` takes precedence.
    baseline
        A callable reference, the same as passing it as ``reference`` (kept for existing code); leave
        ``reference`` at its default then.
    attribute_to
        The input point, ``"embedding_output"`` (default) or ``"inputs_embeds"`` (see
        :class:`~bilrp.attr.PairAttribution`); the ``"pad"`` and ``"mask"`` references are then the word
        embeddings of those tokens.

    Raises
    ------
    ValueError
        For an unknown reference name, ``baseline`` with a non-default ``reference``, or a ``"pad"`` /
        ``"mask"`` reference on a model whose tokenizer lacks that token.

    """

    name = "Integrated Jacobians"
    accepts_baselines = True

    def __init__(
        self,
        forward_func: PairSimilarityModel,
        n_steps: int = DEFAULT_STEPS,
        mode: Mode = "auto",
        reference: Reference = DEFAULT_REFERENCE,
        baseline: ReferenceFn | None = None,
        *,
        attribute_to: InputPoint = "embedding_output",
    ) -> None:
        super().__init__(forward_func, mode=mode, attribute_to=attribute_to)
        self.n_steps = positive_int("n_steps", n_steps)
        if baseline is not None:
            if not callable(baseline):
                raise TypeError("baseline must be a callable (embeddings, mask) -> reference embeddings")
            if not (isinstance(reference, str) and reference == DEFAULT_REFERENCE):
                raise ValueError("give the reference once: reference= or baseline= (a callable), not both")
            reference = baseline
        self.reference = _check_reference(reference)
        self._token_ids = _reference_token_ids(self.forward_func, reference) if isinstance(reference, str) else None

    @property
    def baseline(self) -> ReferenceFn | None:
        """The callable reference, if one was given (``None`` for a named reference)."""
        return None if isinstance(self.reference, str) else self.reference

    def reference_input(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reference embedding outputs ``(batch, seq, width)`` for ``embeddings`` and their 0/1 ``mask``.

        For ``"pad"`` / ``"mask"`` the reference depends on the mask only: real positions hold the
        tokenizer's leading special tokens first, its trailing ones last and the pad (mask) token between;
        padded positions hold the pad token (the mask hides them).
        """
        if self.reference == "zero":
            return torch.zeros_like(embeddings)
        if callable(self.reference):
            made = torch.as_tensor(self.reference(embeddings, mask))
            if made.shape != embeddings.shape:
                raise ValueError(
                    f"the reference callable returned shape {tuple(made.shape)}, not the input shape "
                    f"{tuple(embeddings.shape)}"
                )
            return made.to(embeddings)
        fill, prefix, suffix, pad = self._token_ids
        ids = _reference_ids(mask, fill, prefix, suffix, pad)
        device = getattr(self.forward_func, "device", mask.device)
        with torch.no_grad():
            made = self.forward_func.embed(ids.to(device), mask.to(device))
        return made.detach().to(embeddings)

    def reference_representation(
        self, embeddings: torch.Tensor, mask: torch.Tensor, baseline: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The (normalised, for cosine) representation ``n(r)`` ``(batch, dim)`` at the reference input.

        Parameters
        ----------
        embeddings, mask
            The texts' embedding outputs ``(batch, seq, width)`` and 0/1 mask ``(batch, seq)``.
        baseline
            An explicit reference input (as given to :meth:`contributions`); default the constructor's.

        """
        with explaining(self.forward_func):
            embeddings = _computable(embeddings)
            reference = self.reference_input(embeddings, mask) if baseline is None else _computable(baseline)
            with torch.no_grad(), PlainComposite().context(self.forward_func):
                return self._normalised(reference.to(embeddings), mask.to(embeddings.device))

    def bias_vectors(self, embeddings, mask, contributions, phi, baseline=None):
        """``n(r)``: the reference terms of the decomposition; what the path integral misses is the step error."""
        return self.reference_representation(embeddings, mask, baseline)

    @staticmethod
    def step_error(contributions: torch.Tensor, phi: torch.Tensor, reference_phi: torch.Tensor) -> torch.Tensor:
        """Per-text step error ``e = n(x) - n(r) - C.sum(1)`` ``(batch, dim)`` of the midpoint rule.

        ``contributions`` and ``phi`` are what :meth:`contributions` returns, ``reference_phi`` what
        :meth:`reference_representation` returns for the same texts.
        """
        return phi - reference_phi - contributions.sum(1)

    def _factor(self, embeddings, mask, internal_batch_size, baseline, groups=None):
        """Path-integrated contributions per token and embedding dimension, and ``n(x)``.

        ``baseline`` (from ``attribute(baselines=...)``) takes precedence over the constructor's reference.
        """
        if baseline is None and self.reference != "zero":
            baseline = self.reference_input(embeddings, mask)
        return self._path_contributions(
            embeddings, mask, internal_batch_size, steps=self.n_steps, baseline=baseline, groups=groups
        )


def _check_reference(reference) -> Reference:
    """``reference`` if it is a name of :data:`REFERENCES` or a callable, else a one-line error."""
    if callable(reference):
        return reference
    if isinstance(reference, str) and reference in REFERENCES:
        return reference
    raise ValueError(
        f"unknown reference {reference!r}: choose one of {', '.join(map(repr, REFERENCES))} or a callable "
        "(embeddings, mask) -> reference embeddings"
    )


def _reference_token_ids(model, reference: str) -> tuple[int, list[int], list[int], int] | None:
    """``(fill, prefix, suffix, pad)`` ids of a token reference: the token, the special tokens, padding."""
    if reference == "zero":
        return None
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or not callable(getattr(model, "embed", None)):
        raise ValueError(
            f"reference={reference!r} needs the model's tokenizer and embed(): build the model as "
            "SimilarityModel(encoder, tokenizer), or pass reference='zero' or a callable"
        )
    fill = getattr(tokenizer, f"{reference}_token_id", None)
    if fill is None:
        raise ValueError(
            f"the tokenizer ({type(tokenizer).__name__}) has no {reference} token: pass reference='zero', the "
            "other token reference or a callable"
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else fill
    prefix, suffix = _special_tokens(tokenizer)
    return int(fill), prefix, suffix, int(pad)


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text (``[CLS]`` and ``[SEP]`` for BERT)."""
    with_special = list(tokenizer("a")["input_ids"])
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    for start in range(len(with_special) - len(plain) + 1):
        if plain and with_special[start : start + len(plain)] == plain:
            return with_special[:start], with_special[start + len(plain) :]
    return [], []  # the text's tokens are not kept as they are: no special tokens to keep


def _reference_ids(mask: torch.Tensor, fill: int, prefix: list[int], suffix: list[int], pad: int) -> torch.Tensor:
    """``(batch, seq)`` ids: ``prefix``, then ``fill``, then ``suffix`` on each text's real positions."""
    real = mask.to(torch.bool)
    rank = real.long().cumsum(1) - 1  # index of each real token among its text's real tokens
    count = real.long().sum(1, keepdim=True)
    ids = torch.full(mask.shape, pad, dtype=torch.long, device=mask.device)
    ids[real] = fill
    for k, token in enumerate(suffix):  # trailing specials first: a text too short for both keeps its prefix
        ids[real & (rank == count - len(suffix) + k)] = token
    for k, token in enumerate(prefix):
        ids[real & (rank == k)] = token
    return ids
