"""BiLRP: second-order LRP for bilinear similarity models (Eberle et al. 2022; Vasileiou & Eberle 2024)."""

from __future__ import annotations

import torch

from ...composites import TransformerComposite
from ...engine import Mode, token_contributions
from .pair_attribution import InteractionAttribution, PairSimilarityModel

__all__ = ["BiLRP"]


class BiLRP(InteractionAttribution):
    r"""Token-pair relevance of a similarity score by BiLRP.

    ``R[i, j] = sum_m LRP(phi_m, x_i) * LRP(phi'_m, x'_j)`` (divided by ``|phi| |phi'|`` for cosine), with
    the Transformer LRP rules of :class:`~bilrp.TransformerComposite`. ``R.sum() + delta`` equals the
    similarity; ``delta`` is the share of the biases (0 when all biases are zero).

    Parameters
    ----------
    forward_func
        A :class:`~bilrp.SimilarityModel` (or any module with ``represent``/``compare``/``similarity``).
    composite
        The rules; default ``TransformerComposite()`` (LRP-0 for linear layers).
    mode
        Engine mode (see :mod:`bilrp.engine`): ``"auto"`` (replay of the frozen rule constants when the
        rules allow it, else reverse mode), ``"replay"``, ``"forward"`` or ``"reverse"``.

    """

    name = "BiLRP"

    def __init__(
        self,
        forward_func: PairSimilarityModel,
        composite: TransformerComposite | None = None,
        mode: Mode = "auto",
    ) -> None:
        super().__init__(forward_func)
        self.composite = composite if composite is not None else TransformerComposite()
        self.mode = mode

    def contributions(
        self, embeddings: torch.Tensor, mask: torch.Tensor, internal_batch_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """First-order LRP of every embedding dimension on every token, ``(batch, seq, dim)``, and ``phi``."""
        forward_ok = getattr(self.composite, "forward_mode_compatible", False)
        with self.composite.context(self.forward_func):
            return token_contributions(
                self.forward_func.represent,
                embeddings,
                mask,
                mode=self.mode,
                chunk_size=internal_batch_size,
                forward_mode_allowed=forward_ok,
                affine_under_rules=forward_ok,
            )
