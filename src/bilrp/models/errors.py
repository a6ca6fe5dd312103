""":class:`ModelLoadError` and the helpers that word its messages.

This module is the bottom layer of :mod:`bilrp.models`: it imports nothing from bilrp.
"""

from __future__ import annotations

__all__ = ["ModelLoadError", "type_name", "first_line"]


class ModelLoadError(ValueError):
    """A model name or path that cannot be loaded here."""


def type_name(obj) -> str:
    """The type of ``obj`` for a message: ``int`` for builtins, else ``module.QualifiedName``."""
    kind = type(obj)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when the message is empty)."""
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__
