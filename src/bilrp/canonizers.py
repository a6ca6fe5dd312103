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
from torch import nn
from zennit.canonizers import Canonizer

from ._validation import Refusal
from .attention_rules import attention_mode, check_attention_rule
from .eval_eager import EvalEagerCanonizer
from .rules import constant_rms_norm, constant_std_layer_norm, proportional_activation

__all__ = [
    "UnsupportedModuleError",
    "CUSTOM_ARCHITECTURE_DOCS",
    "InstanceAttributeCanonizer",
    "AttentionCanonizer",
    "ScoreProjectionCanonizer",
    "LayerNormCanonizer",
    "RMSNormCanonizer",
    "ActivationCanonizer",
    "EvalEagerCanonizer",
    "EAGER_BASES",
    "import_classes",
    "merge_canonizers",
    "reverted_on_error",
]

_MISSING = object()
CUSTOM_ARCHITECTURE_DOCS = 'docs/custom_architectures.md ("Writing a canonizer for your architecture")'


class UnsupportedModuleError(TypeError, Refusal):
    """A module that the composite has no rule for (an unknown attention or normalisation class)."""


@contextmanager
def reverted_on_error(instances: list[Canonizer]) -> Iterator[list[Canonizer]]:
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
        with reverted_on_error([]) as instances:
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

    def merge(self, other: InstanceAttributeCanonizer) -> InstanceAttributeCanonizer:
        """One canonizer doing the work of ``self`` and ``other`` (same class): by default ``self`` alone.

        Canonizers configured per module type (attention classes, norm classes, gated MLPs) override this
        to take the union, so that stacking two of them applies each rule once to every type.
        """
        return self.copy()


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
    """The attention rule: run the forward of attention modules under the rule's torch function mode.

    Parameters
    ----------
    attention_types
        The attention module classes whose softmax gives the attention probabilities.
    rule
        ``"ah"`` (constant probabilities, :class:`~bilrp.attention_rules.DetachedAttention`) or
        ``"attnlrp"`` (:class:`~bilrp.attention_rules.AttnLRPAttention`).

    """

    def __init__(self, attention_types: tuple[type, ...] = (), rule: str = "ah") -> None:
        super().__init__()
        self.handled_types = tuple(attention_types)
        self.rule = check_attention_rule(rule)

    def merge(self, other: AttentionCanonizer) -> AttentionCanonizer:
        if other.rule != self.rule:
            raise ValueError(
                f"two attention rules in one composite ({self.rule!r} and {other.rule!r}): give every "
                "canonizer the same attention_rule"
            )
        return AttentionCanonizer(_union(self.handled_types, other.handled_types), self.rule)

    def attributes(self, module: nn.Module) -> dict[str, object]:
        original = _eager_forward(module)
        rule = self.rule

        def forward(*args, **kwargs):
            with attention_mode(rule):
                return original(*args, **kwargs)

        return {"forward": forward}


EAGER_BASES: dict[type, type] = {}
"""Attention classes chosen by a fused attention implementation -> their eager base class (filled by the
architecture modules, e.g. GPT-Neo's flash attention)."""


def _eager_forward(module: nn.Module) -> Callable:
    """The module's forward, or its eager base class's forward for fused classes (GPT-Neo flash attention)."""
    for fused, eager in EAGER_BASES.items():
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

    def merge(self, other: ScoreProjectionCanonizer) -> ScoreProjectionCanonizer:
        return ScoreProjectionCanonizer(_union(self.attention_types, other.attention_types))

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


class RMSNormCanonizer(InstanceAttributeCanonizer):
    """Rule LN for the RMS norm classes of model families (``LlamaRMSNorm``, ``T5LayerNorm``, ...).

    Each class computes ``x / sqrt(mean(x^2) + eps) * (weight + offset)``; the root mean square becomes a
    constant. ``offset`` is 1 for Gemma (which scales by ``1 + weight``), else 0; ``eps`` is read from the
    module's ``variance_epsilon`` or ``eps``.

    Parameters
    ----------
    offsets
        ``{norm class: weight offset}``.

    """

    def __init__(self, offsets: dict[type, float] | None = None) -> None:
        super().__init__()
        self.offsets = dict(offsets or {})
        self.handled_types = tuple(self.offsets)

    def merge(self, other: RMSNormCanonizer) -> RMSNormCanonizer:
        return RMSNormCanonizer({**other.offsets, **self.offsets})

    def attributes(self, module: nn.Module) -> dict[str, object]:
        offset = next(value for kind, value in self.offsets.items() if isinstance(module, kind))
        return {"forward": partial(_family_rms_forward, module, offset)}


def _family_rms_forward(module: nn.Module, offset: float, x: torch.Tensor) -> torch.Tensor:
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    return constant_rms_norm(x, x.shape[-1:], module.weight, eps, weight_offset=offset)


def _union(first: tuple[type, ...], second: tuple[type, ...]) -> tuple[type, ...]:
    return first + tuple(kind for kind in second if kind not in first)


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


def merge_canonizers(canonizers: Iterable[Canonizer]) -> list[Canonizer]:
    """One canonizer per rule: stacked bilrp canonizers merged, so that no rule is applied twice.

    Bundles (zennit composite canonizers holding bilrp canonizers, such as the architecture canonizers)
    are opened. Canonizers of the same class are merged (:meth:`InstanceAttributeCanonizer.merge`: the
    union of their attention, norm or MLP classes). The score-projection speed-up comes last. Canonizers
    that are not bilrp's (zennit's ``SequentialMergeBatchNorm``, ...) run first, in the order given.
    """
    foreign: list[Canonizer] = []
    merged: dict[type, Canonizer] = {}
    for canonizer in _leaves(canonizers):
        if isinstance(canonizer, (InstanceAttributeCanonizer, EvalEagerCanonizer)):
            kind = type(canonizer)
            merged[kind] = canonizer.merge(merged[kind]) if kind in merged else canonizer.copy()
        else:
            foreign.append(canonizer)
    leaves = list(merged.values())
    # the score-projection speed-up wraps whatever forward the projections end up with: it goes last
    leaves.sort(key=lambda canonizer: isinstance(canonizer, ScoreProjectionCanonizer))
    return foreign + leaves


def _leaves(canonizers: Iterable[Canonizer]) -> Iterator[Canonizer]:
    """The canonizers with bundles of bilrp canonizers opened; other canonizers as they are."""
    for canonizer in canonizers:
        inner = getattr(canonizer, "canonizers", None)
        if inner is not None and any(isinstance(c, (InstanceAttributeCanonizer, EvalEagerCanonizer)) for c in inner):
            yield from _leaves(inner)
        else:
            yield canonizer
