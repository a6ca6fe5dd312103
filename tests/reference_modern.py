"""Independent rule references for the modern encoder families: Llama-style decoders used as encoders
(Qwen3, Qwen2, Mistral, Llama), the T5 encoder, Gemma 3 text models and ModernBERT.

Like tests/reference_models.py, each reference re-implements the model's forward from its state dict and
config only (no bilrp code, no HuggingFace module's forward) with the LRP rules written by hand:

- AH: the attention probabilities are constants (``softmax(...).detach()``); RoPE, q/k norms, relative
  position biases and masks only enter the probabilities, so they carry no relevance.
- LN: the normalising statistic is a constant: ``x / sqrt(mean(x^2) + eps)`` with the square root detached
  for RMS norms (scaled by ``weight``, or ``1 + weight`` in Gemma), ``(x - mean) / sqrt(var + eps)`` for
  LayerNorm.
- GA: ``act(x) = x * [act(x) / x]`` with the ratio detached (its limit 1/2 at ``x = 0``).
- LRP-0 on the linear layers.
- The gated-unit rule for ``down(act(gate(x)) * up(x))``: ``"constant_gate"`` (the activated gate is a
  constant: relevance flows through ``up`` only) or ``"uniform"``
  (``0.5 * (act_gate.detach() * up + act_gate * up.detach())``, GA inside ``act``).

Each reference maps the embedding output ``x`` ``(batch, seq, dim)`` and a mask (1 = real token, right
padding) to the last hidden state; gradient x input of a function of that state is the rule's relevance.

``numerics`` chooses how the constants (and norms) are rounded, since HuggingFace computes parts of a
float64 model in float32:

- ``"rule"`` (default): the rules in the model's dtype: the norms and the attention probabilities (rule
  AH's softmax) in float64. What HuggingFace computes in float32 outside any rule stays as it is: the RoPE
  angles (every family) and ModernBERT's rounding of q and k to float32 before its rotation.
- ``"rule-float32-ah"``: a diagnostic: ``"rule"`` with the attention probabilities rounded to float32
  where HuggingFace's eager attention asks for a float32 softmax (Llama-style, Gemma, ModernBERT).
- ``"eager"``: HuggingFace's eager forward exactly: the softmax in float32 where the eager path upcasts,
  the RMS norms upcast as HuggingFace does (Llama-style and Gemma normalise in float32; T5 computes the
  variance in float32).
- ``"sdpa"``: HuggingFace's default (SDPA) forward: as ``"eager"`` but the softmax in the model's dtype.

A query with no allowed key (a padded query whose local window holds no real token) attends to nothing
here; HuggingFace's eager path gives NaN there (its float32 softmax of a row of -inf). The real tokens'
states do not depend on it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from reference_models import ACTIVATIONS as BASE_ACTIVATIONS

__all__ = [
    "GATE_RULES",
    "NUMERICS",
    "ACTIVATIONS",
    "rule_activation",
    "rule_rms_norm",
    "rule_layer_norm",
    "gated_unit",
    "rope_cos_sin",
    "rotate_half",
    "apply_rope",
    "repeat_kv",
    "attention_probabilities",
    "t5_bucket",
    "llama_reference",
    "t5_reference",
    "gemma3_reference",
    "modernbert_reference",
    "modern_reference",
]

GATE_RULES = ("constant_gate", "uniform")
NUMERICS = ("rule", "rule-float32-ah", "eager", "sdpa")


# ---------------------------------------------------------------------------------------------- the rules
ACTIVATIONS = {  # the GELU family and ReLU as in reference_models.py, plus the SiLU of the Llama family
    **BASE_ACTIVATIONS,
    "silu": lambda x: x * torch.sigmoid(x),
    "swish": lambda x: x * torch.sigmoid(x),
}


def rule_activation(x: torch.Tensor, name: str) -> torch.Tensor:
    """Rule GA for the activation called ``name`` (a key of :data:`ACTIVATIONS`)."""
    value = ACTIVATIONS[name](x)
    nonzero = x != 0
    ratio = torch.where(nonzero, value / torch.where(nonzero, x, torch.ones_like(x)), torch.full_like(x, 0.5))
    return x * ratio.detach()


def rule_rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, offset: float = 0.0, upcast: str | None = None
) -> torch.Tensor:
    """Rule LN for an RMS norm: ``x / sqrt(mean(x^2) + eps) * (weight + offset)``, the root constant.

    ``upcast`` rounds as HuggingFace does in a float64 model (forward values only): ``"llama"``
    (Llama/Mistral/Qwen: normalise in float32, then scale in the model's dtype), ``"t5"`` (only the
    variance in float32), ``"gemma"`` (normalise and scale by ``1 + weight`` in float32).
    """
    if upcast is None:
        return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt().detach() * (weight + offset)
    x32 = x.to(torch.float32)
    inverse = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps).detach()
    if upcast == "llama":
        return (weight + offset) * (x32 * inverse).to(x.dtype)
    if upcast == "t5":
        return (weight + offset) * (x * inverse)
    if upcast == "gemma":
        return ((x32 * inverse) * (offset + weight.to(torch.float32))).to(x.dtype)
    raise ValueError(upcast)


def rule_layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float):
    """Rule LN for LayerNorm: ``(x - mean) / sqrt(var + eps)`` with the root constant, then the affine map."""
    centred = x - x.mean(-1, keepdim=True)
    out = centred / (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt().detach()
    out = out if weight is None else out * weight
    return out if bias is None else out + bias


def gated_unit(gate: torch.Tensor, up: torch.Tensor, activation: str, rule: str) -> torch.Tensor:
    """``act(gate) * up`` under the gated-unit rule (``gate``, ``up``: the two projections' outputs)."""
    activated = rule_activation(gate, activation)
    if rule == "constant_gate":
        return activated.detach() * up
    if rule == "uniform":
        return 0.5 * (activated.detach() * up + activated * up.detach())
    raise ValueError(rule)


# ---------------------------------------------------------------------------------------------- attention parts
def rope_cos_sin(length: int, head_dim: int, theta: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Default RoPE as HuggingFace computes it: frequencies, angles, cos and sin in float32, then ``dtype``.

    ``(length, head_dim)`` each (the angles of the two halves repeated).
    """
    inverse_frequency = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.arange(length, dtype=torch.float32)[:, None] * inverse_frequency[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, float32: bool = False) -> torch.Tensor:
    """``x * cos + rotate_half(x) * sin`` for ``x`` ``(batch, heads, seq, head_dim)``.

    ``float32``: ModernBERT rotates ``x.float()`` (q and k rounded to float32), back in ``x``'s dtype.
    """
    rotated = x.to(torch.float32) if float32 else x
    return (rotated * cos + rotate_half(rotated) * sin).to(x.dtype)


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Grouped-query attention: key/value head ``j`` serves query heads ``j * groups ... (j + 1) * groups - 1``."""
    return x.repeat_interleave(groups, dim=1)


def attention_probabilities(
    scores: torch.Tensor, allowed: torch.Tensor, numerics: str = "rule", upcasts: bool = True
) -> torch.Tensor:
    """Rule AH's constant: the softmax over the allowed keys, detached, rounded as ``numerics`` says.

    ``upcasts``: HuggingFace's eager attention of the family asks for a float32 softmax (all but T5). A
    query with no allowed key gets all-zero probabilities.
    """
    scores = scores.masked_fill(~allowed, -math.inf)
    float32 = upcasts and numerics == "eager"
    probabilities = torch.softmax(scores, dim=-1, dtype=torch.float32 if float32 else None).to(scores.dtype)
    if upcasts and numerics == "rule-float32-ah":
        probabilities = probabilities.to(torch.float32).to(scores.dtype)
    return torch.nan_to_num(probabilities, nan=0.0).detach()


def t5_bucket(relative: torch.Tensor, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
    """T5's bucket of each relative position ``key - query`` (its log-spaced buckets computed in float32)."""
    if bidirectional:
        num_buckets //= 2
        offset = (relative > 0).long() * num_buckets
        distance = relative.abs()
    else:
        offset = torch.zeros_like(relative)
        distance = (-relative).clamp_min(0)
    exact = num_buckets // 2
    large = (
        exact
        + (
            torch.log(distance.to(torch.float32) / exact) / math.log(max_distance / exact) * (num_buckets - exact)
        ).long()
    )
    large = large.clamp_max(num_buckets - 1)
    return offset + torch.where(distance < exact, distance, large)


# ---------------------------------------------------------------------------------------------- helpers
def _state(module: nn.Module) -> dict:
    return {name: value.detach() for name, value in module.state_dict().items()}


def _linear(state: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    out = x @ state[f"{prefix}.weight"].T
    bias = state.get(f"{prefix}.bias")
    return out if bias is None else out + bias


def _heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """``(batch, seq, heads * head_dim)`` -> ``(batch, heads, seq, head_dim)``."""
    batch, length, _ = x.shape
    return x.reshape(batch, length, -1, head_dim).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


def _positions(length: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(length)[:, None], torch.arange(length)[None, :]  # query, key


def _allowed(structure: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(batch, 1, seq, seq)``: the positional pattern ``(seq, seq)`` and real keys."""
    return structure[None, None] & mask.bool()[:, None, None, :]


def _check_numerics(numerics: str, gate_rule: str) -> None:
    if numerics not in NUMERICS:
        raise ValueError(f"numerics {numerics!r}: one of {NUMERICS}")
    if gate_rule not in GATE_RULES:
        raise ValueError(f"gate rule {gate_rule!r}: one of {GATE_RULES}")


def _rope_theta(config, layer_type: str | None = None) -> float:
    parameters = config.rope_parameters if layer_type is None else config.rope_parameters[layer_type]
    assert parameters.get("rope_type", "default") == "default", "the references compute the default RoPE only"
    return parameters["rope_theta"]


# ---------------------------------------------------------------------------------------------- Llama-style
def llama_reference(
    encoder: nn.Module, x: torch.Tensor, mask: torch.Tensor, gate_rule: str = "constant_gate", numerics: str = "rule"
) -> torch.Tensor:
    """Llama, Mistral, Qwen2 and Qwen3 decoders run as encoders (``LlamaModel``-like, ``embed_tokens``).

    Pre-norm layers ``x + attn(rms(x))``, ``x + mlp(rms(x))`` and a final RMS norm; attention: q, k, v
    projections (biases where present: Qwen2, ``attention_bias``), Qwen3's per-head RMS norms on q and k,
    RoPE on q and k, grouped-query attention (each key/value head repeated for its query heads), scores
    scaled by ``head_dim**-0.5``, the causal mask (with a sliding window ``query - key < window`` on the
    sliding layers: every layer of Mistral with ``sliding_window``, the ``layer_types`` of Qwen) and the
    padding mask on keys; SwiGLU ``down(act(gate(h)) * up(h))`` under ``gate_rule``.
    """
    _check_numerics(numerics, gate_rule)
    config, state = encoder.config, _state(encoder)
    eps, dtype = config.rms_norm_eps, x.dtype
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    groups = config.num_attention_heads // config.num_key_value_heads
    upcast = None if numerics.startswith("rule") else "llama"
    length = x.shape[1]
    cos, sin = rope_cos_sin(length, head_dim, _rope_theta(config), dtype)
    query_pos, key_pos = _positions(length)
    causal = key_pos <= query_pos
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is None:  # Llama, Mistral: one mask for every layer, sliding where a window is set
        layer_types = ["sliding_attention" if window is not None else "full_attention"] * config.num_hidden_layers
    patterns = {"full_attention": causal}
    if window is not None:
        patterns["sliding_attention"] = causal & (query_pos - key_pos < window)

    def norm(prefix: str, h: torch.Tensor) -> torch.Tensor:
        return rule_rms_norm(h, state[f"{prefix}.weight"], eps, upcast=upcast)

    for i in range(config.num_hidden_layers):
        p = f"layers.{i}"
        h = norm(f"{p}.input_layernorm", x)
        q, k, v = (_heads(_linear(state, f"{p}.self_attn.{n}_proj", h), head_dim) for n in ("q", "k", "v"))
        if f"{p}.self_attn.q_norm.weight" in state:  # Qwen3
            q, k = norm(f"{p}.self_attn.q_norm", q), norm(f"{p}.self_attn.k_norm", k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)
        scores = (q @ k.transpose(-1, -2)) * head_dim**-0.5
        allowed = _allowed(patterns[layer_types[i]], mask)
        probabilities = attention_probabilities(scores, allowed, numerics)
        x = x + _linear(state, f"{p}.self_attn.o_proj", _merge(probabilities @ v))
        h = norm(f"{p}.post_attention_layernorm", x)
        gate, up = _linear(state, f"{p}.mlp.gate_proj", h), _linear(state, f"{p}.mlp.up_proj", h)
        x = x + _linear(state, f"{p}.mlp.down_proj", gated_unit(gate, up, config.hidden_act, gate_rule))
    return norm("norm", x)


# ---------------------------------------------------------------------------------------------- T5
def t5_reference(
    encoder: nn.Module, x: torch.Tensor, mask: torch.Tensor, gate_rule: str = "constant_gate", numerics: str = "rule"
) -> torch.Tensor:
    """The T5 encoder (``T5EncoderModel``, embedding output at ``encoder.embed_tokens``).

    Pre-norm blocks with T5LayerNorm (RMS norm, no bias), attention without ``1/sqrt(d)`` scaling plus the
    relative position bias of block 0 (bidirectional buckets of ``key - query``, shared by every block) on
    the scores, the padding mask on keys, the gated-GELU feed-forward ``wo(act(wi_0 h) * wi_1 h)`` under
    ``gate_rule`` (or ``wo(act(wi h))`` for the non-gated variants), and the final norm.
    """
    _check_numerics(numerics, gate_rule)
    config, state = encoder.config, _state(encoder)
    eps, head_dim = config.layer_norm_epsilon, config.d_kv
    upcast = None if numerics.startswith("rule") else "t5"
    query_pos, key_pos = _positions(x.shape[1])
    buckets = t5_bucket(
        key_pos - query_pos, config.relative_attention_num_buckets, config.relative_attention_max_distance
    )
    table = state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    position_bias = table[buckets].permute(2, 0, 1)[None]  # (1, heads, query, key)
    allowed = _allowed(torch.ones_like(buckets, dtype=torch.bool), mask)

    def norm(prefix: str, h: torch.Tensor) -> torch.Tensor:
        return rule_rms_norm(h, state[f"{prefix}.weight"], eps, upcast=upcast)

    for i in range(config.num_layers):
        p = f"encoder.block.{i}.layer"
        h = norm(f"{p}.0.layer_norm", x)
        q, k, v = (_heads(_linear(state, f"{p}.0.SelfAttention.{n}", h), head_dim) for n in ("q", "k", "v"))
        scores = q @ k.transpose(-1, -2) + position_bias  # no 1/sqrt(d) scaling
        probabilities = attention_probabilities(scores, allowed, numerics, upcasts=False)  # T5: model dtype
        x = x + _linear(state, f"{p}.0.SelfAttention.o", _merge(probabilities @ v))
        h = norm(f"{p}.1.layer_norm", x)
        ff = f"{p}.1.DenseReluDense"
        if config.is_gated_act:
            inner = gated_unit(
                _linear(state, f"{ff}.wi_0", h), _linear(state, f"{ff}.wi_1", h), config.dense_act_fn, gate_rule
            )
        else:
            inner = rule_activation(_linear(state, f"{ff}.wi", h), config.dense_act_fn)
        x = x + _linear(state, f"{ff}.wo", inner)
    return norm("encoder.final_layer_norm", x)


# ---------------------------------------------------------------------------------------------- Gemma 3
def gemma3_reference(
    encoder: nn.Module, x: torch.Tensor, mask: torch.Tensor, gate_rule: str = "constant_gate", numerics: str = "rule"
) -> torch.Tensor:
    """Gemma 3 text models (``Gemma3TextModel``; the embedding output is the ``sqrt(hidden)``-scaled one).

    RMS norms scaled by ``1 + weight``; layers ``x + post_attn_norm(attn(input_norm(x)))`` and
    ``x + post_ff_norm(mlp(pre_ff_norm(x)))``; q/k RMS norms, RoPE with the layer type's base, GQA, scores
    scaled by ``query_pre_attn_scalar**-0.5``; masks: bidirectional (``use_bidirectional_attention``) or
    causal, the sliding layers within ``|query - key| < window`` (bidirectional) or
    ``0 <= query - key < window`` (causal), and padded keys masked; GeGLU (tanh GELU) under ``gate_rule``.
    ``attn_logit_softcapping`` is not applied: HuggingFace's Gemma 3 attention does not pass it on.
    """
    _check_numerics(numerics, gate_rule)
    config, state = encoder.config, _state(encoder)
    eps, dtype, head_dim = config.rms_norm_eps, x.dtype, config.head_dim
    groups = config.num_attention_heads // config.num_key_value_heads
    upcast = None if numerics.startswith("rule") else "gemma"
    length = x.shape[1]
    query_pos, key_pos = _positions(length)
    window = config.sliding_window
    if config.use_bidirectional_attention:
        patterns = {"full_attention": torch.ones(length, length, dtype=torch.bool)}
        patterns["sliding_attention"] = (query_pos - key_pos).abs() < window
    else:
        patterns = {"full_attention": key_pos <= query_pos}
        patterns["sliding_attention"] = (key_pos <= query_pos) & (query_pos - key_pos < window)

    def norm(prefix: str, h: torch.Tensor) -> torch.Tensor:
        return rule_rms_norm(h, state[f"{prefix}.weight"], eps, offset=1.0, upcast=upcast)

    for i, layer_type in enumerate(config.layer_types[: config.num_hidden_layers]):
        p = f"layers.{i}"
        cos, sin = rope_cos_sin(length, head_dim, _rope_theta(config, layer_type), dtype)
        h = norm(f"{p}.input_layernorm", x)
        q, k, v = (_heads(_linear(state, f"{p}.self_attn.{n}_proj", h), head_dim) for n in ("q", "k", "v"))
        q, k = norm(f"{p}.self_attn.q_norm", q), norm(f"{p}.self_attn.k_norm", k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)
        scores = (q @ k.transpose(-1, -2)) * config.query_pre_attn_scalar**-0.5
        probabilities = attention_probabilities(scores, _allowed(patterns[layer_type], mask), numerics)
        attended = _linear(state, f"{p}.self_attn.o_proj", _merge(probabilities @ v))
        x = x + norm(f"{p}.post_attention_layernorm", attended)
        h = norm(f"{p}.pre_feedforward_layernorm", x)
        gate, up = _linear(state, f"{p}.mlp.gate_proj", h), _linear(state, f"{p}.mlp.up_proj", h)
        ff = _linear(state, f"{p}.mlp.down_proj", gated_unit(gate, up, config.hidden_activation, gate_rule))
        x = x + norm(f"{p}.post_feedforward_layernorm", ff)
    return norm("norm", x)


# ---------------------------------------------------------------------------------------------- ModernBERT
def modernbert_reference(
    encoder: nn.Module, x: torch.Tensor, mask: torch.Tensor, gate_rule: str = "constant_gate", numerics: str = "rule"
) -> torch.Tensor:
    """ModernBERT (the embedding output is that of ``embeddings``: token embeddings after their LayerNorm).

    Pre-norm layers (layer 0 without an attention norm), LayerNorm (bias optional), fused ``Wqkv``, RoPE
    with the layer type's base applied in float32, scores scaled by ``head_dim**-0.5``, bidirectional
    attention, the local (sliding) layers within ``|query - key| <= local_attention // 2``, padded keys
    masked; GeGLU from the fused ``Wi`` (its first half activated) under ``gate_rule``; a final LayerNorm.
    """
    _check_numerics(numerics, gate_rule)
    config, state = encoder.config, _state(encoder)
    eps, dtype = config.norm_eps, x.dtype
    head_dim = config.hidden_size // config.num_attention_heads
    length = x.shape[1]
    query_pos, key_pos = _positions(length)
    patterns = {
        "full_attention": torch.ones(length, length, dtype=torch.bool),
        "sliding_attention": (query_pos - key_pos).abs() <= config.local_attention // 2,
    }

    def norm(prefix: str, h: torch.Tensor) -> torch.Tensor:
        return rule_layer_norm(h, state.get(f"{prefix}.weight"), state.get(f"{prefix}.bias"), eps)

    for i, layer_type in enumerate(config.layer_types[: config.num_hidden_layers]):
        p = f"layers.{i}"
        cos, sin = rope_cos_sin(length, head_dim, _rope_theta(config, layer_type), dtype)
        h = x if i == 0 else norm(f"{p}.attn_norm", x)
        qkv = _linear(state, f"{p}.attn.Wqkv", h).reshape(*h.shape[:2], 3, -1, head_dim)
        q, k, v = (part.transpose(1, 2) for part in qkv.unbind(dim=2))
        q, k = apply_rope(q, cos, sin, float32=True), apply_rope(k, cos, sin, float32=True)
        scores = (q @ k.transpose(-1, -2)) * head_dim**-0.5
        probabilities = attention_probabilities(scores, _allowed(patterns[layer_type], mask), numerics)
        x = x + _linear(state, f"{p}.attn.Wo", _merge(probabilities @ v))
        gate, up = _linear(state, f"{p}.mlp.Wi", norm(f"{p}.mlp_norm", x)).chunk(2, dim=-1)
        x = x + _linear(state, f"{p}.mlp.Wo", gated_unit(gate, up, config.hidden_activation, gate_rule))
    return norm("final_norm", x)


_REFERENCES = {
    "llama": llama_reference,
    "mistral": llama_reference,
    "qwen2": llama_reference,
    "qwen3": llama_reference,
    "t5": t5_reference,
    "gemma3_text": gemma3_reference,
    "modernbert": modernbert_reference,
}


def modern_reference(
    encoder: nn.Module, x: torch.Tensor, mask: torch.Tensor, gate_rule: str = "constant_gate", numerics: str = "rule"
) -> torch.Tensor:
    """The reference for ``encoder``, chosen by its ``config.model_type``."""
    return _REFERENCES[encoder.config.model_type](encoder, x, mask, gate_rule, numerics)
