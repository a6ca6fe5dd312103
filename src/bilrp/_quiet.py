"""Library chatter on the terminal: what bilrp's commands and quiet model loads silence, and what ``--verbose`` keeps.

Loading a model offline with transformers 5.25 logs three "Skipping publisher trust check for
'kernels-community/...'" warnings (from the ``kernels`` package, the first time a model family is imported) and
draws a "Loading weights" progress bar; sentence-transformers and the hub add their own. A command's user sees
none of it: :func:`quiet_libraries` raises the loggers of those libraries to ``ERROR``, hides their progress bars
and their Python warnings for the duration of a block, and puts everything back afterwards. bilrp's own lines
(its results, its ``warning:`` lines, its progress bars, its errors) are untouched. :func:`library_output` is what
the command line wraps a command in: quiet, or with ``verbose=True`` untouched (and quiet loads inside keep the
chatter too).

This module imports nothing heavy (``bilrp --help`` imports no torch): it acts on the libraries already imported
and, through their environment variables, on those imported inside the block.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LIBRARY_LOGGERS", "quiet_libraries", "library_output", "is_verbose"]

LIBRARY_LOGGERS = ("transformers", "kernels", "huggingface_hub", "sentence_transformers", "accelerate")
"""The loggers (and Python warning modules) silenced: the libraries a model load goes through."""

_ENVIRONMENT = {"TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
"""Read by transformers when it is first imported (inside the block)."""

_WARNING_MODULES = r"(" + "|".join(LIBRARY_LOGGERS) + r")(\..*)?$"

_state = {"verbose": False}


def is_verbose() -> bool:
    """Whether the running command asked for the libraries' own output (``bilrp --verbose ...``)."""
    return _state["verbose"]


def _bars_enabled() -> bool | None:
    """Whether transformers' progress bars are on (``None`` when transformers is not imported yet)."""
    module = sys.modules.get("transformers.utils.logging")
    return None if module is None else bool(module.is_progress_bar_enabled())


def _set_bars(enabled: bool) -> None:
    module = sys.modules.get("transformers.utils.logging")
    if module is not None:
        (module.enable_progress_bar if enabled else module.disable_progress_bar)()


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Run the block with the libraries' logging below ``ERROR``, their progress bars and warnings hidden.

    Does nothing inside :func:`library_output` with ``verbose=True``. Progress bars are hidden for libraries
    imported before the block (import ``transformers.utils.logging`` first to hide the "Loading weights" bar).
    """
    if is_verbose():
        yield
        return
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    levels = [logger.level for logger in loggers]
    environment = {key: os.environ.get(key) for key in _ENVIRONMENT}
    bars = _bars_enabled()
    try:
        os.environ.update(_ENVIRONMENT)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        _set_bars(False)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=_WARNING_MODULES)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        for key, value in environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if bars is not None:
            _set_bars(bars)


@contextmanager
def library_output(verbose: bool = False) -> Iterator[None]:
    """Run a command quietly (:func:`quiet_libraries`), or with ``verbose=True`` showing the libraries' output.

    With ``verbose=True`` nothing is silenced, also by :func:`quiet_libraries` and quiet model loads inside.
    """
    previous = _state["verbose"]
    _state["verbose"] = verbose
    try:
        if verbose:
            yield
        else:
            with quiet_libraries():
                yield
    finally:
        _state["verbose"] = previous
