"""Independent ground truth from the raw OTLP requests recorded by :class:`otlp_tee.OtlpTee`.

Decodes with the opentelemetry-proto classes only (protobuf, gzip, OTLP/JSON) and never imports ccmetrics.
Only exports that upstream acknowledged (HTTP 2xx / gRPC OK) count.

Metric points: DELTA points are summed.  CUMULATIVE points are grouped by series (resource attributes,
metric name, point attributes) and start time; each group contributes the value of its latest point.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE

Attrs = dict[str, Any]
Where = Callable[[Attrs], bool]


# ------------------------------------------------------------------------------------------ decode


def _raw(body: bytes, content_encoding: str | None) -> bytes:
    if content_encoding and content_encoding.lower() == "gzip":
        return gzip.decompress(body)
    if not content_encoding and body[:2] == b"\x1f\x8b":
        return gzip.decompress(body)
    return body


def _strip_ids(obj: Any) -> Any:
    """OTLP/JSON encodes trace/span ids as hex, which protobuf's JSON parser would read as base64."""
    if isinstance(obj, dict):
        return {
            k: _strip_ids(v) for k, v in obj.items() if k not in ("traceId", "spanId", "trace_id", "span_id")
        }
    if isinstance(obj, list):
        return [_strip_ids(v) for v in obj]
    return obj


def decode(signal: str, body: bytes, content_type: str | None, content_encoding: str | None):  # noqa: ANN201
    cls = {"metrics": ExportMetricsServiceRequest, "logs": ExportLogsServiceRequest}[signal]
    raw = _raw(body, content_encoding)
    msg = cls()
    if content_type and "json" in content_type.lower():
        json_format.Parse(json.dumps(_strip_ids(json.loads(raw))), msg, ignore_unknown_fields=True)
    else:
        msg.ParseFromString(raw)
    return msg


def any_value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def attrs(kvs: Iterable[Any]) -> Attrs:
    return {kv.key: any_value(kv.value) for kv in kvs}


# -------------------------------------------------------------------------------------- flattening


@dataclass(frozen=True)
class Point:
    metric: str
    temporality: int
    attrs: Attrs  # resource attributes overlaid with point attributes
    series: tuple  # identity of the time series (resource attrs, metric, point attrs)
    start: int
    time: int
    value: float


@dataclass(frozen=True)
class Event:
    name: str
    attrs: Attrs  # resource attributes overlaid with log-record attributes


def _freeze(d: Attrs) -> tuple:
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in d.items()))


def flatten(records: Iterable[Any]) -> tuple[list[Point], list[Event]]:
    """Points of every Sum metric and every log record, from acknowledged exports only."""
    points: list[Point] = []
    events: list[Event] = []
    for rec in records:
        if not rec.acknowledged or rec.signal not in ("metrics", "logs"):
            continue
        enc = rec.content_encoding if rec.transport == "http" else None  # gRPC bodies are already plain
        msg = decode(rec.signal, rec.body, rec.content_type, enc)
        if rec.signal == "metrics":
            for rm in msg.resource_metrics:
                res = attrs(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        if m.WhichOneof("data") != "sum":
                            continue
                        for dp in m.sum.data_points:
                            pa = attrs(dp.attributes)
                            value = dp.as_double if dp.WhichOneof("value") == "as_double" else dp.as_int
                            points.append(
                                Point(
                                    m.name,
                                    m.sum.aggregation_temporality,
                                    {**res, **pa},
                                    (_freeze(res), m.name, _freeze(pa)),
                                    dp.start_time_unix_nano,
                                    dp.time_unix_nano,
                                    float(value),
                                )
                            )
        else:
            for rl in msg.resource_logs:
                res = attrs(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for lr in sl.log_records:
                        la = attrs(lr.attributes)
                        body = any_value(lr.body)
                        name = la.get("event.name") or (
                            str(body).removeprefix("claude_code.") if body else ""
                        )
                        events.append(Event(str(name), {**res, **la}))
    return points, events


def sum_points(points: Iterable[Point]) -> float:
    """Delta points add up; cumulative points: latest value per (series, start time), added up."""
    total = 0.0
    latest: dict[tuple, Point] = {}
    for p in points:
        if p.temporality == CUMULATIVE:
            key = (p.series, p.start)
            if key not in latest or p.time >= latest[key].time:
                latest[key] = p
        else:
            total += p.value
    return total + sum(p.value for p in latest.values())


# ------------------------------------------------------------------------------------------ totals


@dataclass
class Totals:
    sessions: float = 0
    cost_usd: float = 0
    tokens: dict[str, float] = field(
        default_factory=lambda: {"input": 0, "output": 0, "cache_read": 0, "cache_creation": 0}
    )
    lines_of_code: dict[str, float] = field(default_factory=lambda: {"added": 0, "removed": 0})
    commits: float = 0
    pull_requests: float = 0
    edit_decisions: dict[str, float] = field(default_factory=lambda: {"accept": 0, "reject": 0})
    active_time_seconds: dict[str, float] = field(default_factory=lambda: {"user": 0, "cli": 0})
    prompts: int = 0
    avg_prompt_length: float | None = None
    api_requests: int = 0
    api_errors: int = 0
    events_by_name: dict[str, int] = field(default_factory=dict)
    metric_names: set[str] = field(default_factory=set)

    def as_summary(self) -> dict[str, Any]:
        """The fields that ccmetrics' /api/summary reports."""
        return {
            "sessions": self.sessions,
            "cost_usd": self.cost_usd,
            "tokens": dict(self.tokens),
            "lines_of_code": dict(self.lines_of_code),
            "commits": self.commits,
            "pull_requests": self.pull_requests,
            "edit_decisions": dict(self.edit_decisions),
            "active_time_seconds": dict(self.active_time_seconds),
            "prompts": self.prompts,
            "avg_prompt_length": self.avg_prompt_length,
            "api_requests": self.api_requests,
            "api_errors": self.api_errors,
        }


TOKEN_TYPES = {
    "input": "input",
    "output": "output",
    "cacheRead": "cache_read",
    "cacheCreation": "cache_creation",
}


def totals(points: list[Point], events: list[Event], where: Where = lambda a: True) -> Totals:
    pts = [p for p in points if where(p.attrs)]
    evs = [e for e in events if where(e.attrs)]
    t = Totals()
    t.metric_names = {p.metric for p in pts}

    def metric(name: str, **match: str) -> float:
        return sum_points(
            p for p in pts if p.metric == name and all(p.attrs.get(k) == v for k, v in match.items())
        )

    t.sessions = metric("claude_code.session.count")
    t.cost_usd = metric("claude_code.cost.usage")
    for otel_type, key in TOKEN_TYPES.items():
        t.tokens[key] = metric("claude_code.token.usage", type=otel_type)
    for kind in ("added", "removed"):
        t.lines_of_code[kind] = metric("claude_code.lines_of_code.count", type=kind)
    t.commits = metric("claude_code.commit.count")
    t.pull_requests = metric("claude_code.pull_request.count")
    for d in ("accept", "reject"):
        t.edit_decisions[d] = metric("claude_code.code_edit_tool.decision", decision=d)
    for kind in ("user", "cli"):
        t.active_time_seconds[kind] = metric("claude_code.active_time.total", type=kind)

    by_name: dict[str, int] = defaultdict(int)
    for e in evs:
        by_name[e.name] += 1
    t.events_by_name = dict(by_name)
    prompts = [e for e in evs if e.name == "user_prompt"]
    t.prompts = len(prompts)
    lengths = [float(e.attrs["prompt_length"]) for e in prompts if e.attrs.get("prompt_length") is not None]
    t.avg_prompt_length = sum(lengths) / len(lengths) if lengths else None
    t.api_requests = by_name.get("api_request", 0)
    t.api_errors = by_name.get("api_error", 0)
    return t


def by_attr(points: list[Point], attr: str) -> dict[Any, dict[str, Any]]:
    """Cost and tokens per value of a point attribute (e.g. ``model``, ``user.id``)."""
    out: dict[Any, dict[str, Any]] = {}
    keys = {
        p.attrs.get(attr) for p in points if p.metric in ("claude_code.cost.usage", "claude_code.token.usage")
    }
    for k in keys:
        sel = [p for p in points if p.attrs.get(attr) == k]
        out[k] = {
            "cost_usd": sum_points(p for p in sel if p.metric == "claude_code.cost.usage"),
            "tokens": {
                key: sum_points(
                    p for p in sel if p.metric == "claude_code.token.usage" and p.attrs.get("type") == ot
                )
                for ot, key in TOKEN_TYPES.items()
            },
        }
    return out


def event_counts_by_attr(events: list[Event], name: str, attr: str) -> dict[Any, int]:
    out: dict[Any, int] = defaultdict(int)
    for e in events:
        if e.name == name:
            out[e.attrs.get(attr)] += 1
    return dict(out)


def ground_truth(records: Iterable[Any], where: Where = lambda a: True) -> Totals:
    points, events = flatten(records)
    return totals(points, events, where)
