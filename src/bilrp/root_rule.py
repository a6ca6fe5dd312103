"""The model's root under zennit's attributors: relevance in, relevance out, certified on every forward pass.

zennit's rules pass *relevance* where autograd passes gradients. ``attributor(x, attr_output)`` takes
``attr_output`` as the relevance of the output and returns the relevance of the input, because every rule's
backward divides the incoming relevance by its layer's output and multiplies by its input (so the input's
"gradient" is relevance when the first layer the input meets has a rule). bilrp's rules live in the forward
graph instead: the gradient through them is the Jacobian ``J`` of the network with the rule constants frozen.
:class:`RootRule` makes the whole model one such zennit layer. On the way back the relevance ``R_out`` of the
output ``y`` is divided by ``y``, passed back through ``J`` and multiplied by the input::

    R_in = x * J^T (R_out / y)        (an output element that is exactly 0 passes no relevance)

the LRP-0 rule of an affine map, and the same kind of number zennit's own composites return. With zennit's
default ``attr_output`` (the output itself) ``R_in`` is bilrp's LRP relevance, and it adds up to the output
less the bias share.

Every forward pass through the root that can be differentiated (a floating-point argument that requires
grad, with grad enabled) is certified, with the machinery of :mod:`bilrp.certificate`:

1. **homogeneity**, in the forward pass: with the rule constants of the pass recorded and replayed,
   ``f(-2x) - f(0) == -2 (f(x) - f(0))``. Otherwise :class:`~bilrp.certificate.CertificateError` is raised
   before any relevance exists, naming the first module that breaks it (:class:`~bilrp.certificate.AffinityProbe`),
   exactly as :class:`~bilrp.BiLRP` does;
2. **conservation**, in the backward pass: ``sum(x * J^T v) + <v, f(0)> == <v, f(x)>`` for the vector ``v``
   entering the output. It fails when a backward hook or a custom ``autograd.Function`` makes the gradient
   differ from the frozen network's Jacobian.

bilrp's own attributions register the bare rules (``composite.context``) and certify by themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .canonizers import InstanceAttributeCanonizer
from .certificate import (
    PROBE_SCALE,
    AffinityProbe,
    CertificateError,
    ProbeLayout,
    certificate_error,
    refuse,
    tolerance,
)
from .constants import recording, replaying
from .explaining import HALF_DTYPES

__all__ = ["RootRule"]

_SUSPENDED: ContextVar[bool] = ContextVar("bilrp_root_rule_suspended", default=False)
Key = tuple[str, int | str]  # ("arg", position) or ("kwarg", name)


class RootRule(InstanceAttributeCanonizer):
    """Wrap the root module's forward: relevance at the input and output, the certificate on every pass.

    :class:`~bilrp.TransformerComposite` applies it in ``register`` (what zennit's attributors call), after
    the rules, so it is removed first. The explained inputs are the floating-point arguments (positional or
    keyword) that require grad; the other arguments (masks, ids) are kept as they are in the replays.
    """

    def targets(self, root_module: nn.Module) -> Iterator[nn.Module]:
        """Only the root module."""
        yield root_module

    def attributes(self, module: nn.Module) -> dict[str, object]:
        original = module.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            return _certified_call(module, original, args, kwargs)

        return {"forward": forward}


@dataclass
class _Call:
    """One certified forward pass: its inputs' layout and what the backward check needs."""

    keys: list[Key]
    limit: float = 0.0
    per_example: bool = True
    outputs: list[torch.Tensor] = field(default_factory=list)  # f(x), detached
    zeros: list[torch.Tensor] = field(default_factory=list)  # f(0), constants replayed
    probes: list[torch.Tensor] = field(default_factory=list)  # f(PROBE_SCALE x), constants replayed
    entering: list[torch.Tensor | None] = field(default_factory=list)  # the vector v entering each output
    dtype: torch.dtype = torch.float64

    def rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """``(batch, -1)`` when every input and output is batched along dimension 0, else ``(1, -1)``."""
        return tensor.reshape(tensor.shape[0], -1) if self.per_example else tensor.reshape(1, -1)


def _certified_call(root: nn.Module, original: Callable, args: tuple, kwargs: dict) -> Any:
    """Run ``original`` with relevance at the input and output, certified; or plainly when nothing is explained."""
    keys = _explained_keys(args, kwargs)
    if _SUSPENDED.get() or not torch.is_grad_enabled() or not keys:
        return original(*args, **kwargs)
    inputs = [_get(args, kwargs, key) for key in keys]
    call = _Call(keys)
    wrapped = _InputRule.apply(call, *inputs)
    with recording() as tape:
        output = _run(original, args, kwargs, keys, wrapped)
    outputs = _float_tensors(output)
    if not outputs:
        return output
    _certify_forward(root, call, tape, args, kwargs, inputs, outputs)
    replaced = iter(_OutputRule.apply(call, *outputs))
    return _map_floats(output, lambda tensor: next(replaced))


def _certify_forward(root, call: _Call, tape, args, kwargs, inputs, outputs) -> None:
    """Homogeneity of the rule-frozen root at this input; raise, naming the module, when it fails."""
    batch = inputs[0].shape[0] if inputs[0].dim() else -1
    call.per_example = all(t.dim() and t.shape[0] == batch for t in (*inputs, *outputs))
    dtype = max((t.dtype for t in (*inputs, *outputs)), key=lambda kind: tolerance(kind))
    if dtype in HALF_DTYPES:
        raise CertificateError(
            f"relevance refused: the model runs in {str(dtype).replace('torch.', '')}, where the certificate cannot "
            f"tell rounding from a missing rule (tolerance {tolerance(dtype):.1e}); call the attributor on "
            "model.float() with float32 inputs (the conversion is exact)"
        )
    call.dtype, call.limit = dtype, tolerance(dtype)
    call.outputs = [t.detach() for t in outputs]
    with _suspended(), torch.no_grad():
        for pieces, scale in ((call.zeros, 0.0), (call.probes, PROBE_SCALE)):
            with replaying(tape, 1):
                pieces += _float_tensors(_run(root, args, kwargs, call.keys, _scaled(inputs, scale)))
    error = _forward_error(call)
    if error > call.limit:
        raise refuse(error, dtype, _culprit(root, call, args, kwargs, inputs))


def _forward_error(call: _Call) -> float:
    """The certificate error of every output (homogeneity; conservation holds by construction here)."""
    shapes = [[tuple(t.shape) for t in values] for values in (call.outputs, call.zeros, call.probes)]
    if shapes[1] != shapes[0] or shapes[2] != shapes[0]:
        raise CertificateError(
            "relevance refused: the model returns outputs of other shapes for the probe inputs 0 and -2x than for "
            "its input, so the certificate cannot compare them; explain a model whose output shapes do not depend "
            "on the input values"
        )
    errors = [0.0]
    for y, z, p in zip(call.outputs, call.zeros, call.probes, strict=True):
        y, z, p = call.rows(y), call.rows(z), call.rows(p)
        errors.append(certificate_error(y - z, z, y, p))
    return max(errors)


def _culprit(root: nn.Module, call: _Call, args, kwargs, inputs) -> tuple[str, nn.Module, float] | None:
    """The probes again with a hook on every module: the first module whose output is not affine."""
    probe = AffinityProbe(root)
    passes = (
        (probe.replaying(ProbeLayout(repeats=1)), 0.0),
        (probe.replaying(ProbeLayout(repeats=1, zero=None, probe=0)), PROBE_SCALE),
    )
    with _suspended(), torch.no_grad():
        with recording() as tape, probe.recording():
            _run(root, args, kwargs, call.keys, [x.detach() for x in inputs])
        for hooks, scale in passes:
            with replaying(tape, 1), hooks:
                _run(root, args, kwargs, call.keys, _scaled(inputs, scale))
    return probe.first_failure(call.limit)


def _entering_vectors(entering: list[torch.Tensor | None], outputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """``R_out / y`` elementwise for each output (0 where ``y == 0`` or no relevance enters)."""
    vectors = []
    for relevance, y in zip(entering, outputs, strict=True):
        if relevance is None:
            vectors.append(torch.zeros_like(y))
            continue
        nonzero = y != 0
        vectors.append(torch.where(nonzero, relevance / torch.where(nonzero, y, torch.ones_like(y)), 0.0))
    return vectors


class _OutputRule(torch.autograd.Function):
    """Identity forward; backward divides the output relevance by the output (and keeps the result)."""

    @staticmethod
    def forward(ctx, call: _Call, *outputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.call = call
        return tuple(t.view_as(t) for t in outputs)

    @staticmethod
    def backward(ctx, *relevances: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        vectors = _entering_vectors(list(relevances), ctx.call.outputs)
        ctx.call.entering = [v.detach() for v in vectors]
        return (None, *vectors)


class _InputRule(torch.autograd.Function):
    """Identity forward; backward multiplies by the input, after the conservation check."""

    @staticmethod
    def forward(ctx, call: _Call, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.call = call
        ctx.save_for_backward(*inputs)
        return tuple(x.view_as(x) for x in inputs)

    @staticmethod
    def backward(ctx, *gradients: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        inputs = ctx.saved_tensors
        relevance = [x * g for x, g in zip(inputs, gradients, strict=True)]
        _certify_backward(ctx.call, relevance)
        return (None, *relevance)


def _certify_backward(call: _Call, relevance: list[torch.Tensor]) -> None:
    """Conservation along the vector ``v`` that entered the output: ``sum R_in + <v, f(0)> == <v, f(x)>``.

    Relative to the sum of the magnitudes of the terms, so that terms cancelling to nearly 0 (the entries of
    a normalised output) leave rounding within tolerance.
    """
    entering = call.entering or [None] * len(call.outputs)
    total, magnitude = _row_sums([call.rows(r.detach()) for r in relevance])
    sums = [
        _row_sums([call.rows(v * t) for v, t in zip(entering, values, strict=True) if v is not None], like=total)
        for values in (call.zeros, call.outputs, call.probes)
    ]
    (zero, zero_size), (output, output_size), (probe, _) = sums
    scale = magnitude + zero_size + output_size
    error = certificate_error(total[:, None], zero[:, None], output[:, None], probe[:, None], scale=scale)
    if error > call.limit:
        raise CertificateError(
            f"relevance refused: the relevance of the input does not add up to the relevance entering the output "
            f"(certificate error {error:.2e}, tolerance {call.limit:.1e} for {str(call.dtype).replace('torch.', '')}) "
            "although the rule-frozen forward pass is affine: a backward hook or custom autograd.Function changes "
            "the gradient (a rule of another zennit composite on the same model, register_full_backward_hook); "
            "remove it and call the attributor again"
        )


def _row_sums(terms: list[torch.Tensor], like: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the sum of all ``terms`` and the sum of their magnitudes (zeros like ``like`` for no terms)."""
    if not terms:
        return torch.zeros_like(like), torch.zeros_like(like)
    return sum(t.sum(1) for t in terms), sum(t.abs().sum(1) for t in terms)


@contextmanager
def _suspended() -> Iterator[None]:
    """Inside: the root rule passes calls through (the replays and the probe run the bare rules)."""
    token = _SUSPENDED.set(True)
    try:
        yield
    finally:
        _SUSPENDED.reset(token)


def _scaled(inputs: list[torch.Tensor], scale: float) -> list[torch.Tensor]:
    """``scale * x`` for every input, detached (exact zeros for 0, whatever ``x`` holds)."""
    return [scale * x.detach() if scale else torch.zeros_like(x).detach() for x in inputs]


def _explained_keys(args: tuple, kwargs: dict) -> list[Key]:
    """Where the explained inputs are: floating-point tensor arguments that require grad."""
    keys: list[Key] = [("arg", i) for i, a in enumerate(args) if _explained(a)]
    return keys + [("kwarg", name) for name, a in kwargs.items() if _explained(a)]


def _explained(value: object) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point() and value.requires_grad


def _get(args: tuple, kwargs: dict, key: Key) -> torch.Tensor:
    return args[key[1]] if key[0] == "arg" else kwargs[key[1]]


def _run(function: Callable, args: tuple, kwargs: dict, keys: list[Key], values) -> Any:
    """``function(*args, **kwargs)`` with the explained inputs replaced by ``values`` (in the order of ``keys``)."""
    args, kwargs = list(args), dict(kwargs)
    for (kind, where), value in zip(keys, values, strict=True):
        if kind == "arg":
            args[where] = value
        else:
            kwargs[where] = value
    return function(*args, **kwargs)


def _float_tensors(value: Any) -> list[torch.Tensor]:
    """The floating-point tensors in ``value``, in the order :func:`_map_floats` visits them."""
    found: list[torch.Tensor] = []
    _map_floats(value, lambda tensor: found.append(tensor) or tensor)
    return found


def _map_floats(value: Any, function: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``value`` with ``function`` applied to every floating-point tensor in it (tuples, lists, dicts, HF outputs)."""
    if isinstance(value, torch.Tensor):
        return function(value) if value.is_floating_point() else value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return type(value)(*(_map_floats(item, function) for item in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map_floats(item, function) for item in value)
    if isinstance(value, dict):  # ModelOutput included: updated in place, which keeps its attributes in step
        for key in list(value):
            value[key] = _map_floats(value[key], function)
    return value
