"""Inputs of the pair attributions: unpacking ``(inputs, additional_forward_args)``, masks, baselines, padding."""

from __future__ import annotations

import torch

from ...explaining import HALF_DTYPES

__all__ = ["unpack_pair", "check_mask", "computable", "baseline_pair", "pad"]


def computable(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs in float32, the precision :func:`~bilrp.explaining.explaining` runs models in."""
    return tensor.float() if tensor.dtype in HALF_DTYPES else tensor


def baseline_pair(baselines, emb_a: torch.Tensor, emb_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Captum-style ``baselines`` (one number, or a pair of tensors broadcastable to the inputs) as a pair."""
    if isinstance(baselines, (int, float)) and not isinstance(baselines, bool):
        return torch.full_like(emb_a, float(baselines)), torch.full_like(emb_b, float(baselines))
    if isinstance(baselines, (tuple, list)) and len(baselines) == 2:
        pair = []
        for base, emb in zip(baselines, (emb_a, emb_b), strict=True):
            base = torch.as_tensor(base, dtype=emb.dtype, device=emb.device)
            try:
                pair.append(torch.broadcast_to(base, emb.shape).clone())
            except RuntimeError:
                raise ValueError(
                    f"a baseline of shape {tuple(base.shape)} does not broadcast to the input shape {tuple(emb.shape)}"
                ) from None
        return pair[0], pair[1]
    raise ValueError("baselines must be one number or a pair (base_a, base_b) of tensors shaped like the inputs")


def pad(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad dimension 1 of ``tensor`` to ``length``."""
    missing = length - tensor.shape[1]
    if missing == 0:
        return tensor
    return torch.cat([tensor, tensor.new_zeros(tensor.shape[0], missing, *tensor.shape[2:])], dim=1)


def unpack_pair(inputs, additional_forward_args, what: str = "embedding outputs"):
    """``(x_a, x_b, mask_a, mask_b)`` from Captum's ``inputs`` and ``additional_forward_args``, checked.

    ``what`` names the inputs for the messages (``"embedding outputs"`` or ``"inputs_embeds"``).
    """
    if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
        raise ValueError(f"inputs must be a pair (x_a, x_b) of {what}, one tensor per text")
    emb_a, emb_b = inputs
    for index, tensor in enumerate(inputs):
        if not isinstance(tensor, torch.Tensor) or not tensor.dtype.is_floating_point:
            kind = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(
                f"inputs[{index}] must be a float tensor of {what} (batch, seq, width), got {kind}: embed token ids "
                "first"
            )
    if emb_a.dim() != 3 or emb_b.dim() != 3 or emb_a.shape[0] != emb_b.shape[0]:
        raise ValueError(
            f"inputs must be (batch, seq, width) tensors with the same batch size, got shapes "
            f"{tuple(emb_a.shape)} and {tuple(emb_b.shape)}"
        )
    if emb_a.shape[0] == 0:
        raise ValueError("inputs hold a batch of 0 pairs: give at least one pair")
    if additional_forward_args is None:
        mask_a = torch.ones(emb_a.shape[:2], dtype=torch.long, device=emb_a.device)
        mask_b = torch.ones(emb_b.shape[:2], dtype=torch.long, device=emb_b.device)
    else:
        if not isinstance(additional_forward_args, (tuple, list)) or len(additional_forward_args) != 2:
            raise ValueError("additional_forward_args must be the pair of attention masks (mask_a, mask_b)")
        mask_a, mask_b = additional_forward_args
        check_mask(mask_a, emb_a.shape[:2], "mask_a")
        check_mask(mask_b, emb_b.shape[:2], "mask_b")
    return emb_a, emb_b, mask_a, mask_b


def check_mask(mask, shape: torch.Size, name: str) -> None:
    """A mask is a tensor of the given shape holding only 0 and 1, with at least one 1 per text."""
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of 0s and 1s, got {type(mask).__name__}")
    if mask.shape != shape:
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    values = mask.to(torch.float64)
    if not bool(((values == 0) | (values == 1)).all()):
        bad = values[(values != 0) & (values != 1)][0].item()
        raise ValueError(f"{name} must hold only 0 (padding) and 1 (real token), found {bad:g}")
    if mask.numel() and not bool((values.sum(-1) > 0).all()):
        raise ValueError(f"{name} has a text with no real token (a row of zeros): every text needs one")
