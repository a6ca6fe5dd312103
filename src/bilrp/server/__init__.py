"""``bilrp serve``: a local web app to explore explanations, on FastAPI and uvicorn (the ``serve`` extra).

:func:`create_app` builds the ASGI app (:mod:`~bilrp.server.app`) over an
:class:`~bilrp.server.explorer.Explorer`; :mod:`~bilrp.server.api` checks the requests,
:mod:`~bilrp.server.runner` runs the torch work in threads under :mod:`~bilrp.server.deadline`,
:mod:`~bilrp.server.policy` answers only requests addressed to the server from its own page, and
:mod:`~bilrp.server.cli` adds ``bilrp serve``. The package is the top layer: nothing else in bilrp imports
it. ``docs/explorer.md`` documents the page, the API and the security note.
"""

from typing import TYPE_CHECKING

from .._catalog import lazy_exports

# The imports below are for type checkers and the API docs, which cannot run __getattr__.
# ruff: noqa: F401
if TYPE_CHECKING:  # the names of _EXPORTS, statically
    from .api import ApiError
    from .app import create_app
    from .deadline import DeadlineExceeded
    from .policy import RequestPolicy
    from .settings import ServerSettings

_EXPORTS = {
    "create_app": ".app:create_app",
    "ServerSettings": ".settings:ServerSettings",
    "ApiError": ".api:ApiError",
    "DeadlineExceeded": ".deadline:DeadlineExceeded",
    "RequestPolicy": ".policy:RequestPolicy",
}
"""Public name -> ``"module:attribute"``; each module is imported when one of its names is first used."""

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
