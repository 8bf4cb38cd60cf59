"""The admin page's API: tokens, people and aliases, managed from the dashboard as ``ccmetrics token`` and
``ccmetrics user`` manage them from the shell.

Only an admin reads or changes any of it (a signed-in admin, an admin token, or anyone on a loopback server
that checks nothing yet, so the first person can be added from the page). The web gate has already checked
the CSRF token and Origin of every change. Changes are written on the sign-in thread through its own
connection to the access file, so the keyring and the alias book see them the way they see the CLI's, and
hashing a new password never runs on the event loop.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..access.people import PersonError, WebRole
from ..access.store import AccessStore, AliasError
from ..access.tokens import Role, TokenError, expiry_ns
from .auth import reader_of
from .signin import NO_STORE, BadRequest, SignIn, read_body

Change = Callable[[AccessStore], Any]


class Admin:
    def __init__(self, sign_in: SignIn) -> None:
        self.sign_in = sign_in

    async def _change(self, request: Request, change: Change, status: int = 200) -> Response:
        """Apply ``change`` to the access file on the sign-in thread; a refused one is a 400 naming why."""
        try:
            answer = await self.sign_in.write(change)
        except (TokenError, PersonError, AliasError) as exc:
            return _error(400, str(exc))
        return JSONResponse(answer, status_code=status, headers=NO_STORE)

    async def overview(self, request: Request) -> Response:
        def read(access: AccessStore) -> dict[str, Any]:
            return {
                "tokens": [token.as_dict() for token in access.tokens()],
                "people": [person.as_dict() for person in access.people()],
                "aliases": [{"user_id": uid, "name": name} for uid, name in access.aliases().items()],
                "you": reader_of(request).name,
            }

        return await self._change(request, read)

    async def create_token(self, request: Request) -> Response:
        fields = await _fields(request)
        name, role = _text(fields, "name") or "", _text(fields, "role")
        if role not in {r.value for r in Role}:
            return _error(400, "role is one of ingest, viewer, admin")
        user, team, expires = _text(fields, "user"), _text(fields, "team"), _text(fields, "expires")

        def create(access: AccessStore) -> dict[str, Any]:
            secret = access.create(name, Role(role), user=user, team=team, expires_ns=expiry_ns(expires))
            return {"name": name, "role": role, "token": secret}

        return await self._change(request, create, 201)

    async def _remove(
        self, request: Request, remove: Callable[[AccessStore, str], None], what: str
    ) -> Response:
        """Remove the token, person or alias the path names (``what``: its path parameter)."""
        key = request.path_params[what]

        def change(access: AccessStore) -> dict[str, str]:
            remove(access, key)
            return {"removed": key}

        return await self._change(request, change)

    async def revoke_token(self, request: Request) -> Response:
        return await self._remove(request, AccessStore.revoke, "name")

    async def add_person(self, request: Request) -> Response:
        fields = await _fields(request)
        name, role, email = _text(fields, "name") or "", _text(fields, "role"), _text(fields, "email")
        password = _text(fields, "password")  # none: they sign in through the sign-on proxy only
        if role not in {r.value for r in WebRole}:
            return _error(400, "role is one of viewer, admin, member")

        def add(access: AccessStore) -> dict[str, Any]:
            return access.add_person(name, WebRole(role), email=email, password=password).as_dict()

        return await self._change(request, add, 201)

    async def remove_person(self, request: Request) -> Response:
        if request.path_params["name"] == reader_of(request).name:
            return _error(400, "you cannot remove yourself: another admin can")
        return await self._remove(request, AccessStore.remove_person, "name")

    async def set_alias(self, request: Request) -> Response:
        user_id, name = request.path_params["user_id"], _text(await _fields(request), "name")
        if name is None:
            return _error(400, "an alias needs a name")

        def set_alias(access: AccessStore) -> dict[str, str]:
            access.set_alias(user_id, name)
            return {"user_id": user_id, "name": name}

        return await self._change(request, set_alias)

    async def remove_alias(self, request: Request) -> Response:
        return await self._remove(request, AccessStore.remove_alias, "user_id")

    def routes(self, page: Callable[[str], Any]) -> list[Route]:
        def admins_only(endpoint: Callable[[Request], Any]) -> Callable[[Request], Any]:
            async def guarded(request: Request) -> Response:
                if reader_of(request).role is not WebRole.ADMIN:
                    return _error(403, "only an admin manages tokens, people and aliases")
                try:
                    response: Response = await endpoint(request)
                except BadRequest as exc:
                    return _error(400, str(exc))
                return response

            return guarded

        return [
            Route("/admin", page("admin.html")),
            Route("/api/admin", admins_only(self.overview)),
            Route("/api/admin/tokens", admins_only(self.create_token), methods=["POST"]),
            Route("/api/admin/tokens/{name:path}", admins_only(self.revoke_token), methods=["DELETE"]),
            Route("/api/admin/people", admins_only(self.add_person), methods=["POST"]),
            Route("/api/admin/people/{name:path}", admins_only(self.remove_person), methods=["DELETE"]),
            Route("/api/admin/aliases/{user_id:path}", admins_only(self.set_alias), methods=["PUT"]),
            Route("/api/admin/aliases/{user_id:path}", admins_only(self.remove_alias), methods=["DELETE"]),
        ]


async def _fields(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
        raise BadRequest("send JSON")
    try:
        fields = json.loads(await read_body(request))
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(fields, dict):
        raise BadRequest("send a JSON object")
    return fields


def _text(fields: dict[str, Any], key: str) -> str | None:
    """A field's text; empty or missing: ``None``. Anything but text is refused."""
    value = fields.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{key} is text")
    return value


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=NO_STORE)
