"""First-order LRP as a Captum attribution, with any zennit composite (default: Transformer rules)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from captum._utils.common import (
    _format_additional_forward_args,
    _format_output,
    _format_tensor_into_tuples,
    _is_tuple,
    _run_forward,
    _select_targets,
)
from captum._utils.gradient import compute_gradients
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import nn
from zennit.core import Composite

from ...certificate import PROBE_SCALE, AffinityProbe, ProbeLayout, certificate_error, refuse, tolerance
from ...constants import recording, replaying
from ...explaining import explaining
from ...rule_sets import choose_composite

__all__ = ["LRP"]

TensorOrTuple = torch.Tensor | tuple[torch.Tensor, ...]


class LRP(GradientAttribution):
    r"""Layer-wise relevance propagation through bilrp's rules: relevance = input x LRP gradient.

    Unlike ``captum.attr.LRP``, rules come from a zennit composite, so HuggingFace Transformers (with
    embeddings, LayerNorm and attention) are supported through :class:`~bilrp.TransformerComposite`.
    Like every bilrp method the result is certified: with the rule constants of the explained input
    frozen, the explained output must be affine in the inputs (``sum(relevance) + f(0) == output``, and
    the homogeneity probe), or :class:`~bilrp.certificate.CertificateError` names the first module that
    breaks it. A similarity of two texts is bilinear, not affine: explain it with :class:`~bilrp.BiLRP`.

    Parameters
    ----------
    forward_func
        The function or module to explain.
    composite
        The rules; default ``TransformerComposite()``. zennit composites are translated when exact
        (:func:`~bilrp.composites.resolve_composite`).
    model
        The module the composite is registered on; default ``forward_func`` when it is a module.
    certify
        Run the certificate (default); ``False`` only to measure its cost.
    rules
        The rules by name instead of ``composite`` (:mod:`bilrp.rule_sets`, e.g. ``"attnlrp"``); with
        neither, the default rule set of the model's family.

    """

    def __init__(
        self,
        forward_func: Callable,
        composite: Composite | None = None,
        model: nn.Module | None = None,
        certify: bool = True,
        rules: str | None = None,
    ) -> None:
        super().__init__(forward_func)
        self.model = model if model is not None else forward_func
        if not isinstance(self.model, nn.Module):
            raise TypeError("LRP needs the module to register rules on: pass model= when forward_func is a function")
        self.composite, self.rules = choose_composite(composite, rules, self.model)
        self.certify = bool(certify)

    @classmethod
    def get_name(cls) -> str:
        """Readable name of the method."""
        return "LRP"

    def has_convergence_delta(self) -> bool:
        """True: ``delta = output - sum(relevance)``."""
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        """True: relevance is input times the LRP gradient."""
        return True

    @log_usage()
    def attribute(
        self,
        inputs: TensorOrTuple,
        target: int | tuple | torch.Tensor | list | None = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
    ) -> TensorOrTuple | tuple[TensorOrTuple, torch.Tensor]:
        r"""First-order relevance of ``inputs`` for the selected output.

        Args:
            inputs (Tensor or tuple[Tensor, ...]): inputs to explain; relevance has the same shapes.
            target (int, tuple, Tensor or list, optional): output index to explain per example, as in
                Captum. Default: the output itself (scalar per example).
            additional_forward_args (Any, optional): extra arguments to ``forward_func``.
            return_convergence_delta (bool, optional): also return ``output - sum(relevance)`` per example,
                the share of biases. Default: False.

        Returns:
            *Tensor* or tuple[*Tensor*, ...], and optionally the delta ``(batch,)``.

        Examples::

            >>> lrp = bilrp.LRP(model, bilrp.TransformerComposite())
            >>> relevance, delta = lrp.attribute(x, target=0, return_convergence_delta=True)

        """
        is_tuple = _is_tuple(inputs)
        inputs_tuple = tuple(t.detach().requires_grad_(True) for t in _format_tensor_into_tuples(inputs))
        extra = _format_additional_forward_args(additional_forward_args)
        with explaining(self.model), self.composite.context(self.model):
            with torch.no_grad(), recording() as tape:
                output = _select_targets(_run_forward(self.forward_func, inputs_tuple, None, extra), target)
            gradients = compute_gradients(self.forward_func, inputs_tuple, target, extra)
            relevance = tuple(x.detach() * g for x, g in zip(inputs_tuple, gradients, strict=True))
            summed = sum(r.reshape(r.shape[0], -1).sum(1) for r in relevance)
            output = output.reshape(output.shape[0], -1).sum(1)
            if self.certify:
                self._certify(tape, inputs_tuple, target, extra, summed, output)
        result = _format_output(is_tuple, relevance)
        if not return_convergence_delta:
            return result
        return result, output - summed

    def _frozen_outputs(self, tape, inputs: tuple, target, extra) -> tuple[torch.Tensor, torch.Tensor]:
        """``f(0)`` and ``f(PROBE_SCALE x)`` per example, with the recorded rule constants replayed."""
        batch = inputs[0].shape[0]
        doubled = tuple(torch.cat([torch.zeros_like(x), PROBE_SCALE * x]).detach() for x in inputs)
        with torch.no_grad(), replaying(tape, 2):
            out = _run_forward(self.forward_func, doubled, None, _repeated(extra, batch))
            out = _select_targets(out, _repeated(target, batch))
        out = out.reshape(2, batch, -1).sum(-1)
        return out[0], out[1]

    def _certify(self, tape, inputs: tuple, target, extra, summed, output) -> None:
        zero, probe = self._frozen_outputs(tape, inputs, target, extra)
        error = certificate_error(summed[:, None], zero[:, None], output[:, None], probe[:, None])
        dtype = inputs[0].dtype
        if error <= tolerance(dtype):
            return
        locator = AffinityProbe(self.model)
        with torch.no_grad(), recording() as diagnosis, locator.recording():
            _run_forward(self.forward_func, tuple(x.detach() for x in inputs), None, extra)
        with locator.replaying(ProbeLayout(repeats=2, probe=1)):
            self._frozen_outputs(diagnosis, inputs, target, extra)
        raise refuse(error, dtype, locator.first_failure(tolerance(dtype)))


def _repeated(value: Any, batch: int) -> Any:
    """``value`` for a batch repeated twice: tensors (and lists) with ``batch`` rows are doubled."""
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch:
        return torch.cat([value, value])
    if isinstance(value, list) and len(value) == batch:
        return value + value
    if isinstance(value, tuple) and not (len(value) and isinstance(value[0], int)):
        return tuple(_repeated(item, batch) for item in value)
    return value
