"""Gated feed-forward blocks (SwiGLU, GeGLU, gated-GELU) with the gated-unit rule, for any model family.

A family declares *where* the parts of its block are with a :class:`GatedMLP` spec; one forward,
``down(dropout(act(gate(x)) * up(x)))``, serves every family, the product under
:func:`bilrp.rules.gated_product`. The activation is the family's own module, which rule GA covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from .canonizers import InstanceAttributeCanonizer, import_classes
from .rules import GATE_RULES, gated_product

__all__ = ["GatedMLP", "GatedMLPCanonizer"]


@dataclass(frozen=True)
class GatedMLP:
    """The attribute names of a gated feed-forward block's parts.

    Parameters
    ----------
    classes
        The block classes, as ``"module:Class"``.
    gate, up, down, act
        Child names of the gate and up projections, the down projection and the activation.
    dropout
        Child name of a dropout after the product, if any (inactive in eval mode).
    fused
        Child name of one projection whose output halves are ``(gate, up)`` (ModernBERT's ``Wi``); then
        ``gate`` and ``up`` are unused.

    """

    classes: tuple[str, ...]
    gate: str = "gate_proj"
    up: str = "up_proj"
    down: str = "down_proj"
    act: str = "act_fn"
    dropout: str | None = None
    fused: str | None = None


class GatedMLPCanonizer(InstanceAttributeCanonizer):
    """Run the gated feed-forward blocks of the given specs with the gated-unit rule.

    Parameters
    ----------
    specs
        The blocks to treat.
    rule
        ``"constant_gate"`` (default) or ``"uniform"`` (see :func:`bilrp.rules.gated_product`).

    """

    def __init__(self, specs: tuple[GatedMLP, ...] = (), rule: str = "constant_gate") -> None:
        super().__init__()
        if rule not in GATE_RULES:
            raise ValueError(f"unknown gate rule {rule!r}: choose one of {', '.join(GATE_RULES)}")
        self.specs, self.rule = tuple(specs), rule
        self.by_type = {kind: spec for spec in self.specs for kind in import_classes(spec.classes)}
        self.handled_types = tuple(self.by_type)

    def merge(self, other: GatedMLPCanonizer) -> GatedMLPCanonizer:
        if other.rule != self.rule:
            raise ValueError(f"two gated-MLP rules stacked ({self.rule!r} and {other.rule!r}): choose one")
        return GatedMLPCanonizer(self.specs + tuple(s for s in other.specs if s not in self.specs), self.rule)

    def attributes(self, module: nn.Module) -> dict[str, object]:
        spec = next(spec for kind, spec in self.by_type.items() if isinstance(module, kind))
        return {"forward": partial(_gated_forward, module, spec, self.rule)}


def _gated_forward(module: nn.Module, spec: GatedMLP, rule: str, x: torch.Tensor) -> torch.Tensor:
    if spec.fused is not None:
        gate, up = getattr(module, spec.fused)(x).chunk(2, dim=-1)
    else:
        gate, up = getattr(module, spec.gate)(x), getattr(module, spec.up)(x)
    hidden = gated_product(getattr(module, spec.act)(gate), up, rule)
    if spec.dropout is not None:
        hidden = getattr(module, spec.dropout)(hidden)
    down = getattr(module, spec.down)
    return down(hidden.to(down.weight.dtype))
