"""Which corpus command runs which unit of work: the one table of the commands that take ``--engine``.

The units live with their commands (a lower layer never imports a higher one); this table names them as
``module:class`` strings, so reading it imports nothing. ``tests/test_ray_engine.py`` checks that every
command named here takes ``--engine ray`` and that every unit imports, and ``docs/scaling.md`` lists them.
"""

from __future__ import annotations

import importlib

from .work import WorkUnit

__all__ = ["COMMAND_UNITS", "unit_class"]

COMMAND_UNITS: dict[tuple[str, ...], str] = {
    ("evaluate", "sts"): "bilrp.evaluation.units:EncodeTexts",
    ("evaluate", "perturbation"): "bilrp.evaluation.units:PerturbPairs",
    ("evaluate", "conservation"): "bilrp.evaluation.units:ConservePairs",
    ("analyze", "pos"): "bilrp.analysis.corpus:ExplainPairs",
    ("analyze", "multilingual"): "bilrp.analysis.corpus:ExplainPairs",
    ("analyze", "quantiles"): "bilrp.analysis.corpus:ExplainPairs",
    ("index",): "bilrp.ranking.index_build:FactorTexts",
}
"""``bilrp`` command words -> the unit of work it runs with either engine (``module:class``)."""


def unit_class(command: tuple[str, ...]) -> type[WorkUnit]:
    """The unit-of-work class of a command of :data:`COMMAND_UNITS` (imported now)."""
    module, name = COMMAND_UNITS[command].split(":")
    unit = getattr(importlib.import_module(module), name)
    if not (isinstance(unit, type) and issubclass(unit, WorkUnit)):
        raise TypeError(f"{COMMAND_UNITS[command]} is not a WorkUnit")
    return unit
