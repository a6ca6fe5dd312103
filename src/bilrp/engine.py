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
  over ``seq`` sequences, the floor for this quantity. A self-check verifies
  ``sum_i C[i] + f(0) == phi`` (it fails if some non-linearity has no rule).
- ``"forward"``: one forward-mode JVP per token, batched with ``torch.func.vmap`` (any function; used for
  plain-gradient methods).
- ``"reverse"``: one VJP per embedding dimension, batched with ``is_grads_batched`` (backward-only zennit
  rules, or more tokens than dimensions).

BiLRP is then a matrix product: ``R = C_a @ C_b.T`` (divided by ``|phi_a| |phi_b|`` for cosine).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from .constants import ConstantTape, recording, replaying

__all__ = ["token_contributions", "pair_relevance", "default_chunk_size", "Mode", "NonlinearityError"]

Mode = Literal["auto", "replay", "forward", "reverse"]
_SELF_CHECK_TOLERANCE = 1e-3


class NonlinearityError(RuntimeError):
    """The network is not affine under the frozen rule constants (a non-linearity without a rule)."""


RepresentFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_MEMORY_BUDGET = 2 * 1024**3


def default_chunk_size(batch: int, length: int, width: int, itemsize: int = 4) -> int:
    """How many tangents (or cotangents) to batch so that one chunk stays near a 2 GiB working set."""
    per_item = max(1, batch * length * width * itemsize * 16)
    return max(1, _MEMORY_BUDGET // per_item)


def token_contributions(
    represent: RepresentFn,
    embeddings: torch.Tensor,
    mask: torch.Tensor,
    mode: Mode = "auto",
    chunk_size: int | None = None,
    baseline: torch.Tensor | None = None,
    steps: int = 1,
    forward_mode_allowed: bool = True,
    affine_under_rules: bool = False,
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
        ``"reverse"`` (one VJP per embedding dimension) or ``"auto"``: replay when ``affine_under_rules``,
        else forward when allowed, each while tokens do not outnumber (twice) the dimensions; else reverse.
    chunk_size
        Tangents or cotangents per batched pass (bounds memory); default from a 2 GiB budget.
    baseline
        Reference input (zeros if ``None``); directions are ``embeddings - baseline``.
    steps
        Number of points on the straight path from ``baseline`` to ``embeddings`` at which the Jacobian is
        averaged (midpoint rule); 1 evaluates at ``embeddings`` itself (the LRP / gradient x input case).
    forward_mode_allowed
        False when the rules live in backward hooks only (forward mode would not see them).
    affine_under_rules
        True when ``represent`` runs under rules written with :func:`bilrp.constants.constant` and nothing
        else is non-linear (BiLRP with an LRP-0 :class:`~bilrp.TransformerComposite`): enables replay.

    Returns
    -------
    contributions, phi
        ``(batch, seq, dim)`` contributions and the representation ``phi`` at ``embeddings``.

    """
    x = embeddings.detach()
    mask = mask.to(x.device)
    reference = torch.zeros_like(x) if baseline is None else baseline.detach().to(x)
    directions = (x - reference) * mask[..., None].to(x.dtype)

    def represent_masked(e: torch.Tensor) -> torch.Tensor:
        return represent(e, mask)

    if mode in ("auto", "replay") and affine_under_rules and steps == 1 and baseline is None:
        with torch.no_grad(), recording() as tape:  # the plain forward pass also records the rule constants
            phi = represent_masked(x)
    else:
        with torch.no_grad():
            phi, tape = represent_masked(x), None
    mode = _choose_mode(mode, x.shape[1], phi.shape[-1], forward_mode_allowed, affine_under_rules)
    if mode == "replay":
        if tape is None:
            raise ValueError("replay mode evaluates at the input only: use mode='forward' for path integrals")
        return _replay_contributions(represent, tape, phi, mask, directions, chunk_size), phi
    total = torch.zeros(x.shape[0], x.shape[1], phi.shape[-1], dtype=phi.dtype, device=x.device)
    alphas = [1.0] if steps == 1 else [(k + 0.5) / steps for k in range(steps)]
    for alpha in alphas:
        point = reference + alpha * (x - reference)
        if mode == "forward":
            total += _forward_contributions(represent_masked, point, directions, chunk_size)
        else:
            total += _reverse_contributions(represent_masked, point, directions, chunk_size)
    return total / len(alphas), phi


def _choose_mode(mode: Mode, length: int, dim: int, forward_mode_allowed: bool, affine: bool) -> str:
    if mode == "auto":
        if affine and length <= 2 * dim:
            return "replay"
        return "forward" if forward_mode_allowed and length <= dim else "reverse"
    if mode == "replay" and not affine:
        raise ValueError("replay mode needs a network that is affine under the rules (BiLRP with LRP-0 linear layers)")
    if mode == "forward" and not forward_mode_allowed:
        raise ValueError(
            "forward mode cannot see backward-only zennit rules: use mode='reverse' or a composite without linear_rule"
        )
    if mode not in ("replay", "forward", "reverse"):
        raise ValueError(f"unknown mode {mode!r}: choose 'auto', 'replay', 'forward' or 'reverse'")
    return mode


def _token_tangents(directions: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``(len(positions), batch, seq, width)``: item ``k`` keeps only token ``positions[k]`` of each text."""
    select = positions[:, None] == torch.arange(directions.shape[1], device=directions.device)[None, :]
    return select.to(directions.dtype)[:, None, :, None] * directions[None]


def _replay_contributions(
    represent: RepresentFn,
    tape: ConstantTape,
    phi: torch.Tensor,
    mask: torch.Tensor,
    directions: torch.Tensor,
    chunk_size: int | None,
) -> torch.Tensor:
    x = directions
    batch, length, width = x.shape
    chunk_size = chunk_size or default_chunk_size(batch, length, width, x.element_size())
    with torch.no_grad():
        pieces, offset = [], None
        for start in range(0, length, chunk_size):
            positions = torch.arange(start, min(start + chunk_size, length), device=x.device)
            inputs = torch.cat([torch.zeros_like(x)[None], _token_tangents(directions, positions)])
            repeats = inputs.shape[0]
            with replaying(tape, repeats):
                out = represent(inputs.reshape(repeats * batch, length, width), mask.repeat(repeats, 1))
            out = out.reshape(repeats, batch, -1)
            offset = out[0]
            pieces.append(out[1:] - offset)
    contributions = torch.cat(pieces).permute(1, 0, 2)
    error = float((contributions.sum(1) + offset - phi).abs().max() / phi.abs().max().clamp_min(1e-12))
    if error > _SELF_CHECK_TOLERANCE:
        raise NonlinearityError(
            f"the network is not affine under the frozen rule constants (self-check error {error:.2e}): some "
            "non-linear module has no LRP rule; add a canonizer for it or use mode='forward'"
        )
    return contributions


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
        norms = (phi_a.norm(dim=-1) * phi_b.norm(dim=-1)).clamp_min(1e-12)
        relevance = relevance / norms[:, None, None]
    elif similarity != "dot":
        raise ValueError(f"unknown similarity {similarity!r}: choose 'dot' or 'cosine'")
    return relevance
