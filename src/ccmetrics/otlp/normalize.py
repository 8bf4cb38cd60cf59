"""OTLP export requests to flat records the store can write: pure functions, no I/O.

Every attribute is kept (resource attributes merged under point/record attributes), since nobody can know
which one a user will filter on. Points that cannot be right (NaN, a negative monotonic sum, no timestamp)
are rejected one by one and counted, so the rest of the export still lands.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from ..recent import Recent
from .decode import Signal

MAX_TIME_NS = 2**63 - 1  # what SQLite's INTEGER holds; year 2262
MAX_STRING = 16 * 1024  # longer attribute strings are cut, as OTel SDKs do with attribute limits
EVENT_PREFIX = "claude_code."

# Attributes Claude Code sends as numbers or as numeric strings, depending on the event.
NUMERIC_KEYS = frozenset(
    {
        "prompt_length",
        "duration_ms",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_creation_tokens",
        "cost_usd",
        "status_code",
        "attempt",
        "tool_result_size_bytes",
        "event.sequence",
        "ttft_ms",
        "tool_input_size_bytes",
        "decision_time_ms",
    }
)
# Conversation text Claude Code sends when OTEL_LOG_USER_PROMPTS=1: only its length is kept by default.
TEXT_KEYS = {"prompt": "prompt_length", "prompt_text": "prompt_length", "response": "response_length"}
REDACTED = "<REDACTED>"
NUMERIC_SUFFIXES = ("_ms", "_tokens", "_bytes", "_usd", "_length", "_count")

_TEMPORALITY: dict[int, str] = {
    metrics_pb2.AGGREGATION_TEMPORALITY_DELTA: "delta",
    metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE: "cumulative",
}


@dataclass(slots=True)
class Point:
    metric: str
    unit: str
    kind: str  # sum | gauge | histogram | exponential_histogram | summary
    temporality: str | None  # delta | cumulative, for sums and histograms
    monotonic: bool
    scope: str
    attrs: dict[str, Any]
    start_ns: int
    time_ns: int
    value: float
    extra: dict[str, Any] | None = None
    # What makes the series this point belongs to, as it came over the wire (resource, scope, metric and the
    # point's attributes): equal keys, equal series. None when unknown; then the attributes say it.
    key: Any = None


@dataclass(slots=True)
class Event:
    key: bytes  # identical records (an exporter's retry) share it: see event_key
    name: str
    time_ns: int
    attrs: dict[str, Any]
    body: str | None
    resource_keys: frozenset[str] = frozenset()  # which of attrs came from the resource

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its fields (events cross to the writer process): half the cost of the slots' state."""
        return Event, (self.key, self.name, self.time_ns, self.attrs, self.body, self.resource_keys)


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    end_ns: int
    status_code: int
    attrs: dict[str, Any]


@dataclass
class Batch:
    """What one export request contributes, and what of it had to be rejected."""

    signal: Signal
    points: list[Point] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    rejected: int = 0
    problems: list[str] = field(default_factory=list)

    def reject(self, count: int, why: str) -> None:
        self.rejected += count
        self.note(why)

    def note(self, why: str) -> None:
        if why not in self.problems and len(self.problems) < 10:
            self.problems.append(why)

    @property
    def message(self) -> str:
        return "; ".join(self.problems)


def to_batch(
    signal: Signal, request: Message, *, store_prompts: bool = False, now_ns: int | None = None
) -> Batch:
    batch = Batch(signal)
    if signal is Signal.METRICS:
        _metrics(cast(ExportMetricsServiceRequest, request), batch)
    elif signal is Signal.LOGS:
        _logs(cast(ExportLogsServiceRequest, request), batch, store_prompts, now_ns or time.time_ns())
    else:
        _traces(cast(ExportTraceServiceRequest, request), batch)
    return batch


# --- attributes ---------------------------------------------------------------------------------------


def any_value(value: common_pb2.AnyValue, batch: Batch | None = None, depth: int = 0) -> Any:
    text = value.string_value
    if text and len(text) <= MAX_STRING:
        return text  # by far the most common case: skip the oneof lookup
    which = value.WhichOneof("value")
    if which == "string_value":
        text = value.string_value
        if len(text) > MAX_STRING:
            if batch is not None:
                batch.note(f"attribute values longer than {MAX_STRING} characters were shortened")
            return text[:MAX_STRING]
        return text
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return _json_number(value.double_value)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if depth >= 8:
        return None
    if which == "array_value":
        return [any_value(v, batch, depth + 1) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value, batch, depth + 1) for kv in value.kvlist_value.values}
    return None


def attributes(kvs: Iterable[common_pb2.KeyValue], batch: Batch | None = None) -> dict[str, Any]:
    out = {}
    for kv in kvs:
        key = kv.key
        if key:
            value = kv.value
            text = value.string_value  # the common case, read here without a call
            out[key] = text if text and len(text) <= MAX_STRING else any_value(value, batch)
    return out


def _json_number(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)  # JSON has no NaN; keep it readable


@functools.lru_cache(maxsize=4096)
def _numeric_key(key: str) -> bool:
    return key in NUMERIC_KEYS or key.endswith(NUMERIC_SUFFIXES)


def _number_from_text(text: str) -> str | int | float:
    """A number that arrived as a string (``"28"``) as the number; text that is not one stays as it is."""
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number):
        return int(number) if number.is_integer() and "." not in text else number
    return text


# --- metrics ------------------------------------------------------------------------------------------


# The attributes of series seen recently, by series key: a client sends the same series every minute, and
# converting its attributes again each time is most of the work of reading an export. Sized for a large
# team's active series (about 15 per session).
_ATTRIBUTES: Recent[Any, dict[str, Any]] = Recent(20_000)


def _metrics(request: ExportMetricsServiceRequest, batch: Batch) -> None:
    for rm in request.resource_metrics:
        resource = attributes(rm.resource.attributes, batch)
        resource_key = rm.resource.SerializeToString(deterministic=True)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                _metric(metric, resource, resource_key, sm.scope.name, batch)


def _metric(
    metric: metrics_pb2.Metric, resource: dict[str, Any], resource_key: bytes, scope: str, batch: Batch
) -> None:
    kind = metric.WhichOneof("data")
    if kind is None:
        return
    data = getattr(metric, kind)
    points = data.data_points
    name, unit = metric.name, metric.unit  # read once: each read of a protobuf field makes a new string
    if not name:
        batch.reject(len(points), "a metric without a name was rejected")
        return
    temporality = _TEMPORALITY.get(getattr(data, "aggregation_temporality", 0))
    if kind in ("sum", "histogram", "exponential_histogram") and temporality is None:
        batch.reject(len(points), f"{name}: aggregation temporality is unspecified")
        return
    monotonic = bool(getattr(data, "is_monotonic", False))
    number = kind in ("sum", "gauge")
    metric_key = (resource_key, scope, name, unit, kind, temporality, monotonic)
    for dp in points:
        start_ns, time_ns = dp.start_time_unix_nano, dp.time_unix_nano
        if not 0 < time_ns <= MAX_TIME_NS or start_ns > MAX_TIME_NS:
            batch.reject(1, f"{name}: a data point without a valid time_unix_nano was rejected")
            continue
        if number:
            value, extra = (dp.as_double if dp.WhichOneof("value") == "as_double" else float(dp.as_int)), None
        else:
            value, extra = _point_value(kind, dp)
        if not math.isfinite(value):
            batch.reject(1, f"{name}: a non-finite value was rejected")
            continue
        if monotonic and value < 0:
            batch.reject(1, f"{name}: a negative value of a monotonic sum was rejected")
            continue
        key = _series_key(dp, metric_key) if number else None
        attrs = _ATTRIBUTES.get(key) if number else None
        if attrs is None:
            notes = len(batch.problems)
            attrs = {**resource, **attributes(dp.attributes, batch)}
            if number and len(batch.problems) == notes:  # nothing was shortened: safe to reuse
                _ATTRIBUTES[key] = attrs
        batch.points.append(
            Point(
                name, unit, kind, temporality, monotonic, scope, attrs, start_ns, time_ns, value, extra, key
            )
        )


# The wire tags of a number data point's times and value (fields 2, 3, 4 and 6), all 8 bytes wide.
_TIME_AND_VALUE_TAGS = frozenset({0x11, 0x19, 0x21, 0x31})


def _series_key(dp: metrics_pb2.NumberDataPoint, metric_key: tuple[Any, ...]) -> tuple[Any, ...]:
    """The series a number data point belongs to: the point serialised (its attributes, flags and exemplars,
    by protobuf's C code) without its times and value. Serialisation writes fields in the order of their
    numbers, so those come first and are cut off; were they ever written later, the key would only be
    unique per point, which costs speed, not correctness. (The message has no maps, so serialising is
    deterministic without asking.)"""
    data = dp.SerializeToString()
    if data[:1] == b"\x11" and data[9:10] == b"\x19" and data[18:19] == b"\x21":
        return (metric_key, data[27:])  # the usual point: a start, a time and a double, 9 bytes each
    at = 0
    while at < len(data) and data[at] in _TIME_AND_VALUE_TAGS:
        at += 9  # the tag and 8 bytes
    return (metric_key, data[at:])


def _point_value(kind: str, dp: Any) -> tuple[float, dict[str, Any]]:
    """The sum and the rest of a histogram or summary point (numbers are read in ``_metric``)."""
    if kind == "histogram":
        extra = {
            "count": dp.count,
            "bounds": list(dp.explicit_bounds),
            "buckets": list(dp.bucket_counts),
        }
        if dp.HasField("min"):
            extra["min"] = dp.min
        if dp.HasField("max"):
            extra["max"] = dp.max
        return dp.sum, extra
    if kind == "exponential_histogram":
        extra = {
            "count": dp.count,
            "scale": dp.scale,
            "zero_count": dp.zero_count,
            "positive": {"offset": dp.positive.offset, "buckets": list(dp.positive.bucket_counts)},
            "negative": {"offset": dp.negative.offset, "buckets": list(dp.negative.bucket_counts)},
        }
        return dp.sum, extra
    # summary
    quantiles = {str(q.quantile): q.value for q in dp.quantile_values}
    return dp.sum, {"count": dp.count, "quantiles": quantiles}


# --- logs ---------------------------------------------------------------------------------------------


def _logs(request: ExportLogsServiceRequest, batch: Batch, store_prompts: bool, now_ns: int) -> None:
    for rl in request.resource_logs:
        resource = attributes(rl.resource.attributes, batch)
        resource_bytes = rl.resource.SerializeToString(deterministic=True)
        for sl in rl.scope_logs:
            for record in sl.log_records:
                batch.events.append(_event(record, resource, resource_bytes, batch, store_prompts, now_ns))


def _event(
    record: Any,
    resource: dict[str, Any],
    resource_bytes: bytes,
    batch: Batch,
    store_prompts: bool,
    now_ns: int,
) -> Event:
    own = attributes(record.attributes, batch)
    for key, value in own.items():
        if type(value) is str and _numeric_key(key):  # numbers sent as strings, for keys numeric by nature
            own[key] = _number_from_text(value)
    body = any_value(record.body, batch) if record.HasField("body") else None
    name = str(
        own.get("event.name") or record.event_name or (body if isinstance(body, str) else "") or "unknown"
    )
    name = name.removeprefix(EVENT_PREFIX)
    _redact(own, store_prompts)
    if not TEXT_KEYS.keys().isdisjoint(resource):
        resource = _redact(dict(resource), store_prompts)
    digest = hashlib.blake2b(resource_bytes + record.SerializeToString(deterministic=True), digest_size=16)
    own_time = _valid_time(record.time_unix_nano) or _valid_time(record.observed_time_unix_nano)
    return Event(
        key=event_key(own_time, digest.digest()),
        name=name,
        time_ns=own_time or now_ns,
        attrs={**resource, **own},
        body=body if isinstance(body, str) else (json.dumps(body) if body is not None else None),
        resource_keys=frozenset(resource),
    )


def event_key(time_ns: int, digest: bytes) -> bytes:
    """The record's own time (0 when it has none), then the hash of the record and its resource: identical
    records share it, and a store indexed by it takes new events at the end of the index, not all over it."""
    return time_ns.to_bytes(8, "big") + digest


def split_event_key(key: bytes) -> tuple[int, bytes]:
    """An ``event_key``'s parts: the record's own time (0 when it has none) and the hash."""
    return int.from_bytes(key[:8], "big"), key[8:]


def _redact(attrs: dict[str, Any], store_prompts: bool) -> dict[str, Any]:
    """Keep the length of conversation text; keep the text only when asked (a list of strings is text too)."""
    for text_key, length_key in TEXT_KEYS.items():
        text = attrs.get(text_key)
        if text is None or text == REDACTED:
            continue
        if isinstance(text, str):
            attrs.setdefault(length_key, len(text))
        if not store_prompts:
            attrs[text_key] = REDACTED
    return attrs


def _valid_time(ns: int) -> int:
    return ns if 0 < ns <= MAX_TIME_NS else 0


# --- traces -------------------------------------------------------------------------------------------


def _traces(request: ExportTraceServiceRequest, batch: Batch) -> None:
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes, batch)
        for ss in rs.scope_spans:
            for span in ss.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    batch.reject(1, "a span without a valid trace_id and span_id was rejected")
                    continue
                batch.spans.append(
                    Span(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        start_ns=_valid_time(span.start_time_unix_nano),
                        end_ns=_valid_time(span.end_time_unix_nano),
                        status_code=span.status.code,
                        attrs={**resource, **attributes(span.attributes, batch)},
                    )
                )
