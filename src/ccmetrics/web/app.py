"""The web side of ``ccmetrics serve``: the JSON API (dashboard and /metrics grow here)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .. import __version__
from ..config import Config
from ..store import Store
from ..store.queries import Filters, QueryError, summary


def filters_from(request: Request) -> Filters:
    params = request.query_params
    return Filters.parse(params.get("since"), params.get("until"), params.getlist("filter"))


def create_app(store: Store, config: Config) -> Starlette:
    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "otlp": {"grpc": f"{config.host}:{config.otlp_grpc_port}", "http": f"{config.host}:{config.otlp_http_port}"},
            }
        )

    async def api_summary(request: Request) -> JSONResponse:
        try:
            filters = filters_from(request)
        except QueryError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        result = await run_in_threadpool(lambda: summary(store.reader(), filters))
        return JSONResponse(result)

    return Starlette(routes=[Route("/api/health", health), Route("/api/summary", api_summary)])
