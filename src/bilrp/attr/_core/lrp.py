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

from ...composites import TransformerComposite

__all__ = ["LRP"]

TensorOrTuple = torch.Tensor | tuple[torch.Tensor, ...]


class LRP(GradientAttribution):
    r"""Layer-wise relevance propagation through a zennit composite: relevance = input x LRP gradient.

    Unlike ``captum.attr.LRP``, rules come from a zennit composite, so HuggingFace Transformers (with
    embeddings, LayerNorm and attention) are supported through :class:`~bilrp.TransformerComposite`.

    Parameters
    ----------
    forward_func
        The function or module to explain.
    composite
        The zennit composite with the rules; default ``TransformerComposite()``.
    model
        The module the composite is registered on; default ``forward_func`` when it is a module.

    """

    def __init__(
        self, forward_func: Callable, composite: Composite | None = None, model: nn.Module | None = None
    ) -> None:
        super().__init__(forward_func)
        self.composite = composite if composite is not None else TransformerComposite()
        self.model = model if model is not None else forward_func
        if not isinstance(self.model, nn.Module):
            raise TypeError("LRP needs the module to register rules on: pass model= when forward_func is a function")

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
        with self.composite.context(self.model):
            gradients = compute_gradients(self.forward_func, inputs_tuple, target, extra)
            with torch.no_grad():
                output = _select_targets(_run_forward(self.forward_func, inputs_tuple, None, extra), target)
        relevance = tuple(x.detach() * g for x, g in zip(inputs_tuple, gradients, strict=True))
        result = _format_output(is_tuple, relevance)
        if not return_convergence_delta:
            return result
        summed = sum(r.reshape(r.shape[0], -1).sum(1) for r in relevance)
        return result, output.reshape(output.shape[0], -1).sum(1) - summed
