"""Checks of numeric arguments, with ONE definition of each acceptance rule for the Python API and the CLI.

Each check returns the value as ``int`` or ``float``, or raises :class:`ValueError` with one line that names
the argument, the value given and what is wanted::

    >>> positive_int("batch_size", -1)
    Traceback (most recent call last):
    ValueError: batch_size must be a positive whole number, not -1

The command line's argparse types (:mod:`bilrp._cli_support`) parse text with the same :class:`Rule`
objects. This module is the bottom layer: it imports nothing from bilrp and nothing heavy.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Refusal",
    "Rule",
    "POSITIVE_INT",
    "NON_NEGATIVE_INT",
    "POSITIVE_NUMBER",
    "SEED",
    "fraction_rule",
    "positive_int",
    "non_negative_int",
    "optional_positive_int",
    "positive_number",
    "seed",
    "fraction",
]


class Refusal(Exception):
    """Mixin of bilrp's refusals that are not ``ValueError``s (the certificate's, an unsupported module).

    The command line, the explorer and other front ends report any ``Refusal`` as one line, as they report bad
    input: the message already names the module at fault and says what to do.
    """

Closed = Literal["both", "left", "right", "neither"]
"""Which ends belong to an interval (as in ``pandas.Interval``)."""


@dataclass(frozen=True)
class Rule:
    """Which numbers an argument accepts.

    Parameters
    ----------
    kind
        ``int`` (whole numbers: ints and numpy integers, not bools or floats) or ``float`` (finite real
        numbers, not bools).
    accepts
        Whether a number of that kind is allowed.
    wanted
        What the rule wants, for messages: ``"a positive whole number"``.

    """

    kind: type[int] | type[float]
    accepts: Callable[[Any], bool]
    wanted: str

    def admit(self, value: Any) -> int | float | None:
        """``value`` as ``kind`` when the rule accepts it, else ``None``."""
        if isinstance(value, bool):
            return None
        if self.kind is int:
            try:
                number: int | float = operator.index(value)
            except TypeError:
                return None
        elif isinstance(value, numbers.Real) and math.isfinite(value):
            number = float(value)
        else:
            return None
        return number if self.accepts(number) else None

    def parse(self, text: str) -> int | float | None:
        """The number written in ``text`` when the rule accepts it, else ``None`` (for the command line)."""
        try:
            return self.admit(self.kind(text))
        except ValueError:
            return None

    def check(self, name: str, value: Any) -> Any:
        """``value`` as ``kind``; raises :class:`ValueError` naming ``name``, the value and :attr:`wanted`."""
        number = self.admit(value)
        if number is None:
            raise ValueError(f"{name} must be {self.wanted}, not {value!r}")
        return number


POSITIVE_INT = Rule(int, lambda value: value >= 1, "a positive whole number")
NON_NEGATIVE_INT = Rule(int, lambda value: value >= 0, "a whole number >= 0")
POSITIVE_NUMBER = Rule(float, lambda value: value > 0, "a positive number")
SEED = Rule(int, lambda value: 0 <= value < 2**32, "a whole number from 0 to 4294967295")

_CLOSED: dict[str, tuple[str, str, Callable[[float, float], bool], Callable[[float, float], bool]]] = {
    "both": ("[", "]", operator.le, operator.le),
    "left": ("[", ")", operator.le, operator.lt),
    "right": ("(", "]", operator.lt, operator.le),
    "neither": ("(", ")", operator.lt, operator.lt),
}


def fraction_rule(low: float = 0.0, high: float = 1.0, closed: Closed = "left") -> Rule:
    """The rule of numbers from ``low`` to ``high``; ``closed`` says which ends belong (default ``[low, high)``)."""
    if closed not in _CLOSED:
        raise ValueError(f"closed must be one of {', '.join(_CLOSED)}, not {closed!r}")
    opening, closing, above, below = _CLOSED[closed]
    return Rule(
        float,
        lambda value: above(low, value) and below(value, high),
        f"a fraction in {opening}{low:g}, {high:g}{closing}",
    )


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is a whole number >= 1; else :class:`ValueError` naming ``name``."""
    return POSITIVE_INT.check(name, value)


def non_negative_int(name: str, value: Any) -> int:
    """``value`` if it is a whole number >= 0; else :class:`ValueError` naming ``name``."""
    return NON_NEGATIVE_INT.check(name, value)


def optional_positive_int(name: str, value: Any) -> int | None:
    """``None``, or ``value`` if it is a whole number >= 1; else :class:`ValueError` naming ``name``."""
    return None if value is None else POSITIVE_INT.check(name, value)


def positive_number(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite number > 0; else :class:`ValueError` naming ``name``."""
    return POSITIVE_NUMBER.check(name, value)


def seed(name: str, value: Any) -> int:
    """``value`` if it is a whole number usable as a random seed (0 to 2**32 - 1, as numpy wants)."""
    return SEED.check(name, value)


def fraction(name: str, value: Any, low: float = 0.0, high: float = 1.0, closed: Closed = "left") -> float:
    """``value`` as a float if it lies between ``low`` and ``high`` (ends as ``closed`` says; default ``[0, 1)``).

    Raises :class:`ValueError` naming ``name``, the value and the interval, e.g.
    ``threshold must be a fraction in [0, 1), not 1.5``.
    """
    return fraction_rule(low, high, closed).check(name, value)
