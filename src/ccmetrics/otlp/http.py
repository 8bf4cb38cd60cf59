"""OTLP/HTTP receiver: ``POST /v1/metrics``, ``/v1/logs``, ``/v1/traces`` (protobuf or JSON, gzip or deflate)."""

from __future__ import annotations

import logging

from google.rpc import code_pb2
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ..store import Store, StoreUnavailable
from .decode import PROTOBUF, DecodeError, Signal, decompress, encode, media_type, parse, status_body
from .receiver import ingest

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "2"
_GRPC_CODE = {400: code_pb2.INVALID_ARGUMENT, 413: code_pb2.RESOURCE_EXHAUSTED, 415: code_pb2.INVALID_ARGUMENT,
              503: code_pb2.UNAVAILABLE, 500: code_pb2.INTERNAL}  # fmt: skip


def create_app(store: Store, *, max_body_bytes: int, store_prompts: bool) -> Starlette:
    def endpoint(signal: Signal):  # noqa: ANN202 - a Starlette endpoint
        async def export(request: Request) -> Response:
            media = PROTOBUF
            try:
                media = media_type(request.headers.get("content-type"))
                body = await _read_body(request, max_body_bytes)
                raw = decompress(body, request.headers.get("content-encoding"), max_body_bytes)
                message = parse(signal, raw, media)
                response = await ingest(store, signal, message, store_prompts=store_prompts)
            except DecodeError as exc:
                return _error(exc.status, exc.message, media)
            except StoreUnavailable as exc:
                log.warning("refusing an export: %s", exc)
                return _error(503, str(exc), media, {"Retry-After": RETRY_AFTER_SECONDS})
            except ClientDisconnect:
                return Response(status_code=400)
            return Response(encode(response, media), media_type=media)

        return export

    routes = [Route(f"/v1/{signal.value}", endpoint(signal), methods=["POST"]) for signal in Signal]
    return Starlette(routes=routes)


async def _read_body(request: Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes off the wire; a longer body is refused before it fills memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise DecodeError(413, f"body of {declared} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise DecodeError(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str, media: str, headers: dict[str, str] | None = None) -> Response:
    body = status_body(_GRPC_CODE.get(status, code_pb2.INVALID_ARGUMENT), message, media)
    return Response(body, status_code=status, media_type=media, headers=headers)
