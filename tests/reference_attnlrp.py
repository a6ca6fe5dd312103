"""An independent, deliberately slow reference implementation of AttnLRP (Achtibat et al. 2024, arXiv 2402.05602).

It imports nothing from bilrp and is written without reading bilrp's rules, canonizers or architecture code, so
that bilrp's AttnLRP explanations can be tested against it. It re-implements the forward pass of a HuggingFace
``BertModel`` (post-norm encoder) and of a ``LlamaModel`` / ``Qwen3Model`` (pre-norm causal decoder used as an
encoder) from the embedding-layer output onward, reading the weights from the HF module, followed by mean pooling
over the real tokens. Every rule is a custom :class:`torch.autograd.Function` whose forward is the ordinary value and
whose backward is a *modified gradient*, chosen so that ``gradient x input = relevance`` holds at every layer:

- softmax ``s = softmax(x)``: ``R_in = x * (R_out - s * sum_j R_out_j)`` (per row). With ``R_out = s * g`` this is
  ``x * (J^T g)``, so the modified gradient is the true Jacobian-vector product ``s * (g - sum_j s_j g_j)``; it is
  set to exactly 0 wherever ``s == 0`` (masked keys, ``x`` = ``-inf`` or ``finfo.min``), so no NaN can arise.
- the bilinear products ``q @ k^T`` and ``p @ v`` and the SwiGLU product ``act(gate) * up``: uniform rule, each
  factor receives half of the relevance, i.e. half of the gradient of the product.
- LayerNorm / RMSNorm: identity rule on the normalisation, the std / rms is a detached constant (the centring of
  LayerNorm and the affine map stay linear and pass the plain gradient).
- element-wise activations (GELU, SiLU, ...): identity rule ``R_in = R_out``, i.e. gradient ``g * act(x) / x``.
- linear layers: LRP-0 (plain gradient) when ``epsilon is None``, else LRP-epsilon
  ``R_in = x * W^T (R_out / (z + eps * sign(z)))`` with ``z = W x + b`` and ``sign(0) = +1``.
- residual additions, head splitting, rotary embeddings, the score scale, the additive mask and mean pooling are
  linear and pass the plain gradient.

Mask conventions (the same as HF's eager attention, 1 = real token, 0 = padding): a query may attend to a key iff
the key is real (BERT) or iff the key is real and not in the future (Llama / Qwen3, positions ``0 .. seq-1`` whatever
the padding). Disallowed scores get ``torch.finfo(dtype).min`` added, as in HF.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "SoftmaxRule",
    "UniformMatmul",
    "UniformProduct",
    "IdentityActivation",
    "EpsilonLinear",
    "ACTIVATIONS",
    "softmax_relevance",
    "bert_forward",
    "llama_forward",
    "encoder_forward",
    "pooled_embedding",
    "attnlrp_contributions",
    "attnlrp_first_order",
]


# ---------------------------------------------------------------------------------------------- the rules
class SoftmaxRule(torch.autograd.Function):
    """Softmax over the last dimension; backward ``s * (g - sum(s * g))``, exactly 0 where ``s == 0``."""

    @staticmethod
    def forward(ctx, x):
        s = torch.softmax(x, dim=-1)
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, g):
        (s,) = ctx.saved_tensors
        grad = s * (g - (s * g).sum(-1, keepdim=True))
        return torch.where(s == 0, torch.zeros_like(grad), grad)


def softmax_relevance(x: torch.Tensor, relevance_out: torch.Tensor) -> torch.Tensor:
    """The AttnLRP softmax rule in relevance form: ``x * (R_out - s * sum_j R_out_j)``, 0 where ``s == 0``.

    Parameters
    ----------
    x : torch.Tensor
        The softmax inputs (scores including the mask; may hold ``-inf``).
    relevance_out : torch.Tensor
        The relevance of the probabilities, same shape as ``x``.

    Returns
    -------
    torch.Tensor
        The relevance of ``x``.
    """
    s = torch.softmax(x, dim=-1)
    inner = relevance_out - s * relevance_out.sum(-1, keepdim=True)
    safe_x = torch.where(s == 0, torch.zeros_like(x), x)
    return torch.where(s == 0, torch.zeros_like(x), safe_x * inner)


class UniformMatmul(torch.autograd.Function):
    """``a @ b`` with the uniform rule: each factor gets half of the gradient of the product."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return 0.5 * (g @ b.transpose(-1, -2)), 0.5 * (a.transpose(-1, -2) @ g)


class UniformProduct(torch.autograd.Function):
    """Element-wise ``a * b`` with the uniform rule (half of the gradient each)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return 0.5 * g * b, 0.5 * g * a


def _gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def _silu(x):
    return x * torch.sigmoid(x)


ACTIVATIONS = {
    "gelu": _gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "silu": _silu,
    "swish": _silu,
    "relu": lambda x: x.clamp_min(0.0),
}
"""The element-wise activations by their HF ``hidden_act`` name."""


class IdentityActivation(torch.autograd.Function):
    """``ACTIVATIONS[name](x)`` with the identity rule: gradient ``g * act(x) / x`` (so ``R_in = R_out``)."""

    @staticmethod
    def forward(ctx, x, name):
        y = ACTIVATIONS[name](x)
        nonzero = x != 0
        ratio = torch.where(nonzero, y / torch.where(nonzero, x, torch.ones_like(x)), torch.full_like(x, 0.5))
        ctx.save_for_backward(ratio)
        return y

    @staticmethod
    def backward(ctx, g):
        (ratio,) = ctx.saved_tensors
        return g * ratio, None


class EpsilonLinear(torch.autograd.Function):
    """``z = x @ W^T + b`` with LRP-epsilon: gradient ``(g * z / (z + eps * sign z)) @ W``, ``sign(0) = +1``."""

    @staticmethod
    def forward(ctx, x, weight, bias, epsilon):
        z = x @ weight.T
        if bias is not None:
            z = z + bias
        ctx.save_for_backward(z, weight)
        ctx.epsilon = epsilon
        return z

    @staticmethod
    def backward(ctx, g):
        z, weight = ctx.saved_tensors
        sign = torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
        denominator = z + ctx.epsilon * sign
        safe = torch.where(denominator == 0, torch.ones_like(z), denominator)
        factor = torch.where(denominator == 0, torch.ones_like(z), z / safe)  # z = 0 carries no relevance anyway
        return (g * factor) @ weight, None, None, None


# ---------------------------------------------------------------------------------------------- building blocks
def _linear(module: nn.Linear, x: torch.Tensor, epsilon: float | None) -> torch.Tensor:
    weight = module.weight.detach()
    bias = None if module.bias is None else module.bias.detach()
    if epsilon is None:
        return x @ weight.T if bias is None else x @ weight.T + bias
    return EpsilonLinear.apply(x, weight, bias, float(epsilon))


def _layer_norm(module: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    centred = x - x.mean(-1, keepdim=True)
    std = torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + module.eps).detach()
    return centred / std * module.weight.detach() + module.bias.detach()


def _rms_norm(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + module.variance_epsilon).detach()
    return x / rms * module.weight.detach()


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(seq, heads * d)`` -> ``(heads, seq, d)``."""
    seq, width = x.shape
    return x.reshape(seq, heads, width // heads).transpose(0, 1)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(heads, seq, d)`` -> ``(seq, heads * d)``."""
    heads, seq, d = x.shape
    return x.transpose(0, 1).reshape(seq, heads * d)


def _attention(q, k, v, allowed: torch.Tensor, scale: float) -> torch.Tensor:
    """Scaled dot-product attention under the AttnLRP rules; ``allowed``: bool ``(seq_q, seq_k)``."""
    scores = UniformMatmul.apply(q, k.transpose(-1, -2)) * scale
    additive = torch.zeros_like(allowed, dtype=scores.dtype).masked_fill(~allowed, torch.finfo(scores.dtype).min)
    probabilities = SoftmaxRule.apply(scores + additive)
    return UniformMatmul.apply(probabilities, v)


def _check_input(embeddings: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if embeddings.dim() != 3 or embeddings.shape[0] != 1 or tuple(mask.shape) != tuple(embeddings.shape[:2]):
        raise ValueError(
            f"expected embeddings (1, seq, hidden) and mask (1, seq), got {embeddings.shape}, {mask.shape}"
        )
    return embeddings[0], mask[0].bool()


# ---------------------------------------------------------------------------------------------- architectures
def bert_forward(model: nn.Module, embeddings: torch.Tensor, mask: torch.Tensor, epsilon: float | None = None):
    """BertModel's encoder (post-norm) from the embedding output ``(1, seq, hidden)``; returns ``(seq, hidden)``."""
    config = model.config
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute") or config.is_decoder:
        raise ValueError("only absolute-position, bidirectional BERT encoders are supported")
    h, real = _check_input(embeddings, mask)
    heads = config.num_attention_heads
    scale = (config.hidden_size // heads) ** -0.5
    allowed = real[None, :].expand(h.shape[0], -1)  # every query sees every real key
    for layer in model.encoder.layer:
        attention, block = layer.attention.self, layer.attention.output
        q, k, v = (
            _split_heads(_linear(lin, h, epsilon), heads) for lin in (attention.query, attention.key, attention.value)
        )
        context = _merge_heads(_attention(q, k, v, allowed, scale))
        h = _layer_norm(block.LayerNorm, h + _linear(block.dense, context, epsilon))
        inner = IdentityActivation.apply(_linear(layer.intermediate.dense, h, epsilon), config.hidden_act)
        h = _layer_norm(layer.output.LayerNorm, h + _linear(layer.output.dense, inner, epsilon))
    return h


def _rotary(model: nn.Module, seq: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin ``(seq, head_dim)`` from the model's ``inv_freq`` buffer, computed in ``dtype``."""
    rotary = model.rotary_emb
    inv_freq = rotary.inv_freq.detach().to(dtype)
    positions = torch.arange(seq, dtype=dtype, device=inv_freq.device)
    freqs = positions[:, None] * inv_freq[None, :]
    angles = torch.cat([freqs, freqs], dim=-1)
    return angles.cos() * rotary.attention_scaling, angles.sin() * rotary.attention_scaling


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def _llama_attention(attention, x, cos, sin, allowed, config, epsilon):
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    q = _split_heads(_linear(attention.q_proj, x, epsilon), heads)
    k = _split_heads(_linear(attention.k_proj, x, epsilon), kv_heads)
    v = _split_heads(_linear(attention.v_proj, x, epsilon), kv_heads)
    if hasattr(attention, "q_norm"):  # Qwen3: RMSNorm on every head vector before the rotation
        q, k = _rms_norm(attention.q_norm, q), _rms_norm(attention.k_norm, k)
    q, k = _rope(q, cos, sin), _rope(k, cos, sin)
    k = k.repeat_interleave(heads // kv_heads, dim=0)  # grouped-query attention: kv head i serves queries i*n..
    v = v.repeat_interleave(heads // kv_heads, dim=0)
    context = _merge_heads(_attention(q, k, v, allowed, head_dim**-0.5))
    return _linear(attention.o_proj, context, epsilon)


def llama_forward(model: nn.Module, embeddings: torch.Tensor, mask: torch.Tensor, epsilon: float | None = None):
    """LlamaModel / Qwen3Model (pre-norm, causal) from ``embed_tokens`` output; returns ``(seq, hidden)``."""
    config = model.config
    if getattr(config, "use_sliding_window", False) or any(
        kind != "full_attention" for kind in (getattr(config, "layer_types", None) or [])
    ):
        raise ValueError("only full (causal) attention is supported")
    h, real = _check_input(embeddings, mask)
    seq = h.shape[0]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=h.device).tril()
    allowed = causal & real[None, :]  # query i sees key j <= i if key j is real
    cos, sin = _rotary(model, seq, h.dtype)
    for layer in model.layers:
        x = _rms_norm(layer.input_layernorm, h)
        h = h + _llama_attention(layer.self_attn, x, cos, sin, allowed, config, epsilon)
        x = _rms_norm(layer.post_attention_layernorm, h)
        mlp = layer.mlp
        gate = IdentityActivation.apply(_linear(mlp.gate_proj, x, epsilon), config.hidden_act)
        h = h + _linear(mlp.down_proj, UniformProduct.apply(gate, _linear(mlp.up_proj, x, epsilon)), epsilon)
    return _rms_norm(model.norm, h)


def encoder_forward(model: nn.Module, embeddings: torch.Tensor, mask: torch.Tensor, epsilon: float | None = None):
    """The last hidden state ``(seq, hidden)`` of a BertModel or LlamaModel / Qwen3Model under the AttnLRP rules.

    Parameters
    ----------
    model : torch.nn.Module
        A HF ``BertModel`` (has ``encoder.layer``) or ``LlamaModel`` / ``Qwen3Model`` (has ``layers``).
    embeddings : torch.Tensor
        The embedding-layer output, ``(1, seq, hidden)``.
    mask : torch.Tensor
        ``(1, seq)``, 1 for real tokens and 0 for padding.
    epsilon : float, optional
        LRP-epsilon for every linear layer; ``None`` for LRP-0.

    Returns
    -------
    torch.Tensor
        ``(seq, hidden)``, with the ordinary forward values.
    """
    if hasattr(model, "encoder") and hasattr(model.encoder, "layer"):
        return bert_forward(model, embeddings, mask, epsilon)
    if hasattr(model, "layers") and hasattr(model, "rotary_emb"):
        return llama_forward(model, embeddings, mask, epsilon)
    raise TypeError(f"unsupported model {type(model).__name__}")


def pooled_embedding(model: nn.Module, embeddings: torch.Tensor, mask: torch.Tensor, epsilon: float | None = None):
    """``phi (hidden,)``: the mask-weighted mean of :func:`encoder_forward` over the real tokens."""
    hidden = encoder_forward(model, embeddings, mask, epsilon)
    weights = mask[0].to(hidden.dtype)
    return (hidden * weights[:, None]).sum(0) / weights.sum()


# ---------------------------------------------------------------------------------------------- explanations
def attnlrp_contributions(
    model: nn.Module, embeddings: torch.Tensor, mask: torch.Tensor, epsilon: float | None = None
) -> torch.Tensor:
    """Token relevance for every output dimension of the pooled embedding, one backward pass per dimension.

    Parameters
    ----------
    model : torch.nn.Module
        A HF ``BertModel``, ``LlamaModel`` or ``Qwen3Model`` (eval mode).
    embeddings : torch.Tensor
        The embedding-layer output, ``(1, seq, hidden)``.
    mask : torch.Tensor
        ``(1, seq)``, 1 for real tokens and 0 for padding.
    epsilon : float, optional
        LRP-epsilon for every linear layer; ``None`` for LRP-0.

    Returns
    -------
    torch.Tensor
        ``C (seq, hidden)``: ``C[i, m]`` is the relevance of token ``i`` (summed over the embedding size) for
        ``phi[m]``.
    """
    x = embeddings.detach().clone().requires_grad_(True)
    phi = pooled_embedding(model, x, mask, epsilon)
    columns = []
    for m in range(phi.shape[0]):
        (grad,) = torch.autograd.grad(phi[m], x, retain_graph=True)
        columns.append((x * grad)[0].sum(-1))
    return torch.stack(columns, dim=1).detach()


def attnlrp_first_order(
    model: nn.Module,
    embeddings: torch.Tensor,
    mask: torch.Tensor,
    output_weights: torch.Tensor,
    epsilon: float | None = None,
) -> torch.Tensor:
    """Token relevance ``(seq,)`` of ``output_weights . phi`` (one backward pass).

    Parameters
    ----------
    model, embeddings, mask, epsilon
        As in :func:`attnlrp_contributions`.
    output_weights : torch.Tensor
        ``(hidden,)``, e.g. the other sentence's embedding for a dot-product similarity.

    Returns
    -------
    torch.Tensor
        ``(seq,)``, equal to ``attnlrp_contributions(...) @ output_weights``.
    """
    x = embeddings.detach().clone().requires_grad_(True)
    score = pooled_embedding(model, x, mask, epsilon) @ output_weights.detach().to(x.dtype)
    (grad,) = torch.autograd.grad(score, x)
    return (x * grad)[0].sum(-1).detach()
