"""The error raised for bad evaluation arguments, and the checks that raise it."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["EvaluationError", "check_positive", "check_choices", "check_fraction"]


class EvaluationError(ValueError):
    """A bad argument to an evaluation (one line: what was wrong and what to do)."""


def check_positive(name: str, value: int | None, allow_none: bool = False) -> None:
    """Raise :class:`EvaluationError` unless ``value`` is a positive integer (or ``None`` when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EvaluationError(f"{name} must be a positive integer, got {value!r}")


def check_fraction(name: str, value: float) -> None:
    """Raise :class:`EvaluationError` unless ``0 < value <= 1``."""
    if not 0 < value <= 1:
        raise EvaluationError(f"{name} must be in (0, 1], got {value!r}")


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
