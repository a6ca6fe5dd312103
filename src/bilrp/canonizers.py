"""zennit canonizers that install the Transformer LRP rules on a model for the duration of a context.

A canonizer changes module *instances* only (never classes), and its ``remove`` puts back exactly what
was there before: an instance attribute that existed is restored, one that did not is deleted.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from zennit.canonizers import Canonizer, CompositeCanonizer

from .models.pooling import QKVPooling
from .rules import (
    DetachedAttention,
    attention_with_constant_probabilities,
    constant_rms_norm,
    constant_std_layer_norm,
    proportional_activation,
)

__all__ = [
    "UnsupportedModuleError",
    "CUSTOM_ARCHITECTURE_DOCS",
    "InstanceAttributeCanonizer",
    "AttentionCanonizer",
    "LayerNormCanonizer",
    "ActivationCanonizer",
    "EvalEagerCanonizer",
    "MultiheadAttentionCanonizer",
    "ValueProjection",
    "TransformerEncoderLayerCanonizer",
    "ArchitectureCanonizer",
    "BertCanonizer",
    "RobertaCanonizer",
    "MPNetCanonizer",
    "DistilBertCanonizer",
    "GPTNeoCanonizer",
    "TorchTransformerCanonizer",
    "PoolingCanonizer",
    "PoolingScoreCanonizer",
    "ScoreProjectionCanonizer",
    "TransformerCanonizer",
    "import_classes",
    "merge_canonizers",
]

_MISSING = object()
_IMPLEMENTATION = "_attn_implementation_internal"
CUSTOM_ARCHITECTURE_DOCS = 'docs/custom_architectures.md ("Writing a canonizer for your architecture")'


class UnsupportedModuleError(TypeError):
    """A module that the composite has no rule for (an unknown attention or normalisation class)."""


@contextmanager
def _reverted_on_error(instances: list[Canonizer]) -> Iterator[list[Canonizer]]:
    """Collect applied canonizer instances; if the block raises, remove them newest first and re-raise.

    zennit only learns about instances once ``apply`` returns, so a failure half-way through ``apply``
    must undo what was already applied itself, or the model would be left half-canonized.
    """
    try:
        yield instances
    except BaseException:
        for instance in reversed(instances):
            instance.remove()
        raise


def import_classes(paths: Iterable[str]) -> tuple[type, ...]:
    """Import classes given as ``"module:Class"``; those whose module is not installed are skipped."""
    classes = []
    for path in paths:
        module_name, _, class_name = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = getattr(module, class_name, None)
        if cls is not None:
            classes.append(cls)
    return tuple(classes)


class InstanceAttributeCanonizer(Canonizer):
    """Base canonizer: set attributes on every module instance that :meth:`matches`, restore them on remove.

    Subclasses define :meth:`matches` and :meth:`attributes`, and list the module types they take
    responsibility for in :attr:`handled_types` (used to report unsupported modules).
    """

    handled_types: tuple[type, ...] = ()

    def __init__(self) -> None:
        self.module: nn.Module | None = None
        self.saved: dict[str, object] = {}

    def matches(self, module: nn.Module) -> bool:
        """Whether this canonizer applies to ``module``."""
        return isinstance(module, self.handled_types)

    def attributes(self, module: nn.Module) -> dict[str, object]:
        """The instance attributes to set on ``module`` while the canonizer is active."""
        raise NotImplementedError

    def unsupported(self, module: nn.Module) -> str | None:
        """Why ``module``, although it :meth:`matches`, cannot be handled (``None``: it can).

        :class:`~bilrp.TransformerComposite` asks this before registering anything, so that such a model
        gets an :class:`UnsupportedModuleError` naming the module and is left untouched.
        """
        return None

    def targets(self, root_module: nn.Module) -> Iterator[nn.Module]:
        """The modules below ``root_module`` that this canonizer sets attributes on."""
        return (module for module in root_module.modules() if self.matches(module))

    def apply(self, root_module: nn.Module) -> list[Canonizer]:
        """Register a copy of this canonizer on every target module; on error, undo the copies registered."""
        with _reverted_on_error([]) as instances:
            for module in self.targets(root_module):
                instance = self.copy()
                instances.append(instance)  # before register: a partial register is undone too
                instance.register(module)
        return instances

    def register(self, module: nn.Module) -> None:
        """Set the attributes on ``module``, remembering what was there.

        A module-valued attribute becomes a child module (so that a composite's layer map sees it); any
        other value, ``forward`` included, is a plain instance attribute.
        """
        self.module = module
        attributes = self.attributes(module)
        stores = {key: _attribute_store(module, key, value) for key, value in attributes.items()}  # may raise
        self.saved = {key: (store, store.get(key, _MISSING)) for key, store in stores.items()}
        for key, value in attributes.items():
            stores[key][key] = value

    def remove(self) -> None:
        """Restore every attribute to its state before :meth:`register`."""
        for key, (store, value) in self.saved.items():
            if value is _MISSING:
                store.pop(key, None)
            else:
                store[key] = value
        self.saved = {}

    def copy(self) -> InstanceAttributeCanonizer:
        """A fresh, unregistered canonizer of the same configuration (a subclass needs no override)."""
        clone = copy.copy(self)
        clone.module, clone.saved = None, {}
        return clone


def _attribute_store(module: nn.Module, key: str, value: object) -> dict:
    """The dictionary that holds attribute ``key`` of ``module``: its child modules, or its ``__dict__``."""
    if key != "forward" and isinstance(value, nn.Module):
        if key in module.__dict__ or key in module._parameters or key in module._buffers:
            raise ValueError(f"canonizer child module {key!r} would shadow an attribute of {type(module).__name__}")
        return module._modules
    if key in module._modules or key in module._parameters or key in module._buffers:
        raise ValueError(f"canonizer attribute {key!r} would shadow a parameter, buffer or child module")
    return module.__dict__


class AttentionCanonizer(InstanceAttributeCanonizer):
    """Rule AH: run the forward of attention modules under :class:`~bilrp.rules.DetachedAttention`.

    Parameters
    ----------
    attention_types
        The attention module classes whose softmax gives the attention probabilities.

    """

    def __init__(self, attention_types: tuple[type, ...] = ()) -> None:
        super().__init__()
        self.handled_types = tuple(attention_types)

    def attributes(self, module: nn.Module) -> dict[str, object]:
        original = _eager_forward(module)

        def forward(*args, **kwargs):
            with DetachedAttention():
                return original(*args, **kwargs)

        return {"forward": forward}


# attention classes chosen at construction by the attention implementation, and their eager base class
_FUSED_ATTENTION_PATHS = {
    "transformers.models.gpt_neo.modeling_gpt_neo:GPTNeoFlashAttention2": (
        "transformers.models.gpt_neo.modeling_gpt_neo:GPTNeoSelfAttention"
    ),
}


def _eager_bases() -> dict[type, type]:
    bases = {}
    for fused_path, eager_path in _FUSED_ATTENTION_PATHS.items():
        classes = import_classes((fused_path, eager_path))
        if len(classes) == 2:
            bases[classes[0]] = classes[1]
    return bases


_EAGER_BASES = _eager_bases()


def _eager_forward(module: nn.Module) -> Callable:
    """The module's forward, or its eager base class's forward for fused classes (GPT-Neo flash attention)."""
    for fused, eager in _EAGER_BASES.items():
        if isinstance(module, fused):
            return partial(eager.forward, module)
    return module.forward


SCORE_PROJECTIONS = ("query", "key", "q", "k", "q_lin", "k_lin", "q_proj", "k_proj")


class ScoreProjectionCanonizer(InstanceAttributeCanonizer):
    """Detach the inputs of the query and key projections of attention modules (a speed-up of rule AH).

    Under rule AH no relevance flows through the attention scores, so the query and key projections
    may read a detached input: forward values and relevance are unchanged, and forward mode no longer
    pushes tangents through them (they are computed once, not once per token).

    Parameters
    ----------
    attention_types
        Attention module classes whose projection children (named in :data:`SCORE_PROJECTIONS`) to treat.

    """

    def __init__(self, attention_types: tuple[type, ...] = ()) -> None:
        super().__init__()
        self.attention_types = tuple(attention_types)

    def targets(self, root_module: nn.Module) -> Iterator[nn.Module]:
        for module in root_module.modules():
            if isinstance(module, self.attention_types):
                for name in SCORE_PROJECTIONS:
                    child = getattr(module, name, None)
                    if isinstance(child, nn.Linear):
                        yield child

    def attributes(self, module: nn.Module) -> dict[str, object]:
        original = module.forward
        return {"forward": lambda x, *args, **kwargs: original(x.detach(), *args, **kwargs)}


class LayerNormCanonizer(InstanceAttributeCanonizer):
    """Rule LN: LayerNorm (and RMSNorm) with the normalising statistic held constant."""

    handled_types = (nn.LayerNorm, nn.RMSNorm)

    def attributes(self, module: nn.Module) -> dict[str, object]:
        shape = tuple(module.normalized_shape)
        if isinstance(module, nn.RMSNorm):
            return {"forward": partial(_rms_forward, module, shape)}
        return {"forward": partial(_layer_norm_forward, module, shape)}


def _layer_norm_forward(module: nn.LayerNorm, shape: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
    return constant_std_layer_norm(x, shape, module.weight, getattr(module, "bias", None), module.eps)


def _rms_forward(module: nn.RMSNorm, shape: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
    return constant_rms_norm(x, shape, module.weight, module.eps)


_ACTIVATION_PATHS = (
    "transformers.activations:GELUActivation",
    "transformers.activations:NewGELUActivation",
    "transformers.activations:FastGELUActivation",
    "transformers.activations:QuickGELUActivation",
    "transformers.activations:AccurateGELUActivation",
    "transformers.activations:GELUTanh",
    "transformers.activations:PytorchGELUTanh",
    "transformers.activations:ClippedGELUActivation",
    "transformers.activations:SiLUActivation",
)


RATIO_AT_ZERO: dict[type, float] = {nn.Tanh: 1.0}
"""``act(x) / x`` at ``x = 0`` where it is not the GELU family's 0.5 (``tanh(x) / x -> 1``)."""


class ActivationCanonizer(InstanceAttributeCanonizer):
    """Rule GA: activations pass relevance in proportion to ``act(x) / x``.

    Covers ``nn.GELU``, ``nn.SiLU``, ``nn.ReLU``, ``nn.Tanh`` (sentence-transformers ``Dense`` heads) and the
    GELU variants of ``transformers.activations``. Activations with ``act(0) != 0`` (sigmoid) have no
    proportional rule: the certificate refuses them.
    """

    handled_types = (nn.GELU, nn.SiLU, nn.ReLU, nn.Tanh, *import_classes(_ACTIVATION_PATHS))

    def attributes(self, module: nn.Module) -> dict[str, object]:
        ratio_at_zero = RATIO_AT_ZERO.get(type(module), 0.5)
        return {"forward": partial(proportional_activation, module.forward, ratio_at_zero=ratio_at_zero)}


class EvalEagerCanonizer(Canonizer):
    """Switch a model to eval mode and to the eager attention path; restore both on remove.

    Every HuggingFace config found on a sub-module gets ``_attn_implementation = "eager"`` so that
    attention goes through a softmax the AH rule can see, with the model's own padding mask.
    """

    def __init__(self) -> None:
        self.training: dict[nn.Module, bool] = {}
        self.implementations: list[tuple[object, object]] = []

    def apply(self, root_module: nn.Module) -> list[Canonizer]:
        """Register a copy on the root module."""
        instance = self.copy()
        instance.register(root_module)
        return [instance]

    def register(self, root_module: nn.Module) -> None:
        """Put every module in eval mode and every config on the eager attention path."""
        self.training = {module: module.training for module in root_module.modules()}
        for module in root_module.modules():
            config = getattr(module, "config", None)
            if config is None or not hasattr(config, "_attn_implementation"):
                continue
            if all(config is not seen for seen, _ in self.implementations):
                self.implementations.append((config, config.__dict__.get(_IMPLEMENTATION, _MISSING)))
                config.__dict__[_IMPLEMENTATION] = "eager"
        root_module.eval()

    def remove(self) -> None:
        """Restore training flags and attention implementations."""
        for module, training in self.training.items():
            module.training = training
        for config, value in self.implementations:
            if value is _MISSING:
                config.__dict__.pop(_IMPLEMENTATION, None)
            else:
                config.__dict__[_IMPLEMENTATION] = value
        self.training, self.implementations = {}, []

    def copy(self) -> EvalEagerCanonizer:
        return self.__class__()


class MultiheadAttentionCanonizer(InstanceAttributeCanonizer):
    """Rule AH for ``nn.MultiheadAttention``: an explicit forward (no fused fast path)."""

    handled_types = (nn.MultiheadAttention,)

    def unsupported(self, module: nn.Module) -> str | None:
        if module.bias_k is not None or module.add_zero_attn:
            return "nn.MultiheadAttention with add_bias_kv or add_zero_attn has no bilrp rule"
        return None

    def attributes(self, module: nn.Module) -> dict[str, object]:
        reason = self.unsupported(module)
        if reason is not None:
            raise UnsupportedModuleError(f"{reason}: write a canonizer for it, see {CUSTOM_ARCHITECTURE_DOCS}")
        return {"forward": partial(_multihead_attention_forward, module), VALUE_PROJECTION: ValueProjection(module)}


VALUE_PROJECTION = "bilrp_value_projection"


class ValueProjection(nn.Linear):
    """The value part of an ``nn.MultiheadAttention`` input projection, as an ``nn.Linear`` child module.

    ``nn.MultiheadAttention`` keeps its query/key/value projections as raw parameters, which a composite's
    layer map (``TransformerComposite(linear_rule=...)``) cannot see. While the canonizer is active, the
    value projection (the only one relevance flows through under rule AH) runs through this module. Its
    parameters share memory with the attention's own; while they are not swapped by a zennit rule, the
    forward pass uses the attention's parameters themselves, so parameter gradients are unaffected.
    """

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        nn.Module.__init__(self)
        weight, bias = _value_parameters(attention)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.weight = nn.Parameter(weight.detach(), requires_grad=weight.requires_grad)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=bias.requires_grad)
        self.__dict__["_source"] = (attention, self.weight, self.bias)  # not a child: no module cycle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention, weight, bias = self._source
        if self.weight is weight and self.bias is bias:  # not modified by a rule: the attention's parameters
            weight, bias = _value_parameters(attention)
        else:
            weight, bias = self.weight, self.bias
        return F.linear(x, weight, bias)


def _input_projections(attention: nn.MultiheadAttention) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """``(weight, bias)`` of the query, key and value projections of an ``nn.MultiheadAttention``."""
    if attention._qkv_same_embed_dim:
        weights = attention.in_proj_weight.chunk(3)
    else:
        weights = (attention.q_proj_weight, attention.k_proj_weight, attention.v_proj_weight)
    biases = attention.in_proj_bias.chunk(3) if attention.in_proj_bias is not None else (None,) * 3
    return list(zip(weights, biases, strict=True))


def _value_parameters(attention: nn.MultiheadAttention) -> tuple[torch.Tensor, torch.Tensor | None]:
    return _input_projections(attention)[2]


def _multihead_attention_forward(
    module: nn.MultiheadAttention,
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

    # rule AH: scores are constants, so query and key projections read detached inputs; the value
    # projection is a child module, so that a composite's linear rule applies to it
    q, k = split(F.linear(query.detach(), w_q, b_q)), split(F.linear(key.detach(), w_k, b_k))
    v = split(getattr(module, VALUE_PROJECTION)(value))
    mask = None
    if attn_mask is not None:
        mask = _additive_mask(attn_mask, q.dtype)
        if mask.dim() == 3:
            mask = mask.view(batch, heads, *mask.shape[-2:])
    if key_padding_mask is not None:
        padding = _additive_mask(key_padding_mask, q.dtype)[:, None, None, :]
        mask = padding if mask is None else (mask + padding).clamp_min(torch.finfo(q.dtype).min)
    out = attention_with_constant_probabilities(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None)
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


class ArchitectureCanonizer(CompositeCanonizer):
    """All rules for one architecture: eval + eager attention, AH on its attention classes, LN and GA.

    Subclasses name their attention classes in :attr:`attention_paths` (``"module:Class"``); a class whose
    module is not installed is skipped.
    """

    attention_paths: tuple[str, ...] = ()
    extra: tuple[Callable[[], Canonizer], ...] = ()

    def __init__(self) -> None:
        attention_types = import_classes(self.attention_paths)
        super().__init__(
            [
                EvalEagerCanonizer(),
                AttentionCanonizer(attention_types),
                ScoreProjectionCanonizer(attention_types),
                LayerNormCanonizer(),
                ActivationCanonizer(),
            ]
            + [make() for make in self.extra]
        )

    def apply(self, root_module: nn.Module) -> list[Canonizer]:
        """Apply every canonizer; on error, undo those already applied before re-raising."""
        with _reverted_on_error([]) as instances:
            for canonizer in self.canonizers:
                instances += canonizer.apply(root_module)
        return instances

    @property
    def handled_types(self) -> tuple[type, ...]:
        """Module types this canonizer installs a rule on."""
        types: tuple[type, ...] = ()
        for canonizer in self.canonizers:
            types += getattr(canonizer, "handled_types", ())
        return types


class BertCanonizer(ArchitectureCanonizer):
    """BERT family (BERT, MiniLM, SBERT checkpoints, ELECTRA-style copies of BERT's attention)."""

    attention_paths = (
        "transformers.models.bert.modeling_bert:BertSelfAttention",
        "transformers.models.electra.modeling_electra:ElectraSelfAttention",
    )


class RobertaCanonizer(ArchitectureCanonizer):
    """RoBERTa, XLM-RoBERTa and CamemBERT."""

    attention_paths = (
        "transformers.models.roberta.modeling_roberta:RobertaSelfAttention",
        "transformers.models.xlm_roberta.modeling_xlm_roberta:XLMRobertaSelfAttention",
        "transformers.models.camembert.modeling_camembert:CamembertSelfAttention",
    )


class MPNetCanonizer(ArchitectureCanonizer):
    """MPNet; its relative position bias depends on positions only and is a constant already."""

    attention_paths = ("transformers.models.mpnet.modeling_mpnet:MPNetSelfAttention",)


class DistilBertCanonizer(ArchitectureCanonizer):
    """DistilBERT."""

    attention_paths = ("transformers.models.distilbert.modeling_distilbert:DistilBertSelfAttention",)


class GPTNeoCanonizer(ArchitectureCanonizer):
    """GPT-Neo as used by SGPT (global and local attention layers, no 1/sqrt(d) scaling)."""

    attention_paths = ("transformers.models.gpt_neo.modeling_gpt_neo:GPTNeoSelfAttention",)


class TorchTransformerCanonizer(ArchitectureCanonizer):
    """Plain PyTorch ``nn.TransformerEncoder``/``nn.TransformerEncoderLayer``/``nn.MultiheadAttention``."""

    extra = (MultiheadAttentionCanonizer, TransformerEncoderLayerCanonizer)


class PoolingCanonizer(AttentionCanonizer):
    """Rule AH for bilrp's own learnable attention pooling (:class:`~bilrp.models.pooling.QKVPooling`)."""

    def __init__(self, attention_types: tuple[type, ...] = (QKVPooling,)) -> None:
        super().__init__(attention_types)


class PoolingScoreCanonizer(ScoreProjectionCanonizer):
    """Detach the key projection input of :class:`~bilrp.models.pooling.QKVPooling` (speed-up of rule AH)."""

    def __init__(self, attention_types: tuple[type, ...] = (QKVPooling,)) -> None:
        super().__init__(attention_types)


class TransformerCanonizer(ArchitectureCanonizer):
    """Every supported architecture at once, plus bilrp's QKV pooling (the default of the composite)."""

    attention_paths = tuple(
        path
        for family in (BertCanonizer, RobertaCanonizer, MPNetCanonizer, DistilBertCanonizer, GPTNeoCanonizer)
        for path in family.attention_paths
    )
    extra = (*TorchTransformerCanonizer.extra, PoolingCanonizer, PoolingScoreCanonizer)


def _leaves(canonizers: Iterable[Canonizer]) -> Iterator[Canonizer]:
    """Bilrp's canonizers with architecture bundles opened; other canonizers as they are."""
    for canonizer in canonizers:
        if isinstance(canonizer, ArchitectureCanonizer):
            yield from _leaves(canonizer.canonizers)
        else:
            yield canonizer


def merge_canonizers(canonizers: Iterable[Canonizer]) -> list[Canonizer]:
    """One canonizer per rule: stacked bilrp canonizers merged, so that no rule is applied twice.

    Architecture bundles are opened; all attention canonizers become one :class:`AttentionCanonizer` over
    the union of their attention classes (likewise the score projections); any other bilrp canonizer class
    is kept once, and the score-projection speed-up comes last. Canonizers that are not bilrp's (zennit's
    ``SequentialMergeBatchNorm``, ...) run first, in the order given.
    """
    foreign: list[Canonizer] = []
    merged: dict[type, Canonizer] = {}
    attention: dict[type, tuple[type, ...]] = {AttentionCanonizer: (), ScoreProjectionCanonizer: ()}
    for canonizer in _leaves(canonizers):
        family = next((kind for kind in attention if isinstance(canonizer, kind)), None)
        if family is not None:
            types = canonizer.handled_types if family is AttentionCanonizer else canonizer.attention_types
            attention[family] += tuple(t for t in types if t not in attention[family])
            merged.setdefault(family, canonizer)
        elif isinstance(canonizer, (InstanceAttributeCanonizer, EvalEagerCanonizer)):
            merged.setdefault(type(canonizer), canonizer)
        else:
            foreign.append(canonizer)
    leaves = [
        family(attention[family]) if family in attention else canonizer.copy() for family, canonizer in merged.items()
    ]
    # the score-projection speed-up wraps whatever forward the projections end up with: it goes last
    leaves.sort(key=lambda canonizer: isinstance(canonizer, ScoreProjectionCanonizer))
    return foreign + leaves
