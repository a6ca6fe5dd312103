"""The explorer's ASGI app: the page, its static files and the JSON API (``docs/explorer.md``).

:func:`create_app` builds a FastAPI app around an :class:`~bilrp.server.explorer.Explorer`. Every API route
reads its body through :func:`read_body` (413 past ``max_body_bytes``, before the rest is read), checks it
with :mod:`bilrp.server.api` and runs the torch work through :class:`~bilrp.server.runner.WorkRunner`, off
the event loop. Before any route, :class:`~bilrp.server.policy.RequestPolicy` refuses requests addressed to
another host or sent by another site's page. Every error is answered as JSON ``{"error": "<one line>"}``: the
refusals of the policy and of the API, 404 and 405 of the router, 503 while the server shuts down, and, for a
bug, 500 (logged with its traceback; the server keeps serving). A client that disconnects before its request
is read is logged in one line.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles

from .._catalog import VERSION
from .._io import one_line
from .api import (
    CONTRAST_EXAMPLE,
    CONTRAST_FIGURE_EXAMPLE,
    EXPLAIN_EXAMPLE,
    RANK_EXAMPLE,
    RANK_FIGURE_EXAMPLE,
    ApiError,
    parse_contrast,
    parse_contrast_figure,
    parse_explain,
    parse_figure,
    parse_rank,
    parse_rank_figure,
    read_object,
)
from .explorer import CachedExplanation, Explorer, RankedResult, named_models
from .policy import RequestPolicy
from .runner import WorkRunner
from .settings import ServerSettings

if TYPE_CHECKING:
    from ..models import SimilarityModel
    from ..ranking import DocumentIndex

__all__ = ["create_app", "read_body", "error_response", "file_name", "STATIC_FOLDER", "ROUTES"]

STATIC_FOLDER = Path(__file__).parent / "static"
"""The page's HTML, CSS and JavaScript, shipped in the package (no CDN)."""
ROUTES = (
    "GET /, GET /api/health, POST /api/explain, /api/figure, /api/rank, /api/rank/figure, /api/contrast, "
    "/api/contrast/figure"
)
"""The routes, for the 404 message."""
MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml", "json": "application/json"}

logger = logging.getLogger("bilrp.server")
Handler = Callable[[Request, float], Awaitable[Response]]


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """``{"error": message}`` with ``status`` (the message made one line)."""
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


def _json(text: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(text.encode("utf-8"), media_type="application/json", headers=headers)


def _notes(notes: list[str]) -> dict[str, str]:
    """The ``X-Bilrp-Notes`` header: the notes as a JSON list (ASCII, non-ASCII text escaped)."""
    return {"X-Bilrp-Notes": json.dumps(notes)}


def file_name(*parts: str) -> str:
    """A download's file name from ``parts`` (document ids kept readable; other characters as ``_``)."""
    return "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip("._")[:60] or "_" for part in parts)


def _file(content: bytes, format_: str, name: str, notes: list[str] | None = None) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{name}.{format_}"'}
    if notes is not None:
        headers.update(_notes(notes))
    return Response(content, media_type=MEDIA_TYPES[format_], headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 :class:`ApiError` as soon as it is known to exceed ``limit`` bytes.

    A ``Content-Length`` over the limit is refused before anything is read; a body without one (chunked) is
    read until it passes the limit, and no further.
    """
    declared = request.headers.get("content-length")
    advice = "send shorter texts (the explorer takes a pair of texts, not files)"
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, f"the Content-Length header {declared!r} is not a whole number")
        if int(declared) > limit:
            size = int(declared)
            raise ApiError(413, f"the body has {size} bytes, more than this server's limit of {limit}: {advice}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is larger than this server's limit of {limit} bytes: {advice}")
        chunks.append(chunk)
    return b"".join(chunks)


def _guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` as an endpoint that answers every failure as one-line JSON (500 for a bug)."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request, time.monotonic())
        except ApiError as error:
            return error_response(error.status, error.message)
        except ClientDisconnect:  # nobody reads the answer: one line in the log, no traceback
            logger.warning(
                "bilrp explorer: the client of %s %s disconnected before sending its whole request (nothing computed)",
                request.method,
                request.url.path,
            )
            return error_response(400, "the client disconnected before sending its whole request")
        except Exception as error:  # a bug: answer, log, keep serving
            logger.exception("unexpected error in %s %s", request.method, request.url.path)
            return error_response(
                500,
                f"internal error ({type(error).__name__}): the server keeps running; report it with the request",
            )

    endpoint.__name__ = handler.__name__
    return endpoint


class _Routes:
    """The API's handlers over one explorer and its work runner."""

    def __init__(self, explorer: Explorer, runner: WorkRunner) -> None:
        self.explorer, self.runner = explorer, runner
        self.settings = explorer.settings

    async def _object(self, request: Request, example: str) -> dict[str, Any]:
        return read_object(await read_body(request, self.settings.max_body_bytes), example)

    async def health(self, request: Request, started: float) -> Response:
        return JSONResponse(self.explorer.health())

    async def _explanation(self, request, started: float) -> tuple[CachedExplanation, bool]:
        found = self.explorer.cached(request)
        if found is not None:
            return found, True
        explanation, notes = await self.runner.run(lambda: self.explorer.explain(request), started)
        entry = CachedExplanation(explanation, notes)
        self.explorer.remember(request, entry)
        return entry, False

    async def explain(self, request: Request, started: float) -> Response:
        data = await self._object(request, EXPLAIN_EXAMPLE)
        asked = parse_explain(data, self.explorer.names, self.settings)
        entry, cached = await self._explanation(asked, started)
        elapsed = round(time.monotonic() - started, 4)
        return _json(self.explorer.explain_payload(entry, asked, elapsed, cached))

    async def figure(self, request: Request, started: float) -> Response:
        data = await self._object(request, EXPLAIN_EXAMPLE[:-1] + ', "kind": "pairs", "format": "png"}')
        asked = parse_figure(data, self.explorer.names, self.settings)
        entry, _ = await self._explanation(asked.explain, started)

        def draw() -> bytes:
            return self.explorer.figure(entry.explanation, asked)

        content, _ = await self.runner.run(draw, started, "the figure")
        return _file(content, asked.format, "explanation")

    async def rank(self, request: Request, started: float) -> Response:
        self.explorer.require_index()
        asked = parse_rank(await self._object(request, RANK_EXAMPLE), self.settings)

        def job():
            ranking = self.explorer.rank(asked)
            return ranking, ranking.to_json()

        (ranking, text), notes = await self.runner.run(job, started, "the ranking")
        self.explorer.remember_ranking(asked.query, ranking, notes)
        return _json(text, _notes(notes))

    async def rank_figure(self, request: Request, started: float) -> Response:
        self.explorer.require_index()
        asked = parse_rank_figure(await self._object(request, RANK_FIGURE_EXAMPLE), self.settings)
        self.explorer.check_documents(asked.document_id)
        result = self.explorer.ranked(asked)
        if result is None:  # in no recent /api/rank answer: explained alone, as /api/rank explains it
            explanation, notes = await self.runner.run(lambda: self.explorer.rank_one(asked), started)
            result = RankedResult(explanation, None, notes)
            self.explorer.remember_result(asked.query, result)
        content, _ = await self.runner.run(lambda: self.explorer.ranked_file(result, asked), started, "the figure")
        return _file(content, asked.format, file_name("ranking", asked.document_id), result.notes)

    async def contrast(self, request: Request, started: float) -> Response:
        self.explorer.require_index()
        asked = parse_contrast(await self._object(request, CONTRAST_EXAMPLE), self.settings)
        self.explorer.check_documents(asked.a, asked.b)

        def job():
            difference = self.explorer.contrast(asked)
            return difference, difference.to_json()

        (difference, text), notes = await self.runner.run(job, started, "the contrast")
        self.explorer.remember_contrast(asked, difference, notes)
        return _json(text, _notes(notes))

    async def contrast_figure(self, request: Request, started: float) -> Response:
        self.explorer.require_index()
        asked = parse_contrast_figure(await self._object(request, CONTRAST_FIGURE_EXAMPLE), self.settings)
        contrast = asked.contrast
        self.explorer.check_documents(contrast.a, contrast.b)
        found = self.explorer.contrasted(contrast)
        if found is None:
            difference, notes = await self.runner.run(lambda: self.explorer.contrast(contrast), started, "the contrast")
            self.explorer.remember_contrast(contrast, difference, notes)
        else:
            difference, notes = found
        content, _ = await self.runner.run(
            lambda: self.explorer.contrast_file(difference, asked), started, "the figure"
        )
        return _file(content, asked.format, file_name("contrast", contrast.a, "vs", contrast.b), notes)


def _closing(runner: WorkRunner):
    """The app's lifespan: accept work when the server starts, stop it (and the worker threads) when it shuts
    down (``bilrp serve`` stops the work earlier, as soon as the shutdown begins).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner.open()
        try:
            yield
        finally:
            runner.stop()

    return lifespan


async def _page(request: Request) -> Response:
    page = STATIC_FOLDER / "index.html"
    if not page.is_file():
        return error_response(404, f"the explorer page is missing ({page}): reinstall bilrp")
    return FileResponse(page, media_type="text/html")


async def _http_error(request: Request, error: Exception) -> Response:
    """404 and 405 of the router and the static files, as one-line JSON."""
    status = error.status_code if isinstance(error, HTTPException) else 500
    headers = getattr(error, "headers", None)
    if status == 404:
        message = f"no such page or route {request.url.path!r}: the explorer has {ROUTES}"
    elif status == 405:
        allowed = ", ".join(sorted((headers or {}).get("Allow", "another method").split(", ")))
        message = f"{request.method} is not allowed on {request.url.path}: use {allowed}"
    else:
        message = str(getattr(error, "detail", "")) or "the request failed"
    return error_response(status, message, headers)


def create_app(
    models: SimilarityModel | Mapping[str, SimilarityModel],
    index: DocumentIndex | None = None,
    settings: ServerSettings | None = None,
) -> FastAPI:
    """The explorer's ASGI app: serve it with uvicorn (``bilrp serve`` does).

    Parameters
    ----------
    models
        A :class:`~bilrp.SimilarityModel` or ``{name: model}`` (several give the page a model selector); the
        first is the default.
    index
        A :class:`~bilrp.DocumentIndex` for ``/api/rank`` and ``/api/contrast``, or ``None``.
    settings
        The limits and the allowed hosts and origins (:class:`~bilrp.server.ServerSettings`); default
        ``ServerSettings()``.

    Returns
    -------
    fastapi.FastAPI
        The app; ``app.state.explorer`` is its :class:`~bilrp.server.explorer.Explorer`, ``app.state.runner``
        its :class:`~bilrp.server.runner.WorkRunner` (``runner.stop()`` answers the running requests with 503
        and stops their work: call it when your server begins to shut down).

    """
    settings = settings or ServerSettings()
    explorer = Explorer(named_models(models), index, settings)
    runner = WorkRunner(settings.workers, settings.timeout_s)
    app = FastAPI(
        title="bilrp explorer",
        version=VERSION,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_closing(runner),
    )
    app.state.explorer, app.state.runner = explorer, runner
    routes = _Routes(explorer, runner)
    app.add_route("/", _page, methods=["GET"])
    app.add_route("/api/health", _guarded(routes.health), methods=["GET"])
    for name in ("explain", "figure", "rank", "rank_figure", "contrast", "contrast_figure"):
        app.add_route(f"/api/{name.replace('_', '/')}", _guarded(getattr(routes, name)), methods=["POST"])
    app.mount("/static", StaticFiles(directory=STATIC_FOLDER, check_dir=False), name="static")
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(RequestPolicy, allowed_hosts=settings.allowed_hosts, allowed_origins=settings.allowed_origins)
    return app
