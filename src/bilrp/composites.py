"""``TransformerComposite``: the Transformer LRP rules of the paper as one zennit composite."""

from __future__ import annotations

import re
from collections.abc import Iterator

from torch import nn
from zennit.canonizers import Canonizer
from zennit.composites import LayerMapComposite
from zennit.core import Composite, Hook

from .canonizers import (
    CUSTOM_ARCHITECTURE_DOCS,
    EvalEagerCanonizer,
    InstanceAttributeCanonizer,
    TransformerCanonizer,
    UnsupportedModuleError,
)
from .rules import GradientRule

__all__ = [
    "TransformerComposite",
    "PlainComposite",
    "UnsupportedModuleError",
    "default_canonizers",
    "CUSTOM_ARCHITECTURE_DOCS",
]

_NEEDS_RULE = re.compile(r"attention|attn|norm", re.IGNORECASE)


def default_canonizers() -> list[Canonizer]:
    """One :class:`~bilrp.canonizers.TransformerCanonizer`: rules for every supported architecture."""
    return [TransformerCanonizer()]


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


class TransformerComposite(ReverseRemoval, LayerMapComposite):
    """The paper's rules (AH, LN, GA, LRP-0) for Transformer encoders as a zennit composite.

    Use it with ``composite.context(model)`` or zennit attributors
    (``zennit.attribution.Gradient(model, composite)``); the gradient in the context is the LRP
    gradient, so gradient x input is the LRP relevance.

    Parameters
    ----------
    linear_rule
        A zennit rule (``zennit.rules.Epsilon()``, ``Gamma()``, ...) for every ``nn.Linear``. ``None``
        (default) is LRP-0, which needs no hook, so forward-mode autodiff sees the rules too.
    canonizers
        Canonizers to apply; defaults to :func:`default_canonizers`.
    strict
        Refuse models containing attention or normalisation modules that no canonizer handles.

    """

    def __init__(
        self,
        linear_rule: Hook | None = None,
        canonizers: list[Canonizer] | None = None,
        strict: bool = True,
    ) -> None:
        self.linear_rule = linear_rule
        self.strict = strict
        layer_map = [] if linear_rule is None else [((nn.Linear,), GradientRule(linear_rule))]
        super().__init__(layer_map, canonizers=default_canonizers() if canonizers is None else canonizers)

    @property
    def forward_mode_compatible(self) -> bool:
        """True when every rule lives in the forward graph (no backward-only zennit hooks)."""
        return not self.layer_map

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
        """Raise :class:`UnsupportedModuleError` naming the first module that would be explained wrongly.

        A module is refused when its class name says attention or normalisation but no canonizer handles
        it (nor one of its sub-modules), or when a canonizer that matches it reports it cannot handle it.
        Nothing is registered before this check, so a refused model is left untouched.
        """
        handled = self.handled_types()
        covered: set[str] = set()
        for name, child in module.named_modules():
            if isinstance(child, handled):
                covered.update(_ancestors(name))
        judges = [c for c in self.all_canonizers() if isinstance(c, InstanceAttributeCanonizer)]
        for name, child in module.named_modules():
            for judge in judges:
                reason = judge.unsupported(child) if judge.matches(child) else None
                if reason is not None:
                    raise UnsupportedModuleError(
                        f"cannot explain module {name or '<root>'!r} of class {type(child).__qualname__}: {reason}; "
                        f"write a canonizer for it, see {CUSTOM_ARCHITECTURE_DOCS}"
                    )
        for name, child in module.named_modules():
            if not _NEEDS_RULE.search(type(child).__name__) or isinstance(child, handled) or name in covered:
                continue
            if any(isinstance(grandchild, handled) for grandchild in child.modules()):
                continue
            raise UnsupportedModuleError(
                f"no LRP rule for module {name or '<root>'!r} of class {type(child).__qualname__}: "
                f"write a canonizer for it, see {CUSTOM_ARCHITECTURE_DOCS}"
            )

    def register(self, module: nn.Module) -> None:
        """Apply canonizers and hooks; on any error, undo everything before re-raising."""
        if self.strict:
            self.check_supported(module)
        try:
            super().register(module)
        except BaseException:
            self.remove()
            raise


def _ancestors(name: str) -> list[str]:
    parts = name.split(".") if name else []
    return [".".join(parts[:i]) for i in range(len(parts))]


class PlainComposite(ReverseRemoval, Composite):
    """No rules: eval mode and the eager attention path only, for plain-gradient methods (H x P, IJ).

    The eager path matters for forward-mode autodiff, which fused attention kernels do not support.
    """

    def __init__(self) -> None:
        super().__init__(canonizers=[EvalEagerCanonizer()])
