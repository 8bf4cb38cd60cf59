"""Replaying captured OTLP exports as if they were sent now.

The captures in ``tests/fixtures`` carry the times at which the real CLI sent them. Replayed as they are, they
would fall out of the dashboard's default range a week later, and a test would break with the calendar. So
every replay goes through :func:`shift_to_present`, which moves every time in an export (points, records,
spans and the ``event.timestamp`` attribute) by whole hours, so that the newest lands in the past hour. Whole
hours keep each point in the same place within its hour, as it was captured.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import time
from collections.abc import Iterable
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

HOUR_NS = 3_600_000_000_000
REQUEST_TYPES: dict[str, type[Message]] = {
    "/v1/metrics": ExportMetricsServiceRequest,
    "/v1/logs": ExportLogsServiceRequest,
    "/v1/traces": ExportTraceServiceRequest,
}
_TIME_SUFFIXES = ("time_unix_nano", "TimeUnixNano", "timeUnixNano")  # proto and JSON spellings
_TIMESTAMP_KEY = "event.timestamp"


def hours_to_present(newest_ns: int, now_ns: int | None = None) -> int:
    """The whole number of hours that moves ``newest_ns`` into the hour before now (never into the future)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    return (now_ns - newest_ns) // HOUR_NS * HOUR_NS


def shift_body(path: str, content_type: str, body: bytes, delta_ns: int) -> bytes:
    """An export's body (protobuf or OTLP/JSON, not compressed) with every time moved by ``delta_ns``."""
    if content_type.startswith("application/json"):
        document = json.loads(body)
        _shift_json(document, delta_ns)
        return json.dumps(document).encode()
    message = REQUEST_TYPES[path]()
    message.ParseFromString(body)
    _shift_message(message, delta_ns)
    return message.SerializeToString()


def newest_time_ns(path: str, content_type: str, body: bytes) -> int:
    """The latest time anywhere in an export's body (0 when it has none)."""
    if content_type.startswith("application/json"):
        return max(_json_times(json.loads(body)), default=0)
    message = REQUEST_TYPES[path]()
    message.ParseFromString(body)
    return max(_message_times(message), default=0)


def decompressed(body: bytes, encoding: str | None) -> bytes:
    return gzip.decompress(body) if encoding == "gzip" else body


def compressed(body: bytes, encoding: str | None) -> bytes:
    return gzip.compress(body) if encoding == "gzip" else body


# --- protobuf ---------------------------------------------------------------------------------------------


def _shift_message(message: Message, delta_ns: int) -> None:
    for field, value in message.ListFields():
        if field.name.endswith(_TIME_SUFFIXES) and value:
            setattr(message, field.name, value + delta_ns)
        elif field.name == "attributes":
            for kv in value:
                if kv.key == _TIMESTAMP_KEY and kv.value.string_value:
                    kv.value.string_value = _shift_iso(kv.value.string_value, delta_ns)
        elif field.message_type is not None:
            for child in [value] if isinstance(value, Message) else value:
                _shift_message(child, delta_ns)


def _message_times(message: Message) -> Iterable[int]:
    for field, value in message.ListFields():
        if field.name.endswith(_TIME_SUFFIXES):
            yield value
        elif field.message_type is not None and field.name != "attributes":
            for child in [value] if isinstance(value, Message) else value:
                yield from _message_times(child)


# --- OTLP/JSON --------------------------------------------------------------------------------------------


def _shift_json(node: Any, delta_ns: int) -> None:
    if isinstance(node, list):
        for item in node:
            _shift_json(item, delta_ns)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key.endswith(_TIME_SUFFIXES) and value not in (None, "", "0", 0):
            node[key] = str(int(value) + delta_ns) if isinstance(value, str) else int(value) + delta_ns
        elif key == "attributes" and isinstance(value, list):
            for kv in value:
                text = kv.get("value", {}).get("stringValue") if isinstance(kv, dict) else None
                if kv.get("key") == _TIMESTAMP_KEY and text:
                    kv["value"]["stringValue"] = _shift_iso(text, delta_ns)
        else:
            _shift_json(value, delta_ns)


def _json_times(node: Any) -> Iterable[int]:
    if isinstance(node, list):
        for item in node:
            yield from _json_times(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key.endswith(_TIME_SUFFIXES) and value not in (None, ""):
                yield int(value)
            elif key != "attributes":
                yield from _json_times(value)


def _shift_iso(text: str, delta_ns: int) -> str:
    """An ISO 8601 time such as ``2026-11-27T10:00:00.123Z``, moved, in the same format."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    moved = moment + dt.timedelta(microseconds=delta_ns // 1000)
    out = moved.isoformat(timespec="milliseconds")
    return out.replace("+00:00", "Z") if text.endswith("Z") else out
