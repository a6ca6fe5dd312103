"""The explorer's request policy: only requests addressed to this server, and only JSON from its own page or
from a client that is not a web page, reach a route.

A web page the user visits can make the browser talk to a server on loopback in two ways. **DNS rebinding**:
the page's own host name is made to resolve to ``127.0.0.1``, so the browser sends the page's requests to the
explorer with ``Host: attacker.example`` and lets the page read the answers (the indexed texts of
``/api/rank``). **Cross-site simple requests**: a form or ``fetch`` POST with ``Content-Type: text/plain``
goes out without a CORS preflight; its answer cannot be read, but it is computed. :class:`RequestPolicy`, an
ASGI middleware in front of every route, refuses both, in this order:

1. **Host** (400): the ``Host`` header must name this server: ``localhost``, ``127.0.0.1`` or ``[::1]`` or the
   IP address the connection came to, each with the port the server listens on, or a name of
   ``allowed_hosts`` (``name``: any port, ``name:port``: that one; ``"*"``: any host, for a proxy that checks
   it). A rebinding page's requests carry its own name, never one of these.
2. **Origin** (403): a request with an ``Origin`` header must come from the page's own origin (the scheme and
   ``Host`` it was sent to) or from one of ``allowed_origins``. Clients that are not web pages (curl, Python)
   send no ``Origin`` and pass.
3. **Sec-Fetch-Site** (403): without an allowed ``Origin``, a ``cross-site`` or ``same-site`` request is
   refused, except a plain navigation (``GET``/``HEAD``, ``Sec-Fetch-Mode: navigate``: following a link to
   the page).
4. **Content-Type** (415): a request with a body (any method but ``GET``, ``HEAD``, ``OPTIONS``) must be
   ``application/json``, which a browser never sends cross-site without a CORS preflight that the explorer
   does not grant.

Each refusal is the API's one-line JSON ``{"error": ...}``. The parsing here is plain Python (the settings
check their hosts and origins with it before anything heavy is imported).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from .._io import one_line

__all__ = [
    "RequestPolicy",
    "LOOPBACK_HOSTS",
    "split_host",
    "check_allowed_host",
    "check_allowed_origin",
    "origin_key",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
"""The names of this machine the server always answers (with the port it listens on)."""
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
"""Methods without a body: no Content-Type check."""
CROSS_SITE = ("cross-site", "same-site")
"""``Sec-Fetch-Site`` values of a request made by another site's page (``same-site``: another port or
subdomain of the same site, which is another origin)."""
_SHOWN = 80
"""Characters of a refused header value repeated in a message."""


# ---------------------------------------------------------------------------------------------- parsing
def _ip_literal(name: str) -> str | None:
    """The canonical form of an IP-address host name (IPv6 in brackets), or ``None`` for a name."""
    try:
        address = ipaddress.ip_address(name[1:-1] if name.startswith("[") and name.endswith("]") else name)
    except ValueError:
        return None
    return f"[{address.compressed}]" if address.version == 6 else address.compressed


def split_host(value: str) -> tuple[str, int | None]:
    """``(name, port)`` of a ``Host`` header or an allowed-host entry (``name``, ``name:port``, ``[v6]:port``).

    The name is lower-cased without a final dot, IP addresses in canonical form (IPv6 in brackets); the port
    is ``None`` when none is given. A malformed value raises a one-line ``ValueError``.
    """
    text = value.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        name, rest = (text[: end + 1], text[end + 1 :]) if end > 0 else (text, "")
        if end < 0 or (rest and not rest.startswith(":")) or _ip_literal(name) is None:
            raise ValueError(f"{value!r} is not a host name: write name, name:port or [IPv6]:port")
        port_text = rest[1:] if rest else None
    else:
        name, colon, port_text = text.partition(":")
        port_text = port_text if colon else None
    port = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5 and int(port_text) <= 65535):
            raise ValueError(f"{value!r} is not a host name: its port must be a number from 0 to 65535")
        port = int(port_text)
    name = name[:-1] if name.endswith(".") and not name.startswith("[") else name
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-._")
    if not name or (not name.startswith("[") and not set(name) <= allowed):
        raise ValueError(f"{value!r} is not a host name: write name, name:port or [IPv6]:port")
    return _ip_literal(name) or name, port


def check_allowed_host(entry: str) -> tuple[str, int | None]:
    """An ``allowed_hosts`` entry as ``(name, port)``: ``"*"`` (any host) or a host name with an optional port."""
    if not isinstance(entry, str):
        raise ValueError(f"allowed hosts must be host names such as 'explorer.example', not {entry!r}")
    if entry.strip() == "*":
        return "*", None
    try:
        return split_host(entry)
    except ValueError as error:
        raise ValueError(f"allowed host {error}") from None


def origin_key(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host name, port)`` of an ``Origin`` value (default port filled in), or ``None`` if malformed."""
    scheme, separator, authority = origin.strip().lower().partition("://")
    if not separator or scheme not in ("http", "https") or not authority or any(c in authority for c in "/?#@"):
        return None
    try:
        name, port = split_host(authority)
    except ValueError:
        return None
    return scheme, name, DEFAULT_PORTS[scheme] if port is None else port


def check_allowed_origin(entry: str) -> tuple[str, str, int]:
    """An ``allowed_origins`` entry as :func:`origin_key`: ``scheme://host[:port]`` (http or https, no path)."""
    key = origin_key(entry) if isinstance(entry, str) else None
    if key is None:
        raise ValueError(
            f"allowed origin {entry!r} is not an origin: write scheme://host[:port], e.g. https://explorer.example "
            "(no path, no '*')"
        )
    return key


# ---------------------------------------------------------------------------------------------- the middleware
class RequestPolicy:
    """ASGI middleware: refuse requests not addressed to this server or not from its own page (module doc).

    Parameters
    ----------
    app
        The ASGI app behind the policy.
    allowed_hosts
        Further host names the server answers (``name``, ``name:port``, or ``"*"`` for any).
    allowed_origins
        Further origins (``scheme://host[:port]``) whose pages may call the API.

    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.hosts = [check_allowed_host(entry) for entry in allowed_hosts]
        self.origins = {check_allowed_origin(entry) for entry in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(scope)
            if refusal is not None:
                from starlette.responses import JSONResponse

                status, message = refusal
                await JSONResponse({"error": one_line(message)}, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """``(status, message)`` of a request the policy refuses, or ``None`` for one it lets through."""
        headers: dict[str, list[str]] = {}
        for key, value in scope.get("headers") or ():
            headers.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        scheme = str(scope.get("scheme") or "http")
        server = scope.get("server") or (None, None)
        hosts = headers.get("host", [])
        refused = self._host_refusal(hosts, server, scheme)
        if refused is not None:
            return 400, refused
        own = f"{scheme}://{hosts[0].strip()}" if hosts else "this server's page"
        refused = self._origin_refusal(headers, scope, own)
        if refused is not None:
            return 403, refused
        if str(scope.get("method", "GET")).upper() not in SAFE_METHODS:
            declared = (headers.get("content-type") or [""])[0]
            if declared.split(";")[0].strip().lower() != "application/json":
                shown = repr(declared[:_SHOWN]) if declared else "none"
                return 415, (
                    f"the body must be JSON with the header Content-Type: application/json (this request has "
                    f"{shown}): the explorer takes no other body, so that no other site's form can make it compute; "
                    "e.g. curl -H 'Content-Type: application/json' -d '{...}'"
                )
        return None

    def _host_refusal(self, hosts: list[str], server: tuple[Any, Any], scheme: str) -> str | None:
        """Why the ``Host`` header names no host this server answers, or ``None``."""
        if any(name == "*" for name, _ in self.hosts):
            return None
        served_host, served_port = server
        address = _ip_literal(str(served_host)) if served_host is not None else None
        shown_port = "" if served_port is None else f":{served_port}"
        own = f"{scheme}://{address or '127.0.0.1'}{shown_port}/"
        advice = (
            f"open the explorer as {own}; if you reach it under another name (a reverse proxy, another name of this "
            "machine), start it with --allow-host NAME (ServerSettings(allowed_hosts=...))"
        )
        if len(hosts) != 1:
            return f"the request has {'no' if not hosts else 'several'} Host headers, not one: {advice}"
        try:
            name, port = split_host(hosts[0])
        except ValueError as error:
            return f"the Host header {error}: {advice}"
        port = DEFAULT_PORTS.get(scheme) if port is None else port
        local = (*LOOPBACK_HOSTS, address)
        if name in local and (served_port is None or port == served_port):
            return None
        if any(name == allowed and allowed_port in (None, port) for allowed, allowed_port in self.hosts):
            return None
        return (
            f"this server does not answer requests addressed to {hosts[0][:_SHOWN]!r} (a web page of another site "
            f"cannot reach it through DNS rebinding): {advice}"
        )

    def _origin_refusal(self, headers: dict[str, list[str]], scope: Scope, own: str) -> str | None:
        """Why the request comes from a page other than the explorer's own, or ``None``."""
        advice = f"the explorer answers only its own page ({own}) and clients that send no Origin, such as curl"
        origins = headers.get("origin", [])
        if origins:
            origin = origins[0].strip()
            key = origin_key(origin)
            if key is not None and (key == origin_key(own) or key in self.origins) and len(origins) == 1:
                return None
            return (
                f"a request from the web page {origin[:_SHOWN]!r} is refused: {advice}; if you trust that page, start "
                "the server with --allow-origin ORIGIN (ServerSettings(allowed_origins=...))"
            )
        site = (headers.get("sec-fetch-site") or [""])[0].strip().lower()
        if site in CROSS_SITE:
            mode = (headers.get("sec-fetch-mode") or [""])[0].strip().lower()
            if not (str(scope.get("method", "GET")).upper() in ("GET", "HEAD") and mode == "navigate"):
                return f"a request made by another site's page (Sec-Fetch-Site: {site}) is refused: {advice}"
        return None
