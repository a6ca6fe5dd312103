"""The error raised for bad evaluation arguments, and the checks that raise it.

The numeric checks apply the rules of :mod:`bilrp._validation` (the ones the command line parses with) and
raise them as :class:`EvaluationError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .. import _validation

__all__ = [
    "EvaluationError",
    "FRACTION",
    "check_positive",
    "check_non_negative",
    "check_positive_number",
    "check_fraction",
    "check_choices",
]

_T = TypeVar("_T")

FRACTION = _validation.fraction_rule(0.0, 1.0, "right")
"""The fractions evaluations take (perturbation ``step``, ground-truth ``holdout``): ``0 < value <= 1``."""


class EvaluationError(ValueError):
    """A bad argument to an evaluation (one line: what was wrong and what to do)."""


def _as_evaluation_error(check: Callable[..., _T], *args: Any) -> _T:
    try:
        return check(*args)
    except ValueError as error:
        raise EvaluationError(str(error)) from None


def check_positive(name: str, value: Any, allow_none: bool = False) -> int | None:
    """``value`` if it is a positive whole number (or ``None`` when allowed); else :class:`EvaluationError`."""
    check = _validation.optional_positive_int if allow_none else _validation.positive_int
    return _as_evaluation_error(check, name, value)


def check_non_negative(name: str, value: Any) -> int:
    """``value`` if it is a whole number >= 0; else :class:`EvaluationError`."""
    return _as_evaluation_error(_validation.non_negative_int, name, value)


def check_positive_number(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite number > 0; else :class:`EvaluationError`."""
    return _as_evaluation_error(_validation.positive_number, name, value)


def check_fraction(name: str, value: Any) -> float:
    """``value`` if it is a :data:`FRACTION` (``0 < value <= 1``); else :class:`EvaluationError`."""
    return _as_evaluation_error(FRACTION.check, name, value)


def check_choices(name: str, values: Iterable[str], choices: Iterable[str]) -> list[str]:
    """``values`` as a list, or :class:`EvaluationError` naming the first value not among ``choices``."""
    values, choices = list(values), list(choices)
    if not values:
        raise EvaluationError(f"{name} is empty: choose at least one of {', '.join(choices)}")
    for value in values:
        if value not in choices:
            raise EvaluationError(
                f"unknown {name[:-1] if name.endswith('s') else name} {value!r}: choose from {', '.join(choices)}"
            )
    if len(set(values)) != len(values):
        raise EvaluationError(f"{name} lists a value twice: {', '.join(values)}")
    return values
