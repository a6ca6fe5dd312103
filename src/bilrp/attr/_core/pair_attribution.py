"""Shared machinery of the token-pair attributions: input handling, convergence delta, Captum protocol."""

from __future__ import annotations

from typing import Any, Literal, Protocol, overload, runtime_checkable

import torch
from captum.attr import Attribution
from captum.log import log_usage

from ..._validation import optional_positive_int
from ...engine import NORM_FLOOR, pair_relevance
from ...explaining import explaining
from ...models import as_similarity_model
from ...models.input_checks import check_pair_inputs
from ...models.input_points import InputPoint, at_input_point, input_point_of
from .pair_inputs import baseline_pair, check_mask, computable, pad, unpack_pair
from .per_text import PerText, check_per_text
from .per_text import per_text as _per_text

__all__ = ["PairAttribution", "PairSimilarityModel", "InteractionAttribution", "Baselines", "pair_decomposition"]

Baselines = tuple[torch.Tensor, torch.Tensor] | float | None
_computable = computable  # the name integrated_jacobians imports


@runtime_checkable
class PairSimilarityModel(Protocol):
    """What pair attributions need from ``forward_func`` (:class:`bilrp.SimilarityModel` provides it)."""

    similarity: str

    def represent(self, embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence embedding ``(batch, dim)`` from embedding outputs ``(batch, seq, width)``."""

    def compare(self, phi_a: torch.Tensor, phi_b: torch.Tensor) -> torch.Tensor:
        """Similarity ``(batch,)`` of two batches of sentence embeddings."""


class PairAttribution(Attribution):
    """Base class: relevance ``R[b, i, j]`` of token pairs for the similarity of two batches of texts.

    Subclasses implement :meth:`_relevance`; this class handles the Captum ``attribute`` conventions.

    Parameters
    ----------
    forward_func
        A :class:`~bilrp.SimilarityModel` (or a ``SentenceTransformer``, a folder or a hub name, wrapped as one),
        or any module with ``represent``/``compare``/``similarity``.
    attribute_to
        The input point (:mod:`bilrp.models.input_points`), as Captum's ``Layer*`` attributions name their layer:
        ``"embedding_output"`` (default; inputs from ``model.embed(input_ids, attention_mask)``) or
        ``"inputs_embeds"`` (HuggingFace's ``inputs_embeds``, the word embeddings
        ``encoder.get_input_embeddings()(input_ids)``; the explained function runs the encoder from there, through
        positions and the embedding LayerNorm). :attr:`forward_func` is then the function explained, starting
        at that point. Inputs that certainly belong to the other point are refused in one line.

    """

    name = "PairAttribution"

    def __init__(self, forward_func: PairSimilarityModel | Any, attribute_to: InputPoint = "embedding_output") -> None:
        if not isinstance(forward_func, PairSimilarityModel):  # a SentenceTransformer, a name or a folder
            forward_func = as_similarity_model(forward_func)
        super().__init__(at_input_point(forward_func, attribute_to))

    @property
    def attribute_to(self) -> str:
        """The input point: ``"embedding_output"`` or ``"inputs_embeds"``."""
        return input_point_of(self.forward_func)

    @classmethod
    def get_name(cls) -> str:
        """Readable name of the method (used by Captum's visualisation and comparison loops)."""
        return cls.name

    def has_convergence_delta(self) -> bool:
        """True: ``delta = score - R.sum()`` is the part of the score not given to token pairs."""
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        """True: relevances include the inputs (as gradient x input does)."""
        return True

    accepts_baselines = False
    """Whether ``attribute(..., baselines=...)`` means something for this method (Integrated Jacobians)."""

    @overload
    def attribute(
        self,
        inputs: tuple[torch.Tensor, torch.Tensor],
        baselines: Baselines = None,
        target: None = None,
        additional_forward_args: tuple[torch.Tensor, torch.Tensor] | None = None,
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[False] = False,
        per_text: None = None,
    ) -> torch.Tensor: ...

    @overload
    def attribute(
        self,
        inputs: tuple[torch.Tensor, torch.Tensor],
        baselines: Baselines = None,
        target: None = None,
        additional_forward_args: tuple[torch.Tensor, torch.Tensor] | None = None,
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[True],
        per_text: None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: tuple[torch.Tensor, torch.Tensor],
        baselines: Baselines = None,
        target: None = None,
        additional_forward_args: tuple[torch.Tensor, torch.Tensor] | None = None,
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[False] = False,
        per_text: PerText,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def attribute(
        self,
        inputs: tuple[torch.Tensor, torch.Tensor],
        baselines: Baselines = None,
        target: None = None,
        additional_forward_args: tuple[torch.Tensor, torch.Tensor] | None = None,
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[True],
        per_text: PerText,
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]: ...

    @log_usage()
    def attribute(
        self,
        inputs: tuple[torch.Tensor, torch.Tensor],
        baselines: Baselines = None,
        target: None = None,
        additional_forward_args: tuple[torch.Tensor, torch.Tensor] | None = None,
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
        per_text: PerText | None = None,
    ):
        r"""Token-pair relevance for the similarity of ``inputs[0][b]`` and ``inputs[1][b]``.

        The arguments follow Captum's order (``inputs, baselines, target, additional_forward_args, ...``),
        so positional calls written for Captum bind as they do there.

        Args:
            inputs (tuple[Tensor, Tensor]): the texts' inputs ``(x_a, x_b)`` at the input point
                (``attribute_to``), of shapes ``(batch, s_a, width)`` and ``(batch, s_b, width)``: embedding
                outputs from ``SimilarityModel.embed`` (default), or HuggingFace's ``inputs_embeds``.
            baselines (tuple[Tensor, Tensor] or float, optional): reference inputs, for methods that have
                one (Integrated Jacobians); refused by the others. Default: the method's own.
            target (None): a pair score has one output, so there is nothing to select; anything but
                ``None`` is refused.
            additional_forward_args (tuple[Tensor, Tensor], optional): attention masks
                ``(mask_a, mask_b)`` of shapes ``(batch, s_a)`` and ``(batch, s_b)``, 1 for real tokens and
                0 for padding. Default: no padding.
            internal_batch_size (int, optional): number of tangent (or cotangent) vectors evaluated in one
                batched pass; bounds memory on long texts. Default: chosen from a 2 GiB budget.
            return_convergence_delta (bool, optional): also return ``delta = score - R.sum((1, 2))``, the
                share of the score carried by biases. Default: False.
            per_text (str, optional): return Captum's tuple, one tensor per input, instead of the pair matrix:
                the per-text projections ``(R.sum(2), R.sum(1))`` (:func:`~bilrp.attr.per_text`), as ``"tokens"``
                ``(batch, s)`` (``sensitivity_max``, ``visualize_text``) or ``"inputs"``, spread evenly over the
                width to the inputs' shapes (``infidelity`` with :class:`~bilrp.attr.TokenRemoval`). Each adds up
                to ``R.sum((1, 2))``: each alone plus ``delta`` is the score. Default: None (the pair matrix).

        Returns:
            *Tensor* or (*Tensor*, *Tensor*), and the delta if asked:
            - **relevance** (*Tensor*): ``(batch, s_a, s_b)``; padded positions are exactly 0 (or the two
              per-text projections with ``per_text``).
            - **delta** (*Tensor*, returned if ``return_convergence_delta``): ``(batch,)``.

        Examples::

            >>> model = bilrp.SimilarityModel.from_pretrained()
            >>> a, b = model.tokenize(["A man plays guitar."]), model.tokenize(["Someone plays music."])
            >>> emb_a = model.embed(a["input_ids"], a["attention_mask"])
            >>> emb_b = model.embed(b["input_ids"], b["attention_mask"])
            >>> relevance, delta = bilrp.BiLRP(model).attribute(
            ...     (emb_a, emb_b), additional_forward_args=(a["attention_mask"], b["attention_mask"]),
            ...     return_convergence_delta=True)

        """
        self._check_arguments(target, baselines, internal_batch_size)
        per_text = check_per_text(per_text)
        what = "inputs_embeds" if self.attribute_to == "inputs_embeds" else "embedding outputs"
        emb_a, emb_b, mask_a, mask_b = unpack_pair(inputs, additional_forward_args, what)
        with explaining(self.forward_func):
            with torch.no_grad():
                check_pair_inputs(self.forward_func, (emb_a, emb_b), (mask_a, mask_b), self.get_name())
            emb_a, emb_b = computable(emb_a), computable(emb_b)
            relevance, score = self._relevance(emb_a, emb_b, mask_a, mask_b, internal_batch_size, baselines)
        relevance = relevance * mask_a[:, :, None].to(relevance.dtype) * mask_b[:, None, :].to(relevance.dtype)
        result = relevance
        if per_text is not None:
            result = _per_text(relevance, (emb_a, emb_b) if per_text == "inputs" else None)
        if return_convergence_delta:
            return result, score - relevance.sum((1, 2))
        return result

    def _check_arguments(self, target, baselines, internal_batch_size) -> None:
        if target is not None:
            raise ValueError(
                f"target={target!r}: a pair similarity has one output per pair, so there is no target to "
                "select; pass target=None (masks go in additional_forward_args)"
            )
        if baselines is not None and not self.accepts_baselines:
            raise ValueError(
                f"{self.get_name()} has no reference input, so baselines must be None (masks go in "
                "additional_forward_args, the fourth positional argument as in Captum)"
            )
        optional_positive_int("internal_batch_size", internal_batch_size)

    def _relevance(
        self,
        emb_a: torch.Tensor,
        emb_b: torch.Tensor,
        mask_a: torch.Tensor,
        mask_b: torch.Tensor,
        internal_batch_size: int | None,
        baselines: Baselines = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Relevance ``(batch, s_a, s_b)`` and score ``(batch,)``."""
        raise NotImplementedError


class InteractionAttribution(PairAttribution):
    """Pair attribution that factorises: ``R = C_a C_b^T`` from per-text token contributions.

    Subclasses implement :meth:`_factor`; the per-text factor is what ``explain_batch`` caches.
    """

    def contributions(
        self,
        embeddings: torch.Tensor,
        mask: torch.Tensor,
        internal_batch_size: int | None = None,
        baseline: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token contributions ``(batch, seq, dim)`` and representation ``phi`` ``(batch, dim)`` of one side.

        Parameters
        ----------
        embeddings, mask
            Inputs at the input point (:attr:`attribute_to`; embedding outputs by default) ``(batch, seq, width)``
            and their 0/1 mask ``(batch, seq)``.
        internal_batch_size
            Tangents per batched engine pass.
        baseline
            Reference input of the same shape (methods with ``accepts_baselines`` only).
        groups
            ``(batch, groups, seq)`` 0/1 partition of the real tokens (:mod:`bilrp.granularity`): the
            contributions are then per group, ``(batch, groups, dim)``, exactly the sums of the tokens'. The
            engine methods push each group through as one tangent (cheaper than tokens).

        """
        optional_positive_int("internal_batch_size", internal_batch_size)
        check_mask(mask, embeddings.shape[:2], "mask")
        with explaining(self.forward_func):
            embeddings = computable(embeddings)
            baseline = None if baseline is None else computable(baseline)
            return self._factor(embeddings, mask, internal_batch_size, baseline, groups)

    def _factor(
        self,
        embeddings: torch.Tensor,
        mask: torch.Tensor,
        internal_batch_size: int | None,
        baseline: torch.Tensor | None,
        groups: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def bias_vectors(
        self,
        embeddings: torch.Tensor,
        mask: torch.Tensor,
        contributions: torch.Tensor,
        phi: torch.Tensor,
        baseline: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """The part of ``phi`` no token carries, ``(batch, dim)``, for methods where it means something.

        BiLRP: ``phi - sum_i C[i]`` (the bias-only output ``f(0)`` of the rule-frozen network, certified);
        Integrated Jacobians: the representation at the reference. ``None`` (the default) for methods with no
        such decomposition. :func:`pair_decomposition` pairs it with the other text's tokens.
        """
        return None

    def combine(
        self,
        contributions_a: torch.Tensor,
        contributions_b: torch.Tensor,
        phi_a: torch.Tensor,
        phi_b: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair relevance and similarity score from the two sides' factors."""
        relevance = pair_relevance(contributions_a, contributions_b, phi_a, phi_b, self.forward_func.similarity)
        return relevance, self.forward_func.compare(phi_a, phi_b)

    def _relevance(self, emb_a, emb_b, mask_a, mask_b, internal_batch_size, baselines=None):
        # both sides in one padded batch: one engine pass instead of two
        length_a, length_b = emb_a.shape[1], emb_b.shape[1]
        width = max(length_a, length_b)
        embeddings = torch.cat([pad(emb_a, width), pad(emb_b, width)])
        masks = torch.cat([pad(mask_a, width), pad(mask_b, width)])
        reference = None
        if baselines is not None:
            base_a, base_b = baseline_pair(baselines, emb_a, emb_b)
            reference = torch.cat([pad(base_a, width), pad(base_b, width)])
        contributions, phi = self._factor(embeddings, masks, internal_batch_size, reference)  # checked, explaining
        batch = emb_a.shape[0]
        return self.combine(
            contributions[:batch, :length_a], contributions[batch:, :length_b], phi[:batch], phi[batch:]
        )


def pair_decomposition(
    contributions_a: torch.Tensor,
    contributions_b: torch.Tensor,
    bias_a: torch.Tensor,
    bias_b: torch.Tensor,
    phi_a: torch.Tensor,
    phi_b: torch.Tensor,
    similarity: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bias terms of a factorised pair score: tokens of A with B's bias, A's bias with tokens of B, bias x bias.

    With ``phi = sum_i C[i] + bias`` on each side, ``phi_a . phi_b`` is ``sum R`` plus these three terms
    (divided by ``|phi_a| |phi_b|`` for cosine, as :func:`~bilrp.engine.pair_relevance` divides ``R``).

    Returns
    -------
    tokens_a_with_bias_b, bias_a_with_tokens_b, bias_with_bias
        ``(batch, s_a)``, ``(batch, s_b)`` and ``(batch,)``.

    """
    tokens_a = torch.einsum("bim,bm->bi", contributions_a, bias_b)
    tokens_b = torch.einsum("bm,bjm->bj", bias_a, contributions_b)
    both = (bias_a * bias_b).sum(-1)
    if similarity == "cosine":
        norms = (phi_a.norm(dim=-1) * phi_b.norm(dim=-1)).clamp_min(NORM_FLOOR)
        tokens_a, tokens_b, both = tokens_a / norms[:, None], tokens_b / norms[:, None], both / norms
    return tokens_a, tokens_b, both
