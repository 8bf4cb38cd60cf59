"""Which Host names the HTTP listeners (dashboard and API, OTLP/HTTP) answer: a guard against DNS rebinding.

A web page can point a name of its own at 127.0.0.1 and then read the dashboard's API, or write exports,
from the browser of someone who runs ``ccmetrics serve``: the browser takes it for the page's own site. Such
a request still carries the page's name in its Host header, so a server that answers only its own names is
out of reach. Bound to loopback, those are localhost, 127.0.0.1 and [::1]; bound to one address, that address;
bound to every address (0.0.0.0, ::), every name, unless ``--allowed-hosts`` lists them. The names in
``--allowed-hosts`` are answered besides. The port in the Host header does not matter (a port may be
forwarded), only the name.

Starlette's ``TrustedHostMiddleware`` would do for the dashboard, but it cuts a Host header at its first
colon, which leaves nothing of ``[::1]:3000``; and the OTLP/HTTP receiver is a bare ASGI app. This one wraps
both.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_REFUSAL = (
    b"421 Misdirected Request: this server does not answer that Host name. "
    b"Allow it with --allowed-hosts (CCMETRICS_ALLOWED_HOSTS).\n"
)


def host_name(value: str) -> str:
    """The name in a Host header or a setting: lowercase, without port, IPv6 brackets or a final dot; an IP
    address in its canonical form."""
    name = value.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    name = name.rstrip(".")
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        return name


def allowed_names(bound: str, allowed_hosts: str) -> frozenset[str] | None:
    """The Host names answered by a listener bound to ``bound``; None for every name."""
    extra = frozenset(host_name(name) for name in allowed_hosts.split(",") if name.strip())
    bound = host_name(bound)
    try:
        address = ipaddress.ip_address(bound)
    except ValueError:  # a name given as --host
        return LOOPBACK_NAMES | extra if bound == "localhost" else frozenset({bound}) | extra
    if address.is_unspecified:
        return LOOPBACK_NAMES | extra if extra else None
    if address.is_loopback:
        return LOOPBACK_NAMES | {bound} | extra
    return frozenset({bound}) | extra


class HostCheck:
    """ASGI middleware: requests whose Host is not one of ``allowed`` are answered 421 and go no further."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allowed is None or scope["type"] not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(_REFUSAL)).encode()),
                (b"x-content-type-options", b"nosniff"),
            ]
            await send({"type": "http.response.start", "status": 421, "headers": headers})
            await send({"type": "http.response.body", "body": _REFUSAL})

    def _allowed(self, scope: Scope) -> bool:
        assert self.allowed is not None
        host = next((value for name, value in scope["headers"] if name == b"host"), b"")
        return host_name(host.decode("latin-1")) in self.allowed
