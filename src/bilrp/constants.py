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

__all__ = ["constant", "ConstantTape", "recording", "replaying"]


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

    def replay(self, like: torch.Tensor) -> torch.Tensor:
        if self.cursor >= len(self.values):
            raise RuntimeError("replay pass used more rule constants than the recorded pass: the call order differs")
        value = self.values[self.cursor]
        self.cursor += 1
        return _repeat_batch(value, like, self.repeats)


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


def _repeat_batch(value: torch.Tensor, like: torch.Tensor, repeats: int) -> torch.Tensor:
    if repeats == 1:
        return value
    for dim in range(min(value.dim(), like.dim())):
        offset = like.dim() - value.dim()
        if like.shape[dim + offset] == value.shape[dim] * repeats:
            return torch.cat([value] * repeats, dim=dim)
    raise RuntimeError(
        f"cannot align a recorded rule constant of shape {tuple(value.shape)} with a replay tensor of shape "
        f"{tuple(like.shape)} repeated {repeats} times"
    )
