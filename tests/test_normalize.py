"""``to_batch``: OTLP export requests to records, on real protobuf messages.

Attributes merged and flattened, oversized keys and values cut, impossible points rejected and counted,
temporalities and histograms kept, event names found where Claude Code puts them, numbers that arrive as
text made numbers, conversation text redacted, retries recognised, and large batches split.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.metrics.v1 import metrics_pb2

from ccmetrics.otlp.decode import Signal
from ccmetrics.otlp.normalize import MAX_KEY, MAX_STRING, REDACTED, to_batch
from ccmetrics.records import Batch, Event, Point, Span, split_event_key

from .otlp_builders import CUMULATIVE, DELTA, SECOND, T0, attrs, log_request, sum_request

RESOURCE = {"service.name": "claude-code", "user.id": "resource-user", "team.id": "platform"}
SESSION = {"session.id": "s1", "user.id": "point-user"}


def metrics(request: ExportMetricsServiceRequest, **options: Any) -> Batch:
    return to_batch(Signal.METRICS, request, **options)


def logs(request: ExportLogsServiceRequest, **options: Any) -> Batch:
    return to_batch(Signal.LOGS, request, **options)


def traces(request: ExportTraceServiceRequest, **options: Any) -> Batch:
    return to_batch(Signal.TRACES, request, **options)


def one_point(
    value: float, point_attrs: dict[str, Any] | None = None, **options: Any
) -> ExportMetricsServiceRequest:
    return sum_request(
        "claude_code.cost.usage", [(T0, T0 + SECOND, value, point_attrs or SESSION)], **options
    )


def record(
    body: str | None = None,
    attributes: dict[str, Any] | None = None,
    *,
    event_name: str = "",
    time_ns: int = T0,
    resource: dict[str, Any] | None = None,
) -> ExportLogsServiceRequest:
    """One log record, with whatever body, attributes and event_name it is given (nothing else)."""
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.extend(attrs(resource or {"service.name": "claude-code"}))
    log = rl.scope_logs.add().log_records.add(time_unix_nano=time_ns, event_name=event_name)
    if body is not None:
        log.body.string_value = body
    log.attributes.extend(attrs(attributes or {}))
    return request


def span_request(
    span_attrs: dict[str, Any] | None = None, *, start_ns: int = T0, end_ns: int = T0 + SECOND
) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(attrs(RESOURCE))
    span = rs.scope_spans.add().spans.add(
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        name="claude_code.interaction",
        start_time_unix_nano=start_ns,
        end_time_unix_nano=end_ns,
    )
    span.attributes.extend(attrs(span_attrs or {}))
    return request


def kvlist(**values: Any) -> AnyValue:
    return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in values.items()]))


def with_attribute(request: ExportMetricsServiceRequest, key: str, value: AnyValue) -> None:
    """Add one attribute, of any OTLP type, to the request's first data point."""
    point = request.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0]
    point.attributes.append(KeyValue(key=key, value=value))


# --- attributes ---------------------------------------------------------------------------------------------


def test_resource_attributes_are_merged_under_point_record_and_span_attributes() -> None:
    (point,) = metrics(one_point(1.0, SESSION, resource=RESOURCE)).points
    assert point.attrs == {**RESOURCE, **SESSION}
    assert point.attrs["user.id"] == "point-user" and point.attrs["team.id"] == "platform"

    (event,) = logs(log_request([(T0, "api_request", SESSION)], resource=RESOURCE)).events
    assert event.attrs["user.id"] == "point-user" and event.attrs["team.id"] == "platform"
    assert event.resource_keys == frozenset(RESOURCE)

    (span,) = traces(span_request({"user.id": "span-user"})).spans
    assert span.attrs == {**RESOURCE, "user.id": "span-user"}


def test_arrays_and_key_value_lists_become_their_json_text() -> None:
    request = one_point(1.0)
    args = AnyValue(
        array_value=ArrayValue(values=[AnyValue(string_value="claude"), AnyValue(string_value="--print")])
    )
    with_attribute(request, "process.command_args", args)
    with_attribute(request, "limits", kvlist(a=AnyValue(int_value=1), b=AnyValue(string_value="x")))
    (point,) = metrics(request).points
    assert point.attrs["process.command_args"] == '["claude", "--print"]'
    assert isinstance(point.attrs["limits"], str)
    assert json.loads(point.attrs["limits"]) == {"a": 1, "b": "x"}


def test_long_keys_and_values_are_cut_with_a_note() -> None:
    long_key, long_value = "k" * (MAX_KEY + 50), "v" * (MAX_STRING + 1000)
    batch = metrics(one_point(1.0, {**SESSION, long_key: "x", "big": long_value}))
    (point,) = batch.points
    assert point.attrs["k" * MAX_KEY] == "x" and long_key not in point.attrs
    assert point.attrs["big"] == "v" * MAX_STRING
    assert batch.rejected == 0
    assert f"attribute keys longer than {MAX_KEY} characters were shortened" in batch.problems
    assert f"attribute values longer than {MAX_STRING} characters were shortened" in batch.problems


# --- points rejected one by one -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (float("nan"), "non-finite"),
        (float("inf"), "non-finite"),
        (float("-inf"), "non-finite"),
        (1e12 * 1.5, "beyond 1e+12"),
        (-2.0, "negative value of a monotonic sum"),
    ],
    ids=["nan", "inf", "-inf", "too-large", "negative"],
)
def test_impossible_values_are_rejected_and_counted_and_the_rest_kept(value: float, why: str) -> None:
    request = sum_request(
        "claude_code.token.usage",
        [
            (T0, T0 + SECOND, 5.0, SESSION),
            (T0, T0 + 2 * SECOND, value, SESSION),
            (T0, T0 + 3 * SECOND, 7, SESSION),
        ],
    )
    batch = metrics(request)
    assert [p.value for p in batch.points] == [5.0, 7.0]
    assert batch.rejected == 1
    assert len(batch.problems) == 1 and why in batch.problems[0]


def test_a_negative_value_of_a_sum_that_is_not_monotonic_is_kept() -> None:
    (point,) = metrics(one_point(-2.0, monotonic=False)).points
    assert point.value == -2.0 and not point.monotonic


def test_points_without_a_timestamp_or_dated_ahead_of_the_clock_are_rejected() -> None:
    request = sum_request(
        "claude_code.token.usage",
        [(0, 0, 1.0, SESSION), (T0, T0 + SECOND, 2.0, SESSION), (T0, T0 + 600 * SECOND, 3.0, SESSION)],
    )
    batch = metrics(request, latest_ns=T0 + 60 * SECOND)
    assert [p.value for p in batch.points] == [2.0]
    assert batch.rejected == 2
    assert any("without a valid time_unix_nano" in p for p in batch.problems)
    assert any("ahead of the server's clock" in p for p in batch.problems)


def test_log_records_and_spans_dated_ahead_of_the_clock_are_rejected() -> None:
    latest = T0 + 60 * SECOND
    batch = logs(
        log_request([(T0, "api_request", {}), (T0 + 61 * SECOND, "api_request", {})]), latest_ns=latest
    )
    assert [e.time_ns for e in batch.events] == [T0] and batch.rejected == 1
    assert "ahead of the server's clock" in batch.problems[0]

    assert len(traces(span_request(end_ns=latest), latest_ns=latest).spans) == 1
    late = traces(span_request(end_ns=latest + 1), latest_ns=latest)
    assert late.spans == [] and late.rejected == 1


def test_a_log_record_without_a_time_takes_the_time_it_arrived() -> None:
    (event,) = logs(record("claude_code.api_request", time_ns=0), now_ns=T0 + 5).events
    assert event.time_ns == T0 + 5
    assert split_event_key(event.key)[0] == 0  # its key says it had no time of its own


# --- temporality and histograms -----------------------------------------------------------------------------


def test_temporality_is_recorded_and_an_unspecified_one_rejected() -> None:
    (delta,) = metrics(one_point(1.0, temporality=DELTA)).points
    (cumulative,) = metrics(one_point(1.0, temporality=CUMULATIVE)).points
    assert (delta.temporality, delta.cumulative) == ("delta", False)
    assert (cumulative.temporality, cumulative.cumulative) == ("cumulative", True)
    assert (cumulative.kind, cumulative.start_ns, cumulative.time_ns) == ("sum", T0, T0 + SECOND)
    unspecified = metrics(one_point(1.0, temporality=metrics_pb2.AGGREGATION_TEMPORALITY_UNSPECIFIED))
    assert unspecified.points == [] and unspecified.rejected == 1
    assert "temporality is unspecified" in unspecified.problems[0]


def test_gauges_have_no_temporality() -> None:
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="claude_code.gauge")
    metric.gauge.data_points.add(time_unix_nano=T0, as_int=-3)
    (point,) = metrics(request).points
    assert (point.kind, point.temporality, point.value, point.extra) == ("gauge", None, -3.0, None)


def test_histograms_and_summaries_keep_their_sum_and_their_counts() -> None:
    request = ExportMetricsServiceRequest()
    sm = request.resource_metrics.add().scope_metrics.add()
    sm.scope.name = "com.anthropic.claude_code"
    histogram = sm.metrics.add(name="claude_code.duration", unit="ms").histogram
    histogram.aggregation_temporality = DELTA
    histogram.data_points.add(
        start_time_unix_nano=T0,
        time_unix_nano=T0 + SECOND,
        count=6,
        sum=123.5,
        min=1.5,
        max=80.0,
        explicit_bounds=[10.0, 100.0],
        bucket_counts=[2, 3, 1],
    )
    exponential = sm.metrics.add(name="claude_code.exp").exponential_histogram
    exponential.aggregation_temporality = CUMULATIVE
    dp = exponential.data_points.add(time_unix_nano=T0 + SECOND, count=3, sum=9.0, scale=2, zero_count=1)
    dp.positive.offset, dp.negative.offset = 4, -1
    dp.positive.bucket_counts.extend([1, 1])
    summary = sm.metrics.add(name="claude_code.summary").summary
    sdp = summary.data_points.add(time_unix_nano=T0 + SECOND, count=4, sum=20.0)
    sdp.quantile_values.add(quantile=0.5, value=4.0)

    hist, exp, summ = metrics(request).points
    assert (hist.kind, hist.temporality, hist.value, hist.scope, hist.unit) == (
        "histogram",
        "delta",
        123.5,
        "com.anthropic.claude_code",
        "ms",
    )
    assert hist.extra == {"count": 6, "bounds": [10.0, 100.0], "buckets": [2, 3, 1], "min": 1.5, "max": 80.0}
    assert (exp.kind, exp.temporality, exp.value) == ("exponential_histogram", "cumulative", 9.0)
    assert exp.extra == {
        "count": 3,
        "scale": 2,
        "zero_count": 1,
        "positive": {"offset": 4, "buckets": [1, 1]},
        "negative": {"offset": -1, "buckets": []},
    }
    assert not exp.cumulative  # only sums are turned into increments
    assert (summ.kind, summ.temporality, summ.value) == ("summary", None, 20.0)
    assert summ.extra == {"count": 4, "quantiles": {"0.5": 4.0}}


# --- events -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "name"),
    [
        (
            record("claude_code.other", {"event.name": "claude_code.user_prompt"}, event_name="x"),
            "user_prompt",
        ),
        (record("claude_code.other", event_name="claude_code.tool_result"), "tool_result"),
        (record("claude_code.api_error"), "api_error"),
        (record("please refactor the parser, then run the tests"), "unknown"),
        (record(None, {"session.id": "s1"}), "unknown"),
    ],
    ids=["event.name", "event_name", "body", "free-text-body", "nothing"],
)
def test_event_names_come_from_the_attribute_the_field_or_a_body_that_is_a_name(
    request_: ExportLogsServiceRequest, name: str
) -> None:
    (event,) = logs(request_).events
    assert event.name == name


def test_numbers_sent_as_text_for_numeric_keys_become_numbers() -> None:
    fields = {
        "input_tokens": "100",
        "cost_usd": "0.5",
        "duration_ms": "1e3",
        "custom_count": "7",
        "status_code": "not a number",
        "user.id": "12345",
    }
    (event,) = logs(log_request([(T0, "api_request", fields)])).events
    assert event.attrs["input_tokens"] == 100 and type(event.attrs["input_tokens"]) is int
    assert event.attrs["cost_usd"] == 0.5
    assert event.attrs["duration_ms"] == 1000.0
    assert event.attrs["custom_count"] == 7  # a numeric suffix is enough
    assert event.attrs["status_code"] == "not a number"  # text that is no number stays text
    assert event.attrs["user.id"] == "12345"  # not a numeric key


def test_an_event_with_a_measure_beyond_the_limit_is_rejected() -> None:
    batch = logs(log_request([(T0, "api_request", {"duration_ms": "2e12"}), (T0 + 1, "api_request", {})]))
    assert len(batch.events) == 1 and batch.rejected == 1
    assert "duration_ms beyond 1e+12" in batch.problems[0]


def test_identical_records_share_a_key_and_different_ones_do_not() -> None:
    request = log_request([(T0, "api_request", {**SESSION, "duration_ms": 5})])
    (first,), (retry,) = logs(request).events, logs(request).events
    assert first.key == retry.key
    assert split_event_key(first.key)[0] == T0
    others = [
        log_request([(T0, "api_request", {**SESSION, "duration_ms": 6})]),
        log_request([(T0 + 1, "api_request", {**SESSION, "duration_ms": 5})]),
        log_request([(T0, "api_request", {**SESSION, "duration_ms": 5})], resource=RESOURCE),
    ]
    keys = {first.key} | {logs(other).events[0].key for other in others}
    assert len(keys) == 4


# --- conversation text --------------------------------------------------------------------------------------


def test_prompt_text_in_attributes_nested_lists_and_the_body_is_redacted_with_its_length() -> None:
    request = record("refactor the parser", {"event.name": "user_prompt", "prompt": "secret plans"})
    log = request.resource_logs[0].scope_logs[0].log_records[0]
    log.attributes.append(
        KeyValue(key="context", value=kvlist(response_text=AnyValue(string_value="a reply")))
    )
    log.attributes.append(
        KeyValue(
            key="history",
            value=AnyValue(array_value=ArrayValue(values=[kvlist(prompt=AnyValue(string_value="old one"))])),
        )
    )
    (event,) = logs(request).events
    assert event.attrs["prompt"] == REDACTED and event.attrs["prompt_length"] == len("secret plans")
    assert json.loads(event.attrs["context"]) == {"response_text": REDACTED, "response_length": 7}
    assert json.loads(event.attrs["history"]) == [{"prompt": REDACTED, "prompt_length": 7}]
    assert event.body == REDACTED

    (bare,) = logs(record("refactor the parser", {"event.name": "user_prompt"})).events
    assert bare.body == REDACTED and bare.attrs["prompt_length"] == len("refactor the parser")
    (named,) = logs(record("claude_code.user_prompt", {"event.name": "user_prompt"})).events
    assert named.body == "claude_code.user_prompt"  # a body that is the event's name is no prompt


def test_prompt_text_on_points_and_spans_is_redacted() -> None:
    (point,) = metrics(one_point(1.0, {**SESSION, "prompt": "secret"})).points
    assert point.attrs["prompt"] == REDACTED and point.attrs["prompt_length"] == 6
    (span,) = traces(span_request({"user_prompt": "secret", "completion": "reply"})).spans
    assert span.attrs["user_prompt"] == REDACTED and span.attrs["prompt_length"] == 6
    assert span.attrs["completion"] == REDACTED and span.attrs["response_length"] == 5


def test_prompt_text_is_kept_when_asked() -> None:
    request = record("refactor the parser", {"event.name": "user_prompt", "prompt": "secret plans"})
    log = request.resource_logs[0].scope_logs[0].log_records[0]
    log.attributes.append(KeyValue(key="context", value=kvlist(prompt=AnyValue(string_value="nested"))))
    (event,) = logs(request, store_prompts=True).events
    assert event.attrs["prompt"] == "secret plans" and event.attrs["prompt_length"] == 12
    assert json.loads(event.attrs["context"]) == {"prompt": "nested"}
    assert event.body == "refactor the parser"
    (point,) = metrics(one_point(1.0, {"prompt": "secret"}), store_prompts=True).points
    assert point.attrs["prompt"] == "secret"
    (span,) = traces(span_request({"response": "reply"}), store_prompts=True).spans
    assert span.attrs["response"] == "reply" and span.attrs["response_length"] == 5


# --- parts --------------------------------------------------------------------------------------------------


def test_a_batch_is_split_into_parts_and_only_the_first_carries_what_was_rejected() -> None:
    points = metrics(
        sum_request("claude_code.token.usage", [(T0, T0 + i * SECOND, float(i), SESSION) for i in (1, 2, 3)])
    ).points
    events = logs(log_request([(T0, "api_request", {}), (T0 + 1, "api_request", {})])).events
    spans = traces(span_request()).spans
    batch = Batch("10.0.0.9", points=points, events=events, spans=spans, rejected=4, problems=["why"])
    assert batch.parts(6) == [batch]

    parts = batch.parts(4)
    assert [part.records for part in parts] == [4, 2]
    first, second = parts
    assert (first.points, first.events) == (points, events[:1])
    assert (second.points, second.events, second.spans) == ([], events[1:], spans)
    assert (first.rejected, first.problems) == (4, ["why"])
    assert (second.rejected, second.problems) == (0, [])
    assert {part.source for part in parts} == {"10.0.0.9"}

    records: list[Point | Event | Span] = []
    for part in batch.parts(1):
        records += [*part.points, *part.events, *part.spans]
    assert records == [*points, *events, *spans]
