"""``bilrp serve``: start the explorer, a local web page that explains pairs of texts (and search results).

``bilrp serve`` loads the model once, listens on ``http://127.0.0.1:8000/`` and prints that address;
``--index INDEX`` adds the search box. Every check that needs no model runs first: the arguments, the index
manifest, FastAPI and uvicorn being installed, and the address being free (the socket is bound before the
model loads), each refused as one line with exit status 2 by the main CLI. A host other than loopback is
warned about (no authentication). The server answers only requests addressed to it and sent by its own page
or by a client that is not a web page (:mod:`bilrp.server.policy`); ``--allow-host`` and ``--allow-origin``
add names and origins. Ctrl-C (or SIGTERM) stops the server cleanly within seconds: the running requests
are answered 503 and their work stops at its next module call, and the command exits with status 0.
Registering imports nothing heavy.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import signal
import socket
import sys
import warnings
from collections.abc import Callable
from typing import Any

from .._catalog import DEFAULT_MODEL
from .._cli_support import add_rules_argument, load_model, number_parser, positive_number, rules_options
from .._validation import Rule

__all__ = ["register", "run", "port_number", "is_loopback", "bind_socket", "url_of"]

port_number = number_parser(Rule(int, lambda value: 0 <= value <= 65535, "a port from 0 to 65535 (0: a free one)"))
"""The argparse type of ``--port``."""
NEEDS_EXTRA = "bilrp serve needs FastAPI and uvicorn: pip install 'bilrp[serve]' (missing: {name})"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``bilrp`` command line (cheap: nothing heavy is imported)."""
    parser = subparsers.add_parser(
        "serve",
        help="start the explorer: a local web page that explains pairs of texts and search results",
        description=(
            "Start the explorer on http://HOST:PORT/: a web page with two text fields that shows the token-pair "
            "relevance of their similarity, and with --index a search box. The model loads once; the page, "
            "its files and the JSON API (docs/explorer.md) are served by uvicorn until Ctrl-C."
        ),
        epilog=(
            "Security: the explorer has no authentication, TLS or rate limit. It binds to loopback and answers only "
            "requests addressed to localhost, 127.0.0.1, [::1] or the address it listens on, and only JSON from "
            "its own page or from clients that send no Origin (curl); before exposing it with --host, put an "
            "authenticating TLS reverse proxy with request-size and rate limits in front of it (docs/explorer.md)."
        ),
    )
    parser.add_argument(
        "--model",
        action="append",
        metavar="NAME_OR_PATH",
        help=f"a model to serve (repeatable: the page gets a model selector; the first is the default; default "
        f"{DEFAULT_MODEL}, or with --index the model the index was built with)",
    )
    parser.add_argument("--index", metavar="INDEX", help="a document index built by bilrp index (adds the search box)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=port_number, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--timeout",
        type=positive_number,
        default=30.0,
        metavar="SECONDS",
        help="stop a request that takes longer, answering 504 (default 30)",
    )
    add_rules_argument(parser, default=None)
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="also answer requests addressed to HOST (NAME: any port, NAME:PORT; repeatable), e.g. the name a "
        "reverse proxy forwards; '*' answers any host (only behind a proxy that checks it)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also answer API calls of the web page at ORIGIN (scheme://host[:port]; repeatable), e.g. "
        "https://explorer.example behind a TLS proxy",
    )
    parser.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------- checks
def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), or a one-line ``ValueError``."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise ValueError(f"cannot listen on {host}: {error.strerror}; give an address such as 127.0.0.1") from None
    listener = socket.socket(family, kind, protocol)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as error:
        listener.close()
        raise ValueError(
            f"cannot listen on {host}:{port}: {error.strerror or error}; choose another --port (0 picks a free one)"
        ) from None
    return listener


def url_of(listener: socket.socket, host: str) -> str:
    """The page's address for a bound socket (IPv6 hosts in brackets)."""
    port = listener.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _check_installed() -> None:
    for name in ("fastapi", "uvicorn"):
        try:
            __import__(name)
        except ModuleNotFoundError:
            raise ValueError(NEEDS_EXTRA.format(name=name)) from None


def _model_names(args: argparse.Namespace) -> list[str]:
    names = list(args.model or [])
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"--model {repeated[0]} is given twice: name each model once")
    return names


# ---------------------------------------------------------------------------------------------- run
def _load(args: argparse.Namespace, names: list[str], manifest: dict[str, Any] | None):
    """The models by name and the opened index (the index's model first)."""
    models = {}
    index = None
    if manifest is not None:
        from ..ranking import DocumentIndex
        from ..ranking.cli import index_model

        wanted = argparse.Namespace(model=names[0] if names else None, pooling=None, similarity=None)
        first = index_model(wanted, manifest)
        index = DocumentIndex.open(args.index, first, rules=args.rules)
        models[names[0] if names else str(manifest.get("source") or first.name)] = first
    for name in names:
        if name not in models:
            models[name] = load_model(name)
    return models or {DEFAULT_MODEL: load_model(DEFAULT_MODEL)}, index


def _announcing_server(config, url: str, on_shutdown: Callable[[], None]):
    """A uvicorn server that prints ``bilrp explorer: URL`` once it listens and calls ``on_shutdown`` as soon
    as its shutdown begins (before it waits for the running requests).
    """
    import uvicorn

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                print(f"bilrp explorer: {url}", flush=True)
                print("bilrp explorer: Ctrl-C stops it", file=sys.stderr, flush=True)

        async def shutdown(self, sockets=None) -> None:
            on_shutdown()
            await super().shutdown(sockets=sockets)

    return AnnouncingServer(config)


def _bound_host(host: str, listener: socket.socket) -> list[str]:
    """The ``allowed_hosts`` entry of the address the server listens on (none for a wildcard such as 0.0.0.0,
    whose connections are answered under the address they came to).
    """
    try:
        if ipaddress.ip_address(host.strip("[]")).is_unspecified:
            return []
    except ValueError:
        pass
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return [f"{shown}:{listener.getsockname()[1]}"]


def _serve(server, listener: socket.socket) -> None:
    """Run ``server`` on ``listener`` until Ctrl-C or SIGTERM, which stop it cleanly (no exception)."""
    stops: list[int] = []
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda number, frame: stops.append(number)) for sig in handled}
    try:
        server.run(sockets=[listener])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        listener.close()


def run(args: argparse.Namespace) -> int:
    """``bilrp serve``: check everything, bind, load the model(s) once, serve until stopped; returns 0."""
    names = _model_names(args)
    rules_options("bilrp", args.rules)
    from .settings import ServerSettings

    settings = ServerSettings(
        timeout_s=args.timeout,
        rules=args.rules,
        allowed_hosts=tuple(args.allow_host),
        allowed_origins=tuple(args.allow_origin),
    )
    manifest = None
    if args.index is not None:
        from pathlib import Path

        from ..ranking.storage import read_manifest

        manifest = read_manifest(Path(args.index).expanduser())
    _check_installed()
    if not is_loopback(args.host):
        warnings.warn(
            f"--host {args.host} makes the explorer reachable from other machines, with no authentication: put an "
            "authenticating TLS reverse proxy with request-size and rate limits in front of it (docs/explorer.md)",
            stacklevel=1,
        )
    listener = bind_socket(args.host, args.port)
    try:
        models, index = _load(args, names, manifest)
        import uvicorn

        from .app import create_app

        allowed = (*settings.allowed_hosts, *_bound_host(args.host, listener))
        app = create_app(models, index, dataclasses.replace(settings, allowed_hosts=allowed))
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
        server = _announcing_server(config, url_of(listener, args.host), app.state.runner.stop)
        _serve(server, listener)
    finally:
        listener.close()
    print("bilrp explorer: stopped", file=sys.stderr)
    return 0
