"""Running the server's torch work off the event loop: in worker threads, a bounded number at once, under a
deadline, with the warnings it issues kept as notes for the user.

:meth:`WorkRunner.run` hands one job to a thread pool of ``workers`` threads (the bound on concurrent work;
later jobs queue) and waits for it at most until the request's deadline. Past the deadline the request is
answered with 504 at once, a queued job is dropped, and a running one stops at its next module call
(:mod:`bilrp.server.deadline`), so it does not go on using the CPU. A ``ValueError`` raised by bilrp (a user
error, as on the command line) becomes a 422 :class:`~bilrp.server.api.ApiError`.
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
from .deadline import DeadlineExceeded, deadline

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
            504 past the deadline, 422 for a ``ValueError`` of the job.

        """
        ends = started + self.timeout_s
        future = self._started_pool().submit(self._call, job, ends, what)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), max(ends - time.monotonic(), 0.0))
        except TimeoutError:
            future.cancel()  # a job still queued never starts; a running one stops at its next module call
            raise self.timeout_error(what) from None

    def timeout_error(self, what: str) -> ApiError:
        """The 504 answer of a request that ran past the limit."""
        return ApiError(
            504,
            f"{what} took longer than {self.timeout_s:g} s: give shorter texts or granularity word or sentence, "
            "or start the server with a larger --timeout",
        )

    def _call(self, job: Callable[[], T], ends: float, what: str) -> tuple[T, list[str]]:
        """Run ``job`` in this thread under the deadline ``ends``, recording its warnings."""
        with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with deadline(ends):
                    result = job()
            except DeadlineExceeded:
                raise self.timeout_error(what) from None
            except ValueError as error:
                raise ApiError(422, one_line(error) or type(error).__name__) from None
        notes = [one_line(item.message) for item in caught if issubclass(item.category, UserWarning)]
        return result, list(dict.fromkeys(notes))
