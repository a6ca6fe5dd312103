"""The conservation certificate: run-time proof that relevance is exact for the LRP rules.

Under bilrp's rules every non-linearity of the network is replaced by a *constant* of the forward pass
(attention probabilities, normalisation statistics, activation ratios, linear-rule scales). With those
constants frozen the network ``f`` is affine in its input, and LRP relevance is exact for the rules. The
certificate checks this on the input being explained, with the constants recorded at ``x`` and replayed:

1. **conservation**: ``sum_i C[i] + f(0) == f(x)`` -- the token contributions and the bias term add up
   to the output;
2. **homogeneity**: ``f(-2x) - f(0) == -2 (f(x) - f(0))`` -- a probe that fails for every non-affine
   map: a softmax, a normalisation, an activation or a product of two input-dependent tensors computed
   outside a rule (also those that happen to act on each token separately, which (1) cannot see).

Both are checked to a dtype-aware tolerance (:func:`tolerance`). When either fails, :class:`AffinityProbe`
runs the same probes with a forward hook on every module and names the first module, in execution order,
whose output breaks them: the module that computes something no rule covers.

What the certificate proves: the relevance is exact *for the rules*, whatever the model. What it does not
prove: that the rules suit the model (that is a question for the evaluation, not for arithmetic).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ._validation import Refusal
from .architectures import TransformerCanonizer
from .canonizers import CUSTOM_ARCHITECTURE_DOCS

__all__ = [
    "CertificateError",
    "NonlinearityError",
    "PROBE_SCALE",
    "tolerance",
    "certificate_error",
    "AffinityProbe",
    "ProbeLayout",
    "refuse",
]

PROBE_SCALE = -2.0
"""The homogeneity probe evaluates the frozen network at ``PROBE_SCALE * x``."""


class CertificateError(RuntimeError, Refusal):
    """The network is not affine under the frozen rule constants: the relevance would not be exact.

    Raised by every LRP-based method when the conservation certificate fails; the message names the first
    module whose output is not affine (the one computing a non-linearity that no rule covers).
    """


NonlinearityError = CertificateError
"""Former name of :class:`CertificateError`."""


def tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance of the certificate for arithmetic in ``dtype``: ``16 sqrt(eps)``.

    float32: 5.5e-3, float64: 2.4e-7. Rounding in a deep network grows far slower than this; a missing
    rule gives errors of order one (see ``docs/guarantees.md``). Half-precision models are explained in
    float32 (:func:`bilrp.explaining.explaining`), so half precision never reaches the certificate.
    """
    return 16.0 * float(torch.finfo(dtype).eps) ** 0.5


def certificate_error(
    contributions_sum: torch.Tensor,
    zero: torch.Tensor,
    output: torch.Tensor,
    probe: torch.Tensor,
    scale: torch.Tensor | None = None,
) -> float:
    """Largest relative violation of conservation and homogeneity (see the module docstring).

    Any non-finite value (NaN, infinity) gives ``inf``: it is never within tolerance.

    Parameters
    ----------
    contributions_sum
        ``sum_i C[i]``, shape ``(batch, ...)``.
    zero, output, probe
        ``f(0)``, ``f(x)`` and ``f(PROBE_SCALE * x)`` of the frozen network, same shape.
    scale
        ``(batch,)``: what the violations are relative to; default the largest ``|C| + |f(0)| + |f(x)|`` of
        each example. Quantities that are sums of many terms pass the sum of the terms' magnitudes, so that
        terms cancelling to nearly 0 do not turn rounding into a violation.

    """
    c, z, y, p = (t.detach().double() for t in (contributions_sum, zero, output, probe))
    if not all(bool(torch.isfinite(t).all()) for t in (c, z, y, p)):
        return float("inf")  # a NaN or infinity is never certified
    if scale is None:
        scale = (c.abs() + z.abs() + y.abs()).flatten(1).amax(1)
    scale = scale.detach().double().clamp_min(1e-30)
    conservation = (c + z - y).abs().flatten(1).amax(1) / scale
    homogeneity = ((p - z) - PROBE_SCALE * (y - z)).abs().flatten(1).amax(1) / (abs(PROBE_SCALE) * scale)
    return float(torch.maximum(conservation, homogeneity).max())


@dataclass(frozen=True)
class ProbeLayout:
    """Which pieces of a replay batch are what: the batch repeats the explained batch ``repeats`` times.

    Piece ``zero`` (0 unless ``None``) is the all-zero input, pieces ``token_start`` to ``token_stop - 1`` hold
    one token each, and piece ``probe`` (if not ``None``) is ``PROBE_SCALE * x``. A pass without the zero
    piece (``zero=None``) can bring the probe alone, after a pass that brought the zero input.
    """

    repeats: int
    token_start: int = 1
    token_stop: int = 1
    probe: int | None = None
    zero: int | None = 0


@dataclass
class _Sums:
    """One tensor of the recorded pass and the running sums of its replayed pieces."""

    recorded: torch.Tensor
    zero: torch.Tensor | None = None
    token_sum: torch.Tensor | None = None
    probe: torch.Tensor | None = None

    def add(self, replayed: torch.Tensor, layout: ProbeLayout) -> bool:
        pieces = _split_pieces(replayed, self.recorded, layout.repeats)
        if pieces is None:
            return False
        if layout.zero is not None:
            self.zero = pieces[layout.zero]
        if layout.token_stop > layout.token_start:
            tokens = (pieces[layout.token_start : layout.token_stop] - self.zero).sum(0)
            self.token_sum = tokens if self.token_sum is None else self.token_sum + tokens
        if layout.probe is not None:
            self.probe = pieces[layout.probe]
        return True

    def error(self, with_tokens: bool) -> float | None:
        if self.zero is None or self.probe is None or (with_tokens and self.token_sum is None):
            return None
        token_sum = self.token_sum if with_tokens else self.recorded - self.zero
        return certificate_error(token_sum[None], self.zero[None], self.recorded[None], self.probe[None])


@dataclass
class _ModuleCall:
    name: str
    module: nn.Module
    parent: int | None  # index of the enclosing module call, in call order
    output: _Sums
    input: _Sums | None
    done: int = field(default=0)  # completion rank


class AffinityProbe:
    """Forward hooks on every module of ``root`` that find the first module whose output is not affine.

    Use :meth:`recording` around a forward pass at ``x`` (with the rule constants being recorded), then
    :meth:`replaying` around each replay pass of the same constants, and finally :meth:`first_failure`.
    Nothing is kept of a replay pass but running sums of the size of one recorded output per module.
    A module whose *input* already breaks the probes is innocent: the break happened in the code of the
    enclosing module that computed that input, which is then the one named.
    """

    def __init__(self, root: nn.Module) -> None:
        self.root = root
        self.calls: list[_ModuleCall] = []
        self.completed = 0
        self.has_tokens = False

    @contextmanager
    def _hooked(self, before, after) -> Iterator[None]:
        handles = []
        for name, module in self.root.named_modules():
            handles.append(module.register_forward_pre_hook(before(name)))
            handles.append(module.register_forward_hook(after(name), with_kwargs=True))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Keep every module call's input and output of this pass, with the call that encloses it."""
        stack: list[int] = []

        def before(name):
            def push(module, args):
                self.calls.append(_ModuleCall(name, module, stack[-1] if stack else None, None, None))
                stack.append(len(self.calls) - 1)

            return push

        def after(name):
            def store(module, args, kwargs, output):
                call = self.calls[stack.pop()]
                out, given = _first_tensor(output), _first_tensor((*args, *kwargs.values()))
                call.output = _Sums(out.detach()) if _is_float(out) else None
                call.input = _Sums(given.detach()) if _is_float(given) else None
                self.completed += 1
                call.done = self.completed

            return store

        with self._hooked(before, after):
            yield

    @contextmanager
    def replaying(self, layout: ProbeLayout) -> Iterator[None]:
        """Add this replay pass's pieces to every module call's running sums."""
        order = iter(range(len(self.calls)))
        stack: list[int] = []

        def before(name):
            def push(module, args):
                stack.append(next(order, -1))

            return push

        def after(name):
            def add(module, args, kwargs, output):
                index = stack.pop()
                if index < 0 or self.calls[index].module is not module:
                    return
                call = self.calls[index]
                for sums, value in ((call.output, output), (call.input, (*args, *kwargs.values()))):
                    tensor = _first_tensor(value)
                    if sums is not None and _is_float(tensor) and sums.add(tensor.detach(), layout):
                        self.has_tokens |= layout.token_stop > layout.token_start

            return add

        with self._hooked(before, after):
            yield

    def first_failure(self, limit: float) -> tuple[str, nn.Module, float] | None:
        """``(name, module, error)`` of the first module in execution order that breaks the probes, or ``None``."""
        for call in sorted((c for c in self.calls if c.done), key=lambda c: c.done):
            error = None if call.output is None else call.output.error(self.has_tokens)
            if error is None or error <= limit:
                continue
            input_error = None if call.input is None else call.input.error(self.has_tokens)
            while input_error is not None and input_error > limit and call.parent is not None:
                call = self.calls[call.parent]  # the break is in the code that computed this input
                input_error = None
            return call.name, call.module, error
        return None


def _is_float(tensor: torch.Tensor | None) -> bool:
    return tensor is not None and tensor.is_floating_point()


def _first_tensor(output) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((item for item in output if isinstance(item, torch.Tensor)), None)
    return getattr(output, "last_hidden_state", None)


def _split_pieces(replayed: torch.Tensor, recorded: torch.Tensor, repeats: int) -> torch.Tensor | None:
    """``(repeats, *recorded.shape)``: the pieces of ``replayed`` along its repeated batch dimension."""
    if replayed.dim() != recorded.dim():
        return None
    for dim in range(recorded.dim()):
        same_elsewhere = all(
            replayed.shape[d] == recorded.shape[d] for d in range(recorded.dim()) if d != dim
        )
        if same_elsewhere and replayed.shape[dim] == recorded.shape[dim] * repeats:
            return replayed.unflatten(dim, (repeats, recorded.shape[dim])).movedim(dim, 0)
    return None


def _rule_left_out(module: nn.Module) -> bool:
    """Whether bilrp's default canonizer has a rule for ``module`` that is not on it (its forward is its class's)."""
    return isinstance(module, TransformerCanonizer().handled_types) and "forward" not in vars(module)


def refuse(error: float, dtype: torch.dtype, culprit: tuple[str, nn.Module, float] | None) -> CertificateError:
    """The :class:`CertificateError` for a failed certificate, naming the culprit module when one was found."""
    where = (
        f"the first module whose output breaks it is {culprit[0] or '<root>'!r} ({type(culprit[1]).__qualname__}, "
        f"error {culprit[2]:.2e}): it computes a non-linear function (a softmax, normalisation, activation or "
        "product of two input-dependent tensors) that no bilrp rule covers"
        if culprit is not None
        else "no single module's output breaks it, so the non-linearity sits outside any module (in the pooling, "
        "the similarity or the explained function itself)"
    )
    if error == float("inf"):
        return CertificateError(
            "relevance refused: the network under the LRP rules gives NaN or infinite values"
            + (f" first at module {culprit[0] or '<root>'!r} ({type(culprit[1]).__qualname__})" if culprit else "")
            + f" ({str(dtype).replace('torch.', '')}); check the model's own output on these inputs (a fully "
            "masked attention row, an overflow) before explaining it"
        )
    remedy = f"Give that computation an LRP rule with a canonizer, see {CUSTOM_ARCHITECTURE_DOCS}"
    if culprit is not None and _rule_left_out(culprit[1]):
        where = where.replace("that no bilrp rule covers", "whose bilrp rule the composite's canonizers leave out")
        remedy = "Keep bilrp's default canonizer next to yours: canonizers=[TransformerCanonizer(), ...]"
    return CertificateError(
        f"relevance refused: the network under the LRP rules is not affine in its input (certificate error "
        f"{error:.2e}, tolerance {tolerance(dtype):.1e} for {str(dtype).replace('torch.', '')}); {where}. {remedy}"
    )
