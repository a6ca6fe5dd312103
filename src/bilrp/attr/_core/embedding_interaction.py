"""Embedding baseline: interactions from the similarity of the model's contextual token embeddings."""

from __future__ import annotations

import torch

from .nonfinite import refuse_nonfinite
from .pair_attribution import InteractionAttribution

__all__ = ["EmbeddingInteraction"]


class EmbeddingInteraction(InteractionAttribution):
    r"""``R[i, j] = w_i w'_j <h_i, h'_j>`` from the last-layer token states ``h`` (paper section 4.3).

    ``w`` are mean-pooling weights (``1 / n`` over real tokens), so for a mean-pooled dot-product model
    ``R.sum()`` is exactly the score; for cosine, ``R`` is divided by ``|phi| |phi'|``. For other poolings
    it is a heuristic baseline that ignores the pooling, as in the paper.
    """

    name = "Embedding"

    def _factor(self, embeddings, mask, internal_batch_size, baseline, groups=None):
        """Mean-pooling-weighted token states ``(batch, seq, dim)`` (summed per group) and the representation."""
        with torch.no_grad():
            hidden = self.forward_func.hidden_states(embeddings, mask)
            phi = self.forward_func.pooling(hidden, mask)
        weights = mask.to(hidden.dtype) / mask.sum(1, keepdim=True).clamp_min(1).to(hidden.dtype)
        factor = hidden * weights[..., None]
        refuse_nonfinite(self.name, self.forward_func, self.forward_func.represent, (embeddings,), mask, (factor, phi))
        return (factor if groups is None else torch.einsum("bgs,bsd->bgd", groups.to(factor), factor)), phi
