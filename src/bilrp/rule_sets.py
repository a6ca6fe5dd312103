"""Named rule sets: every rule of an explanation chosen by one name (``rules="paper"``, ``"epsilon=0.1"``).

A rule set fixes the attention rule and the rule for linear layers; LayerNorm (LN) and activations (GA) keep
the paper's rules throughout. Each is registered with :func:`register_rule_set`, in the spirit of zennit's
``register_composite``, and builds a :class:`~bilrp.TransformerComposite`:

=====================  =========================  ===================================================
name                   attention                  linear layers
=====================  =========================  ===================================================
``paper``              AH (constant probabilities) LRP-0 (the rules of Vasileiou & Eberle, 2024)
``epsilon[=e]``        AH                         LRP-epsilon (default e = 0.1)
``gamma[=g]``          AH                         LRP-gamma (default g = 0.25)
``attnlrp``            AttnLRP                    LRP-0
``attnlrp-epsilon[=e]`` AttnLRP                   LRP-epsilon (default e = 0.1)
=====================  =========================  ===================================================

A spec is a name, optionally with ``=value`` for the rule's parameter, a number from 0 to
:data:`MAX_PARAMETER` (1e6): past it the relevance does not change any more within float32 rounding (both
rules reach their limit: gamma the z+ rule, epsilon a stabiliser far above every pre-activation; measured on
all-MiniLM-L6-v2, the largest relative change of R from 1e6 to 1e30 is 3e-7 for gamma and 0 for epsilon),
while a gamma from about 1e36 makes the float32 weights ``w + gamma w+`` overflow, which the certificate can
only refuse. Which set a family uses by default
is its registry entry's ``rules`` (:class:`~bilrp.architectures.Architecture`), chosen from the
measurements in ``docs/results.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from zennit.core import Composite
from zennit.rules import Epsilon, Gamma

from ._catalog import RULE_SET_NAMES
from .architectures import architecture_of
from .composites import TransformerComposite, resolve_composite

__all__ = [
    "RuleSet",
    "RULE_SETS",
    "register_rule_set",
    "rule_set_composite",
    "parse_rule_set",
    "default_rule_set",
    "choose_composite",
    "RULE_SET_NAMES",
    "MAX_PARAMETER",
    "check_parameter",
]

MAX_PARAMETER = 1e6
"""The largest value of a rule set's parameter (epsilon, gamma): see the module docstring for why."""


@dataclass(frozen=True)
class RuleSet:
    """A registered rule set: its name, what it is, its parameter's default and the composite it builds."""

    name: str
    description: str
    build: Callable[[float | None], TransformerComposite]
    default: float | None = None

    def composite(self, value: float | None = None) -> TransformerComposite:
        """The composite of this rule set, with ``value`` (or the default) as the rule's parameter."""
        if value is not None:
            value = check_parameter(self, value, f"{self.name}={value}")
        return self.build(self.default if value is None else value)


RULE_SETS: dict[str, RuleSet] = {}
"""Every registered rule set, by name."""


def register_rule_set(name: str, description: str, default: float | None = None):
    """Decorator: register ``build(value) -> TransformerComposite`` as rule set ``name``."""

    def register(build: Callable[[float | None], TransformerComposite]) -> Callable:
        if name in RULE_SETS:
            raise ValueError(f"rule set {name!r} is registered already")
        RULE_SETS[name] = RuleSet(name, description, build, default)
        return build

    return register


@register_rule_set("paper", "AH + LN + GA + LRP-0: the rules of the paper (Vasileiou & Eberle, 2024)")
def _paper(value: float | None) -> TransformerComposite:
    return TransformerComposite()


@register_rule_set("epsilon", "AH + LN + GA, LRP-epsilon on every linear layer", default=0.1)
def _epsilon(value: float | None) -> TransformerComposite:
    return TransformerComposite(linear_rule=Epsilon(value))


@register_rule_set("gamma", "AH + LN + GA, LRP-gamma on every linear layer", default=0.25)
def _gamma(value: float | None) -> TransformerComposite:
    return TransformerComposite(linear_rule=Gamma(value))


@register_rule_set("attnlrp", "AttnLRP (softmax and uniform rules) + LN + GA + LRP-0 (Achtibat et al., 2024)")
def _attnlrp(value: float | None) -> TransformerComposite:
    return TransformerComposite(attention_rule="attnlrp")


@register_rule_set("attnlrp-epsilon", "AttnLRP + LN + GA, LRP-epsilon on every linear layer", default=0.1)
def _attnlrp_epsilon(value: float | None) -> TransformerComposite:
    return TransformerComposite(attention_rule="attnlrp", linear_rule=Epsilon(value))


def parse_rule_set(spec: str) -> tuple[RuleSet, float | None]:
    """The rule set and parameter of ``spec`` (``"paper"``, ``"epsilon=0.01"``), or a one-line ``ValueError``."""
    if not isinstance(spec, str):
        raise TypeError(f"rules must be a rule-set name such as 'paper' or 'epsilon=0.1', not {type(spec).__name__}")
    name, has_value, text = spec.partition("=")
    if name not in RULE_SETS:
        raise ValueError(
            f"unknown rule set {name!r}: choose one of {', '.join(RULE_SETS)} (epsilon and gamma take =value)"
        )
    if not has_value:
        return RULE_SETS[name], None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    return RULE_SETS[name], check_parameter(RULE_SETS[name], value, spec)


def check_parameter(rule_set: RuleSet, value: float, spec: str) -> float:
    """``value`` as the parameter of ``rule_set`` (``spec`` names it), or a one-line ``ValueError``: a number
    from 0 to :data:`MAX_PARAMETER`, for a rule set that takes one.
    """
    shown = spec if len(spec) <= 60 else spec[:57] + "..."
    if rule_set.default is None:
        raise ValueError(f"rule set {rule_set.name!r} takes no parameter: write it without '=' (not {shown!r})")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_PARAMETER:
        raise ValueError(
            f"rule set {shown!r}: the parameter after '=' must be a non-negative number up to {MAX_PARAMETER:g} "
            f"(e.g. {rule_set.name}={rule_set.default:g}): larger values change no relevance within float32 "
            "rounding, and a gamma past about 1e36 overflows float32"
        )
    return float(value)


def rule_set_composite(spec: str) -> TransformerComposite:
    """The :class:`~bilrp.TransformerComposite` of rule-set ``spec``."""
    rule_set, value = parse_rule_set(spec)
    return rule_set.composite(value)


def default_rule_set(model: nn.Module) -> str:
    """The rule set bilrp uses for ``model`` when none is given: its family's ``rules``, else ``"paper"``."""
    encoder = getattr(model, "encoder", model)
    entry = architecture_of(encoder) if isinstance(encoder, nn.Module) else None
    return entry.rules if entry is not None else "paper"


def choose_composite(
    composite: Composite | None, rules: str | None, model: nn.Module
) -> tuple[TransformerComposite, str]:
    """The composite an attribution runs, and the name of its rules (``"custom"`` for a given composite).

    At most one of ``composite`` (any zennit composite, translated by
    :func:`~bilrp.composites.resolve_composite`) and ``rules`` (a rule-set spec) may be given; with neither,
    the model family's default rule set (:func:`default_rule_set`) is used.
    """
    if composite is not None and rules is not None:
        raise ValueError("give either composite= or rules=, not both (rules= names a rule set, e.g. rules='paper')")
    if composite is not None:
        return resolve_composite(composite, model), "custom"
    rules = default_rule_set(model) if rules is None else rules
    return rule_set_composite(rules), rules
