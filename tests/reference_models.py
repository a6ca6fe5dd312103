"""Independent reference implementations of Transformer encoders under the LRP rules of Ali et al. (2022).

Plain functional re-implementations that read a model's state dict and hand-code each rule with
``.detach()``; they import nothing from bilrp (no canonizers, no rules), so comparing bilrp's composite
against them checks the rules *and* that the canonizers install them on every part of each architecture.

- AH: attention probabilities ``P = softmax(scores).detach()``, the output ``P @ V``.
- LN: ``(x - mean) / sqrt(var + eps)`` with the square root detached, then the affine map.
- GA: ``act(x) = x * [act(x) / x]`` with the ratio detached (its limit 1/2 at ``x = 0``).
- Linear layers: plain ``x @ W.T + b`` (LRP-0), or LRP-epsilon in gradient form (``bert_reference``):
  the forward value ``z`` with gradient ``W^T (g * z / (z + eps sign z))``.

Each ``*_reference`` function maps the *embedding output* (the input of the first Transformer layer,
``(batch, seq, dim)``) and a mask (1 = real token) to the last hidden state. Gradient x input of any
function of that state is then the rule-based LRP relevance.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "rule_attention",
    "rule_layer_norm",
    "rule_activation",
    "bert_reference",
    "mpnet_reference",
    "distilbert_reference",
    "gpt_neo_reference",
    "torch_encoder_reference",
    "hf_reference",
    "mean_pooling",
    "qkv_pooling_reference",
    "mpnet_bucket",
    "ToyAttention",
    "ToyNorm",
    "ToyEncoder",
    "toy_reference",
    "randomize_biases",
    "model_state",
    "assert_same_state",
    "RTOL",
    "assert_close",
    "projection",
    "gradient",
    "input_x_gradient",
]


# ---------------------------------------------------------------------------------------------- the rules
def rule_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scores_scale: float, allowed: torch.Tensor):
    """Rule AH. ``q, k, v``: ``(batch, heads, seq, head_dim)``; ``allowed``: bool, broadcast to the scores."""
    scores = (q @ k.transpose(-1, -2)) * scores_scale
    return _attend(scores, v, allowed)


def _attend(scores: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    scores = scores.masked_fill(~allowed, -math.inf)
    probabilities = torch.exp(scores - scores.amax(-1, keepdim=True))
    probabilities = probabilities / probabilities.sum(-1, keepdim=True)
    # a query with no allowed key (a padded query outside every real token's local window) attends to nothing
    probabilities = torch.nan_to_num(probabilities, nan=0.0)
    return probabilities.detach() @ v


def rule_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Rule LN over the last dimension."""
    centred = x - x.mean(-1, keepdim=True)
    std = (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt().detach()
    out = centred / std * weight
    return out if bias is None else out + bias


def _gelu_erf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


ACTIVATIONS = {
    "gelu": _gelu_erf,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": lambda x: x.clamp_min(0.0),
}


def rule_activation(x: torch.Tensor, name: str) -> torch.Tensor:
    """Rule GA for the activation called ``name`` (a key of :data:`ACTIVATIONS`)."""
    value = ACTIVATIONS[name](x)
    nonzero = x != 0
    ratio = torch.where(nonzero, value / torch.where(nonzero, x, torch.ones_like(x)), torch.full_like(x, 0.5))
    return x * ratio.detach()


# ---------------------------------------------------------------------------------------------- helpers
def _linear(state: dict, prefix: str, x: torch.Tensor, epsilon: float = 0.0) -> torch.Tensor:
    return _affine(x, state[f"{prefix}.weight"], state.get(f"{prefix}.bias"), epsilon)


def _affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, epsilon: float = 0.0) -> torch.Tensor:
    out = x @ weight.T
    out = out if bias is None else out + bias
    if not epsilon:
        return out
    sign = torch.where(out >= 0, 1.0, -1.0).to(out.dtype)
    factor = (out / (out + epsilon * sign)).detach()
    return out.detach() + factor * (out - out.detach())  # value z, gradient scaled by z / (z + eps sign z)


def _norm(state: dict, prefix: str, x: torch.Tensor, eps: float) -> torch.Tensor:
    return rule_layer_norm(x, state[f"{prefix}.weight"], state.get(f"{prefix}.bias"), eps)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, width = x.shape
    return x.reshape(batch, length, heads, width // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


def _key_mask(mask: torch.Tensor) -> torch.Tensor:
    """``(batch, 1, 1, seq)``: which keys a query may attend to (the real tokens)."""
    return mask.bool()[:, None, None, :]


def _state(module: nn.Module) -> dict:
    return {name: value.detach() for name, value in module.state_dict().items()}


# ---------------------------------------------------------------------------------------------- architectures
def bert_reference(encoder: nn.Module, x: torch.Tensor, mask: torch.Tensor, epsilon: float = 0.0) -> torch.Tensor:
    """BERT, MiniLM, RoBERTa and XLM-RoBERTa (post-norm layers, scores scaled by ``1/sqrt(head_dim)``).

    ``epsilon > 0`` applies LRP-epsilon to every Linear layer instead of LRP-0.
    """
    config, state = encoder.config, _state(encoder)
    heads, eps = config.num_attention_heads, config.layer_norm_eps
    scale = (config.hidden_size // heads) ** -0.5

    def linear(prefix: str, h: torch.Tensor) -> torch.Tensor:
        return _linear(state, prefix, h, epsilon)

    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}"
        q, k, v = (_heads(linear(f"{p}.attention.self.{n}", x), heads) for n in ("query", "key", "value"))
        context = linear(f"{p}.attention.output.dense", _merge(rule_attention(q, k, v, scale, _key_mask(mask))))
        h = _norm(state, f"{p}.attention.output.LayerNorm", context + x, eps)
        inner = rule_activation(linear(f"{p}.intermediate.dense", h), config.hidden_act)
        x = _norm(state, f"{p}.output.LayerNorm", linear(f"{p}.output.dense", inner) + h, eps)
    return x


def mpnet_bucket(relative: int, num_buckets: int = 32, max_distance: int = 128) -> int:
    """MPNet's (T5-style, bidirectional) bucket of a relative position ``key - query``."""
    half = num_buckets // 2
    offset = half if relative > 0 else 0
    distance = abs(relative)
    exact = half // 2
    if distance < exact:
        return offset + distance
    large = exact + int(math.log(distance / exact) / math.log(max_distance / exact) * (half - exact))
    return offset + min(large, half - 1)


def mpnet_reference(encoder: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MPNet: BERT-like layers plus a relative position bias on the attention scores (a constant)."""
    config, state = encoder.config, _state(encoder)
    heads, eps = config.num_attention_heads, config.layer_norm_eps
    scale = (config.hidden_size // heads) ** -0.5
    length = x.shape[1]
    buckets = torch.tensor([[mpnet_bucket(j - i) for j in range(length)] for i in range(length)])
    position_bias = state["encoder.relative_attention_bias.weight"][buckets].permute(2, 0, 1)  # (heads, seq, seq)
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}"
        q, k, v = (_heads(_linear(state, f"{p}.attention.attn.{n}", x), heads) for n in ("q", "k", "v"))
        scores = (q @ k.transpose(-1, -2)) * scale + position_bias
        context = _linear(state, f"{p}.attention.attn.o", _merge(_attend(scores, v, _key_mask(mask))))
        h = _norm(state, f"{p}.attention.LayerNorm", context + x, eps)
        inner = rule_activation(_linear(state, f"{p}.intermediate.dense", h), config.hidden_act)
        x = _norm(state, f"{p}.output.LayerNorm", _linear(state, f"{p}.output.dense", inner) + h, eps)
    return x


def distilbert_reference(encoder: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DistilBERT (post-norm layers, LayerNorm eps fixed at 1e-12)."""
    config, state = encoder.config, _state(encoder)
    heads, eps = config.n_heads, 1e-12
    scale = (config.dim // heads) ** -0.5
    for i in range(config.n_layers):
        p = f"transformer.layer.{i}"
        q, k, v = (_heads(_linear(state, f"{p}.attention.{n}", x), heads) for n in ("q_lin", "k_lin", "v_lin"))
        context = _linear(state, f"{p}.attention.out_lin", _merge(rule_attention(q, k, v, scale, _key_mask(mask))))
        h = _norm(state, f"{p}.sa_layer_norm", context + x, eps)
        inner = rule_activation(_linear(state, f"{p}.ffn.lin1", h), config.activation)
        x = _norm(state, f"{p}.output_layer_norm", _linear(state, f"{p}.ffn.lin2", inner) + h, eps)
    return x


def gpt_neo_reference(encoder: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GPT-Neo (as in SGPT): pre-norm, causal, global or local (sliding window) layers, no score scaling.

    GPT-Neo computes the attention scores in float32 whatever the model's dtype; so does this reference.
    """
    config, state = encoder.config, _state(encoder)
    heads, eps = config.num_heads, config.layer_norm_epsilon
    length = x.shape[1]
    query_pos = torch.arange(length)[:, None]
    key_pos = torch.arange(length)[None, :]
    causal = key_pos <= query_pos
    local = causal & (query_pos - key_pos < config.window_size)
    for i, kind in enumerate(config.attention_layers):
        p = f"h.{i}"
        a = _norm(state, f"{p}.ln_1", x, eps)
        q, k, v = (_heads(_linear(state, f"{p}.attn.attention.{n}", a), heads) for n in ("q_proj", "k_proj", "v_proj"))
        scores = (q.float() @ k.float().transpose(-1, -2)).to(x.dtype)
        allowed = (local if kind == "local" else causal) & _key_mask(mask)
        x = x + _linear(state, f"{p}.attn.attention.out_proj", _merge(_attend(scores, v, allowed)))
        inner = rule_activation(
            _linear(state, f"{p}.mlp.c_fc", _norm(state, f"{p}.ln_2", x, eps)), config.activation_function
        )
        x = x + _linear(state, f"{p}.mlp.c_proj", inner)
    return _norm(state, "ln_f", x, eps)


def torch_encoder_reference(
    encoder: nn.TransformerEncoder, x: torch.Tensor, mask: torch.Tensor, activation: str, epsilon: float = 0.0
) -> torch.Tensor:
    """``nn.TransformerEncoder`` (post- or pre-norm layers, optional final norm), batch-first input.

    ``mask`` is 1 for real tokens (the inverse of PyTorch's ``src_key_padding_mask``); ``activation`` names
    the layers' activation (``"relu"`` or ``"gelu"``). ``epsilon > 0`` applies LRP-epsilon to every linear
    map that relevance flows through: the value part of the attention's input projection, its output
    projection and the feed-forward layers.
    """
    state = _state(encoder)
    allowed = _key_mask(mask)
    for i, layer in enumerate(encoder.layers):
        p = f"layers.{i}"
        heads, eps = layer.self_attn.num_heads, layer.norm1.eps
        scale = (x.shape[-1] // heads) ** -0.5

        def attention(h: torch.Tensor, p: str = p, heads: int = heads, scale: float = scale) -> torch.Tensor:
            w_q, w_k, w_v = state[f"{p}.self_attn.in_proj_weight"].chunk(3)
            b_q, b_k, b_v = state[f"{p}.self_attn.in_proj_bias"].chunk(3)
            q, k = _heads(h @ w_q.T + b_q, heads), _heads(h @ w_k.T + b_k, heads)
            v = _heads(_affine(h, w_v, b_v, epsilon), heads)
            attended = _merge(rule_attention(q, k, v, scale, allowed))
            return _linear(state, f"{p}.self_attn.out_proj", attended, epsilon)

        def feed_forward(h: torch.Tensor, p: str = p) -> torch.Tensor:
            inner = rule_activation(_linear(state, f"{p}.linear1", h, epsilon), activation)
            return _linear(state, f"{p}.linear2", inner, epsilon)

        if layer.norm_first:
            x = x + attention(_norm(state, f"{p}.norm1", x, eps))
            x = x + feed_forward(_norm(state, f"{p}.norm2", x, eps))
        else:
            x = _norm(state, f"{p}.norm1", x + attention(x), eps)
            x = _norm(state, f"{p}.norm2", x + feed_forward(x), eps)
    if encoder.norm is not None:
        x = _norm(state, "norm", x, encoder.norm.eps)
    return x


_HF_REFERENCES = {
    "bert": bert_reference,
    "roberta": bert_reference,
    "xlm-roberta": bert_reference,
    "mpnet": mpnet_reference,
    "distilbert": distilbert_reference,
    "gpt_neo": gpt_neo_reference,
}


def hf_reference(encoder: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reference for a HuggingFace encoder, chosen by its ``config.model_type``."""
    return _HF_REFERENCES[encoder.config.model_type](encoder, x, mask)


# ---------------------------------------------------------------------------------------------- poolings
def mean_pooling(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of the real tokens' states."""
    weights = mask.to(h.dtype)[..., None]
    return (h * weights).sum(1) / weights.sum(1)


def qkv_pooling_reference(pooling: nn.Module, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """bilrp's learnable attention pooling under rule AH: ``sum_i p_i W_v h_i`` with ``p`` constant."""
    state = _state(pooling)
    scores = _linear(state, "key", h) @ state["query"] / math.sqrt(h.shape[-1])
    return _attend(scores[:, None, None, :], _linear(state, "value", h)[:, None], _key_mask(mask))[:, 0, 0]


# ---------------------------------------------------------------------------------------------- a toy architecture
class ToyAttention(nn.Module):
    """Single-head self-attention of a class bilrp does not know (docs/custom_architectures.md)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.query(x) @ self.key(x).transpose(-1, -2) / math.sqrt(x.shape[-1])
        scores = scores.masked_fill(mask[:, None, :] == 0, torch.finfo(x.dtype).min)
        return torch.softmax(scores, dim=-1) @ self.value(x)


class ToyNorm(nn.Module):
    """RMS normalisation of a class bilrp does not know."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt() * self.weight


class ToyEncoder(nn.Module):
    """Post-norm layers of :class:`ToyAttention`, :class:`ToyNorm` and a GELU feed-forward block."""

    def __init__(self, dim: int = 8, layers: int = 2) -> None:
        super().__init__()
        self.attention = nn.ModuleList(ToyAttention(dim) for _ in range(layers))
        self.norm = nn.ModuleList(ToyNorm(dim) for _ in range(layers))
        self.feed_forward = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for attention, norm, feed_forward in zip(self.attention, self.norm, self.feed_forward, strict=True):
            x = norm(x + attention(x, mask))
            x = x + feed_forward(x)
        return x


def toy_reference(model: ToyEncoder, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:class:`ToyEncoder` under the rules (AH on its attention, constant RMS in its norm, GA on GELU)."""
    state = _state(model)
    for i, norm in enumerate(model.norm):
        q, k, v = (_linear(state, f"attention.{i}.{n}", x)[:, None] for n in ("query", "key", "value"))
        h = x + rule_attention(q, k, v, x.shape[-1] ** -0.5, _key_mask(mask))[:, 0]
        x = h / (h.pow(2).mean(-1, keepdim=True) + norm.eps).sqrt().detach() * state[f"norm.{i}.weight"]
        inner = rule_activation(_linear(state, f"feed_forward.{i}.0", x), "gelu")
        x = x + _linear(state, f"feed_forward.{i}.2", inner)
    return x


# ---------------------------------------------------------------------------------------------- test inputs
def randomize_biases(module: nn.Module, seed: int = 1, scale: float = 0.1) -> nn.Module:
    """Draw every bias at random, in place: freshly initialised HF models have zero Linear biases, which
    would leave the bias paths of the references untested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.endswith("bias"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * scale)
    return module


# ---------------------------------------------------------------------------------------------- model state
def model_state(model: nn.Module) -> tuple[dict, dict]:
    """What a canonizer or a hook could leave behind: per module every instance attribute (by identity,
    and the entries of dict attributes such as the hook dictionaries), per HF config every attribute (the
    attention implementation included), and the parameter values."""

    def fingerprint(value):
        return tuple((key, id(item)) for key, item in value.items()) if isinstance(value, dict) else id(value)

    structure = {}
    for name, module in model.named_modules():
        structure[f"module {name!r}"] = {key: fingerprint(value) for key, value in vars(module).items()}
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            structure[f"config of {name!r}"] = {key: fingerprint(value) for key, value in vars(config).items()}
    parameters = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    return structure, parameters


def assert_same_state(before: tuple[dict, dict], after: tuple[dict, dict]) -> None:
    """Fail naming the first module (or config, or parameter) whose state differs."""
    for key in before[0].keys() | after[0].keys():
        assert before[0].get(key) == after[0].get(key), f"{key} changed"
    assert before[1].keys() == after[1].keys()
    for name, value in before[1].items():
        assert torch.equal(value, after[1][name]), f"parameter {name} changed"


# ---------------------------------------------------------------------------------------------- comparisons
RTOL = 1e-5


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL) -> None:
    """``max |actual - expected| <= rtol * max |expected|``."""
    error = float(((actual - expected).abs().max() / expected.abs().max()).detach())
    assert error <= rtol, f"relative error {error:.2e} > {rtol:.0e}"


def projection(dim: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A fixed random direction ``u``: the explained output is ``u . phi``."""
    return torch.randn(dim, generator=torch.Generator().manual_seed(7), dtype=dtype)


def gradient(function, x: torch.Tensor) -> torch.Tensor:
    """The gradient of ``function(x).sum()`` at ``x`` (whatever rules are active)."""
    x = x.detach().clone().requires_grad_(True)
    return torch.autograd.grad(function(x).sum(), x)[0].detach()


def input_x_gradient(function, x: torch.Tensor) -> torch.Tensor:
    """Gradient x input: the LRP relevance when the gradient is taken under the rules."""
    return x.detach() * gradient(function, x)
