"""zennit's LRP rules for ``nn.Linear`` written into the forward graph.

zennit implements its layer rules (``Epsilon``, ``Gamma``, ``ZPlus``, ``AlphaBeta``, ``Pass``) as backward
hooks, which only reverse-mode autodiff sees and which the replay engine cannot certify. The functions here
give the same relevance as a *forward* computation: each keeps the layer's output value and makes the
rule's ratios detached constants (made with :func:`bilrp.constants.constant` and
:func:`~bilrp.constants.scale_by_constant`, so that the engine can record and replay them). With those
constants frozen the layer is affine in its input, and the gradient that flows through it is the one
that makes gradient x input the zennit relevance:

- LRP-epsilon on ``z = W x + b``: zennit gives ``R_in = x * W^T (R_out / stab(z))``. With ``R_out = z * g_out``
  that is ``g_in = W^T (s * g_out)`` for the constant ``s = z / stab(z)``, the gradient of
  ``y = s * (W x + b) + (1 - s) * z``, whose value is ``z``.
- Rules that treat positive and negative inputs differently (Gamma, ZPlus, AlphaBeta) also freeze the
  *sign pattern of the input*: with the mask ``p = [x > 0]`` a constant, ``x+ = p * x`` and ``x- = x - x+`` are
  linear in ``x``.

Whatever part of ``z`` the rule does not pass on to the input (what epsilon absorbs, the bias, ...) is an
additive constant, so it ends up in the bias term ``f(0)`` of the affine network. Only the relevance
*through* the layer changes: the value of every output is untouched (to rounding).

:class:`bilrp.linear_canonizer.LinearRuleCanonizer` installs one of these rules as the forward of
``nn.Linear`` modules, and :func:`bilrp.rule_translation.forward_graph_rule` translates a zennit rule
object into the matching function (``None`` for a rule with no forward-graph form, such as ``Flat``,
``WSquare``, ``ZBox``, ``Norm`` or a custom ``BasicHook``).

A forward-graph rule and zennit's hook give the same relevance at every input entry ``x_j != 0``. Where
``x_j == 0`` both give relevance 0 for ``x_j`` (zennit's reducer multiplies by the input), except ``Pass``,
which zennit lets carry ``R_out`` there; gradient x input cannot. The *gradient* flowing on from such an
entry differs from :class:`bilrp.rules.GradientRule` (which sets it to 0): the forward-graph gradient is that
of the affine layer, so layers below may see relevance from an exactly-zero activation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from zennit.core import Stabilizer, zero_wrap
from zennit.rules import zero_bias

from .constants import combine_with_constant, constant, scale_by_constant

__all__ = [
    "LinearRule",
    "lrp0_linear",
    "epsilon_linear",
    "gamma_linear",
    "zplus_linear",
    "alpha_beta_linear",
    "pass_linear",
]

LinearRule = Callable[[nn.Linear, torch.Tensor], torch.Tensor]
"""A forward-graph linear rule: ``rule(module, x)`` gives the value of ``module(x)`` under the rule."""

ZeroParams = str | list[str] | None
StabilizerLike = float | Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------- helpers
def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator``, 0 where the denominator is 0 (zennit would give inf or nan there)."""
    nonzero = denominator != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, torch.ones_like(denominator)), 0.0)


def _modified(
    module: nn.Linear, modifier: Callable[[torch.Tensor, str], torch.Tensor], zero_params: ZeroParams
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(weight, bias)`` as zennit's ``ParamMod(modifier, zero_params=zero_params)`` sets them (detached)."""
    wrapped = zero_wrap([] if zero_params is None else zero_params)(modifier)
    weight = wrapped(module.weight.detach(), "weight")
    bias = None if module.bias is None else wrapped(module.bias.detach(), "bias")
    return weight, bias


def _zeroed(name: str, zero_params: ZeroParams) -> bool:
    """Whether zennit's ``zero_wrap(zero_params)`` sets the parameter ``name`` to zero."""
    if not zero_params:
        return False
    return isinstance(zero_params, str) and name == zero_params or name in zero_params


def _clamp(min: float | None = None, max: float | None = None) -> Callable[[torch.Tensor, str], torch.Tensor]:
    """The modifier of zennit's ``ClampMod``."""
    return lambda param, name: param.clamp(min=min, max=max)


def _gamma(
    gamma: float, min: float | None = None, max: float | None = None
) -> Callable[[torch.Tensor, str], torch.Tensor]:
    """The modifier of zennit's ``GammaMod``: ``param + gamma * param.clamp(min, max)``."""
    return lambda param, name: param + gamma * param.clamp(min=min, max=max)


def _module_value(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The layer's own output ``z = W x + b`` at the detached input (what ``nn.Linear.forward`` computes)."""
    bias = None if module.bias is None else module.bias.detach()
    return F.linear(x.detach(), module.weight.detach(), bias)


def _sign_split_linear(
    module: nn.Linear,
    x: torch.Tensor,
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    scales: Callable[[torch.Tensor, list[torch.Tensor]], list[torch.Tensor]],
) -> torch.Tensor:
    """``y = sum_k a_k * (P_k x+ + N_k x-) + c`` with the input signs, every ``a_k`` and ``c`` constants.

    Parameters
    ----------
    module
        The linear layer (its own value ``z`` sets the constant ``c``).
    x
        Its input.
    pairs
        Per term ``k``: the weight ``P_k`` applied to the positive part, ``N_k`` applied to the negative part,
        and the bias ``d_k`` of its denominator ``D_k = P_k x+ + N_k x- + d_k`` (``None``: no bias).
    scales
        ``scales(z, [D_1, D_2, ...]) -> [a_1, a_2, ...]`` from the layer's value ``z`` and the denominators.

    """
    # x+ and x- with the sign pattern frozen: two (boolean) masks, not x - x+, whose gradient would cancel
    positive = scale_by_constant(x, lambda: x.detach() > 0)
    negative = scale_by_constant(x, lambda: x.detach() <= 0)
    weight = torch.cat([torch.cat([pos, neg], dim=1) for pos, neg, _ in pairs], dim=0)
    parts = F.linear(torch.cat([positive, negative], dim=-1), weight).chunk(len(pairs), dim=-1)
    cache: dict[str, list[torch.Tensor]] = {}

    def scale(k: int) -> Callable[[], torch.Tensor]:
        def compute() -> torch.Tensor:
            if not cache:  # the first constant computes them all (once, from the detached forward values)
                z = _module_value(module, x)
                denominators = [
                    part.detach() if bias is None else part.detach() + bias
                    for part, (_, _, bias) in zip(parts, pairs, strict=True)
                ]
                cache["z"], cache["scales"] = [z], scales(z, denominators)
            return cache["scales"][k]

        return compute

    total = scale_by_constant(parts[0], scale(0))
    for k in range(1, len(parts)):
        total = total + scale_by_constant(parts[k], scale(k))
    return combine_with_constant(total, lambda: cache["z"][0] - total.detach(), torch.add)


# ---------------------------------------------------------------------------------------------- the rules
def lrp0_linear(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """LRP-0: the plain layer ``y = W x + b``; its gradient x input is LRP-0 relevance.

    Parameters
    ----------
    module
        The linear layer.
    x
        Its input.

    Returns
    -------
    torch.Tensor
        ``module(x)``, no constants.

    """
    return F.linear(x, module.weight, module.bias)


def epsilon_linear(
    module: nn.Linear, x: torch.Tensor, epsilon: StabilizerLike = 1e-6, zero_params: ZeroParams = None
) -> torch.Tensor:
    """LRP-epsilon (zennit's ``Epsilon``) in the forward graph.

    zennit: ``R_in = x * W'^T (R_out / stab(z'))`` with ``z' = W' x + b'``, where ``W', b'`` are the parameters
    with ``zero_params`` set to zero and ``stab(v) = v + epsilon * sign(v)`` (sign +1 at ``v == 0``; zennit's
    :class:`~zennit.core.Stabilizer`, or any callable). Here::

        y = s * (W' x + b) + c,   s = z / stab(z'),   c = z - s * (W' x + b)   (constants)

    with ``z = W x + b`` the layer's value, so ``y == z`` and ``g_in = W'^T (s * g_out)``, i.e.
    ``x * g_in`` is zennit's relevance for ``R_out = z * g_out``. ``s`` is 0 where ``stab(z') == 0``. A zero
    stabiliser (``Epsilon(0)``, without zeroed parameters) is LRP-0, :func:`lrp0_linear`.

    Parameters
    ----------
    module
        The linear layer.
    x
        Its input.
    epsilon
        zennit's ``epsilon``: a float (``Stabilizer(epsilon)``) or a stabiliser callable.
    zero_params
        zennit's ``zero_params``: parameter names (``"bias"``) zeroed in ``W', b'``.

    Returns
    -------
    torch.Tensor
        ``module(x)`` (to rounding).

    """
    stabilizer = Stabilizer.ensure(epsilon)
    if _zeroed("weight", zero_params):  # nothing passes through: the value is a constant
        return constant(lambda: _module_value(module, x), like=x)
    bias_zeroed = module.bias is not None and _zeroed("bias", zero_params)
    if type(stabilizer) is Stabilizer and stabilizer.epsilon == 0 and not bias_zeroed:
        return lrp0_linear(module, x)
    z = F.linear(x, module.weight, module.bias)

    def ratio() -> torch.Tensor:
        value = z.detach()
        denominator = F.linear(x.detach(), module.weight.detach()) if bias_zeroed else value
        return _ratio(value, stabilizer(denominator))

    y = scale_by_constant(z, ratio)
    return combine_with_constant(y, lambda: z.detach() - y.detach(), torch.add)


def gamma_linear(
    module: nn.Linear,
    x: torch.Tensor,
    gamma: float = 0.25,
    stabilizer: StabilizerLike = 1e-6,
    zero_params: ZeroParams = None,
) -> torch.Tensor:
    """Generalised LRP-gamma (zennit's ``Gamma``) in the forward graph, the input signs frozen.

    zennit (0.5.1) uses ``W_up = W + gamma W+`` and ``W_down = W + gamma W-`` (``W+ = W.clamp(min=0)``,
    ``W- = W.clamp(max=0)``) and the denominators::

        z_up   = W_up x+ + W_down x- + (b + gamma b+)
        z_down = W_down x+ + W_up x- + (b + gamma b-)

    (``x+ = x.clamp(min=0)``, ``x- = x.clamp(max=0)``; ``zero_params`` zeroes parameters in all four terms,
    the bias appears in the first of each pair only). Outputs with ``z > 0`` pass relevance by ``z_up``, those
    with ``z < 0`` by ``z_down``, those with ``z == 0`` none::

        R_in = x+ * W_up^T g_up + x- * W_down^T g_up + x+ * W_down^T g_down + x- * W_up^T g_down
        g_up = [z > 0] R_out / stab(z_up),   g_down = [z < 0] R_out / stab(z_down)

    Here, with ``p = [x > 0]`` constant, ``x+ = p x`` and ``x- = x - p x``::

        y = a * (W_up x+ + W_down x-) + d * (W_down x+ + W_up x-) + c
        a = [z > 0] z / stab(z_up),   d = [z < 0] z / stab(z_down),   c = z - (...)   (constants)

    so ``y == z`` and ``x * g_in`` is zennit's relevance for ``R_out = z * g_out`` (at every ``x_j != 0``).

    Parameters
    ----------
    module
        The linear layer.
    x
        Its input.
    gamma
        zennit's ``gamma``.
    stabilizer
        zennit's ``stabilizer`` (float or callable), applied to ``z_up`` and ``z_down``.
    zero_params
        zennit's ``zero_params``.

    Returns
    -------
    torch.Tensor
        ``module(x)`` (to rounding).

    """
    stab = Stabilizer.ensure(stabilizer)
    no_bias = zero_bias(zero_params)
    up, up_bias = _modified(module, _gamma(gamma, min=0.0), zero_params)
    down_cross, _ = _modified(module, _gamma(gamma, max=0.0), no_bias)
    down, down_bias = _modified(module, _gamma(gamma, max=0.0), zero_params)
    up_cross, _ = _modified(module, _gamma(gamma, min=0.0), no_bias)

    def scales(z: torch.Tensor, denominators: list[torch.Tensor]) -> list[torch.Tensor]:
        z_up, z_down = denominators
        return [
            _ratio(torch.where(z > 0, z, 0.0), stab(z_up)),
            _ratio(torch.where(z < 0, z, 0.0), stab(z_down)),
        ]

    return _sign_split_linear(module, x, [(up, down_cross, up_bias), (down, up_cross, down_bias)], scales)


def zplus_linear(
    module: nn.Linear, x: torch.Tensor, stabilizer: StabilizerLike = 1e-6, zero_params: ZeroParams = None
) -> torch.Tensor:
    """LRP-z+ (zennit's ``ZPlus``, i.e. alpha=1, beta=0 for inputs of either sign), input signs frozen.

    zennit: ``R_in = x+ * W+^T g + x- * W-^T g``, ``g = R_out / stab(W+ x+ + W- x- + b+)`` (the positive
    contributions, the bias in the first term only). Here, with ``p = [x > 0]`` constant::

        y = s * (W+ x+ + W- x-) + c,   s = z / stab(W+ x+ + W- x- + b+),   c = z - (...)   (constants)

    Parameters
    ----------
    module
        The linear layer.
    x
        Its input.
    stabilizer
        zennit's ``stabilizer`` (float or callable).
    zero_params
        zennit's ``zero_params``.

    Returns
    -------
    torch.Tensor
        ``module(x)`` (to rounding).

    """
    stab = Stabilizer.ensure(stabilizer)
    positive, positive_bias = _modified(module, _clamp(min=0.0), zero_params)
    negative, _ = _modified(module, _clamp(max=0.0), zero_bias(zero_params))

    def scales(z: torch.Tensor, denominators: list[torch.Tensor]) -> list[torch.Tensor]:
        return [_ratio(z, stab(denominators[0]))]

    return _sign_split_linear(module, x, [(positive, negative, positive_bias)], scales)


def alpha_beta_linear(
    module: nn.Linear,
    x: torch.Tensor,
    alpha: float = 2.0,
    beta: float = 1.0,
    stabilizer: StabilizerLike = 1e-6,
    zero_params: ZeroParams = None,
) -> torch.Tensor:
    """LRP-alpha-beta (zennit's ``AlphaBeta``) in the forward graph, the input signs frozen.

    zennit: with ``z_pos = W+ x+ + W- x- + b+`` and ``z_neg = W- x+ + W+ x- + b-``::

        R_in = alpha (x+ W+^T + x- W-^T) R_out / stab(z_pos) - beta (x+ W-^T + x- W+^T) R_out / stab(z_neg)

    Here, with ``p = [x > 0]`` constant::

        y = a * (W+ x+ + W- x-) - d * (W- x+ + W+ x-) + c
        a = alpha z / stab(z_pos),   d = beta z / stab(z_neg),   c = z - (...)   (constants)

    With ``beta == 0`` the second term is left out (its scale is 0).

    Parameters
    ----------
    module
        The linear layer.
    x
        Its input.
    alpha, beta
        zennit's ``alpha`` and ``beta`` (both non-negative, ``alpha - beta == 1``, as zennit requires).
    stabilizer
        zennit's ``stabilizer`` (float or callable).
    zero_params
        zennit's ``zero_params``.

    Returns
    -------
    torch.Tensor
        ``module(x)`` (to rounding).

    """
    if alpha < 0 or beta < 0:
        raise ValueError("Both alpha and beta parameters must be positive!")
    if (alpha - beta) != 1.0:
        raise ValueError("The difference of parameters alpha - beta must equal 1!")
    stab = Stabilizer.ensure(stabilizer)
    no_bias = zero_bias(zero_params)
    positive, positive_bias = _modified(module, _clamp(min=0.0), zero_params)
    negative_cross, _ = _modified(module, _clamp(max=0.0), no_bias)
    pairs = [(positive, negative_cross, positive_bias)]
    if beta != 0:
        negative, negative_bias = _modified(module, _clamp(max=0.0), zero_params)
        positive_cross, _ = _modified(module, _clamp(min=0.0), no_bias)
        pairs.append((negative, positive_cross, negative_bias))

    def scales(z: torch.Tensor, denominators: list[torch.Tensor]) -> list[torch.Tensor]:
        result = [_ratio(alpha * z, stab(denominators[0]))]
        if beta != 0:
            result.append(_ratio(-beta * z, stab(denominators[1])))
        return result

    return _sign_split_linear(module, x, pairs, scales)


def pass_linear(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The ``Pass`` rule of zennit: relevance passes through unchanged, ``R_in = R_out`` (needs ``in == out`` features).

    Here ``y = r * x + c`` with ``r = z / x`` (0 where ``x == 0``) and ``c = z - r * x`` constants, so
    ``x * g_in = z * g_out``. Where ``x_j == 0`` the relevance is 0 (zennit passes ``R_out`` there).

    Parameters
    ----------
    module
        A linear layer with as many output as input features (zennit's ``Pass`` fails otherwise too).
    x
        Its input.

    Returns
    -------
    torch.Tensor
        ``module(x)`` (to rounding).

    Raises
    ------
    ValueError
        If the layer changes the number of features.

    """
    if module.in_features != module.out_features:
        raise ValueError(
            f"zennit's Pass rule passes relevance through unchanged and needs a layer with as many output as input "
            f"features, not {module.in_features} -> {module.out_features}"
        )
    cache: dict[str, torch.Tensor] = {}

    def ratio() -> torch.Tensor:
        cache["z"] = _module_value(module, x)
        return _ratio(cache["z"], x.detach())

    y = scale_by_constant(x, ratio)
    return combine_with_constant(y, lambda: cache["z"] - y.detach(), torch.add)
