"""Small builders of OTLP requests shaped like Claude Code's, for tests."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
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
