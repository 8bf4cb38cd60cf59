"""OTLP/HTTP receiver: ``POST /v1/metrics``, ``/v1/logs``, ``/v1/traces`` (protobuf or JSON, gzip or deflate).

A bare ASGI application: this is the hot path of the server, and three routes need no framework.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from google.rpc import code_pb2

from ..access.gate import Refused
from .decode import PROTOBUF, DecodeError, Signal, encode, media_type, status_body
from .receiver import ExportFailed, Receiver

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "2"
_GRPC_CODE = {
    400: code_pb2.INVALID_ARGUMENT,
    408: code_pb2.DEADLINE_EXCEEDED,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    503: code_pb2.UNAVAILABLE,
}
_ROUTES = {f"/v1/{signal.value}": signal for signal in Signal}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _Disconnected(Exception):
    pass


class OtlpHttpApp:
    def __init__(self, receiver: Receiver, body_timeout_s: float = 60) -> None:
        self.receiver = receiver
        self.body_timeout_s = body_timeout_s  # a body sent a byte at a time would hold its connection forever

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        signal = _ROUTES.get(scope["path"].rstrip("/") or "/")
        if signal is None:
            await _respond(
                send, 404, b"not found: OTLP/HTTP serves /v1/metrics, /v1/logs and /v1/traces", "text/plain"
            )
            return
        if scope["method"] != "POST":
            await _respond(send, 405, b"use POST", "text/plain", {"allow": "POST"})
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
        }
        try:  # before the body is read: a sender without a valid token costs no more than its headers
            principal = self.receiver.admit(headers.get("authorization"))
        except Refused as exc:
            await _refuse(send, exc, _reply_media(headers.get("content-type")))
            return
        media = PROTOBUF
        try:
            media = media_type(headers.get("content-type"))
            async with asyncio.timeout(self.body_timeout_s):
                body = await self._read_body(receive, headers.get("content-length"))
            client = scope.get("client")
            response = await self.receiver.export(
                signal,
                body,
                media,
                headers.get("content-encoding"),
                source=client[0] if client else "",
                trusted=principal.trusted if principal is not None else None,
            )
        except DecodeError as exc:
            await _error(send, exc.status, exc.message, media)
        except TimeoutError:
            message = f"the body did not arrive within {self.body_timeout_s:g} s"
            await _error(send, 408, message, media, {"connection": "close"})
        except ExportFailed as exc:
            await _error(send, 503, str(exc), media, {"retry-after": RETRY_AFTER_SECONDS})
        except _Disconnected:
            return
        else:
            await _respond(send, 200, encode(response, media), media)

    async def _read_body(self, receive: Receive, declared: str | None) -> bytes:
        """Read at most the limit off the wire; a longer body is refused before it fills memory."""
        limit = self.receiver.intake.max_body_bytes
        if declared and declared.isdigit() and int(declared) > limit:
            raise DecodeError(413, f"body of {declared} bytes is over the limit of {limit} bytes")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise DecodeError(413, f"body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def create_app(receiver: Receiver, body_timeout_s: float = 60) -> OtlpHttpApp:
    return OtlpHttpApp(receiver, body_timeout_s)


async def _respond(
    send: Send, status: int, body: bytes, media: str, extra: dict[str, str] | None = None
) -> None:
    headers = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _reply_media(content_type: str | None) -> str:
    """The request's own encoding for an answer given before its content type is checked."""
    try:
        return media_type(content_type)
    except DecodeError:
        return PROTOBUF


async def _refuse(send: Send, refused: Refused, media: str) -> None:
    # RFC 6750: the scheme to use, and why a token that was sent did not do
    challenge = "Bearer" if refused.status == 401 else 'Bearer error="insufficient_scope"'
    await _error(send, refused.status, refused.message, media, {"www-authenticate": challenge})


async def _error(
    send: Send, status: int, message: str, media: str, extra: dict[str, str] | None = None
) -> None:
    body = status_body(_GRPC_CODE.get(status, code_pb2.INVALID_ARGUMENT), message, media)
    await _respond(send, status, body, media, extra)
