"""Small builders of OTLP requests shaped like Claude Code's, for tests."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
SECOND = 1_000_000_000
T0 = 1_790_000_000 * SECOND


def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    return AnyValue(string_value=str(v))


def attrs(d: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in d.items()]


def sum_request(
    name: str,
    points: list[tuple[int, int, float, dict[str, Any]]],
    *,
    temporality: int = DELTA,
    unit: str = "",
    resource: dict[str, Any] | None = None,
    monotonic: bool = True,
) -> ExportMetricsServiceRequest:
    """One Sum metric with points ``(start_ns, time_ns, value, attributes)``."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(attrs(resource or {"service.name": "claude-code"}))
    metric = rm.scope_metrics.add().metrics.add(name=name, unit=unit)
    metric.sum.aggregation_temporality = temporality
    metric.sum.is_monotonic = monotonic
    for start, end, v, point_attrs in points:
        dp = metric.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=end)
        if isinstance(v, int):
            dp.as_int = v
        else:
            dp.as_double = v
        dp.attributes.extend(attrs(point_attrs))
    return request


def log_request(
    records: list[tuple[int, str, dict[str, Any]]], resource: dict[str, Any] | None = None
) -> ExportLogsServiceRequest:
    """Log records ``(time_ns, event_name, attributes)`` as Claude Code writes them."""
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.extend(attrs(resource or {"service.name": "claude-code"}))
    scope = rl.scope_logs.add()
    for time_ns, name, record_attrs in records:
        record = scope.log_records.add(time_unix_nano=time_ns)
        record.body.string_value = f"claude_code.{name}"
        record.attributes.extend(attrs({"event.name": name, **record_attrs}))
    return request


def trace_request(
    spans: list[tuple[str, str, str, str, int, int, dict[str, Any]]],
    resource: dict[str, Any] | None = None,
    error: frozenset[str] = frozenset(),
) -> ExportTraceServiceRequest:
    """Spans ``(trace_id, span_id, parent_span_id, name, start_ns, end_ns, attributes)``, ids in hex; those
    whose span_id is in ``error`` have an error status."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(attrs(resource or {"service.name": "claude-code"}))
    scope = rs.scope_spans.add()
    for trace_id, span_id, parent, name, start, end, span_attrs in spans:
        span = scope.spans.add(
            trace_id=bytes.fromhex(trace_id),
            span_id=bytes.fromhex(span_id),
            parent_span_id=bytes.fromhex(parent),
            name=name,
            start_time_unix_nano=start,
            end_time_unix_nano=end,
        )
        span.attributes.extend(attrs(span_attrs))
        if span_id in error:
            span.status.code = 2
    return request


def prompt_spans(
    trace: int,
    start_ns: int,
    attributes: dict[str, Any],
    tool: str = "Write",
    model: str = "claude-sonnet-4-5",
) -> list[tuple[str, str, str, str, int, int, dict[str, Any]]]:
    """One prompt's spans as Claude Code sends them with tracing on: the interaction; under it an LLM request
    that asks for ``tool``, the tool (the wait for the user's permission, then its run) and the LLM request
    that answers. Ids: the trace's from ``trace``, each span's from both."""
    trace_id = f"{trace:032x}"

    def span_id(n: int) -> str:
        return f"{trace:08x}{n:08x}"

    ms = 1_000_000
    llm = {"model": model, "llm_request.context": "interaction", "speed": "normal"}
    return [
        (
            trace_id,
            span_id(1),
            "",
            "claude_code.interaction",
            start_ns,
            start_ns + 5000 * ms,
            {
                **attributes,
                "user_prompt": "<REDACTED>",
                "user_prompt_length": 12,
                "interaction.sequence": trace,
            },
        ),
        (
            trace_id,
            span_id(2),
            span_id(1),
            "claude_code.llm_request",
            start_ns + 10 * ms,
            start_ns + 1500 * ms,
            {
                **attributes,
                **llm,
                "input_tokens": 700,
                "output_tokens": 30,
                "cache_read_tokens": 9000,
                "cache_creation_tokens": 300,
                "ttft_ms": 400,
                "stop_reason": "tool_use",
            },
        ),
        (
            trace_id,
            span_id(3),
            span_id(1),
            "claude_code.tool",
            start_ns + 1600 * ms,
            start_ns + 3600 * ms,
            {**attributes, "tool_name": tool},
        ),
        (
            trace_id,
            span_id(4),
            span_id(3),
            "claude_code.tool.blocked_on_user",
            start_ns + 1600 * ms,
            start_ns + 3000 * ms,
            {**attributes, "decision": "accept", "source": "user_temporary"},
        ),
        (
            trace_id,
            span_id(5),
            span_id(3),
            "claude_code.tool.execution",
            start_ns + 3000 * ms,
            start_ns + 3500 * ms,
            {**attributes, "success": True},
        ),
        (
            trace_id,
            span_id(6),
            span_id(1),
            "claude_code.llm_request",
            start_ns + 3700 * ms,
            start_ns + 4900 * ms,
            {**attributes, **llm, "input_tokens": 720, "output_tokens": 12, "stop_reason": "end_turn"},
        ),
    ]
