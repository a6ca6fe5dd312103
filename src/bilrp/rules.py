"""The Transformer LRP rules of Ali et al. (2022), written into the forward graph.

Each rule keeps the forward values of the model unchanged and makes one quantity a *constant* by
detaching it from the autograd graph. Because the constant is a detached value of the forward pass,
reverse-mode (``backward``) and forward-mode (``torch.func.jvp``) autodiff both see the rule, which is
what lets the BiLRP engine use forward mode.

- **AH** (attention head): the attention probabilities are constants, :class:`DetachedAttention`; or
  AttnLRP's softmax and uniform rules (:mod:`bilrp.attention_rules`).
- **LN** (layer norm): the standard deviation ``sqrt(var + eps)`` is a constant, :func:`constant_std_layer_norm`.
- **GA** (gated activation): ``act(x) = x * [act(x) / x]`` with the ratio constant,
  :func:`proportional_activation`.
- **Gated linear units** (``act(x W1) * (x W2)``): the activated gate is a constant (or AttnLRP's uniform
  split), :func:`gated_product`.

Linear layers need no rule for LRP-0: its relevance is gradient times input. Other zennit rules for
linear layers (``Epsilon``, ``Gamma``, ...) run through :class:`GradientRule`, which converts between
zennit's relevance and the gradient that flows between bilrp's rules.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from zennit.core import Hook

from .attention_rules import ATTENTION_RULES, DetachedAttention, attention_with_constant_probabilities
from .constants import scale_by_constant

__all__ = [
    "GradientRule",
    "DetachedAttention",
    "ATTENTION_RULES",
    "attention_with_constant_probabilities",
    "constant_std_layer_norm",
    "constant_rms_norm",
    "proportional_activation",
    "gated_product",
    "GATE_RULES",
]

GATE_RULES = ("constant_gate", "uniform")
"""Rules for the product ``act(gate) * up`` of a gated linear unit (see :func:`gated_product`)."""


def constant_std_layer_norm(
    x: torch.Tensor,
    normalized_shape: tuple[int, ...],
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    """Layer normalisation with the standard deviation ``sqrt(var + eps)`` held constant (rule LN)."""
    dims = tuple(range(-len(normalized_shape), 0))
    centred = x - x.mean(dim=dims, keepdim=True)
    # statistics from the detached value: no tangent work for them in forward mode
    std = lambda: (x.detach().var(dim=dims, unbiased=False, keepdim=True) + eps).sqrt()  # noqa: E731
    out = scale_by_constant(centred, std, divide=True)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def constant_rms_norm(
    x: torch.Tensor,
    normalized_shape: tuple[int, ...],
    weight: torch.Tensor | None,
    eps: float | None,
    weight_offset: float = 0.0,
) -> torch.Tensor:
    """RMS normalisation with the root mean square held constant (rule LN for RMSNorm).

    ``weight_offset`` is added to the weight (Gemma scales by ``1 + weight``).
    """
    dims = tuple(range(-len(normalized_shape), 0))
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    rms = lambda: (x.detach().pow(2).mean(dim=dims, keepdim=True) + eps).sqrt()  # noqa: E731
    out = scale_by_constant(x, rms, divide=True)
    return out * (weight + weight_offset) if weight is not None else out


def proportional_activation(
    activation: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, ratio_at_zero: float = 0.5
) -> torch.Tensor:
    """Apply ``activation`` as ``x * [activation(x) / x]`` with the ratio constant (rule GA).

    The forward value is ``activation(x)``; relevance passes in proportion to it. Where ``x == 0`` the
    ratio is its limit ``ratio_at_zero`` (0.5 for the GELU family and SiLU).
    """

    def ratio() -> torch.Tensor:  # from the detached value: computed once, even under vmap
        value = x.detach()
        nonzero = value != 0
        return torch.where(
            nonzero, activation(value) / torch.where(nonzero, value, torch.ones_like(value)), ratio_at_zero
        )

    return scale_by_constant(x, ratio)


def gated_product(gate: torch.Tensor, up: torch.Tensor, rule: str = "constant_gate") -> torch.Tensor:
    """The product ``gate * up`` of a gated linear unit (GeGLU, SwiGLU, gated-GELU) under an LRP rule.

    ``gate`` is the activated gate ``act(x W_gate)``, ``up`` the linear branch ``x W_up``. The forward value is
    the product either way.

    - ``"constant_gate"`` (default): the activated gate is a constant, so relevance flows through ``up``
      only. It is the rule AH and GA already apply to the gates of a Transformer (attention probabilities
      over the values, the activation ratio): a gate decides how much of a signal passes, and relevance
      follows the signal.
    - ``"uniform"``: AttnLRP's rule for products of two input-dependent tensors, which splits the relevance
      evenly between the factors: ``0.5 * (gate_c * up + gate * up_c)`` with ``_c`` constants.

    Parameters
    ----------
    gate, up
        The two factors, of the same shape.
    rule
        One of :data:`GATE_RULES`.

    """
    if rule == "constant_gate":
        return scale_by_constant(up, gate.detach)
    if rule == "uniform":
        return 0.5 * (scale_by_constant(up, gate.detach) + scale_by_constant(gate, up.detach))
    raise ValueError(f"unknown gate rule {rule!r}: choose one of {', '.join(GATE_RULES)}")


class GradientRule(Hook):
    """A zennit layer rule inside a network that propagates (rule-modified) *gradients*.

    zennit rules map the relevance at a layer's output to the relevance at its input. Between bilrp's
    rules the quantity that flows backward is a gradient ``g``, and the relevance of any tensor ``x`` is
    ``x * g``. This hook converts on both sides: ``R_out = y * g_out`` goes into the wrapped rule, and
    ``g_in = R_in / x`` (0 where ``x == 0``, where ``R_in`` is 0 too) comes out, so gradient x input at
    the model's input is the relevance with the wrapped rule on this layer. With ``Epsilon(eps -> 0)``
    it is LRP-0 again.

    Parameters
    ----------
    rule
        A zennit rule (``zennit.rules.Epsilon()``, ``Gamma()``, ...), copied for every layer.

    """

    def __init__(self, rule: Hook) -> None:
        super().__init__()
        self.rule = rule

    def forward(self, module: nn.Module, input: tuple, output: torch.Tensor) -> None:
        self.rule.forward(module, input, output)
        self.stored_tensors["output"] = output.detach()

    def backward(self, module: nn.Module, grad_input: tuple, grad_output: tuple) -> tuple:
        relevance_out = grad_output[0] * self.stored_tensors["output"]
        relevance_in = self.rule.backward(module, grad_input, (relevance_out, *grad_output[1:]))
        x = self.rule.stored_tensors["input"][0].detach()
        nonzero = x != 0
        return tuple(
            None if relevance is None else torch.where(nonzero, relevance / torch.where(nonzero, x, 1.0), 0.0)
            for relevance in relevance_in
        )

    def copy(self) -> GradientRule:
        return self.__class__(self.rule.copy())

    def remove(self) -> None:
        super().remove()
        self.rule.remove()
