"""The engine's cost model: how many tangents one batched pass may hold, and which mode is cheaper.

- :func:`default_chunk_size`: tangents (or cotangents) per pass so that a pass stays within
  :data:`_MEMORY_BUDGET`, from the activations one tangent keeps alive (:func:`_item_bytes`).
- :func:`_choose_mode`: ``mode="auto"``; under LRP rules replay costs one forward pass per token (or token
  group), reverse one batched VJP per embedding dimension (:func:`_replay_cost`, :func:`_reverse_cost`,
  calibrated in ``benchmarks/results/memory.md``).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Mode", "MODES", "default_chunk_size", "check_mode"]

Mode = Literal["auto", "replay", "forward", "reverse"]
MODES = ("auto", "replay", "forward", "reverse")
_MEMORY_BUDGET = 2 * 1024**3
"""Bytes that the activations of one batched pass (one chunk) may take: its working set."""
_HEAD_WIDTH = 32
"""Width per attention head assumed when ``heads`` is not given: the narrowest in use (MiniLM: 384 / 12), so
that heads are never under-counted."""
_TOKEN_COPIES = 8
"""Width-sized vectors alive per token while a layer runs (hidden state, Q, K, V, attention output, ...)."""
_INTERMEDIATE_COPIES = 2
"""MLP-intermediate-sized vectors alive per token (the activation and its rule-scaled copy)."""
_ATTENTION_COPIES = 4
"""``seq x seq`` matrices alive per head (scores, masked scores, replayed probabilities, the mask)."""
_BACKWARD_COST = 0.75
"""One batched VJP in forward passes of the sequence: 0.76, 0.75, 0.53 at 128/256/512 tokens on MiniLM (CPU),
taken where replay and reverse cost the same (``benchmarks/results/memory.md``)."""


def default_chunk_size(
    batch: int,
    length: int,
    width: int,
    itemsize: int = 4,
    *,
    heads: int | None = None,
    intermediate: int | None = None,
) -> int:
    """How many tangents (or cotangents) to batch so that one chunk stays within :data:`_MEMORY_BUDGET`.

    Parameters
    ----------
    batch, length, width
        Shape ``(batch, seq, width)`` of the explained input; every tangent is one such batch.
    itemsize
        Bytes per number (4 for float32).
    heads, intermediate
        Attention heads and MLP width of the model; default ``width // 32`` and ``4 * width``.

    Returns
    -------
    int
        ``max(1, budget // per_item)`` with ``per_item`` from :func:`_item_bytes`.

    """
    return max(1, _MEMORY_BUDGET // _item_bytes(batch, length, width, itemsize, heads, intermediate))


def _item_bytes(
    batch: int, length: int, width: int, itemsize: int, heads: int | None = None, intermediate: int | None = None
) -> int:
    """Peak bytes one tangent adds to a pass: ``batch * seq * itemsize * (8 w + 2 i + 4 h seq)``.

    Per-token vectors (``w``: width, ``i``: MLP intermediate) grow linearly with the sequence, the ``h`` heads'
    attention matrices quadratically (they dominate from ``seq = 4 * head width``). On all-MiniLM-L6-v2 at
    128/256/512 tokens a pass's measured growth is 0.59/0.53/0.75 of this estimate
    (``benchmarks/results/memory.md``). The recorded constants (``layers * batch * h * seq**2`` numbers) are
    not counted: no chunk size bounds them.
    """
    heads = heads or max(1, width // _HEAD_WIDTH)
    intermediate = intermediate or 4 * width
    per_token = _TOKEN_COPIES * width + _INTERMEDIATE_COPIES * intermediate + _ATTENTION_COPIES * heads * length
    return max(1, batch * length * per_token * itemsize)


def check_mode(mode: str) -> Mode:
    """``mode`` if it is one of :data:`MODES`, else a one-line ``ValueError``."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(map(repr, MODES))}")
    return mode


def _choose_mode(mode: Mode, length: int, dim: int, rules: bool) -> str:
    """The engine mode for ``mode``; ``"auto"`` under rules takes the cheaper of replay and reverse.

    Replay while ``seq + 2 <= 3 + 0.75 dim`` (:func:`_replay_cost`, :func:`_reverse_cost`; 289 tokens for 384
    dimensions), else reverse. Without rules: forward while tokens do not outnumber dimensions, else reverse.
    """
    check_mode(mode)
    if mode == "auto":
        if rules:
            return "replay" if _replay_cost(length) <= _reverse_cost(dim) else "reverse"
        return "forward" if length <= dim else "reverse"
    if mode == "replay" and not rules:
        raise ValueError(
            "mode='replay' replays LRP rule constants and is for BiLRP only; plain-gradient methods use "
            "mode='forward' or 'reverse'"
        )
    return mode


def _replay_cost(length: int) -> float:
    """Forward passes of one sequence that replay runs after the recording: one per token, ``f(0)``, the probe."""
    return length + 2.0


def _reverse_cost(dim: int) -> float:
    """Reverse mode after the recording, in forward passes: graph, certificate (2), ``dim`` VJPs."""
    return 3.0 + _BACKWARD_COST * dim
