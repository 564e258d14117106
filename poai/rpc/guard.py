"""Who may talk to the node's HTTP server: Host allowlist, Origin/CORS, content type.

A web page the node's owner visits can make the browser send requests to a
node listening on 127.0.0.1.  Two checks stop that, as geth's
``--http.vhosts`` and ``--http.corsdomain`` do:

* **Host** (DNS rebinding): a hostile name resolving to 127.0.0.1 reaches
  the node with its own name in the Host header.  Only the names in the
  allowlist pass: the loopback names (``localhost``, ``127.0.0.1``,
  ``::1``; always, they cannot be rebound), the address the server is bound
  to when it is a specific IP, and the names of ``--rpc-vhosts`` (``*``:
  any).  Compared without the port, case-insensitively.  A request with no
  Host header (HTTP/1.0, not a browser) passes.
* **Origin** (CSRF): a browser marks a cross-site request with Origin.  A
  request carrying an Origin passes only when the origin is in
  ``--rpc-cors`` (``*``: any) or is the node's own origin
  (``http://<the request's Host>``: the explorer's own pages).  Allowed
  origins get the Access-Control-Allow-* headers and OPTIONS preflights are
  answered.

Refusals are HTTP 403 with a one-line plain-text reason.  JSON-RPC bodies
must also be declared ``application/json`` (415 otherwise, like geth): a
"simple" cross-site form POST (text/plain) never reaches the handlers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from aiohttp import web

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# geth's accepted JSON-RPC media types (rpc/http.go acceptedContentTypes)
JSON_CONTENT_TYPES = frozenset({"application/json", "application/json-rpc", "application/jsonrequest"})
CORS_METHODS = "POST, GET, OPTIONS"
CORS_HEADERS = "Content-Type"
CORS_MAX_AGE = "600"  # seconds a browser may cache a preflight answer


def parse_list(text: str | None) -> tuple[str, ...]:
    """A comma-separated flag value as its non-empty, stripped, lower-cased items."""
    if not text:
        return ()
    return tuple(item.strip().lower() for item in text.split(",") if item.strip())


def host_name(host_header: str) -> str:
    """The name of a Host header without its port: ``[::1]:8545`` -> ``::1``,
    ``Localhost:80`` -> ``localhost``."""
    h = host_header.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end > 0 else h
    if h.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        h = h.split(":", 1)[0]
    return h


def bound_name(bind_host: str) -> str | None:
    """The bind address as a Host name when it is one specific IP (None for a
    wildcard address or a name)."""
    try:
        ip = ipaddress.ip_address(bind_host.strip("[]"))
    except ValueError:
        return None
    return None if ip.is_unspecified else str(ip)


@dataclass(frozen=True)
class HttpGuard:
    """The allowlists of one server.  vhosts/cors: lower-cased names and
    origins; ``"*"`` in either allows any."""

    vhosts: tuple[str, ...] = ()
    cors: tuple[str, ...] = ()
    bind_host: str = "127.0.0.1"

    @classmethod
    def from_flags(cls, vhosts: str | None, cors: str | None, bind_host: str = "127.0.0.1") -> "HttpGuard":
        return cls(parse_list(vhosts), tuple(o.rstrip("/") for o in parse_list(cors)), bind_host)

    def host_allowed(self, host_header: str | None) -> bool:
        if host_header is None:
            return True
        if "*" in self.vhosts:
            return True
        name = host_name(host_header)
        return name in LOOPBACK_NAMES or name in self.vhosts or name == bound_name(self.bind_host)

    def origin_allowed(self, origin: str, host_header: str | None) -> bool:
        o = origin.strip().lower().rstrip("/")
        if "*" in self.cors or o in self.cors:
            return True
        return host_header is not None and o == "http://" + host_header.strip().lower()

    def cors_headers(self, origin: str) -> dict[str, str]:
        return {
            "Access-Control-Allow-Origin": "*" if "*" in self.cors else origin,
            "Access-Control-Allow-Methods": CORS_METHODS,
            "Access-Control-Allow-Headers": CORS_HEADERS,
            "Vary": "Origin",
        }


def refuse(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", content_type="text/plain", charset="utf-8")


def middleware(guard: HttpGuard):
    """An aiohttp middleware enforcing ``guard`` on every route (404s included)."""

    @web.middleware
    async def check(request: web.Request, handler):
        host = request.headers.get("Host")
        if not guard.host_allowed(host):
            return refuse(403, f"invalid host {host_name(host)!r}: not in this node's --rpc-vhosts")
        origin = request.headers.get("Origin")
        if origin is not None and not guard.origin_allowed(origin, host):
            return refuse(403, f"origin {origin!r} is not allowed: not in this node's --rpc-cors")
        if request.method == "OPTIONS":  # a preflight, or a plain OPTIONS
            headers = guard.cors_headers(origin) if origin is not None else {}
            headers["Access-Control-Max-Age"] = CORS_MAX_AGE
            headers["Allow"] = CORS_METHODS
            return web.Response(status=204, headers=headers)
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # redirects and aiohttp's own errors carry the headers too
            if origin is not None:
                exc.headers.update(guard.cors_headers(origin))
            raise
        if origin is not None:
            response.headers.update(guard.cors_headers(origin))
        return response

    return check


def json_content_type(request: web.Request) -> bool:
    """Whether a JSON-RPC POST declares a JSON body (parameters such as charset allowed)."""
    return request.content_type.lower() in JSON_CONTENT_TYPES
