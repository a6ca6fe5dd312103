"""The relevance engine: per-token contributions to every embedding dimension, and their bilinear pairing.

Under the Transformer LRP rules the network is linear in its input given the detached constants, so the
relevance of token ``i`` for embedding dimension ``m`` is the directional derivative of ``phi_m`` along
token ``i``'s own input vector::

    C[i, m] = sum_k x[i, k] * d phi_m / d x[i, k]  =  (J_phi  x_i)[m]

Three ways compute all ``C[i, :]``:

- ``"replay"``: record the rule constants in one forward pass, then run the network once more over a
  batch holding, for every token ``i``, the input with only token ``i`` kept (plus one all-zero input).
  With the constants frozen the network is affine, so ``C[i] = f(x_i) - f(0)``. This propagates
  per-token contributions forward with plain PyTorch operations: the cost is that of a forward pass
  over ``seq`` sequences, the floor for this quantity.
- ``"forward"``: one forward-mode JVP per token, batched with ``torch.func.vmap`` (any function).
- ``"reverse"``: one VJP per embedding dimension, batched with ``is_grads_batched`` (more tokens than
  dimensions).

Under LRP rules every mode ends with the conservation certificate (:mod:`bilrp.certificate`):
``sum_i C[i] + f(0) == phi`` and ``f(-2x) - f(0) == -2 (phi - f(0))`` with the recorded constants
replayed. It fails, naming the module at fault, when some non-linearity has no rule.

BiLRP is then a matrix product: ``R = C_a @ C_b.T`` (divided by ``|phi_a| |phi_b|`` for cosine).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from .certificate import (
    PROBE_SCALE,
    AffinityProbe,
    CertificateError,
    NonlinearityError,
    ProbeLayout,
    certificate_error,
    refuse,
    tolerance,
)
from .constants import ConstantTape, recording, replaying
from .models.similarity_model import NORM_FLOOR

__all__ = [
    "token_contributions",
    "pair_relevance",
    "default_chunk_size",
    "Mode",
    "MODES",
    "CertificateError",
    "NonlinearityError",
    "NORM_FLOOR",
    "check_mode",
]

Mode = Literal["auto", "replay", "forward", "reverse"]
MODES = ("auto", "replay", "forward", "reverse")
RepresentFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
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


def token_contributions(
    represent: RepresentFn,
    embeddings: torch.Tensor,
    mask: torch.Tensor,
    mode: Mode = "auto",
    chunk_size: int | None = None,
    baseline: torch.Tensor | None = None,
    steps: int = 1,
    rules: bool = False,
    certify: bool = True,
    model: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Contribution of every token to every dimension of the representation.

    Parameters
    ----------
    represent
        ``represent(embeddings, mask) -> phi`` of shape ``(batch, dim)``; call it inside the composite
        context for LRP, outside for plain gradients.
    embeddings
        Input of ``represent``, ``(batch, seq, width)``.
    mask
        ``(batch, seq)``, 1 for real tokens; padded tokens get exactly zero contributions.
    mode
        ``"replay"`` (frozen rule constants, one batched forward pass), ``"forward"`` (one JVP per token),
        ``"reverse"`` (one VJP per embedding dimension) or ``"auto"``: under rules, replay while its cost
        model says it is cheaper (``seq + 2 <= 3 + 0.75 dim``: 289 tokens for 384 dimensions), else reverse;
        without rules, forward while tokens do not outnumber dimensions, else reverse.
    chunk_size
        Tangents or cotangents per batched pass (bounds memory); default from a 2 GiB budget.
    baseline
        Reference input (zeros if ``None``); directions are ``embeddings - baseline``.
    steps
        Number of points on the straight path from ``baseline`` to ``embeddings`` at which the Jacobian is
        averaged (midpoint rule); 1 evaluates at ``embeddings`` itself (the LRP / gradient x input case).
    rules
        True when ``represent`` runs under LRP rules written with :func:`bilrp.constants.constant` (BiLRP):
        the network is then affine under the frozen constants, which enables replay and the certificate.
    certify
        With ``rules``: run the conservation certificate (:mod:`bilrp.certificate`) in every mode and raise
        :class:`~bilrp.certificate.CertificateError` when it fails. Switch it off only to measure it.
    model
        The module tree ``represent`` runs (hooked to name the culprit when the certificate fails).

    Returns
    -------
    contributions, phi
        ``(batch, seq, dim)`` contributions and the representation ``phi`` at ``embeddings``.

    """
    x = embeddings.detach()
    mask = mask.to(x.device)
    reference = torch.zeros_like(x) if baseline is None else baseline.detach().to(x)
    directions = (x - reference) * mask[..., None].to(x.dtype)
    if rules and (steps != 1 or baseline is not None):
        raise ValueError("LRP rules are evaluated at the input itself: steps must be 1 and baseline None")

    def represent_masked(e: torch.Tensor) -> torch.Tensor:
        return represent(e, mask)

    with torch.no_grad(), recording() as tape:  # the plain forward pass also records the rule constants
        phi = represent_masked(x)
    mode = _choose_mode(mode, x.shape[1], phi.shape[-1], rules)
    certify = rules and certify

    def check(contributions_sum: torch.Tensor, zero: torch.Tensor, probe: torch.Tensor) -> None:
        error = certificate_error(contributions_sum, zero, phi, probe)
        if error > tolerance(x.dtype):
            culprit = None
            if model is not None:
                culprit = _locate_nonaffine_module(represent, model, mask, directions, chunk_size)
            raise refuse(error, x.dtype, culprit)

    if mode == "replay":
        contributions, zero, probe = _replay_contributions(represent, tape, mask, directions, chunk_size, certify)
        if certify:
            check(contributions.sum(1), zero, probe)
        return contributions, phi
    if certify:  # homogeneity first: a non-affine network is refused before the costly per-token passes
        zero, probe = _replay_references(represent, tape, mask, directions)
        check(phi - zero, zero, probe)
    contributions = torch.zeros(x.shape[0], x.shape[1], phi.shape[-1], dtype=phi.dtype, device=x.device)
    alphas = [1.0] if steps == 1 else [(k + 0.5) / steps for k in range(steps)]
    for alpha in alphas:
        point = reference + alpha * (x - reference)
        pass_ = _forward_contributions if mode == "forward" else _reverse_contributions
        contributions += pass_(represent_masked, point, directions, chunk_size)
    contributions /= len(alphas)
    if certify:
        check(contributions.sum(1), zero, probe)
    return contributions, phi


def _locate_nonaffine_module(represent, model, mask, directions, chunk_size):
    """Run the certificate's probes with a hook on every module; the first module whose output fails them."""
    probe = AffinityProbe(model)
    with torch.no_grad():
        with recording() as tape, probe.recording():
            represent(directions, mask)
        for inputs, layout in _replay_batches(directions, chunk_size, with_probe=True):
            with replaying(tape, layout.repeats), probe.replaying(layout):
                represent(inputs, mask.repeat(layout.repeats, 1))
    return probe.first_failure(tolerance(directions.dtype))


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


def _token_tangents(directions: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``(len(positions), batch, seq, width)``: item ``k`` keeps only token ``positions[k]`` of each text."""
    select = positions[:, None] == torch.arange(directions.shape[1], device=directions.device)[None, :]
    return select.to(directions.dtype)[:, None, :, None] * directions[None]


def _replay_batches(directions: torch.Tensor, chunk_size: int | None, with_probe: bool):
    """Replay inputs ``(repeats * batch, seq, width)`` and their layout, chunk by chunk.

    Every chunk starts with the all-zero input; the first also ends with the probe ``PROBE_SCALE * x``.
    """
    batch, length, width = directions.shape
    chunk_size = chunk_size or default_chunk_size(batch, length, width, directions.element_size())
    for start in range(0, length, chunk_size):
        positions = torch.arange(start, min(start + chunk_size, length), device=directions.device)
        pieces = [torch.zeros_like(directions)[None], _token_tangents(directions, positions)]
        probe = with_probe and start == 0
        if probe:
            pieces.append(PROBE_SCALE * directions[None])
        inputs = torch.cat(pieces)
        repeats = inputs.shape[0]
        layout = ProbeLayout(repeats, 1, 1 + len(positions), repeats - 1 if probe else None)
        yield inputs.reshape(repeats * batch, length, width), layout


def _replay_contributions(
    represent: RepresentFn,
    tape: ConstantTape,
    mask: torch.Tensor,
    directions: torch.Tensor,
    chunk_size: int | None,
    with_probe: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Token contributions ``f(x_i) - f(0)``, ``f(0)`` and (``with_probe``) ``f(PROBE_SCALE x)``."""
    batch = directions.shape[0]
    pieces, zero, probe = [], None, None
    with torch.no_grad():
        for inputs, layout in _replay_batches(directions, chunk_size, with_probe):
            with replaying(tape, layout.repeats):
                out = represent(inputs, mask.repeat(layout.repeats, 1)).reshape(layout.repeats, batch, -1)
            zero = out[0]
            pieces.append(out[layout.token_start : layout.token_stop] - zero)
            if layout.probe is not None:
                probe = out[layout.probe]
    return torch.cat(pieces).permute(1, 0, 2), zero, probe


def _replay_references(
    represent: RepresentFn, tape: ConstantTape, mask: torch.Tensor, directions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``f(0)`` and ``f(PROBE_SCALE x)`` of the network with the recorded constants frozen."""
    inputs = torch.cat([torch.zeros_like(directions), PROBE_SCALE * directions])
    with torch.no_grad(), replaying(tape, 2):
        out = represent(inputs, mask.repeat(2, 1)).reshape(2, directions.shape[0], -1)
    return out[0], out[1]


def _forward_contributions(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, directions: torch.Tensor, chunk_size: int | None
) -> torch.Tensor:
    batch, length, width = x.shape
    chunk_size = chunk_size or default_chunk_size(batch, length, width, x.element_size())
    positions = torch.arange(length, device=x.device)

    def directional_derivative(tangent: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(fn, (x,), (tangent,))[1]

    pieces = []
    with torch.no_grad():
        for start in range(0, length, chunk_size):
            tangents = _token_tangents(directions, positions[start : start + chunk_size])
            pieces.append(torch.func.vmap(directional_derivative)(tangents))  # (c, batch, dim)
    return torch.cat(pieces).permute(1, 0, 2)


def _reverse_contributions(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, directions: torch.Tensor, chunk_size: int | None
) -> torch.Tensor:
    batch, length, width = x.shape
    point = x.clone().requires_grad_(True)
    with torch.enable_grad():
        phi = fn(point)
    dim = phi.shape[-1]
    chunk_size = chunk_size or default_chunk_size(batch, length, width, x.element_size())
    eye = torch.eye(dim, dtype=phi.dtype, device=phi.device)
    pieces = []
    for start in range(0, dim, chunk_size):
        cotangents = eye[start : start + chunk_size, None, :].expand(-1, batch, dim)
        (grads,) = torch.autograd.grad(phi, point, cotangents, retain_graph=True, is_grads_batched=True)
        pieces.append(torch.einsum("cbsw,bsw->bsc", grads, directions))
    return torch.cat(pieces, dim=-1)


def pair_relevance(
    contributions_a: torch.Tensor,
    contributions_b: torch.Tensor,
    phi_a: torch.Tensor | None = None,
    phi_b: torch.Tensor | None = None,
    similarity: str = "dot",
) -> torch.Tensor:
    """Bilinear pairing ``R[b, i, j] = sum_m C_a[b, i, m] C_b[b, j, m]``.

    For ``similarity="cosine"`` the norms ``|phi_a| |phi_b|`` are constants (rule for the normalisation)
    and divide the result, so that ``R.sum() + bias`` equals the cosine.
    """
    relevance = torch.einsum("bim,bjm->bij", contributions_a, contributions_b)
    if similarity == "cosine":
        if phi_a is None or phi_b is None:
            raise ValueError("cosine relevance needs phi_a and phi_b for the norms")
        norms = (phi_a.norm(dim=-1) * phi_b.norm(dim=-1)).clamp_min(NORM_FLOOR)
        relevance = relevance / norms[:, None, None]
    elif similarity != "dot":
        raise ValueError(f"unknown similarity {similarity!r}: choose 'dot' or 'cosine'")
    return relevance
