"""Integrated Jacobians (Moeller et al. 2023): path-integrated pair attributions for Siamese encoders."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..._validation import positive_int
from ...engine import Mode
from .hessian_x_product import HessianXProduct
from .pair_attribution import PairSimilarityModel

__all__ = ["IntegratedJacobians"]


class IntegratedJacobians(HessianXProduct):
    r"""``R[i, j] = sum_m [(x_i - r_i) . IJ_m(x)_i] [(x'_j - r'_j) . IJ_m(x')_j]``.

    ``IJ_m(x)`` is the Jacobian of the (normalised) embedding dimension ``m`` averaged on the straight
    path from the reference ``r`` to ``x``. ``R.sum()`` equals
    ``s(x, x') - s(r, x') - s(x, r') + s(r, r')``; with the default all-zero reference the three reference
    terms form ``delta``.

    Parameters
    ----------
    forward_func
        A :class:`~bilrp.SimilarityModel` or compatible module.
    n_steps
        Points on the path (midpoint rule). Default 50.
    mode
        Engine mode, as for :class:`~bilrp.BiLRP`.

    """

    name = "Integrated Jacobians"

    def __init__(
        self,
        forward_func: PairSimilarityModel,
        n_steps: int = 50,
        mode: Mode = "auto",
        baseline: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(forward_func, mode=mode)
        self.n_steps = positive_int("n_steps", n_steps)
        if baseline is not None and not callable(baseline):
            raise TypeError("baseline must be a callable (embeddings, mask) -> reference embeddings")
        self.baseline = baseline

    accepts_baselines = True

    def _factor(self, embeddings, mask, internal_batch_size, baseline):
        """Path-integrated contributions per token and embedding dimension, and ``n(x)``.

        ``baseline`` (from ``attribute(baselines=...)``) takes precedence over the constructor's callable.
        """
        if baseline is None and self.baseline is not None:
            baseline = self.baseline(embeddings, mask)
        return self._path_contributions(embeddings, mask, internal_batch_size, steps=self.n_steps, baseline=baseline)
