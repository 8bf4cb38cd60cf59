"""Signing in and out: ``/signin`` (the page), ``POST /api/signin``, ``POST /api/signout``, ``GET /api/me``.

A password is verified (argon2, tens of milliseconds on purpose) on a thread of its own, never on the event
loop, and one sign-in at a time: a flood of them waits there or is turned away (503), it does not stall the
dashboard. Failed sign-ins are counted per name and per client address (``access/throttle.py``). An unknown
name and a wrong password get the same answer after the same work.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..access.people import Person, password_matches
from ..access.readers import Via
from ..access.sessions import NewSession, new_session
from ..access.store import AccessStore
from ..access.throttle import Throttle
from .auth import WebGate, local_path, reader_of, same_origin

MAX_BODY_BYTES = 16 * 1024
MAX_NAME_CHARS = 256
MAX_PENDING = 8  # sign-ins waiting for their password to be verified; more are answered 503
T = TypeVar("T")
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class SignedIn:
    person: Person
    new: NewSession


@dataclass(frozen=True)
class Credentials:
    name: str
    password: str
    next: str
    from_form: bool


class BadRequest(Exception):
    pass


class SignIn:
    """What signing in needs: the web gate's keyring, a connection of its own to the access file for the
    sessions it writes, the thread that verifies passwords, and the throttle."""

    def __init__(self, web_gate: WebGate, throttle: Throttle | None = None) -> None:
        self.web_gate = web_gate
        self.throttle = throttle or Throttle()
        self._writer = AccessStore(web_gate.keyring.access.path)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ccmetrics-signin")
        self._pending = 0

    async def _in_thread(self, work: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    async def write(self, change: Callable[[AccessStore], T]) -> T:
        """Run ``change`` on the sign-in thread, with its connection to the access file (the admin page's
        changes: a running server's keyring sees them as it sees the CLI's)."""
        answer: T = await self._in_thread(lambda: change(self._writer))
        return answer

    def _verify(self, name: str, password: str) -> SignedIn | None:
        """On the sign-in thread: the person, with a new session stored, when the password is theirs."""
        person = self._writer.person(name)
        password_hash = self._writer.password_hash(name) if person is not None else None
        if not password_matches(password_hash, password) or person is None:
            return None
        access = self.web_gate.access
        new = new_session(person.name, time.time_ns(), access.session_lifetime_ns)
        self._writer.add_session(new.session)
        return SignedIn(person, new)

    async def sign_in(self, request: Request) -> Response:
        origin = request.headers.get("origin") or request.headers.get("referer")
        if origin is not None and not same_origin(origin, request.headers.get("host", "")):
            # Login CSRF: a page elsewhere must not sign this browser in as someone else.
            return _error(403, "sign-in comes from another site (its Origin is not this server)")
        try:
            given = await _credentials(request)
        except BadRequest as exc:
            return _error(400, str(exc))
        name_key = "name:" + given.name.lower()
        address_key = "address:" + self.web_gate.access.client_address(request)
        wait_s = self.throttle.wait_s(name_key, address_key)
        if wait_s:
            return JSONResponse(
                {"error": f"too many failed sign-ins: try again in {wait_s} s", "retry_after_s": wait_s},
                status_code=429,
                headers={"Retry-After": str(wait_s), **NO_STORE},
            )
        if self._pending >= MAX_PENDING:
            return JSONResponse(
                {"error": "too many sign-ins at once: try again in a moment"},
                status_code=503,
                headers={"Retry-After": "1", **NO_STORE},
            )
        self._pending += 1
        try:
            signed_in: SignedIn | None = await self._in_thread(
                lambda: self._verify(given.name, given.password)
            )
        finally:
            self._pending -= 1
        if signed_in is None:
            self.throttle.failed(name_key, address_key)
            if given.from_form:
                query = urllib.parse.urlencode({"error": "1", "next": given.next})
                return RedirectResponse(f"/signin?{query}", status_code=303, headers=NO_STORE)
            return _error(401, "wrong name or password")
        self.throttle.succeeded(name_key)
        self.web_gate.keyring.session_made(signed_in.new.session)
        person = signed_in.person
        response: Response
        if given.from_form:
            response = RedirectResponse(given.next, status_code=303, headers=NO_STORE)
        else:
            response = JSONResponse(
                {
                    "name": person.name,
                    "role": person.role.value,
                    "email": person.email,
                    "csrf_token": signed_in.new.session.csrf_token,
                    "next": given.next,
                },
                headers=NO_STORE,
            )
        access = self.web_gate.access
        response.set_cookie(
            access.cookie,
            signed_in.new.cookie_value,
            max_age=access.session_lifetime_ns // 1_000_000_000,
            path="/",
            secure=access.tls,
            httponly=True,
            samesite="lax",
        )
        return response

    async def sign_out(self, request: Request) -> Response:
        reader = reader_of(request)
        if reader.via is Via.SESSION and reader.session_digest is not None:
            session_digest = reader.session_digest
            self.web_gate.keyring.session_ended(session_digest)
            await self._in_thread(lambda: self._writer.end_session(session_digest))
        response = JSONResponse({"signed_out": reader.via is Via.SESSION}, headers=NO_STORE)
        access = self.web_gate.access
        response.delete_cookie(access.cookie, path="/", secure=access.tls, httponly=True, samesite="lax")
        return response

    async def me(self, request: Request) -> Response:
        return JSONResponse(
            {"auth": self.web_gate.required, **reader_of(request).as_dict()}, headers=NO_STORE
        )

    def routes(self, page: Callable[[str], Callable[[Request], Awaitable[Response]]]) -> list[Route]:
        return [
            Route("/signin", page("signin.html")),
            Route("/api/signin", self.sign_in, methods=["POST"]),
            Route("/api/signout", self.sign_out, methods=["POST"]),
            Route("/api/me", self.me),
        ]

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._writer.close()


async def _credentials(request: Request) -> Credentials:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    body = await read_body(request)
    fields: dict[str, Any]
    if media == "application/json":
        try:
            fields = json.loads(body)
        except ValueError:
            raise BadRequest("the body is not JSON") from None
        if not isinstance(fields, dict):
            raise BadRequest('send {"name": ..., "password": ...}')
    elif media == "application/x-www-form-urlencoded":
        fields = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
    else:
        raise BadRequest("send JSON or a form: name and password")
    name, password = fields.get("name"), fields.get("password")
    if not isinstance(name, str) or not isinstance(password, str) or not name.strip():
        raise BadRequest("a name and a password are needed")
    if len(name) > MAX_NAME_CHARS:
        raise BadRequest("that name is too long")
    next_ = fields.get("next")
    return Credentials(
        name.strip(),
        password,
        local_path(next_ if isinstance(next_, str) else None),
        media != "application/json",
    )


async def read_body(request: Request) -> bytes:
    """A small request body: more than MAX_BODY_BYTES is refused before it is all read."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest("the body is too large")
    return body


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=NO_STORE)
