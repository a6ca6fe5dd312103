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
from .engine_cost import MODES, Mode, _choose_mode, check_mode, default_chunk_size
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

RepresentFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
    groups: torch.Tensor | None = None,
    memory_factor: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Contribution of every token (or group of tokens) to every dimension of the representation.

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
    groups
        ``(batch, groups, seq)`` 0/1: which tokens form each group (words, sentences, spans; every real token in
        exactly one group, padding in none). A group is one tangent, its contribution exactly the sum of its
        tokens' (the network is linear in its input along the directions), so the cost grows with the number
        of groups instead of tokens. Default: every token on its own.
    memory_factor
        How many times LRP-0's activations the rules keep alive (sign-splitting linear rules: 3); the default
        chunk size is divided by it, so that a pass holds the same memory budget.

    Returns
    -------
    contributions, phi
        ``(batch, seq, dim)`` (or ``(batch, groups, dim)``) contributions and the representation ``phi``.

    """
    x = embeddings.detach()
    mask = mask.to(x.device)
    groups = None if groups is None else _checked_groups(groups, mask, x.dtype)
    if chunk_size is None and memory_factor > 1:
        chunk_size = max(1, int(default_chunk_size(*x.shape, x.element_size()) / memory_factor))
    units = x.shape[1] if groups is None else groups.shape[1]
    reference = torch.zeros_like(x) if baseline is None else baseline.detach().to(x)
    directions = (x - reference) * mask[..., None].to(x.dtype)
    if rules and (steps != 1 or baseline is not None):
        raise ValueError("LRP rules are evaluated at the input itself: steps must be 1 and baseline None")

    def represent_masked(e: torch.Tensor) -> torch.Tensor:
        return represent(e, mask)

    with torch.no_grad(), recording() as tape:  # the plain forward pass also records the rule constants
        phi = represent_masked(x)
    mode = _choose_mode(mode, units, phi.shape[-1], rules)
    certify = rules and certify

    def check(contributions_sum: torch.Tensor, zero: torch.Tensor, probe: torch.Tensor) -> None:
        error = certificate_error(contributions_sum, zero, phi, probe)
        if error > tolerance(x.dtype):
            culprit = None
            if model is not None:
                culprit = _locate_nonaffine_module(represent, model, mask, directions, chunk_size)
            raise refuse(error, x.dtype, culprit)

    if mode == "replay":
        contributions, zero, probe = _replay_contributions(
            represent, tape, mask, directions, chunk_size, certify, groups
        )
        if certify:
            check(contributions.sum(1), zero, probe)
        return contributions, phi
    if certify:  # homogeneity first: a non-affine network is refused before the costly per-token passes
        zero, probe = _replay_references(represent, tape, mask, directions)
        check(phi - zero, zero, probe)
    contributions = torch.zeros(x.shape[0], units, phi.shape[-1], dtype=phi.dtype, device=x.device)
    alphas = [1.0] if steps == 1 else [(k + 0.5) / steps for k in range(steps)]
    for alpha in alphas:
        point = reference + alpha * (x - reference)
        pass_ = _forward_contributions if mode == "forward" else _reverse_contributions
        contributions += pass_(represent_masked, point, directions, chunk_size, groups)
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


def _checked_groups(groups: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``groups`` as ``dtype`` when it partitions the real tokens of every text, else a one-line ``ValueError``."""
    if groups.dim() != 3 or groups.shape[0] != mask.shape[0] or groups.shape[2] != mask.shape[1]:
        raise ValueError(
            f"groups of shape {tuple(groups.shape)} do not fit a batch of shape {tuple(mask.shape)}: give "
            "(batch, groups, seq)"
        )
    groups = groups.to(device=mask.device, dtype=dtype)
    if not torch.all((groups == 0) | (groups == 1)) or not torch.equal(groups.sum(1), mask.to(dtype)):
        raise ValueError("groups must put every real token in exactly one group and padding in none (0/1 entries)")
    return groups


def _units(directions: torch.Tensor, groups: torch.Tensor | None) -> int:
    return directions.shape[1] if groups is None else groups.shape[1]


def _token_tangents(
    directions: torch.Tensor, positions: torch.Tensor, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """``(len(positions), batch, seq, width)``: item ``k`` keeps only token (or group) ``positions[k]``."""
    if groups is None:
        select = (positions[:, None] == torch.arange(directions.shape[1], device=directions.device)[None, :])[:, None]
    else:
        select = groups[:, positions, :].permute(1, 0, 2)
    return select.to(directions.dtype)[..., None] * directions[None]


def _replay_batches(
    directions: torch.Tensor, chunk_size: int | None, with_probe: bool, groups: torch.Tensor | None = None
):
    """Replay inputs ``(repeats * batch, seq, width)`` and their layout, chunk by chunk.

    Every chunk starts with the all-zero input; the first also ends with the probe ``PROBE_SCALE * x``.
    """
    batch, length, width = directions.shape
    chunk_size = chunk_size or default_chunk_size(batch, length, width, directions.element_size())
    units = _units(directions, groups)
    for start in range(0, units, chunk_size):
        positions = torch.arange(start, min(start + chunk_size, units), device=directions.device)
        pieces = [torch.zeros_like(directions)[None], _token_tangents(directions, positions, groups)]
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
    groups: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Token (or group) contributions ``f(x_i) - f(0)``, ``f(0)`` and (``with_probe``) ``f(PROBE_SCALE x)``."""
    batch = directions.shape[0]
    pieces, zero, probe = [], None, None
    with torch.no_grad():
        for inputs, layout in _replay_batches(directions, chunk_size, with_probe, groups):
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
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    directions: torch.Tensor,
    chunk_size: int | None,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    batch, length, width = x.shape
    chunk_size = chunk_size or default_chunk_size(batch, length, width, x.element_size())
    units = _units(directions, groups)
    positions = torch.arange(units, device=x.device)

    def directional_derivative(tangent: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(fn, (x,), (tangent,))[1]

    pieces = []
    with torch.no_grad():
        for start in range(0, units, chunk_size):
            tangents = _token_tangents(directions, positions[start : start + chunk_size], groups)
            pieces.append(torch.func.vmap(directional_derivative)(tangents))  # (c, batch, dim)
    return torch.cat(pieces).permute(1, 0, 2)


def _reverse_contributions(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    directions: torch.Tensor,
    chunk_size: int | None,
    groups: torch.Tensor | None = None,
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
    per_token = torch.cat(pieces, dim=-1)
    return per_token if groups is None else torch.einsum("bgs,bsc->bgc", groups, per_token)


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
