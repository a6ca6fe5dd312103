"""Shared machinery of the token-pair attributions: input handling, convergence delta, Captum protocol."""

from __future__ import annotations

from typing import Literal, Protocol, overload, runtime_checkable

import torch
from captum.attr import Attribution
from captum.log import log_usage

from ...engine import pair_relevance

__all__ = ["PairAttribution", "PairSimilarityModel", "InteractionAttribution"]


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
    """

    name = "PairAttribution"

    def __init__(self, forward_func: PairSimilarityModel) -> None:
        if not isinstance(forward_func, PairSimilarityModel):
            raise TypeError(
                f"{type(self).__name__} needs a similarity model with represent(), compare() and .similarity "
                f"(e.g. bilrp.SimilarityModel), got {type(forward_func).__name__}"
            )
        super().__init__(forward_func)

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

    @overload
    def attribute(
        self,
        inputs: tuple[torch.Tensor, torch.Tensor],
        additional_forward_args: tuple[torch.Tensor, torch.Tensor] | None = None,
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[False] = False,
    ) -> torch.Tensor: ...

    @overload
    def attribute(
        self,
        inputs: tuple[torch.Tensor, torch.Tensor],
        additional_forward_args: tuple[torch.Tensor, torch.Tensor] | None = None,
        internal_batch_size: int | None = None,
        *,
        return_convergence_delta: Literal[True],
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @log_usage()
    def attribute(
        self,
        inputs: tuple[torch.Tensor, torch.Tensor],
        additional_forward_args: tuple[torch.Tensor, torch.Tensor] | None = None,
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        r"""Token-pair relevance for the similarity of ``inputs[0][b]`` and ``inputs[1][b]``.

        Args:
            inputs (tuple[Tensor, Tensor]): embedding outputs ``(emb_a, emb_b)`` of shapes
                ``(batch, s_a, width)`` and ``(batch, s_b, width)``, e.g. from ``SimilarityModel.embed``.
            additional_forward_args (tuple[Tensor, Tensor], optional): attention masks
                ``(mask_a, mask_b)`` of shapes ``(batch, s_a)`` and ``(batch, s_b)``, 1 for real tokens and
                0 for padding. Default: no padding.
            internal_batch_size (int, optional): number of tangent (or cotangent) vectors evaluated in one
                batched pass; bounds memory on long texts. Default: chosen from a 2 GiB budget.
            return_convergence_delta (bool, optional): also return ``delta = score - R.sum((1, 2))``, the
                share of the score carried by biases. Default: False.

        Returns:
            *Tensor* or (*Tensor*, *Tensor*):
            - **relevance** (*Tensor*): ``(batch, s_a, s_b)``; padded positions are exactly 0.
            - **delta** (*Tensor*, returned if ``return_convergence_delta``): ``(batch,)``.

        Examples::

            >>> model = bilrp.SimilarityModel.from_pretrained()
            >>> a, b = model.tokenize(["A man plays guitar."]), model.tokenize(["Someone plays music."])
            >>> emb_a = model.embed(a["input_ids"], a["attention_mask"])
            >>> emb_b = model.embed(b["input_ids"], b["attention_mask"])
            >>> relevance, delta = bilrp.BiLRP(model).attribute(
            ...     (emb_a, emb_b), (a["attention_mask"], b["attention_mask"]), return_convergence_delta=True)

        """
        emb_a, emb_b, mask_a, mask_b = _unpack(inputs, additional_forward_args)
        relevance, score = self._relevance(emb_a, emb_b, mask_a, mask_b, internal_batch_size)
        relevance = relevance * mask_a[:, :, None].to(relevance.dtype) * mask_b[:, None, :].to(relevance.dtype)
        if return_convergence_delta:
            return relevance, score - relevance.sum((1, 2))
        return relevance

    def _relevance(
        self,
        emb_a: torch.Tensor,
        emb_b: torch.Tensor,
        mask_a: torch.Tensor,
        mask_b: torch.Tensor,
        internal_batch_size: int | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Relevance ``(batch, s_a, s_b)`` and score ``(batch,)``."""
        raise NotImplementedError


class InteractionAttribution(PairAttribution):
    """Pair attribution that factorises: ``R = C_a C_b^T`` from per-text token contributions.

    Subclasses implement :meth:`contributions`; the per-text factor is what ``explain_batch`` caches.
    """

    def contributions(
        self, embeddings: torch.Tensor, mask: torch.Tensor, internal_batch_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token contributions ``(batch, seq, dim)`` and representation ``phi`` ``(batch, dim)`` of one side."""
        raise NotImplementedError

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

    def _relevance(self, emb_a, emb_b, mask_a, mask_b, internal_batch_size):
        # both sides in one padded batch: one engine pass instead of two
        length_a, length_b = emb_a.shape[1], emb_b.shape[1]
        width = max(length_a, length_b)
        embeddings = torch.cat([_pad(emb_a, width), _pad(emb_b, width)])
        masks = torch.cat([_pad(mask_a, width), _pad(mask_b, width)])
        contributions, phi = self.contributions(embeddings, masks, internal_batch_size)
        batch = emb_a.shape[0]
        return self.combine(
            contributions[:batch, :length_a], contributions[batch:, :length_b], phi[:batch], phi[batch:]
        )


def _pad(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad dimension 1 of ``tensor`` to ``length``."""
    missing = length - tensor.shape[1]
    if missing == 0:
        return tensor
    return torch.cat([tensor, tensor.new_zeros(tensor.shape[0], missing, *tensor.shape[2:])], dim=1)


def _unpack(inputs, additional_forward_args):
    if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
        raise ValueError("inputs must be a pair (emb_a, emb_b) of embedding outputs")
    emb_a, emb_b = inputs
    if emb_a.dim() != 3 or emb_b.dim() != 3 or emb_a.shape[0] != emb_b.shape[0]:
        raise ValueError(
            f"inputs must be (batch, seq, width) tensors with the same batch size, got shapes "
            f"{tuple(emb_a.shape)} and {tuple(emb_b.shape)}"
        )
    if additional_forward_args is None:
        mask_a = torch.ones(emb_a.shape[:2], dtype=torch.long, device=emb_a.device)
        mask_b = torch.ones(emb_b.shape[:2], dtype=torch.long, device=emb_b.device)
    else:
        mask_a, mask_b = additional_forward_args
        if mask_a.shape != emb_a.shape[:2] or mask_b.shape != emb_b.shape[:2]:
            raise ValueError(
                f"masks must have shapes {tuple(emb_a.shape[:2])} and {tuple(emb_b.shape[:2])}, got "
                f"{tuple(mask_a.shape)} and {tuple(mask_b.shape)}"
            )
    return emb_a, emb_b, mask_a, mask_b
