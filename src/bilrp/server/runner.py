"""Running the server's torch work off the event loop: in worker threads, a bounded number at once, under a
deadline, with the warnings it issues kept as notes for the user.

:meth:`WorkRunner.run` hands one job to a thread pool of ``workers`` threads (the bound on concurrent work;
later jobs queue) and waits for it at most until the request's deadline. Past the deadline the request is
answered with 504 at once, a queued job is dropped, and a running one stops at its next module call
(:mod:`bilrp.server.deadline`), so it does not go on using the CPU. A ``ValueError`` raised by bilrp (a user
error, as on the command line) or a :class:`~bilrp.CertificateError` (relevance refused) becomes a 422
:class:`~bilrp.server.api.ApiError`. :meth:`WorkRunner.stop` (the server shutting down) answers the waiting
requests with 503 at once and stops the running jobs at their next module call, so that the server can exit
within seconds instead of after its longest job.
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .._io import one_line
from .api import ApiError
from .deadline import DeadlineExceeded, WorkCancelled, deadline

__all__ = ["WorkRunner"]

T = TypeVar("T")

_WARNINGS_LOCK = threading.Lock()
"""``warnings.catch_warnings`` changes process-wide state: one job records warnings at a time."""


class WorkRunner:
    """A pool of worker threads that runs jobs under a deadline and records their warnings.

    Parameters
    ----------
    workers
        Jobs running at once.
    timeout_s
        The limit of one request, waiting for a worker included.

    """

    def __init__(self, workers: int, timeout_s: float) -> None:
        self.workers, self.timeout_s = workers, timeout_s
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._stopping = False
        self._jobs: set[threading.Event] = set()  # the stop events of the jobs submitted and not yet finished

    def _started_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="bilrp-explorer")
            return self._pool

    def close(self) -> None:
        """Let the worker threads end once their jobs did (deadlines bound that); a later :meth:`run` starts
        new ones, so an app can be served again after its server stopped.
        """
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def open(self) -> None:
        """Accept jobs (again, after :meth:`stop`): the server is starting."""
        with self._pool_lock:
            self._stopping = False

    def stop(self) -> None:
        """The server is shutting down: refuse new jobs and stop the submitted ones, each answered with 503.

        A queued job never starts; a running one stops at its next module call (:mod:`~bilrp.server.deadline`).
        """
        with self._pool_lock:
            self._stopping = True
            jobs = list(self._jobs)
        for stop in jobs:
            stop.set()
        self.close()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (and :meth:`open` not since)."""
        return self._stopping

    def _register(self) -> threading.Event:
        """A new job's stop event, set already when the runner is stopping."""
        stop = threading.Event()
        with self._pool_lock:
            self._jobs.add(stop)
            if self._stopping:
                stop.set()
        return stop

    async def run(self, job: Callable[[], T], started: float, what: str = "the explanation") -> tuple[T, list[str]]:
        """Run ``job`` in a worker thread; its result and the one-line warnings it issued.

        Parameters
        ----------
        job
            The work (no arguments).
        started
            When the request arrived (``time.monotonic()``): the deadline is ``started + timeout_s``.
        what
            What the job computes, for the 504 message.

        Raises
        ------
        ApiError
            504 past the deadline, 422 for a ``ValueError`` or ``CertificateError`` of the job, 503 when the
            server is shutting down.

        """
        if self._stopping:
            raise self.stopping_error(what)
        ends, stop = started + self.timeout_s, self._register()
        try:
            future = self._started_pool().submit(self._call, job, ends, what, stop)
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), max(ends - time.monotonic(), 0.0))
            except TimeoutError:
                future.cancel()  # a job still queued never starts; a running one stops at its next module call
                raise self.timeout_error(what) from None
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if stop.is_set() and future.cancelled() and (task is None or not task.cancelling()):
                    raise self.stopping_error(what) from None  # a queued job dropped by stop()
                stop.set()  # the request was cancelled: its job stops at its next module call
                raise
        finally:
            with self._pool_lock:
                self._jobs.discard(stop)

    def timeout_error(self, what: str) -> ApiError:
        """The 504 answer of a request that ran past the limit."""
        return ApiError(
            504,
            f"{what} took longer than {self.timeout_s:g} s: give shorter texts or granularity word or sentence, "
            "or start the server with a larger --timeout",
        )

    @staticmethod
    def stopping_error(what: str) -> ApiError:
        """The 503 answer of a request whose work the server's shutdown stopped (or that came during it)."""
        return ApiError(503, f"the server is shutting down, so {what} was not computed: retry once it is back")

    def _call(self, job: Callable[[], T], ends: float, what: str, stop: threading.Event) -> tuple[T, list[str]]:
        """Run ``job`` in this thread under the deadline ``ends`` and the event ``stop``, recording its warnings."""
        from ..certificate import CertificateError

        with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with deadline(ends, stop):
                    result = job()
            except DeadlineExceeded:
                raise self.timeout_error(what) from None
            except WorkCancelled:
                raise self.stopping_error(what) from None
            except (ValueError, CertificateError) as error:
                raise ApiError(422, one_line(error) or type(error).__name__) from None
        notes = [one_line(item.message) for item in caught if issubclass(item.category, UserWarning)]
        return result, list(dict.fromkeys(notes))
