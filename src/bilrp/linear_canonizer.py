"""``LinearRuleCanonizer``: a forward-graph linear rule installed on ``nn.Linear`` modules for a context."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial

from torch import nn
from zennit.core import Hook

from .architectures.torch import InputProjection
from .canonizers import InstanceAttributeCanonizer, UnsupportedModuleError
from .linear_rules import LinearRule
from .rule_translation import translate

__all__ = ["LinearRuleCanonizer"]


PLAIN_LINEAR_CLASSES = (InputProjection,)
"""``nn.Linear`` subclasses whose forward is ``F.linear(x, self.weight, self.bias)`` in value."""


class LinearRuleCanonizer(InstanceAttributeCanonizer):
    """Set the forward of ``nn.Linear`` modules to a forward-graph linear rule while the canonizer is active.

    With every linear layer under a rule of this module (and the Transformer rules of
    :class:`~bilrp.TransformerComposite`), the network is affine in its input given the rule constants,
    so forward mode and the replay engine see the linear rule too.

    Parameters
    ----------
    rule
        A forward-graph rule ``rule(module, x) -> y`` (``functools.partial(epsilon_linear, epsilon=0.1)``)
        or a zennit rule object, translated with :func:`forward_graph_rule`.
    modules
        Restrict the canonizer to these module instances (default: every ``nn.Linear``).
    names
        Restrict the canonizer to the modules with these qualified names below the root module it is
        applied to (``model.named_modules()`` names); an unknown name or a non-linear module raises
        ``ValueError`` on apply. At most one of ``modules`` and ``names``.

    Raises
    ------
    ValueError
        If ``rule`` is a zennit rule with no forward-graph form, or both ``modules`` and ``names`` are given.

    Notes
    -----
    A ``nn.Linear`` subclass that overrides ``forward`` (other than bilrp's own MultiheadAttention value
    projection) is reported by :meth:`unsupported`: the rule computes ``F.linear(x, weight, bias)`` and
    cannot know whether the subclass computes that. The canonizer replaces whatever instance ``forward``
    a module has; apply it *before* :class:`~bilrp.canonizers.ScoreProjectionCanonizer` to keep that
    speed-up's detached input (either order gives the same relevance, since no relevance flows through the
    attention scores). For ``nn.MultiheadAttention`` apply it after
    :class:`~bilrp.architectures.torch.MultiheadAttentionCanonizer`, which creates the value-projection child.

    """

    handled_types = (nn.Linear,)

    def __init__(
        self,
        rule: LinearRule | Hook,
        modules: Iterable[nn.Module] | None = None,
        names: Iterable[str] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(rule, Hook):
            rule = translate(rule)
        if not callable(rule):
            raise TypeError(f"rule must be a callable rule(module, x) or a zennit rule, not {type(rule).__name__}")
        if modules is not None and names is not None:
            raise ValueError("give at most one of modules and names")
        self.rule = rule
        self.modules = None if modules is None else list(modules)
        self.names = None if names is None else [str(name) for name in names]

    def matches(self, module: nn.Module) -> bool:
        if not isinstance(module, nn.Linear):
            return False
        return self.modules is None or any(module is chosen for chosen in self.modules)

    def unsupported(self, module: nn.Module) -> str | None:
        if type(module).forward is nn.Linear.forward or isinstance(module, PLAIN_LINEAR_CLASSES):
            return None
        return (
            f"{type(module).__qualname__} overrides nn.Linear.forward, so the forward-graph linear rule "
            "(computed from F.linear(x, weight, bias)) may not describe it"
        )

    def targets(self, root_module: nn.Module) -> Iterator[nn.Module]:
        if self.names is None:
            yield from super().targets(root_module)
            return
        seen: list[nn.Module] = []
        for name in self.names:
            try:
                module = root_module.get_submodule(name)
            except AttributeError as error:
                raise ValueError(f"no module named {name!r} to put the linear rule on") from error
            if not self.matches(module):
                raise ValueError(f"module {name!r} is a {type(module).__qualname__}, not an nn.Linear")
            if not any(module is other for other in seen):
                seen.append(module)
                yield module

    def attributes(self, module: nn.Module) -> dict[str, object]:
        reason = self.unsupported(module)
        if reason is not None:
            raise UnsupportedModuleError(reason)
        return {"forward": partial(self.rule, module)}
