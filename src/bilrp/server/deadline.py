"""A cooperative deadline for work running in a thread: it stops at the next module call once time is up.

A thread cannot be killed from outside, and a long explanation runs in torch for most of its time. Every
bilrp engine step runs the model's modules, so a check at the start of each module call stops an
explanation within one module's work of its deadline. The check is a process-wide forward pre-hook of
``torch.nn`` (``register_module_forward_pre_hook``), installed while at least one deadline is active and
removed after the last: no model is modified (no hook on any module, no attribute), and threads without a
deadline pass the check at the cost of one thread-local lookup.

Time running out raises :class:`DeadlineExceeded`, a ``BaseException`` like ``KeyboardInterrupt``, so that no
``except Exception`` on the way swallows it; bilrp restores the model exactly on such an exception
(``docs/guarantees.md``, *Model restored exactly*). The same check stops the work early when the ``stop``
event of its deadline is set (the server shutting down): it raises :class:`WorkCancelled`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["DeadlineExceeded", "WorkCancelled", "deadline", "check_deadline", "hook_installed"]


class DeadlineExceeded(BaseException):
    """The work of this thread ran past its deadline (raised at the next module call or check)."""


class WorkCancelled(BaseException):
    """The work of this thread was stopped before its deadline, by its ``stop`` event (the server shutting
    down): raised at the next module call or check.
    """


_LOCAL = threading.local()
_INSTALL_LOCK = threading.Lock()
_ACTIVE_DEADLINES = 0
_HANDLE = None


def check_deadline() -> None:
    """Raise :class:`DeadlineExceeded` when this thread's deadline has passed, :class:`WorkCancelled` when its
    stop event is set (nothing without a deadline).
    """
    ends = getattr(_LOCAL, "ends", None)
    if ends is None:
        return
    stop = _LOCAL.stop
    if stop is not None and stop.is_set():
        raise WorkCancelled("the work was stopped")
    if time.monotonic() > ends:
        raise DeadlineExceeded(f"the deadline passed {time.monotonic() - ends:.2f} s ago")


def _module_pre_hook(module, args) -> None:
    check_deadline()


def hook_installed() -> bool:
    """Whether the process-wide check is installed now (while some thread has a deadline)."""
    return _HANDLE is not None


def _acquire_hook() -> None:
    global _ACTIVE_DEADLINES, _HANDLE
    with _INSTALL_LOCK:
        _ACTIVE_DEADLINES += 1
        if _HANDLE is None:
            from torch.nn.modules.module import register_module_forward_pre_hook

            _HANDLE = register_module_forward_pre_hook(_module_pre_hook)


def _release_hook() -> None:
    global _ACTIVE_DEADLINES, _HANDLE
    with _INSTALL_LOCK:
        _ACTIVE_DEADLINES -= 1
        if _ACTIVE_DEADLINES == 0 and _HANDLE is not None:
            _HANDLE.remove()
            _HANDLE = None


@contextmanager
def deadline(ends: float, stop: threading.Event | None = None) -> Iterator[None]:
    """Stop this thread's module calls once ``time.monotonic()`` passes ``ends`` or ``stop`` is set (checked on
    entry too).

    Parameters
    ----------
    ends
        The deadline, on the ``time.monotonic()`` clock.
    stop
        An event that stops the work before its deadline when set (from any thread), or ``None``.

    Raises
    ------
    DeadlineExceeded
        At the first module call (or :func:`check_deadline`) after ``ends``.
    WorkCancelled
        At the first module call (or :func:`check_deadline`) after ``stop`` was set.

    """
    if getattr(_LOCAL, "ends", None) is not None:
        raise RuntimeError("this thread already runs under a deadline")
    _acquire_hook()
    _LOCAL.ends, _LOCAL.stop = ends, stop
    try:
        check_deadline()
        yield
    finally:
        _LOCAL.ends, _LOCAL.stop = None, None
        _release_hook()
