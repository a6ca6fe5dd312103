"""Plain PyTorch: ``nn.TransformerEncoder``/``nn.TransformerEncoderLayer``/``nn.MultiheadAttention``."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..attention_rules import check_attention_rule, rule_attention
from ..canonizers import CUSTOM_ARCHITECTURE_DOCS, InstanceAttributeCanonizer, UnsupportedModuleError
from ..rules import proportional_activation
from .registry import Architecture, ArchitectureCanonizer, register_architecture

__all__ = [
    "TORCH",
    "MultiheadAttentionCanonizer",
    "InputProjection",
    "ValueProjection",
    "VALUE_PROJECTION",
    "QUERY_PROJECTION",
    "KEY_PROJECTION",
    "TransformerEncoderLayerCanonizer",
    "TorchTransformerCanonizer",
]


class MultiheadAttentionCanonizer(InstanceAttributeCanonizer):
    """The attention rule for ``nn.MultiheadAttention``: an explicit forward (no fused fast path).

    Parameters
    ----------
    attention_rule
        ``"ah"`` (default) or ``"attnlrp"`` (:mod:`bilrp.attention_rules`).

    """

    handled_types = (nn.MultiheadAttention,)

    def __init__(self, attention_rule: str = "ah") -> None:
        super().__init__()
        self.attention_rule = check_attention_rule(attention_rule)

    def merge(self, other: MultiheadAttentionCanonizer) -> MultiheadAttentionCanonizer:
        if other.attention_rule != self.attention_rule:
            raise ValueError(
                f"two attention rules in one composite ({self.attention_rule!r} and {other.attention_rule!r}): "
                "give every canonizer the same attention_rule"
            )
        return self.copy()

    def unsupported(self, module: nn.Module) -> str | None:
        if module.bias_k is not None or module.add_zero_attn:
            return "nn.MultiheadAttention with add_bias_kv or add_zero_attn has no bilrp rule"
        return None

    def attributes(self, module: nn.Module) -> dict[str, object]:
        reason = self.unsupported(module)
        if reason is not None:
            raise UnsupportedModuleError(f"{reason}: write a canonizer for it, see {CUSTOM_ARCHITECTURE_DOCS}")
        attributes: dict[str, object] = {
            "forward": partial(_multihead_attention_forward, module, self.attention_rule),
            VALUE_PROJECTION: ValueProjection(module),
        }
        if self.attention_rule != "ah":  # relevance flows through the scores: their projections get rules too
            attributes[QUERY_PROJECTION] = InputProjection(module, 0)
            attributes[KEY_PROJECTION] = InputProjection(module, 1)
        return attributes


VALUE_PROJECTION = "bilrp_value_projection"
QUERY_PROJECTION = "bilrp_query_projection"
KEY_PROJECTION = "bilrp_key_projection"


class InputProjection(nn.Linear):
    """One part (query 0, key 1, value 2) of an ``nn.MultiheadAttention`` input projection, as ``nn.Linear``.

    ``nn.MultiheadAttention`` keeps its query/key/value projections as raw parameters, which a composite's
    layer map (``TransformerComposite(linear_rule=...)``) cannot see. While the canonizer is active, the
    projections relevance flows through run through these child modules. Their parameters share memory
    with the attention's own; while they are not swapped by a zennit rule, the forward pass uses the
    attention's parameters themselves, so parameter gradients are unaffected.
    """

    def __init__(self, attention: nn.MultiheadAttention, index: int = 2) -> None:
        nn.Module.__init__(self)
        weight, bias = _input_projections(attention)[index]
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.weight = nn.Parameter(weight.detach(), requires_grad=weight.requires_grad)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=bias.requires_grad)
        self.__dict__["_source"] = (attention, index, self.weight, self.bias)  # not a child: no module cycle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention, index, weight, bias = self._source
        if self.weight is weight and self.bias is bias:  # not modified by a rule: the attention's parameters
            weight, bias = _input_projections(attention)[index]
        else:
            weight, bias = self.weight, self.bias
        return F.linear(x, weight, bias)


class ValueProjection(InputProjection):
    """The value part of an ``nn.MultiheadAttention`` input projection (the only one rule AH needs)."""

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__(attention, 2)


def _input_projections(attention: nn.MultiheadAttention) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """``(weight, bias)`` of the query, key and value projections of an ``nn.MultiheadAttention``."""
    if attention._qkv_same_embed_dim:
        weights = attention.in_proj_weight.chunk(3)
    else:
        weights = (attention.q_proj_weight, attention.k_proj_weight, attention.v_proj_weight)
    biases = attention.in_proj_bias.chunk(3) if attention.in_proj_bias is not None else (None,) * 3
    return list(zip(weights, biases, strict=True))


def _multihead_attention_forward(
    module: nn.MultiheadAttention,
    rule: str,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = True,
    attn_mask: torch.Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[torch.Tensor, None]:
    if not module.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    batch, length, dim = query.shape
    heads = module.num_heads
    (w_q, b_q), (w_k, b_k), _ = _input_projections(module)

    def split(projected: torch.Tensor) -> torch.Tensor:
        return projected.view(projected.size(0), projected.size(1), heads, -1).transpose(1, 2)

    # under rule AH the scores are constants, so query and key projections read detached inputs; the
    # projections relevance flows through are child modules, so that a composite's linear rule applies
    if rule == "ah":
        q, k = split(F.linear(query.detach(), w_q, b_q)), split(F.linear(key.detach(), w_k, b_k))
    else:
        q, k = split(getattr(module, QUERY_PROJECTION)(query)), split(getattr(module, KEY_PROJECTION)(key))
    v = split(getattr(module, VALUE_PROJECTION)(value))
    mask = None
    if attn_mask is not None:
        mask = _additive_mask(attn_mask, q.dtype)
        if mask.dim() == 3:
            mask = mask.view(batch, heads, *mask.shape[-2:])
    if key_padding_mask is not None:
        padding = _additive_mask(key_padding_mask, q.dtype)[:, None, None, :]
        mask = padding if mask is None else (mask + padding).clamp_min(torch.finfo(q.dtype).min)
    out = rule_attention(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None, rule=rule)
    out = out.transpose(1, 2).reshape(batch, length, dim)
    out = module.out_proj(out)
    if not module.batch_first:
        out = out.transpose(0, 1)
    return out, None


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """PyTorch's boolean "True = masked out" or additive float mask as an additive float mask."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, torch.finfo(dtype).min)
    return mask.to(dtype)


class TransformerEncoderLayerCanonizer(InstanceAttributeCanonizer):
    """``nn.TransformerEncoderLayer``/``nn.TransformerEncoder``: the unfused path and rule GA.

    The layer's activation *function* (``F.relu``, ``F.gelu``, any callable) becomes proportional; an
    activation *module* (``nn.GELU()``, ...) is a child module that :class:`ActivationCanonizer` handles.
    The fused "fast path" and nested tensors are switched off so that every rule is seen.
    """

    handled_types = (nn.TransformerEncoderLayer, nn.TransformerEncoder)

    def attributes(self, module: nn.Module) -> dict[str, object]:
        if isinstance(module, nn.TransformerEncoder):
            return {"use_nested_tensor": False}
        attributes: dict[str, object] = {"forward": partial(_encoder_layer_forward, module)}
        if not isinstance(module.activation, nn.Module):
            attributes["activation"] = partial(proportional_activation, module.activation)
        return attributes


def _encoder_layer_forward(
    layer: nn.TransformerEncoderLayer,
    src: torch.Tensor,
    src_mask: torch.Tensor | None = None,
    src_key_padding_mask: torch.Tensor | None = None,
    is_causal: bool = False,
) -> torch.Tensor:
    x = src
    if layer.norm_first:
        x = x + layer._sa_block(layer.norm1(x), src_mask, src_key_padding_mask, is_causal=is_causal)
        return x + layer._ff_block(layer.norm2(x))
    x = layer.norm1(x + layer._sa_block(x, src_mask, src_key_padding_mask, is_causal=is_causal))
    return layer.norm2(x + layer._ff_block(x))


TORCH = register_architecture(
    Architecture(
        name="torch",
        models=("torch.nn:TransformerEncoder",),
        canonizers=(MultiheadAttentionCanonizer, TransformerEncoderLayerCanonizer),
        embedding="",
        norm="LayerNorm",
        mlp="any activation function or module",
    )
)


class TorchTransformerCanonizer(ArchitectureCanonizer):
    """The rules for plain PyTorch Transformer encoders."""

    families = ("torch",)
