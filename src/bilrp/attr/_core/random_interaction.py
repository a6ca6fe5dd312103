"""Random baseline: independent standard-normal relevance for every real token pair."""

from __future__ import annotations

import torch

from ..._validation import seed as check_seed
from ...models.input_points import InputPoint
from .pair_attribution import PairAttribution, PairSimilarityModel

__all__ = ["RandomInteraction"]


class RandomInteraction(PairAttribution):
    """Standard-normal relevance per token pair (seeded), the floor every explanation must beat.

    Parameters
    ----------
    forward_func
        A :class:`~bilrp.SimilarityModel` or compatible module (used for the score in ``delta``).
    seed
        Seed of the generator; the same seed gives the same relevance.
    attribute_to
        The input point (only the score in ``delta`` depends on it; see :class:`~bilrp.attr.PairAttribution`).

    """

    name = "Random"

    def __init__(
        self, forward_func: PairSimilarityModel, seed: int = 0, *, attribute_to: InputPoint = "embedding_output"
    ) -> None:
        super().__init__(forward_func, attribute_to)
        self.seed = check_seed("seed", seed)

    def _relevance(self, emb_a, emb_b, mask_a, mask_b, internal_batch_size, baselines=None):
        generator = torch.Generator().manual_seed(self.seed)
        shape = (emb_a.shape[0], emb_a.shape[1], emb_b.shape[1])
        relevance = torch.randn(shape, generator=generator, dtype=emb_a.dtype).to(emb_a.device)
        with torch.no_grad():
            score = self.forward_func.compare(
                self.forward_func.represent(emb_a, mask_a), self.forward_func.represent(emb_b, mask_b)
            )
        return relevance, score
