"""``TransformerComposite``: the Transformer LRP rules of the paper as one zennit composite."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn
from zennit.canonizers import Canonizer
from zennit.composites import LayerMapComposite
from zennit.core import Composite, CompositeContext, Hook
from zennit.rules import Pass

from .architectures import ArchitectureCanonizer, TransformerCanonizer
from .attention_rules import check_attention_rule
from .canonizers import (
    CUSTOM_ARCHITECTURE_DOCS,
    ActivationCanonizer,
    AttentionCanonizer,
    EvalEagerCanonizer,
    InstanceAttributeCanonizer,
    ScoreProjectionCanonizer,
    UnsupportedModuleError,
    merge_canonizers,
)
from .linear_canonizer import LinearRuleCanonizer
from .root_rule import RootRule
from .rule_translation import FORWARD_GRAPH_RULES, forward_graph_rule, memory_factor, rule_name
from .rules import GradientRule

__all__ = [
    "TransformerComposite",
    "PlainComposite",
    "UnsupportedModuleError",
    "default_canonizers",
    "resolve_composite",
    "FORWARD_GRAPH_RULES",
    "CUSTOM_ARCHITECTURE_DOCS",
]

def default_canonizers(attention_rule: str = "ah") -> list[Canonizer]:
    """One :class:`~bilrp.architectures.TransformerCanonizer`: the rules of every registered family."""
    return [TransformerCanonizer(attention_rule=attention_rule)]


def _with_attention_rule(canonizers: list[Canonizer], rule: str) -> list[Canonizer]:
    """``canonizers`` with every architecture canonizer rebuilt for attention rule ``rule``."""
    return [
        ArchitectureCanonizer(*c.names, gate_rule=c.gate_rule_option, attention_rule=rule)
        if isinstance(c, ArchitectureCanonizer)
        else c
        for c in canonizers
    ]


class ReverseRemoval:
    """Mixin for zennit composites: undo hooks and canonizers in reverse order of registration.

    zennit removes in registration order; canonizers that stack on the same module (an attention wrapper
    over a forward another canonizer set) must unwind last-in first-out to restore the original exactly.
    """

    handles: list
    hook_refs: object

    def remove(self) -> None:
        """Remove hooks and revert canonizers, newest first."""
        for handle in reversed(self.handles):
            handle.remove()
        self.handles.clear()
        self.hook_refs.clear()


def _with_linear_rules(
    canonizers: list[Canonizer], rule: Hook | None, rules_by_name: dict[str, Hook]
) -> list[Canonizer]:
    """``canonizers`` with the linear-rule canonizers inserted before the score-projection speed-up.

    They come after every other canonizer (the MultiheadAttention canonizer creates the value projection
    they must reach), and the speed-up, which detaches the input of query and key projections by wrapping
    their forward, must wrap the linear rule's forward, not the other way round.
    """
    rule_canonizers: list[Canonizer] = []
    if rule is not None:
        rule_canonizers.append(LinearRuleCanonizer(rule))
    by_rule: dict[int, tuple[Hook, list[str]]] = {}
    for name, named_rule in rules_by_name.items():
        by_rule.setdefault(id(named_rule), (named_rule, []))[1].append(name)
    for named_rule, names in by_rule.values():
        rule_canonizers.append(LinearRuleCanonizer(named_rule, names=names))
    position = next(
        (i for i, c in enumerate(canonizers) if isinstance(c, ScoreProjectionCanonizer)), len(canonizers)
    )
    return canonizers[:position] + rule_canonizers + canonizers[position:]


class TransformerComposite(ReverseRemoval, LayerMapComposite):
    """The Transformer LRP rules (by default the paper's: AH, LN, GA, LRP-0) as a zennit composite.

    With zennit's attributors (``zennit.attribution.Gradient(model, composite)``, ``SmoothGrad``,
    ``IntegratedGradients``) or ``composite.register(model)`` it behaves like zennit's own composites:
    ``attributor(x, attr_output)`` returns the *relevance* of ``x`` for the output relevance ``attr_output``
    (default: the output itself, which gives bilrp's LRP relevance), and every forward pass is certified
    (:mod:`bilrp.root_rule`): a model with a non-linearity no rule covers raises
    :class:`~bilrp.certificate.CertificateError` naming the module, as :class:`~bilrp.BiLRP` does.

    ``composite.context(model)`` registers the bare rules, the building block of bilrp's own attributions
    (which certify their results): inside it, the gradient is the LRP gradient (input x gradient is the
    LRP relevance) and nothing is checked.

    Every rule is written into the forward graph, so the fast engine, forward-mode autodiff and the
    conservation certificate all see it. Stacked bilrp canonizers (``[TransformerCanonizer(),
    BertCanonizer()]``) are merged so that every rule is applied once; other (zennit) canonizers run first.

    Parameters
    ----------
    linear_rule
        A zennit rule for every ``nn.Linear`` (``zennit.rules.Epsilon(0.1)``, ``Gamma(0.25)``, ``ZPlus()``,
        ``AlphaBeta(2, 1)``, ``Pass()``), run as its forward-graph equivalent. ``None`` (default) is LRP-0.
        A rule without a forward-graph form is refused, since its relevance could not be certified.
    canonizers
        Canonizers to apply; defaults to :func:`default_canonizers`.
    attention_rule
        ``"ah"`` (the paper's rule: constant attention probabilities) or ``"attnlrp"`` (AttnLRP's softmax and
        uniform rules, :mod:`bilrp.attention_rules`; gated feed-forward blocks then split evenly too).
        Applies to the architecture canonizers; ``None`` (default) keeps theirs (``"ah"`` by default).
    strict
        Refuse, before anything is registered, modules that a matching canonizer reports it cannot handle.
    backward_hooks
        Run ``linear_rule`` as zennit's own backward hook (through :class:`~bilrp.rules.GradientRule`)
        instead, as a reference inside ``composite.context(model)``. zennit's attributors and bilrp's
        attributions refuse such a composite, because no certificate can check backward-only rules.

    """

    def __init__(
        self,
        linear_rule: Hook | None = None,
        canonizers: list[Canonizer] | None = None,
        strict: bool = True,
        backward_hooks: bool = False,
        linear_rules: dict[str, Hook] | None = None,
        attention_rule: str | None = None,
    ) -> None:
        self.linear_rule = linear_rule
        self.linear_rules = dict(linear_rules or {})
        self.strict = strict
        if canonizers is None:
            canonizers = default_canonizers(check_attention_rule(attention_rule or "ah"))
        elif attention_rule is not None:
            canonizers = _with_attention_rule(list(canonizers), check_attention_rule(attention_rule))
        canonizers = merge_canonizers(canonizers)
        layer_map = []
        if linear_rule is not None and backward_hooks:
            layer_map = [((nn.Linear,), GradientRule(linear_rule))]
        elif linear_rule is not None or linear_rules:
            canonizers = _with_linear_rules(canonizers, linear_rule, linear_rules or {})
        super().__init__(layer_map, canonizers=canonizers)

    @property
    def certifiable(self) -> bool:
        """True when every rule lives in the forward graph (no backward-only zennit hooks)."""
        return not self.layer_map

    forward_mode_compatible = certifiable

    @property
    def memory_factor(self) -> float:
        """How many times LRP-0's activations the linear rules keep alive (the engine's chunks shrink by it)."""
        return max([memory_factor(self.linear_rule)] + [memory_factor(rule) for rule in self.linear_rules.values()])

    @property
    def attention_rule(self) -> str:
        """The attention rule the composite's canonizers apply (``"ah"`` or ``"attnlrp"``)."""
        rules = {c.rule for c in self.all_canonizers() if isinstance(c, AttentionCanonizer)}
        rules |= {c.attention_rule for c in self.all_canonizers() if hasattr(c, "attention_rule")}
        return rules.pop() if rules else "ah"  # merging refuses two rules, so there is at most one

    def all_canonizers(self) -> Iterator[Canonizer]:
        """Every canonizer of the composite, those nested in composite canonizers included."""
        stack = list(self.canonizers)
        while stack:
            canonizer = stack.pop()
            yield canonizer
            stack.extend(getattr(canonizer, "canonizers", ()))

    def handled_types(self) -> tuple[type, ...]:
        """Module types some canonizer installs a rule on."""
        return tuple(kind for canonizer in self.all_canonizers() for kind in getattr(canonizer, "handled_types", ()))

    def check_supported(self, module: nn.Module) -> None:
        """Raise :class:`UnsupportedModuleError` for a module a matching canonizer reports it cannot handle.

        Nothing is registered before this check, so a refused model is left untouched. Modules no
        canonizer knows are *not* judged here (by name or otherwise): the conservation certificate finds
        any non-linearity without a rule from what the modules compute, and names the module.
        """
        judges = [c for c in self.all_canonizers() if isinstance(c, InstanceAttributeCanonizer)]
        for name, child in module.named_modules():
            for judge in judges:
                reason = judge.unsupported(child) if judge.matches(child) else None
                if reason is not None:
                    raise UnsupportedModuleError(
                        f"cannot explain module {name or '<root>'!r} of class {type(child).__qualname__}: {reason}; "
                        f"write a canonizer for it, see {CUSTOM_ARCHITECTURE_DOCS}"
                    )

    def register(self, module: nn.Module) -> None:
        """Apply the rules and the certified root rule (zennit's attributors call this); on error, undo all.

        The root rule (:class:`~bilrp.root_rule.RootRule`) makes the gradient at the model's input the
        relevance, as zennit's composites do, and certifies every forward pass that can be differentiated.
        """
        if not self.certifiable:
            raise ValueError(
                "this TransformerComposite runs its linear rule as a zennit backward hook (backward_hooks=True), "
                "which the conservation certificate cannot check: build it without backward_hooks (the same rule "
                "then runs in the forward graph, certified)"
            )
        self.register_rules(module)
        try:
            self.handles += RootRule().apply(module)
        except BaseException:
            self.remove()
            raise

    def register_rules(self, module: nn.Module) -> None:
        """Apply canonizers and hooks only (no root rule, no certificate); on any error, undo everything."""
        if self.strict:
            self.check_supported(module)
        try:
            super().register(module)
        except BaseException:
            self.remove()
            raise

    def context(self, module: nn.Module) -> CompositeContext:
        """The bare rules on ``module`` for a ``with`` block: the gradient inside is the LRP gradient, unchecked.

        This is what bilrp's attributions run (they certify the result themselves); for relevance that is
        certified use zennit's attributors, :class:`~bilrp.LRP` or :class:`~bilrp.BiLRP`.
        """
        return _RulesContext(module, self)


class _RulesContext(CompositeContext):
    """zennit's composite context, registering the bare rules (:meth:`TransformerComposite.register_rules`)."""

    def __enter__(self) -> nn.Module:
        self.composite.register_rules(self.module)
        return self.module


class PlainComposite(ReverseRemoval, Composite):
    """No rules: eval mode and the eager attention path only, for plain-gradient methods (H x P, IJ).

    The eager path matters for forward-mode autodiff, which fused attention kernels do not support.
    """

    def __init__(self) -> None:
        super().__init__(canonizers=[EvalEagerCanonizer()])


def _attention_rule_of(canonizers: list[Canonizer]) -> str:
    """The attention rule of the given bilrp attention canonizers (``"ah"`` when there are none)."""
    return next((c.rule for c in canonizers if isinstance(c, AttentionCanonizer)), "ah")


def _bilrp_rule_for(module: nn.Module, composite: TransformerComposite) -> str:
    """What bilrp does with ``module`` (for messages about a clashing zennit rule)."""
    for canonizer in composite.all_canonizers():
        if isinstance(canonizer, InstanceAttributeCanonizer) and canonizer.matches(module):
            return f"rule of {type(canonizer).__name__}"
    if isinstance(module, nn.Embedding):
        return "explanation input (bilrp attributes to the embedding output, after this module)"
    return "LRP-0 (it treats the module as affine)"


def resolve_composite(composite: Composite | None, model: nn.Module) -> TransformerComposite:
    """The :class:`TransformerComposite` that gives ``composite``'s relevance on ``model`` exactly, or an error.

    bilrp's attributions take any zennit composite: ``TransformerComposite`` as it is; a zennit composite
    (``EpsilonPlus``, ``EpsilonPlusFlat``, ``MixedComposite``, ...) is translated when every rule it would
    put on ``model`` has an exact forward-graph form in bilrp -- a linear rule on ``nn.Linear`` modules, or
    ``Pass`` on an activation bilrp's rule GA covers (the same relevance) -- and its canonizers run before
    bilrp's. Any other rule is refused, naming the module, the zennit rule and the bilrp rule it clashes with.
    bilrp's default canonizers (every registered family, LayerNorm and activations) are added unless the
    composite brings an architecture canonizer: canonizers for the user's own classes
    (``EpsilonPlus(canonizers=[AttentionCanonizer((MyAttention,))])``) come on top of them, merged.

    Raises
    ------
    ValueError
        For a rule without an exact forward-graph form, or a composite with backward-only hooks.

    """
    if composite is None:
        return TransformerComposite()
    if isinstance(composite, TransformerComposite):
        if not composite.certifiable:
            raise ValueError(
                "this TransformerComposite runs its linear rule as a zennit backward hook (backward_hooks=True), "
                "which the conservation certificate cannot check: build it without backward_hooks"
            )
        return composite
    if not isinstance(composite, Composite):
        raise TypeError(f"composite must be a zennit Composite, got {type(composite).__name__}")
    canonizers = list(composite.canonizers)
    if not any(isinstance(c, ArchitectureCanonizer) for c in canonizers):
        canonizers += default_canonizers(_attention_rule_of(canonizers))
    judge = TransformerComposite(canonizers=canonizers, strict=False)
    linear_rules: dict[str, Hook] = {}
    context: dict = {}
    for name, module in model.named_modules():
        rule = composite.module_map(context, name, module)
        if rule is None:
            continue
        if isinstance(module, nn.Linear) and forward_graph_rule(rule) is not None:
            linear_rules[name] = rule
        elif isinstance(rule, Pass) and isinstance(module, ActivationCanonizer.handled_types):
            continue
        else:
            raise ValueError(
                f"zennit rule {rule_name(rule)} on module {name or '<root>'!r} ({type(module).__qualname__}) "
                f"clashes with bilrp's {_bilrp_rule_for(module, judge)}: bilrp runs only rules with an exact "
                f"forward-graph form ({', '.join(FORWARD_GRAPH_RULES)} on nn.Linear, Pass on activations); "
                "remove that rule from the composite"
            )
    return TransformerComposite(canonizers=canonizers, linear_rules=linear_rules)
