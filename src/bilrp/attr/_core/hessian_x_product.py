"""Hessian x Product: the cross Hessian of the similarity times both inputs (plain gradients)."""

from __future__ import annotations

import torch

from ...composites import PlainComposite
from ...engine import NORM_FLOOR, Mode, check_mode, token_contributions
from ...models.input_points import InputPoint
from .nonfinite import refuse_nonfinite
from .pair_attribution import InteractionAttribution, PairSimilarityModel

__all__ = ["HessianXProduct"]


class HessianXProduct(InteractionAttribution):
    r"""``R[i, j] = sum_{k, l} x[i, k] x'[j, l] d^2 s / (d x[i, k] d x'[j, l])`` with plain gradients.

    Because each text's embedding depends on that text only, the cross Hessian of
    ``s = n(x) . n(x')`` is ``J_n(x)^T J_n(x')`` with ``n = phi`` (dot) or ``n = phi / |phi|`` (cosine), so
    the method factorises like BiLRP and uses the same engine, without rules.

    Parameters
    ----------
    forward_func
        A :class:`~bilrp.SimilarityModel` or compatible module.
    mode
        Engine mode, as for :class:`~bilrp.BiLRP`.
    attribute_to
        The input point, ``"embedding_output"`` (default) or ``"inputs_embeds"`` (see
        :class:`~bilrp.attr.PairAttribution`).

    """

    name = "Hessian x Product"

    def __init__(
        self, forward_func: PairSimilarityModel, mode: Mode = "auto", *, attribute_to: InputPoint = "embedding_output"
    ) -> None:
        super().__init__(forward_func, attribute_to)
        self.mode = check_mode(mode)

    def _normalised(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        phi = self.forward_func.represent(embeddings, mask)
        if self.forward_func.similarity == "cosine":
            return phi / phi.norm(dim=-1, keepdim=True).clamp_min(NORM_FLOOR)
        return phi

    def _factor(self, embeddings, mask, internal_batch_size, baseline, groups=None):
        """Gradient x input of every (normalised) embedding dimension on every token, and ``n(x)``."""
        return self._path_contributions(embeddings, mask, internal_batch_size, steps=1, groups=groups)

    def _path_contributions(
        self,
        embeddings: torch.Tensor,
        mask: torch.Tensor,
        internal_batch_size: int | None,
        steps: int,
        baseline: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with PlainComposite().context(self.forward_func):
            contributions, phi = token_contributions(
                self._normalised,
                embeddings,
                mask,
                mode=self.mode,
                chunk_size=internal_batch_size,
                steps=steps,
                baseline=baseline,
                groups=groups,
            )
            # no certificate here: a NaN or infinite result is refused, naming the module that made it
            refuse_nonfinite(
                self.name, self.forward_func, self._normalised, (embeddings, baseline), mask, (contributions, phi)
            )
        return contributions, phi

    def combine(self, contributions_a, contributions_b, phi_a, phi_b):
        """Dot product of the factors (normalisation is inside them); the score is the model's."""
        relevance = torch.einsum("bim,bjm->bij", contributions_a, contributions_b)
        return relevance, (phi_a * phi_b).sum(-1)
