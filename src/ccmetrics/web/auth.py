"""The web gate: who may read the dashboard, the JSON API, ``/api/live`` and ``/metrics``.

Once any token or person exists (or always, on an address other machines can reach, unless
``--insecure-no-auth``), every request but sign-in itself and the health check needs a reader: a signed-in
person (session cookie), a person named by a trusted sign-on proxy, or ``Authorization: Bearer`` with a viewer
or admin token. The tokens, people and sessions are the keyring's (``access/keyring.py``), the same copy the
ingest gate checks exports with. The reader is put on the request's state (``reader_of``), where every route
reads what it may see.

A state-changing request (POST, PUT, DELETE...) of a signed-in person must repeat their session's CSRF token
in ``X-CSRF-Token``, and one that names its ``Origin`` must come from this server's own: a page elsewhere
cannot act with the person's cookie. Bearer requests carry no cookie, and need no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ..access.gate import Gate, Refused
from ..access.people import WebRole
from ..access.readers import ANYONE, Reader, Via
from ..access.sessions import MAX_COOKIE_CHARS, cookie_name
from ..access.tokens import Role, digest
from ..config import Config
from ..hosts import ASGIApp, Receive, Scope, Send
from ..store.filters import parse_span

log = logging.getLogger("ccmetrics")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Open to all: sign-in, what its page loads, and the health check (which says nothing about the data).
OPEN_PATHS = frozenset(
    {"/api/health", "/signin", "/api/signin", "/favicon.ico", "/static/signin.js", "/static/style.css"}
)
# doctor asks whether its probe landed with the token it sent the probe with: an ingest token reads this.
PROBES = "/api/probes/"
# What only a reader of everyone's data may read: every user's series, every session.
EVERYONE_ONLY = frozenset({"/metrics", "/api/status"})
# The pages a visitor who has not signed in is sent to the sign-in page from, and back to after it.
PAGES = frozenset({"/", "/admin", "/alerts"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class WebAccess:
    """How the dashboard listener tells readers apart, from the settings."""

    always_required: bool
    tls: bool
    session_lifetime_ns: int
    proxy_header: str | None = None  # lower case, as ASGI gives header names
    trusted_proxies: tuple[Network, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> WebAccess:
        """Raises ValueError, naming the setting, for one that cannot be used."""
        from ..access.exposure import is_loopback

        span = parse_span(config.session_lifetime)
        if span is None or span.total_seconds() < 60:
            raise ValueError(
                f"--session-lifetime {config.session_lifetime!r}: use a span of a minute or more (12h, 7d)"
            )
        try:
            trusted = tuple(
                ipaddress.ip_network(cidr.strip(), strict=False)
                for cidr in config.trusted_proxies.split(",")
                if cidr.strip()
            )
        except ValueError as exc:
            raise ValueError(f"--trusted-proxies {config.trusted_proxies!r}: {exc}") from None
        header = config.auth_proxy_header.strip().lower() or None
        if header is not None and not trusted:
            raise ValueError(
                "--auth-proxy-header needs --trusted-proxies: the addresses of the proxies whose header is "
                "believed (anyone else could name themselves in it)"
            )
        return cls(
            # Sign-on through a proxy means sign-in is meant: a request that bypasses it gets nothing.
            always_required=(not is_loopback(config.host) and not config.insecure_no_auth)
            or header is not None,
            tls=config.tls,
            session_lifetime_ns=int(min(span.total_seconds(), 10 * 365 * 86_400) * 1e9),
            proxy_header=header,
            trusted_proxies=trusted,
        )

    def trusts(self, address: str | None) -> bool:
        if not address or not self.trusted_proxies:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)

    def client_address(self, request: Request) -> str:
        """The client's address: the peer's, or, from a trusted proxy, the last one its X-Forwarded-For
        names (the one the proxy itself added). Failed sign-ins are counted by it."""
        peer = request.client.host if request.client else ""
        if self.trusts(peer):
            forwarded = request.headers.get("x-forwarded-for", "").rpartition(",")[2].strip()
            if forwarded:
                return forwarded
        return peer

    @property
    def cookie(self) -> str:
        return cookie_name(self.tls)


def reader_of(request: Request) -> Reader:
    """Who is reading: set by the web gate for every request it lets through."""
    reader = getattr(request.state, "reader", None)
    return reader if isinstance(reader, Reader) else ANYONE


def same_origin(url: str, host: str) -> bool:
    """Whether an Origin or Referer names this server: its host and port are the request's Host. The scheme
    is not compared: behind a proxy that ends TLS this server cannot know it."""
    return bool(host) and urllib.parse.urlsplit(url).netloc.lower() == host.strip().lower()


def local_path(target: str | None) -> str:
    """A path on this server to go to after signing in: ``/`` unless ``target`` is one (no open redirect:
    ``//host``, ``/\\host`` and anything with a scheme are refused)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ch in target for ch in "\\\r\n\t") or urllib.parse.urlsplit(target).netloc:
        return "/"
    return target


class WebGate:
    """Who a request of the dashboard listener comes from, and whether it may go on."""

    def __init__(
        self, gate: Gate, access: WebAccess, wall_clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self.gate = gate
        self.keyring = gate.keyring
        self.access = access
        self._wall_clock_ns = wall_clock_ns
        # The proxy's people have no session: their CSRF token is derived from their name with this secret.
        self._secret = secrets.token_bytes(32)
        self._was_required = self.required

    @property
    def required(self) -> bool:
        return self.access.always_required or self.keyring.has_credentials

    def describe(self) -> str:
        """Whether the dashboard needs a reader, for the start-up log."""
        if not self.required:
            return "sign-in off: no token and no person exists, anyone who can connect reads everything"
        people = len(self.keyring.people)
        proxy = (
            f", or named in {self.access.proxy_header} by a trusted proxy" if self.access.proxy_header else ""
        )
        return f"sign-in required: {people} person(s) may sign in{proxy}; viewer and admin tokens read"

    def check(self, request: Request) -> Response | None:
        """``None`` when the request may go on (its reader on its state); the refusal otherwise."""
        if self.keyring.refresh() and self._was_required != self.required:
            self._was_required = self.required
            log.info("dashboard %s", self.describe())
        if not self.required:
            request.state.reader = ANYONE
            return self._origin_refusal(request)
        try:
            reader = self._identify(request)
        except Refused as refused:
            return refusal(refused.status, refused.message)
        if reader is None:
            return self._unauthenticated(request)
        path = request.url.path
        if path in EVERYONE_ONLY and not reader.role.reads_everyone:
            return refusal(403, f"{path} shows every user's data: it is for viewers and admins")
        request.state.reader = reader
        if request.method not in SAFE_METHODS:
            return self._origin_refusal(request) or self._csrf_refusal(request, reader)
        return None

    def _identify(self, request: Request) -> Reader | None:
        headers = request.headers
        if self.access.proxy_header and self.access.trusts(request.client.host if request.client else None):
            named = headers.get(self.access.proxy_header, "").strip()
            if named:
                return self._proxied(named)
        if "authorization" in headers:
            return self._bearer(request)
        value = request.cookies.get(self.access.cookie)
        if value and len(value) <= MAX_COOKIE_CHARS:
            return self._signed_in(value)
        return None

    def _proxied(self, named: str) -> Reader:
        person = self.keyring.person_named(named)
        csrf = hmac.new(self._secret, b"proxy\0" + named.encode(), hashlib.sha256).hexdigest()
        if person is None:  # known to the proxy, not here: they see their own data only
            return Reader(named, WebRole.MEMBER, Via.PROXY, named, csrf)
        return Reader(person.name, person.role, Via.PROXY, person.email or named, csrf)

    def _bearer(self, request: Request) -> Reader:
        principal = self.gate.token(request.headers.get("authorization"), self._wall_clock_ns())
        if principal.role is Role.VIEWER:
            return Reader(principal.name, WebRole.VIEWER, Via.TOKEN, principal.user)
        if principal.role is Role.ADMIN:
            return Reader(principal.name, WebRole.ADMIN, Via.TOKEN, principal.user)
        if request.url.path.startswith(PROBES):
            # An ingest token may ask whether its probe landed, and read nothing else: as a member of no data.
            return Reader(principal.name, WebRole.MEMBER, Via.TOKEN, principal.user or "")
        raise Refused(403, f"the token {principal.name!r} is an ingest token: it may send data, not read it")

    def _signed_in(self, cookie_value: str) -> Reader | None:
        session = self.keyring.sessions.get(digest(cookie_value))
        if session is None or session.expired(self._wall_clock_ns()):
            return None
        person = self.keyring.people.get(session.user)
        if person is None:  # removed since: the reload has taken their sessions too, or is about to
            return None
        return Reader(person.name, person.role, Via.SESSION, person.email, session.csrf_token, session.digest)

    def _unauthenticated(self, request: Request) -> Response:
        path = request.url.path
        if request.method in ("GET", "HEAD") and (path in PAGES or path.startswith("/session/")):
            target = path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(
                "/signin?" + urllib.parse.urlencode({"next": target}),
                status_code=303,
                headers={"Cache-Control": "no-store"},
            )
        return refusal(
            401, "sign in first (/signin), or send Authorization: Bearer <token> of a viewer or admin token"
        )

    def _origin_refusal(self, request: Request) -> Response | None:
        """A state-changing request sent by a page of another site is refused, signed in or not."""
        origin = request.headers.get("origin")
        if request.method in SAFE_METHODS or origin is None:
            return None
        if same_origin(origin, request.headers.get("host", "")):
            return None
        return refusal(403, "this request comes from another site (its Origin is not this server)")

    def _csrf_refusal(self, request: Request, reader: Reader) -> Response | None:
        if reader.via not in (Via.SESSION, Via.PROXY):
            return None  # a bearer token: no cookie a page elsewhere could send along
        sent = request.headers.get(CSRF_HEADER, "")
        if reader.csrf_token and hmac.compare_digest(sent.encode(), reader.csrf_token.encode()):
            return None
        return refusal(403, "missing or wrong X-CSRF-Token: GET /api/me gives this session's")


class WebGateMiddleware:
    """ASGI middleware in front of the dashboard app: every request but the open ones passes ``WebGate``."""

    def __init__(self, app: ASGIApp, web_gate: WebGate) -> None:
        self.app = app
        self.web_gate = web_gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            response = self.web_gate.check(Request(scope))
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def refusal(status: int, message: str) -> JSONResponse:
    challenge = 'Bearer error="insufficient_scope"' if status == 403 else "Bearer"
    return JSONResponse(
        {"error": message},
        status_code=status,
        headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store"},
    )
