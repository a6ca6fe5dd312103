"""Attention rules written into the forward graph: the paper's AH and AttnLRP (Achtibat et al., 2024).

Both keep the forward values of attention unchanged and make it linear in its input once some
quantities are rule constants (recorded and replayed by the engine like every other rule):

- ``"ah"`` (Ali et al., 2022; the paper's rule): the attention probabilities are constants, so relevance
  flows through the values only. :class:`DetachedAttention`.
- ``"attnlrp"`` (Achtibat et al., 2024, the rules behind LXT): relevance also flows through the scores.
  The softmax is replaced by its linearisation at the explained input, ``y = s + J_s (x - x0)`` with
  ``J_s = diag(s) - s s^T`` constant, so that relevance ``x * (R - s * sum(R))`` reaches the scores (its
  offset, AttnLRP's non-conserved share, goes to the bias); the two products of attention, ``q k^T`` and
  ``p v``, split their relevance evenly between the factors (the uniform rule,
  ``a b = 1/2 (a_c b + a b_c)``). :class:`AttnLRPAttention`.

Each rule is a :class:`~torch.overrides.TorchFunctionMode` that canonizers switch on around the forward of
attention modules only, so no other softmax or product of the program is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .constants import combine_with_constant, constant

__all__ = [
    "ATTENTION_RULES",
    "DetachedAttention",
    "AttnLRPAttention",
    "attention_mode",
    "attention_with_constant_probabilities",
    "attnlrp_attention",
    "rule_attention",
    "linearised_softmax",
    "uniform_product",
    "check_attention_rule",
]

ATTENTION_RULES = ("ah", "attnlrp")
"""Attention rules: ``"ah"`` (constant attention probabilities, the paper's) and ``"attnlrp"``."""

_SOFTMAX_FUNCTIONS = {F.softmax, torch.softmax, torch.Tensor.softmax, torch.special.softmax}
_PRODUCT_FUNCTIONS = {
    torch.matmul,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
    torch.bmm,
    torch.Tensor.bmm,
    torch.einsum,
}


def check_attention_rule(rule: str) -> str:
    """``rule`` if it is one of :data:`ATTENTION_RULES`, else a one-line ``ValueError``."""
    if rule not in ATTENTION_RULES:
        raise ValueError(f"unknown attention rule {rule!r}: choose one of {', '.join(map(repr, ATTENTION_RULES))}")
    return rule


def _softmax(func: Callable, scores: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    """``func(scores, ...)``, in the scores' own dtype when a lower one was asked for.

    HF's eager attention asks for a float32 softmax. On float64 scores, masked with float64's lowest value,
    that cast would turn the mask into ``-inf`` (a fully masked row into NaN) and round the probabilities,
    the rule's constants, to float32. The probabilities are computed in the scores' dtype instead: in a
    float32 model nothing changes.
    """
    kwargs = {key: value for key, value in kwargs.items() if key != "input"}
    wanted = kwargs.pop("dtype", None)
    if wanted is not None and torch.finfo(wanted).bits >= torch.finfo(scores.dtype).bits:
        scores = scores.to(wanted)
    return func(scores, *args, **kwargs)


def _softmax_dim(scores: torch.Tensor, args: tuple, kwargs: dict) -> int:
    """The (negative) dimension a softmax call normalises over."""
    dim = kwargs.get("dim", args[0] if args else None)
    if dim is None:
        raise ValueError("a softmax without dim inside an attention module has no AttnLRP rule: pass dim")
    return dim - scores.dim() if dim >= 0 else dim


def linearised_softmax(
    scores: torch.Tensor, dim: int = -1, probabilities: Callable[[], torch.Tensor] | None = None
) -> torch.Tensor:
    """AttnLRP's softmax rule: the softmax linearised at the explained scores, with constant offset.

    ``y = s * (x - <s, x>) + c`` along ``dim``, with the probabilities ``s`` and the offset
    ``c = s - s * (x0 - <s, x0>)`` rule constants. The forward value is the softmax; the relevance that
    reaches the scores is ``x * (R - s * sum(R))``. Positions with ``s == 0`` (masked keys) are excluded,
    so a ``-inf`` mask gives zeros, not NaN.

    Parameters
    ----------
    scores
        The softmax input.
    dim
        A negative dimension.
    probabilities
        Computes ``softmax(scores)`` as the caller wants it (default: ``torch.softmax`` along ``dim``); it
        is not called while constants are replayed.

    """
    if dim >= 0:
        raise ValueError("linearised_softmax needs a negative dim")
    probabilities = probabilities or (lambda: torch.softmax(scores.detach(), dim))
    recorded: list[torch.Tensor] = []

    def probabilities_once() -> torch.Tensor:
        recorded.append(probabilities().detach().to(scores.dtype))
        return recorded[0]

    def tangent_part(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        x = torch.where(s > 0, x, torch.zeros((), dtype=x.dtype, device=x.device))
        return s * (x - (s * x).sum(dim, keepdim=True))

    linear = combine_with_constant(scores, probabilities_once, tangent_part)
    offset = lambda: recorded[0] - tangent_part(scores.detach(), recorded[0])  # noqa: E731
    return combine_with_constant(linear, offset, torch.add)


def uniform_product(
    product: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    a: torch.Tensor,
    b: torch.Tensor,
    broadcasts: bool = True,
) -> torch.Tensor:
    """AttnLRP's uniform rule for a product of two input-dependent tensors: ``1/2 (a_c * b + a * b_c)``.

    ``product`` is bilinear (a matrix product); the forward value is ``product(a, b)`` and each factor
    receives half of the relevance. ``a_c``, ``b_c`` are rule constants. With ``broadcasts`` (``product``
    broadcasts over leading dimensions, as ``torch.matmul`` does) they are broadcast over the replay batch
    instead of copied.
    """
    if broadcasts:
        with_a_constant = combine_with_constant(b, a.detach, lambda x, c: product(c, x))
        with_b_constant = combine_with_constant(a, b.detach, product)
    else:
        with_a_constant = product(constant(a.detach, like=a), b)
        with_b_constant = product(a, constant(b.detach, like=b))
    return 0.5 * (with_a_constant + with_b_constant)


def _attention_scores(query, key, attn_mask, is_causal, scale, multiply):
    scale = query.size(-1) ** -0.5 if scale is None else scale
    scores = multiply(query, key.transpose(-2, -1)) * scale
    lowest = torch.finfo(scores.dtype).min
    if is_causal:
        causal = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~causal, lowest)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, lowest)
        else:
            scores = scores + attn_mask
    return scores


def rule_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    rule: str = "ah",
) -> torch.Tensor:
    """Scaled dot-product attention under an attention rule (``"ah"`` or ``"attnlrp"``).

    Takes the arguments of :func:`torch.nn.functional.scaled_dot_product_attention` and gives the same
    forward values.
    """
    check_attention_rule(rule)
    if dropout_p:
        raise ValueError("attention dropout must be off while explaining: call model.eval() first")
    if enable_gqa and key.size(-3) != query.size(-3):
        repeats = query.size(-3) // key.size(-3)
        key = key.repeat_interleave(repeats, dim=-3)
        value = value.repeat_interleave(repeats, dim=-3)
    if rule == "ah":
        def probabilities() -> torch.Tensor:  # not computed while replaying: the recorded ones are used
            return torch.softmax(_attention_scores(query, key, attn_mask, is_causal, scale, torch.matmul), dim=-1)

        # the constant probabilities broadcast over the replay batch (no copy per token)
        return combine_with_constant(value, probabilities, lambda v, p: torch.matmul(p, v))
    scores = _attention_scores(query, key, attn_mask, is_causal, scale, _uniform_matmul)
    return uniform_product(torch.matmul, linearised_softmax(scores, -1), value)


def _uniform_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return uniform_product(torch.matmul, a, b)


def attention_with_constant_probabilities(*args, **kwargs) -> torch.Tensor:
    """Scaled dot-product attention whose probabilities are constants (rule AH); SDPA's arguments."""
    return rule_attention(*args, **kwargs, rule="ah")


def attnlrp_attention(*args, **kwargs) -> torch.Tensor:
    """Scaled dot-product attention under AttnLRP's softmax and uniform rules; SDPA's arguments."""
    return rule_attention(*args, **kwargs, rule="attnlrp")


class DetachedAttention(TorchFunctionMode):
    """Torch function mode applying rule AH to all attention computed while it is active.

    Inside the mode, every softmax returns a detached (constant) result and
    :func:`~torch.nn.functional.scaled_dot_product_attention` is replaced by
    :func:`attention_with_constant_probabilities`.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return attention_with_constant_probabilities(*args, **kwargs)
        if func in _SOFTMAX_FUNCTIONS:
            scores = args[0] if args else kwargs["input"]
            return constant(lambda: _softmax(func, scores, args[1:], kwargs), like=scores)
        return func(*args, **kwargs)


def _is_weight(tensor: torch.Tensor) -> bool:
    """A parameter or a view of one (``W.T``): a factor that does not depend on the input."""
    return isinstance(tensor, nn.Parameter) or isinstance(getattr(tensor, "_base", None), nn.Parameter)


class AttnLRPAttention(TorchFunctionMode):
    """Torch function mode applying AttnLRP's rules to all attention computed while it is active.

    - every softmax becomes :func:`linearised_softmax`;
    - every matrix product (``matmul``, ``@``, ``bmm``, two-operand ``einsum``) of two tensors that are not
      parameters gets the uniform rule (:func:`uniform_product`): in attention these are ``q k^T`` and
      ``p v``; a product with a weight stays an ordinary linear map;
    - :func:`~torch.nn.functional.scaled_dot_product_attention` is replaced by :func:`attnlrp_attention`.

    Attributes
    ----------
    products
        How many products got the uniform rule (two per attention call in every registered family).

    """

    def __init__(self) -> None:
        super().__init__()
        self.products = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            self.products += 2
            return attnlrp_attention(*args, **kwargs)
        if func in _SOFTMAX_FUNCTIONS:
            scores = args[0] if args else kwargs["input"]
            dim = _softmax_dim(scores, args[1:], kwargs)
            return linearised_softmax(scores, dim, lambda: _softmax(func, scores.detach(), args[1:], kwargs))
        product = _bilinear(func, args, kwargs)
        if product is None:
            return func(*args, **kwargs)
        self.products += 1
        return product()


def _bilinear(func, args: tuple, kwargs: dict) -> Callable[[], torch.Tensor] | None:
    """``func(*args)`` under the uniform rule when it multiplies two input-dependent tensors, else ``None``."""
    if kwargs or func not in _PRODUCT_FUNCTIONS:
        return None
    if func is torch.einsum:
        equation, operands = args[0], args[1:]
        if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
            operands = tuple(operands[0])
        if len(operands) != 2 or any(_is_weight(t) for t in operands):
            return None
        return lambda: uniform_product(partial(torch.einsum, equation), *operands, broadcasts=False)
    if len(args) != 2 or not all(isinstance(t, torch.Tensor) for t in args) or any(_is_weight(t) for t in args):
        return None
    product = torch.bmm if func in {torch.bmm, torch.Tensor.bmm} else torch.matmul
    return lambda: uniform_product(product, *args, broadcasts=product is torch.matmul)


def attention_mode(rule: str) -> TorchFunctionMode:
    """A fresh torch function mode applying ``rule`` (one of :data:`ATTENTION_RULES`)."""
    return DetachedAttention() if check_attention_rule(rule) == "ah" else AttnLRPAttention()
