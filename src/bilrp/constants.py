"""Rule constants: the detached values of the Transformer LRP rules, optionally recorded and replayed.

Every rule makes one quantity a constant (attention probabilities, a normalisation statistic, an
activation ratio). Normally that constant is simply computed and detached. The engine can also
*record* the constants of one forward pass and *replay* them in a second pass over a batch that repeats
the recorded batch ``R`` times: with the constants frozen, the modified network is affine in its input,
so the replay pass propagates per-token contributions forward through plain PyTorch operations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

__all__ = ["constant", "scale_by_constant", "combine_with_constant", "ConstantTape", "recording", "replaying"]


class ConstantTape:
    """The constants of one forward pass, in call order."""

    def __init__(self) -> None:
        self.values: list[torch.Tensor] = []
        self.cursor = 0
        self.repeats = 1
        self.phase = "record"

    def record(self, value: torch.Tensor) -> torch.Tensor:
        self.values.append(value)
        return value

    def next_value(self) -> torch.Tensor:
        if self.cursor >= len(self.values):
            raise RuntimeError("replay pass used more rule constants than the recorded pass: the call order differs")
        self.cursor += 1
        return self.values[self.cursor - 1]

    def replay(self, like: torch.Tensor) -> torch.Tensor:
        value = self.next_value()
        if self.repeats == 1:
            return value
        dim = _batch_dim(value, like, self.repeats)
        return torch.cat([value] * self.repeats, dim=dim)


_TAPE: ContextVar[ConstantTape | None] = ContextVar("bilrp_constant_tape", default=None)


def constant(compute: Callable[[], torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """A rule constant: ``compute()`` detached, or its recorded value while replaying.

    Parameters
    ----------
    compute
        Computes the constant from the current (detached) forward values.
    like
        The tensor the constant belongs to (its batch dimension is the one repeated during replay).

    """
    tape = _TAPE.get()
    if tape is not None and tape.phase == "replay":
        return tape.replay(like)
    value = compute().detach()
    return tape.record(value) if tape is not None else value


def scale_by_constant(x: torch.Tensor, compute: Callable[[], torch.Tensor], divide: bool = False) -> torch.Tensor:
    """``x * c`` (or ``x / c``) for a rule constant ``c = compute()`` that broadcasts against ``x``.

    While replaying, the recorded ``c`` is broadcast over the repeated batch without being copied.
    """
    return combine_with_constant(x, compute, torch.div if divide else torch.mul)


def combine_with_constant(
    x: torch.Tensor,
    compute: Callable[[], torch.Tensor],
    combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``combine(x, c)`` for a rule constant ``c = compute()`` and a batched operation ``combine``.

    ``combine`` must broadcast over leading dimensions (``torch.mul``, ``torch.add``, a matrix product
    ``lambda x, c: c @ x`` whose batch dimension is not one of the last two). While replaying, the
    recorded ``c`` is broadcast over the repeated batch without being copied: ``x`` is viewed as
    ``(repeats, batch, ...)`` and ``c`` as ``(1, batch, ...)``.
    """
    tape = _TAPE.get()
    if tape is None or tape.phase != "replay" or tape.repeats == 1:
        return combine(x, constant(compute, like=x))
    value = tape.next_value()
    offset = x.dim() - value.dim()
    dim = _batch_dim(value, x, tape.repeats)
    split = x.unflatten(dim + offset, (tape.repeats, value.shape[dim]))
    return combine(split, value.unsqueeze(dim)).flatten(dim + offset, dim + offset + 1)


@contextmanager
def recording() -> Iterator[ConstantTape]:
    """Record every rule constant computed inside the context on a new tape."""
    tape = ConstantTape()
    token = _TAPE.set(tape)
    try:
        yield tape
    finally:
        _TAPE.reset(token)


@contextmanager
def replaying(tape: ConstantTape, repeats: int) -> Iterator[ConstantTape]:
    """Replay ``tape``'s constants, each repeated ``repeats`` times along its batch dimension."""
    tape.phase, tape.cursor, tape.repeats = "replay", 0, repeats
    token = _TAPE.set(tape)
    try:
        yield tape
        if tape.cursor != len(tape.values):
            raise RuntimeError("replay pass used fewer rule constants than the recorded pass: the call order differs")
    finally:
        _TAPE.reset(token)
        tape.phase = "record"


def _batch_dim(value: torch.Tensor, like: torch.Tensor, repeats: int) -> int:
    """The dimension of ``value`` that ``like`` holds ``repeats`` times (dimensions aligned from the right)."""
    offset = like.dim() - value.dim()
    for dim in range(value.dim()):
        if dim + offset >= 0 and like.shape[dim + offset] == value.shape[dim] * repeats:
            return dim
    raise RuntimeError(
        f"cannot align a recorded rule constant of shape {tuple(value.shape)} with a replay tensor of shape "
        f"{tuple(like.shape)} repeated {repeats} times"
    )
