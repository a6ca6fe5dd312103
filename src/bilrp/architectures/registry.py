"""The registry of model families: what each needs for the LRP rules, in one declarative entry.

An :class:`Architecture` says which of a family's classes compute attention (rule AH), its own RMS norm
classes (rule LN), where its gated feed-forward block's parts are (the gated-unit rule), any further
canonizers it needs, where its embedding output is, and, for people and tests, the pooling and prompts
of its typical checkpoints and a tiny random model. :func:`register_architecture` adds one, in the
spirit of zennit's ``register_composite``; :class:`ArchitectureCanonizer` gives the rules of some or all
registered families, each rule applied once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import nn
from zennit.canonizers import Canonizer, CompositeCanonizer

from ..attention_rules import check_attention_rule
from ..canonizers import (
    ActivationCanonizer,
    AttentionCanonizer,
    EvalEagerCanonizer,
    LayerNormCanonizer,
    RMSNormCanonizer,
    ScoreProjectionCanonizer,
    import_classes,
    merge_canonizers,
    reverted_on_error,
)
from ..gated_mlp import GatedMLP, GatedMLPCanonizer

__all__ = [
    "Architecture",
    "ARCHITECTURES",
    "register_architecture",
    "architecture_of",
    "ArchitectureCanonizer",
    "GatedMLP",
]


@dataclass(frozen=True)
class Architecture:
    """One model family's needs.

    Parameters
    ----------
    name
        Registry key (``"bert"``).
    models
        The family's encoder classes (``"module:Class"``), to find the entry of a loaded encoder.
    attention
        Attention classes whose softmax gives the attention probabilities (rule AH), as ``"module:Class"``
        or classes.
    rms_norms
        The family's own RMS norm classes (rule LN), with ``rms_weight_offset`` (1 for ``1 + weight``).
    gated_mlp
        Where the parts of a gated feed-forward block are, if the family has one.
    canonizers
        Further canonizers the family needs (factories), e.g. for plain PyTorch's fused layers.
    embedding
        Attribute path, in the encoder, of the module whose output is the embedding output.
    pooling, prompts, checkpoints
        The pooling and prompts of typical checkpoints, and example checkpoint names.
    norm, mlp
        How the norm and feed-forward block are described in the docs table.
    rules
        The rule set explanations of the family use by default (:mod:`bilrp.rule_sets`, chosen from the
        measurements in ``docs/results.md``); ``"paper"`` reproduces the paper.
    tiny
        Builds a tiny random encoder of the family (2 layers, BERT vocabulary) for tests and examples.

    """

    name: str
    models: tuple[str, ...] = ()
    attention: tuple[str | type, ...] = ()
    rms_norms: tuple[str, ...] = ()
    rms_weight_offset: float = 0.0
    gated_mlp: GatedMLP | None = None
    canonizers: tuple[Callable[[], Canonizer], ...] = ()
    embedding: str = "embeddings"
    pooling: str = "mean"
    prompts: Mapping[str, str] = field(default_factory=dict)
    checkpoints: tuple[str, ...] = ()
    norm: str = "LayerNorm"
    mlp: str = "GELU"
    rules: str = "paper"
    tiny: Callable[[], nn.Module] | None = field(default=None, compare=False)

    def attention_types(self) -> tuple[type, ...]:
        """The attention classes that are installed (a family whose module is missing has none)."""
        paths = tuple(path for path in self.attention if isinstance(path, str))
        return import_classes(paths) + tuple(kind for kind in self.attention if isinstance(kind, type))

    def model_types(self) -> tuple[type, ...]:
        """The encoder classes of the family that are installed."""
        return import_classes(self.models)

    def rule_canonizers(self, gate_rule: str = "constant_gate", attention_rule: str = "ah") -> list[Canonizer]:
        """The family-specific canonizers (attention, norms, gated MLP, extras) under the given rules."""
        attention = self.attention_types()
        canonizers: list[Canonizer] = [AttentionCanonizer(attention, attention_rule)]
        if attention_rule == "ah":  # no relevance through the scores: their projections may read detached inputs
            canonizers.append(ScoreProjectionCanonizer(attention))
        if self.rms_norms:
            offsets = {kind: self.rms_weight_offset for kind in import_classes(self.rms_norms)}
            canonizers.append(RMSNormCanonizer(offsets))
        if self.gated_mlp is not None:
            canonizers.append(GatedMLPCanonizer((self.gated_mlp,), gate_rule))
        return canonizers + [_make(factory, attention_rule) for factory in self.canonizers]


def _make(factory: Callable[..., Canonizer], attention_rule: str) -> Canonizer:
    """``factory()``, given the attention rule when it takes one (a family's own attention canonizer)."""
    try:
        takes_rule = "attention_rule" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_rule = False
    return factory(attention_rule=attention_rule) if takes_rule else factory()


ARCHITECTURES: dict[str, Architecture] = {}
"""Every registered family, by name, in registration order."""


def register_architecture(architecture: Architecture) -> Architecture:
    """Add ``architecture`` to :data:`ARCHITECTURES` (a name registered twice is an error)."""
    if architecture.name in ARCHITECTURES:
        raise ValueError(f"architecture {architecture.name!r} is registered already")
    ARCHITECTURES[architecture.name] = architecture
    return architecture


def architecture_of(encoder: nn.Module) -> Architecture | None:
    """The registered family of ``encoder`` (by its class), or ``None``."""
    return next((a for a in ARCHITECTURES.values() if a.models and isinstance(encoder, a.model_types())), None)


class ArchitectureCanonizer(CompositeCanonizer):
    """The rules of some registered families (all of them when none are named), each rule applied once.

    Eval mode and the eager attention path, rule LN on ``nn.LayerNorm``/``nn.RMSNorm``, rule GA on
    activations, and every named family's own canonizers, merged so that stacking two architecture
    canonizers applies no rule twice.

    Parameters
    ----------
    names
        Registry names; default :attr:`families` of the class, or every registered family.
    gate_rule
        The rule for gated feed-forward blocks (``"constant_gate"`` or ``"uniform"``); default ``"uniform"``
        under AttnLRP (its rule for products of two input-dependent tensors), else ``"constant_gate"``.
    attention_rule
        ``"ah"`` (default, the paper's) or ``"attnlrp"`` (:mod:`bilrp.attention_rules`).

    """

    families: tuple[str, ...] = ()

    def __init__(self, *names: str, gate_rule: str | None = None, attention_rule: str = "ah") -> None:
        chosen = names or self.families or tuple(ARCHITECTURES)
        unknown = [name for name in chosen if name not in ARCHITECTURES]
        if unknown:
            raise ValueError(f"unknown architecture {unknown[0]!r}: registered are {', '.join(ARCHITECTURES)}")
        check_attention_rule(attention_rule)
        self.gate_rule = gate_rule or ("uniform" if attention_rule == "attnlrp" else "constant_gate")
        self.gate_rule_option = gate_rule
        self.names, self.attention_rule = tuple(chosen), attention_rule
        generic: list[Canonizer] = [EvalEagerCanonizer(), LayerNormCanonizer(), ActivationCanonizer()]
        family = [c for name in chosen for c in ARCHITECTURES[name].rule_canonizers(self.gate_rule, attention_rule)]
        super().__init__(merge_canonizers(generic + family))

    def apply(self, root_module: nn.Module) -> list[Canonizer]:
        """Apply every canonizer; on error, undo those already applied before re-raising."""
        with reverted_on_error([]) as instances:
            for canonizer in self.canonizers:
                instances += canonizer.apply(root_module)
        return instances

    def copy(self) -> ArchitectureCanonizer:
        return ArchitectureCanonizer(*self.names, gate_rule=self.gate_rule_option, attention_rule=self.attention_rule)

    @property
    def handled_types(self) -> tuple[type, ...]:
        """Module types this canonizer installs a rule on."""
        return tuple(kind for canonizer in self.canonizers for kind in getattr(canonizer, "handled_types", ()))
