"""OTLP export requests to the records the store writes (``records``): pure functions, no I/O.

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
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from ..records import Batch, Event, Point, Span, TrustedAttributes, event_key
from .decode import Signal

MAX_TIME_NS = 2**63 - 1  # what SQLite's INTEGER holds; year 2262
MAX_STRING = 16 * 1024  # longer attribute strings are cut, as OTel SDKs do with attribute limits
MAX_KEY = 256  # longer attribute keys are cut too
# No measurement Claude Code sends comes near this (a trillion dollars, tokens or milliseconds); larger values
# are rejected, so no sum the store keeps can overflow to infinity.
MAX_VALUE = 1e12
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
# Conversation text, wherever it turns up (an attribute of a record, a point or a span, or nested in one):
# only its length is kept, unless the server was started with --store-prompts.
TEXT_KEYS = {
    "prompt": "prompt_length",
    "prompt_text": "prompt_length",
    "user_prompt": "prompt_length",
    "response": "response_length",
    "response_text": "response_length",
    "assistant_response": "response_length",
    "completion": "response_length",
}
# Events whose body may be the conversation text itself.
TEXT_EVENTS = frozenset({"user_prompt", "assistant_response"})
REDACTED = "<REDACTED>"
NUMERIC_SUFFIXES = ("_ms", "_tokens", "_bytes", "_usd", "_length", "_count")

_TEMPORALITY: dict[int, str] = {
    metrics_pb2.AGGREGATION_TEMPORALITY_DELTA: "delta",
    metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE: "cumulative",
}


def to_batch(
    signal: Signal,
    request: Message,
    *,
    store_prompts: bool = False,
    now_ns: int | None = None,
    latest_ns: int = MAX_TIME_NS,
    trusted: TrustedAttributes | None = None,
) -> Batch:
    """The records of an export. Anything dated after ``latest_ns`` (the server's clock and the skew it
    allows) is rejected: a client whose clock runs years ahead would otherwise pin its data first.
    ``trusted`` attributes (from the sender's token) replace whatever the export claims for them."""
    batch = Batch()
    vouched = trusted.attributes() if trusted is not None else {}
    rules = _Rules(store_prompts, min(latest_ns, MAX_TIME_NS), _vouched_by(vouched))
    if signal is Signal.METRICS:
        _metrics(cast(ExportMetricsServiceRequest, request), batch, rules)
    elif signal is Signal.LOGS:
        _logs(cast(ExportLogsServiceRequest, request), batch, rules, now_ns or time.time_ns())
    else:
        _traces(cast(ExportTraceServiceRequest, request), batch, rules)
    if vouched:
        _trust(batch, vouched)
    return batch


def _vouched_by(vouched: dict[str, Any]) -> bytes:
    """What the trusted attributes add to an event's identity: the same record sent under two identities is
    two events (empty without them, so an event's key is what it always was)."""
    return json.dumps(vouched, sort_keys=True).encode() if vouched else b""


def _trust(batch: Batch, vouched: dict[str, Any]) -> None:
    """The trusted attributes over the client's own, on every record; on an event they describe its kind,
    as the resource's attributes do."""
    keys = frozenset(vouched)
    for point in batch.points:
        point.attrs.update(vouched)
    for event in batch.events:
        event.attrs.update(vouched)
        event.resource_keys |= keys
    for span in batch.spans:
        span.attrs.update(vouched)


@dataclass(frozen=True, slots=True)
class _Rules:
    store_prompts: bool
    latest_ns: int
    vouched_by: bytes = b""

    def too_late(self, time_ns: int) -> str | None:
        if time_ns > self.latest_ns:
            return "data dated ahead of the server's clock (more than --max-clock-skew) was rejected"
        return None


# --- attributes ---------------------------------------------------------------------------------------


def any_value(value: common_pb2.AnyValue, batch: Batch | None = None, depth: int = 0) -> Any:
    """An attribute's value as Python: arrays and key-value lists as lists and dicts (see ``attributes``)."""
    text = value.string_value
    if text and len(text) <= MAX_STRING:
        return text  # by far the most common case: skip the oneof lookup
    which = value.WhichOneof("value")
    if which == "string_value":
        return _cut(value.string_value, batch)
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
        return {
            _key(kv.key, batch): any_value(kv.value, batch, depth + 1) for kv in value.kvlist_value.values
        }
    return None


def attributes(
    kvs: Iterable[common_pb2.KeyValue], batch: Batch | None = None, *, store_prompts: bool = False
) -> dict[str, Any]:
    """Attributes as a flat map of text, numbers and booleans. An array or key-value list (such as
    ``process.command_args``) becomes its JSON text: a value a filter can match and a row can hold.
    Conversation text is replaced by ``REDACTED`` unless ``store_prompts``; its length is kept either way."""
    out: dict[str, Any] = {}
    for kv in kvs:
        key = kv.key
        if key:
            value = kv.value
            text = value.string_value  # the common case, read here without a call
            if len(key) > MAX_KEY:
                key = _key(key, batch)
            if text and len(text) <= MAX_STRING:
                out[key] = text
                continue
            plain = any_value(value, batch)
            if isinstance(plain, list | dict):
                nested = plain if store_prompts else _redacted(plain)
                plain = _cut(json.dumps(nested, ensure_ascii=False), batch)
            out[key] = plain
    if not TEXT_KEYS.keys().isdisjoint(out):
        _redact(out, store_prompts)
    return out


def _cut(text: str, batch: Batch | None) -> str:
    if len(text) <= MAX_STRING:
        return text
    if batch is not None:
        batch.note(f"attribute values longer than {MAX_STRING} characters were shortened")
    return text[:MAX_STRING]


def _key(key: str, batch: Batch | None) -> str:
    if len(key) <= MAX_KEY:
        return key
    if batch is not None:
        batch.note(f"attribute keys longer than {MAX_KEY} characters were shortened")
    return key[:MAX_KEY]


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


def _metrics(request: ExportMetricsServiceRequest, batch: Batch, rules: _Rules) -> None:
    for rm in request.resource_metrics:
        resource = attributes(rm.resource.attributes, batch, store_prompts=rules.store_prompts)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                _metric(metric, resource, sm.scope.name, batch, rules)


def _metric(
    metric: metrics_pb2.Metric,
    resource: dict[str, Any],
    scope: str,
    batch: Batch,
    rules: _Rules,
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
    for dp in points:
        start_ns, time_ns = dp.start_time_unix_nano, dp.time_unix_nano
        if not 0 < time_ns <= MAX_TIME_NS or start_ns > MAX_TIME_NS:
            batch.reject(1, f"{name}: a data point without a valid time_unix_nano was rejected")
            continue
        if late := rules.too_late(time_ns):
            batch.reject(1, f"{name}: {late}")
            continue
        if number:
            value, extra = (dp.as_double if dp.WhichOneof("value") == "as_double" else float(dp.as_int)), None
        else:
            value, extra = _point_value(kind, dp)
        if not math.isfinite(value):
            batch.reject(1, f"{name}: a non-finite value was rejected")
            continue
        if abs(value) > MAX_VALUE:
            batch.reject(1, f"{name}: a value beyond {MAX_VALUE:.0e} was rejected")
            continue
        if monotonic and value < 0:
            batch.reject(1, f"{name}: a negative value of a monotonic sum was rejected")
            continue
        attrs = {**resource, **attributes(dp.attributes, batch, store_prompts=rules.store_prompts)}
        batch.points.append(
            Point(name, unit, kind, temporality, monotonic, scope, attrs, start_ns, time_ns, value, extra)
        )


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


def _logs(request: ExportLogsServiceRequest, batch: Batch, rules: _Rules, now_ns: int) -> None:
    for rl in request.resource_logs:
        resource = attributes(rl.resource.attributes, batch, store_prompts=rules.store_prompts)
        resource_bytes = rl.resource.SerializeToString(deterministic=True)
        for sl in rl.scope_logs:
            for record in sl.log_records:
                event = _event(record, resource, resource_bytes, batch, rules, now_ns)
                if event is not None:
                    batch.events.append(event)


def _event(
    record: Any,
    resource: dict[str, Any],
    resource_bytes: bytes,
    batch: Batch,
    rules: _Rules,
    now_ns: int,
) -> Event | None:
    own_time = _valid_time(record.time_unix_nano) or _valid_time(record.observed_time_unix_nano)
    if late := rules.too_late(own_time):
        batch.reject(1, late)
        return None
    own = attributes(record.attributes, batch, store_prompts=rules.store_prompts)
    for key, value in own.items():
        if _numeric_key(key):
            if type(value) is str:  # numbers sent as strings, for keys numeric by nature
                value = own[key] = _number_from_text(value)
            if type(value) in (int, float) and abs(value) > MAX_VALUE:
                batch.reject(1, f"an event's {key} beyond {MAX_VALUE:.0e} was rejected")
                return None
    body = any_value(record.body, batch) if record.HasField("body") else None
    name = str(own.get("event.name") or record.event_name or _name_in(body) or "unknown")
    name = name.removeprefix(EVENT_PREFIX)
    body = _redacted_body(name, body, own, rules.store_prompts)
    digest = hashlib.blake2b(
        rules.vouched_by + resource_bytes + record.SerializeToString(deterministic=True), digest_size=16
    )
    return Event(
        key=event_key(own_time, digest.digest()),
        name=name,
        time_ns=own_time or now_ns,
        attrs={**resource, **own},
        body=body if isinstance(body, str) else (json.dumps(body) if body is not None else None),
        resource_keys=frozenset(resource),
    )


def _name_in(body: Any) -> str:
    """The event's name, when the body is one (Claude Code's is ``claude_code.user_prompt``), never text."""
    return body if isinstance(body, str) and _EVENT_NAME.fullmatch(body) else ""


_EVENT_NAME = re.compile(r"[\w.\-]{1,128}")


def _redacted_body(name: str, body: Any, attrs: dict[str, Any], store_prompts: bool) -> Any:
    """A record's body with conversation text in it redacted: all of it, for the events whose body may be the
    text itself; by key, when it is a key-value list."""
    if store_prompts or body is None or body == REDACTED:
        return body
    if name in TEXT_EVENTS and body not in (name, EVENT_PREFIX + name):
        if isinstance(body, str):
            attrs.setdefault(TEXT_KEYS["prompt" if name == "user_prompt" else "response"], len(body))
        return REDACTED
    return _redacted(body)


def _redact(attrs: dict[str, Any], store_prompts: bool = False) -> dict[str, Any]:
    """The length of conversation text kept beside it, in place; the text itself only when asked."""
    for text_key, length_key in TEXT_KEYS.items():
        text = attrs.get(text_key)
        if text is None or text == REDACTED:
            continue
        if isinstance(text, str):
            attrs.setdefault(length_key, len(text))
        if not store_prompts:
            attrs[text_key] = REDACTED
    return attrs


def _redacted(value: Any) -> Any:
    """A nested value (from an array or key-value list) with the conversation text in it redacted."""
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    if isinstance(value, dict):
        return _redact({key: _redacted(item) for key, item in value.items()})
    return value


def _valid_time(ns: int) -> int:
    return ns if 0 < ns <= MAX_TIME_NS else 0


# --- traces -------------------------------------------------------------------------------------------


def _traces(request: ExportTraceServiceRequest, batch: Batch, rules: _Rules) -> None:
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes, batch, store_prompts=rules.store_prompts)
        for ss in rs.scope_spans:
            for span in ss.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    batch.reject(1, "a span without a valid trace_id and span_id was rejected")
                    continue
                if late := rules.too_late(max(span.start_time_unix_nano, span.end_time_unix_nano)):
                    batch.reject(1, late)
                    continue
                batch.spans.append(
                    Span(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=_cut(span.name, batch),
                        start_ns=_valid_time(span.start_time_unix_nano),
                        end_ns=_valid_time(span.end_time_unix_nano),
                        status_code=span.status.code,
                        attrs={
                            **resource,
                            **attributes(span.attributes, batch, store_prompts=rules.store_prompts),
                        },
                    )
                )
