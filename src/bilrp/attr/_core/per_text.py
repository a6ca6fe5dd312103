"""Per-text projections of a pair relevance, and a token perturbation, for Captum's metrics and visualisation.

Captum's convention is tuple in, tuple out: for ``inputs=(x_a, x_b)`` an attribution returns one tensor per input,
which ``captum.metrics.sensitivity_max``, ``captum.metrics.infidelity`` and ``visualize_text`` rely on. A pair
method's own result is one ``(batch, s_a, s_b)`` matrix; its per-text projections (:func:`per_text`, or
``attribute(..., per_text=...)``) are the tuple: token ``i`` of text A gets the relevance of all its pairs,
``R[i, :].sum()``, token ``j`` of B ``R[:, j].sum()``. Each projection is the explanation of the score as a function
of one text with the other held fixed, and adds up to ``R.sum()``: each alone plus ``delta`` is the score.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..._validation import seed as check_seed

__all__ = ["PerText", "PER_TEXT", "per_text", "check_per_text", "TokenRemoval"]

PerText = Literal["tokens", "inputs"]
PER_TEXT: tuple[str, ...] = ("tokens", "inputs")
"""Shapes of the per-text projections: ``(batch, s)`` per text, or spread evenly over the inputs' width."""


def check_per_text(value) -> str | None:
    """``value`` when it is ``None`` or one of :data:`PER_TEXT`, else a one-line ``ValueError``."""
    if value is None or (isinstance(value, str) and value in PER_TEXT):
        return value
    raise ValueError(
        f"per_text={value!r}: choose None (the (batch, s_a, s_b) pair matrix), 'tokens' ((batch, s) per text) or "
        "'inputs' (shaped like the inputs, for captum.metrics.infidelity)"
    )


def per_text(
    relevance: torch.Tensor, like: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each text's token relevance: ``(R.sum(2), R.sum(1))``, of shapes ``(batch, s_a)`` and ``(batch, s_b)``.

    Parameters
    ----------
    relevance
        A pair relevance ``R`` ``(batch, s_a, s_b)`` (what the pair attributions return).
    like
        The inputs ``(x_a, x_b)``, ``(batch, s, width)``: the projections are then spread evenly over the width
        (each entry ``R[i, :].sum() / width``), shaped like the inputs, as ``captum.metrics.infidelity`` requires
        of attributions. A token-level explanation has no per-dimension resolution: perturb whole tokens
        (:class:`TokenRemoval`), for which the spread does not matter.

    Returns
    -------
    tokens_a, tokens_b
        Contiguous tensors; each adds up, per example, to ``R.sum((1, 2))`` (so each alone plus the attribution's
        ``delta`` is the score). Padded positions are 0.

    """
    if relevance.dim() != 3:
        raise ValueError(f"relevance must be a (batch, s_a, s_b) pair matrix, got shape {tuple(relevance.shape)}")
    projections = (relevance.sum(2).contiguous(), relevance.sum(1).contiguous())
    if like is None:
        return projections
    spread = []
    for projection, tensor in zip(projections, like, strict=True):
        if tensor.shape[:2] != projection.shape:
            raise ValueError(
                f"like= inputs of shape {tuple(tensor.shape)} do not fit relevance of shape {tuple(relevance.shape)}"
            )
        spread.append((projection[..., None] / tensor.shape[-1]).expand(tensor.shape).contiguous())
    return spread[0], spread[1]


class TokenRemoval:
    """A perturbation for ``captum.metrics.infidelity``: remove random tokens of one text, setting their inputs to 0.

    ``removal(inputs) -> (perturbations, perturbed_inputs)``, as ``infidelity``'s ``perturb_func``: for every
    example of the (expanded) batch one of the two texts is picked at random, and each of its tokens is removed
    with probability ``probability``: its input (embedding output or ``inputs_embeds``) becomes all zeros, the
    reference of the LRP rules, so a token's relevance is what the explanation says removing it costs. The
    perturbations are 1 on every width entry of a removed token and 0 elsewhere, so that with
    ``attribute(..., per_text="inputs")`` attributions ``sum(perturbation * attribution)`` is the relevance of the
    removed tokens. One text per example: each per-text relevance explains the score with the other text fixed.

    Parameters
    ----------
    probability
        Chance that a token of the picked text is removed, in ``(0, 1]``.
    seed
        Seed of the generator (the same seed gives the same perturbations, call after call).

    """

    def __init__(self, probability: float = 0.25, seed: int = 0) -> None:
        if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 < probability <= 1:
            raise ValueError(f"probability must be a number in (0, 1], got {probability!r}")
        self.probability = float(probability)
        self.generator = torch.Generator().manual_seed(check_seed("seed", seed))

    def __call__(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[tuple, tuple]:
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise ValueError("TokenRemoval perturbs a pair of inputs (x_a, x_b): give inputs as a 2-tuple")
        batch = inputs[0].shape[0]
        side = torch.rand(batch, generator=self.generator) < 0.5  # True: perturb text A
        perturbations, perturbed = [], []
        for index, tensor in enumerate(inputs):
            removed = torch.rand(tensor.shape[:2], generator=self.generator) < self.probability
            picked = side if index == 0 else ~side
            removed = (removed & picked[:, None]).to(device=tensor.device)
            indicator = removed[..., None].to(tensor.dtype).expand(tensor.shape)
            perturbations.append(indicator.contiguous())
            perturbed.append(tensor * (1 - indicator))
        return tuple(perturbations), tuple(perturbed)
