"""Bytes on the wire to OTLP messages, and back: pure functions, no I/O.

Errors carry the HTTP status the OTLP spec asks for, so both transports can answer the client precisely.
"""

from __future__ import annotations

import base64
import json
import json.scanner
import zlib
from dataclasses import dataclass
from enum import Enum
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class Signal(Enum):
    METRICS = "metrics"
    LOGS = "logs"
    TRACES = "traces"

    @property
    def request_type(self) -> type[Message]:
        return _REQUEST[self]

    @property
    def response_type(self) -> type[Message]:
        return _RESPONSE[self]


_REQUEST: dict[Signal, type[Message]] = {
    Signal.METRICS: metrics_service_pb2.ExportMetricsServiceRequest,
    Signal.LOGS: logs_service_pb2.ExportLogsServiceRequest,
    Signal.TRACES: trace_service_pb2.ExportTraceServiceRequest,
}
_RESPONSE: dict[Signal, type[Message]] = {
    Signal.METRICS: metrics_service_pb2.ExportMetricsServiceResponse,
    Signal.LOGS: logs_service_pb2.ExportLogsServiceResponse,
    Signal.TRACES: trace_service_pb2.ExportTraceServiceResponse,
}


@dataclass
class DecodeError(Exception):
    status: int
    message: str

    def __str__(self) -> str:
        return self.message


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header; raises 415 for what OTLP does not define."""
    bare = (content_type or "").split(";", 1)[0].strip().lower()
    if bare in (PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if bare == JSON:
        return JSON
    raise DecodeError(415, f"unsupported content type {content_type!r}: use {PROTOBUF} or {JSON}")


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo Content-Encoding without ever holding more than ``limit`` bytes, so a gzip bomb costs nothing."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        if len(body) > limit:
            raise DecodeError(413, f"body of {len(body)} bytes is over the limit of {limit} bytes")
        return body
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS  # zlib-wrapped or raw
    else:
        raise DecodeError(415, f"unsupported content encoding {encoding!r}: use gzip, deflate or none")
    # Concatenated gzip members are one valid stream (``cat a.gz b.gz``): inflate them all, within the limit.
    # The input is fed a slice at a time, so what is left after each member is never copied whole: the work is
    # linear in the body's size, however many members it holds.
    view, at = memoryview(body), 0
    pieces: list[bytes] = []
    size = 0
    while True:
        inflater = zlib.decompressobj(wbits)
        while not inflater.eof and at < len(view):
            chunk = view[at : at + _FEED_BYTES]
            try:
                pieces.append(inflater.decompress(chunk, limit + 1 - size))
            except zlib.error as exc:
                raise DecodeError(400, f"body is not valid {encoding}: {exc}") from None
            size += len(pieces[-1])
            if size > limit:
                raise DecodeError(413, f"body inflates past the limit of {limit} bytes")
            at += len(chunk) - len(inflater.unused_data)
        if not inflater.eof:
            raise DecodeError(400, f"body is truncated {encoding} data")
        if at == len(view):
            return b"".join(pieces)
        if encoding != "gzip":
            raise DecodeError(400, f"body has {len(view) - at} bytes after the end of the {encoding} data")


_FEED_BYTES = 64 * 1024


def parse(signal: Signal, body: bytes, media: str) -> Message:
    """Decode an Export*ServiceRequest from protobuf or OTLP/JSON bytes."""
    request = signal.request_type()
    if media == PROTOBUF:
        try:
            request.ParseFromString(body)
        except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
            raise DecodeError(400, f"body is not a valid {request.DESCRIPTOR.name} protobuf: {exc}") from None
        return request
    try:
        document = _read_json(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError(400, f"body is not valid JSON: {str(exc) or 'it nests too deeply'}") from None
    if not isinstance(document, dict):
        raise DecodeError(400, "body must be a JSON object")
    try:
        _hex_ids_to_base64(document)
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise DecodeError(400, f"body is not a valid {request.DESCRIPTOR.name}: {exc}") from None
    return request


# ``json.loads`` holds the interpreter lock for a whole document, about 60 ms a megabyte, and the event loop
# (on another thread) waits meanwhile. A larger document is read by the json module's Python scanner, which
# lets the loop run every few milliseconds; it is slower, but only exports far larger than usual take it.
LARGE_JSON_BYTES = 512 * 1024
_PATIENT_JSON = json.JSONDecoder()
_PATIENT_JSON.scan_once = json.scanner.py_make_scanner(_PATIENT_JSON)  # type: ignore[attr-defined]


def _read_json(body: bytes) -> Any:
    if len(body) <= LARGE_JSON_BYTES:
        return json.loads(body)
    return _PATIENT_JSON.decode(body.decode())


# OTLP/JSON spells trace and span ids in hex where proto3 JSON expects base64.
_HEX_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


def _hex_ids_to_base64(node: Any, depth: int = 0) -> None:
    if depth > 64:
        raise ValueError("JSON nests too deeply")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _HEX_ID_KEYS and isinstance(value, str):
                node[key] = _hex_to_base64(key, value)
            elif isinstance(value, dict | list):
                _hex_ids_to_base64(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                _hex_ids_to_base64(item, depth + 1)


def _hex_to_base64(key: str, value: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        raise ValueError(f"{key} {value[:40]!r} is not hex") from None


def encode(message: Message, media: str) -> bytes:
    if media == JSON:
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


def status_body(code: int, message: str, media: str) -> bytes:
    """A google.rpc.Status, the error body OTLP/HTTP prescribes."""
    return encode(status_pb2.Status(code=code, message=message), media)
