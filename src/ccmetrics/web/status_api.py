"""``GET /api/status``: what the server has seen; ``GET /api/probes/{probe_id}``: did a doctor probe land."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..store import Store
from ..store.status import probe, status

_PROBE_ID = re.compile(r"^[A-Za-z0-9\-]{1,64}$")


def routes(store: Store, query: Callable[[Request, Callable[[], Any]], Awaitable[Response]]) -> list[Route]:
    """The routes; ``query`` runs a read and answers it as the rest of the API does (JSON, Server-Timing)."""

    async def api_status(request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", "50"))
        except ValueError:
            return JSONResponse({"error": "limit must be a whole number"}, status_code=400)
        limit = max(1, min(limit, 1000))
        return await query(request, lambda: status(store.reader(), limit))

    async def api_probe(request: Request) -> JSONResponse:
        probe_id = request.path_params["probe_id"]
        if not _PROBE_ID.match(probe_id):
            return JSONResponse({"error": "a probe id is a UUID"}, status_code=400)
        return JSONResponse(await store.read(lambda: probe(store.reader(), probe_id)))

    return [Route("/api/status", api_status), Route("/api/probes/{probe_id}", api_probe)]
