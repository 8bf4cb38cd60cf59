"""Property tests of the pure decoders: whatever arrives, the only exception is ``DecodeError`` with a status
the transports know (400, 413, 415); every valid message decodes to the same batch from protobuf and from
OTLP/JSON; and ``to_batch`` never raises on anything the parser let through."""

from __future__ import annotations

import base64
import gzip
import json
import math
import zlib
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from ccmetrics.otlp.decode import JSON, PROTOBUF, DecodeError, Signal, decompress, media_type, parse
from ccmetrics.otlp.normalize import REDACTED, TEXT_KEYS, to_batch

SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
FEW = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
NOW_NS = 1_760_000_000_000_000_000
LIMIT = 64 * 1024
signals = st.sampled_from(list(Signal))


def decode_all(signal: Signal, body: bytes, media: str) -> None:
    """The whole pure pipeline; only DecodeError may escape, and to_batch must not raise at all."""
    try:
        message = parse(signal, body, media)
    except DecodeError as exc:
        assert exc.status == 400, exc
        assert exc.message
        return
    to_batch(signal, message, now_ns=NOW_NS)
    to_batch(signal, message, store_prompts=True, now_ns=NOW_NS)


# --- arbitrary input ----------------------------------------------------------------------------------------


@SETTINGS
@given(
    st.one_of(
        st.none(),
        st.text(max_size=60),
        st.sampled_from(
            [
                "application/json",
                "application/x-protobuf",
                "APPLICATION/JSON; charset=utf-8",
                "application/protobuf",
                " application/json ",
                "text/plain",
                "application/json;",
                ";",
                "application/x-protobuf\x00",
            ]
        ),
    )
)
def test_media_type(content_type: str | None) -> None:
    try:
        media = media_type(content_type)
    except DecodeError as exc:
        assert exc.status == 415
        return
    assert media in (PROTOBUF, JSON)


encodings = st.one_of(
    st.none(), st.sampled_from(["gzip", "deflate", "identity", "GZIP ", "br", "x"]), st.text(max_size=10)
)


@SETTINGS
@given(st.binary(max_size=4096), encodings, st.integers(0, 2 * LIMIT))
def test_decompress_arbitrary_bytes(body: bytes, encoding: str | None, limit: int) -> None:
    try:
        out = decompress(body, encoding, limit)
    except DecodeError as exc:
        assert exc.status in (400, 413, 415)
        return
    assert len(out) <= limit


@SETTINGS
@given(st.binary(max_size=8192), st.sampled_from(["gzip", "deflate", "deflate-raw"]), st.integers(0, 10_000))
def test_decompress_round_trip_and_limit(payload: bytes, method: str, limit: int) -> None:
    if method == "gzip":
        body = gzip.compress(payload)
    elif method == "deflate":
        body = zlib.compress(payload)
    else:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = compressor.compress(payload) + compressor.flush()
    encoding = "deflate" if method.startswith("deflate") else "gzip"
    if len(payload) <= limit:
        assert decompress(body, encoding, limit) == payload
    else:
        try:
            decompress(body, encoding, limit)
        except DecodeError as exc:
            assert exc.status == 413
        else:
            raise AssertionError("a body inflating past the limit was accepted")


@SETTINGS
@given(st.binary(min_size=1, max_size=2048), st.binary(min_size=1, max_size=64))
def test_decompress_refuses_bytes_after_the_gzip_stream(payload: bytes, trailing: bytes) -> None:
    """Anything after the gzip member is either another member (to be decoded) or garbage (to be refused);
    silently dropping it loses data."""
    body = gzip.compress(payload) + trailing
    try:
        out = decompress(body, "gzip", LIMIT)
    except DecodeError as exc:
        assert exc.status in (400, 413)
        return
    assert out == gzip.decompress(body)


@SETTINGS
@given(signals, st.binary(max_size=4096), st.sampled_from([PROTOBUF, JSON]))
def test_parse_arbitrary_bytes(signal: Signal, body: bytes, media: str) -> None:
    decode_all(signal, body, media)


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)


@SETTINGS
@given(signals, json_values)
def test_parse_arbitrary_json(signal: Signal, document: Any) -> None:
    decode_all(signal, json.dumps(document).encode(), JSON)


# JSON whose keys are OTLP's, with random leaves: reaches far deeper into the parser and into to_batch.
OTLP_KEYS = [
    "resourceMetrics",
    "resourceLogs",
    "resourceSpans",
    "resource",
    "attributes",
    "scopeMetrics",
    "scopeLogs",
    "scopeSpans",
    "scope",
    "name",
    "metrics",
    "sum",
    "gauge",
    "histogram",
    "summary",
    "exponentialHistogram",
    "dataPoints",
    "aggregationTemporality",
    "isMonotonic",
    "asInt",
    "asDouble",
    "timeUnixNano",
    "startTimeUnixNano",
    "observedTimeUnixNano",
    "key",
    "value",
    "stringValue",
    "intValue",
    "doubleValue",
    "boolValue",
    "bytesValue",
    "arrayValue",
    "kvlistValue",
    "values",
    "logRecords",
    "body",
    "spans",
    "traceId",
    "spanId",
    "parentSpanId",
    "count",
    "bucketCounts",
    "explicitBounds",
    "quantileValues",
    "exemplars",
    "unit",
    "eventName",
    "severityNumber",
    "min",
    "max",
    "positive",
    "negative",
    "offset",
    "scale",
    "zeroCount",
    "status",
    "code",
    "flags",
]
otlp_leaves = st.one_of(
    json_leaves,
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "1",
            "-1",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775808",
            "0102030405060708",
            "0102030405060708090a0b0c0d0e0f10",
            "zz",
            "",
            "AQID",
            "user_prompt",
            "claude_code.api_request",
            "1e400",
            "28",
            "0.5",
        ]
    ),
)
otlp_json = st.recursive(
    otlp_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.sampled_from(OTLP_KEYS), children, max_size=5)
    ),
    max_leaves=40,
)


@SETTINGS
@given(signals, st.dictionaries(st.sampled_from(OTLP_KEYS[:3]), otlp_json, max_size=2))
def test_parse_otlp_shaped_json(signal: Signal, document: dict) -> None:
    decode_all(signal, json.dumps(document).encode(), JSON)


@FEW
@given(signals, st.integers(1, 200_000), st.sampled_from(["[", '{"a":', '{"resourceMetrics":[']))
@example(Signal.METRICS, 100_000, "[")
def test_parse_deeply_nested_json(signal: Signal, depth: int, opener: str) -> None:
    """A nesting bomb is bad JSON like any other: DecodeError(400), never RecursionError."""
    decode_all(signal, (opener * depth).encode(), JSON)


# --- valid messages -----------------------------------------------------------------------------------------

int64 = st.integers(-(2**63), 2**63 - 1)
uint64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1, NOW_NS]))
# NaN canonicalised: OTLP/JSON's "NaN" cannot carry a NaN's sign or payload bits, so those cannot round-trip.
doubles = st.one_of(st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, -0.0, -1.0, 5e-324])).map(
    lambda x: math.nan if math.isnan(x) else x
)
texts = st.one_of(st.text(max_size=30), st.sampled_from(["", "é", "\U0001f600", "a\x00b", "x" * 20_000]))


def _any_value(children: st.SearchStrategy) -> st.SearchStrategy:
    arrays = st.lists(children, max_size=3).map(
        lambda vs: common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=vs))
    )
    kvlists = st.lists(st.tuples(texts, children), max_size=3).map(
        lambda kvs: common_pb2.AnyValue(
            kvlist_value=common_pb2.KeyValueList(values=[common_pb2.KeyValue(key=k, value=v) for k, v in kvs])
        )
    )
    return st.one_of(arrays, kvlists)


any_values = st.recursive(
    st.one_of(
        texts.map(lambda v: common_pb2.AnyValue(string_value=v)),
        st.booleans().map(lambda v: common_pb2.AnyValue(bool_value=v)),
        int64.map(lambda v: common_pb2.AnyValue(int_value=v)),
        doubles.map(lambda v: common_pb2.AnyValue(double_value=v)),
        st.binary(max_size=20).map(lambda v: common_pb2.AnyValue(bytes_value=v)),
        st.just(common_pb2.AnyValue()),
    ),
    _any_value,
    max_leaves=8,
)
key_values = st.lists(
    st.tuples(
        st.one_of(
            texts,
            st.sampled_from(
                ["type", "model", "user.id", "session.id", "event.name", "prompt", "duration_ms"]
            ),
        ),
        any_values,
    ),
    max_size=5,
).map(lambda kvs: [common_pb2.KeyValue(key=k, value=v) for k, v in kvs])
ids = st.one_of(
    st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=8), st.binary(max_size=20)
)


@st.composite
def number_points(draw: st.DrawFn, container: Any) -> None:
    for _ in range(draw(st.integers(0, 3))):
        dp = container.data_points.add(
            start_time_unix_nano=draw(uint64),
            time_unix_nano=draw(uint64),
            attributes=draw(key_values),
            flags=draw(st.integers(0, 2**32 - 1)),
        )
        if draw(st.booleans()):
            dp.as_int = draw(int64)
        elif draw(st.booleans()):
            dp.as_double = draw(doubles)
        for _ in range(draw(st.integers(0, 1))):
            exemplar = dp.exemplars.add(
                time_unix_nano=draw(uint64),
                trace_id=draw(ids),
                span_id=draw(ids),
                filtered_attributes=draw(key_values),
            )
            exemplar.as_double = draw(doubles)


@st.composite
def metric(draw: st.DrawFn) -> metrics_pb2.Metric:
    m = metrics_pb2.Metric(
        name=draw(st.one_of(texts, st.sampled_from(["claude_code.token.usage", "claude_code.cost.usage"]))),
        unit=draw(texts),
        description=draw(texts),
    )
    kind = draw(st.sampled_from(["sum", "gauge", "histogram", "exponential_histogram", "summary", "none"]))
    temporality = draw(st.sampled_from([0, 1, 2, 7]))
    if kind == "sum":
        m.sum.aggregation_temporality = temporality
        m.sum.is_monotonic = draw(st.booleans())
        draw(number_points(m.sum))
    elif kind == "gauge":
        m.gauge.SetInParent()
        draw(number_points(m.gauge))
    elif kind == "histogram":
        m.histogram.aggregation_temporality = temporality
        for _ in range(draw(st.integers(0, 3))):
            bounds = draw(st.lists(doubles, max_size=4))
            dp = m.histogram.data_points.add(
                start_time_unix_nano=draw(uint64),
                time_unix_nano=draw(uint64),
                attributes=draw(key_values),
                count=draw(st.integers(0, 2**64 - 1)),
                explicit_bounds=bounds,
                bucket_counts=draw(
                    st.lists(st.integers(0, 2**64 - 1), min_size=len(bounds) + 1, max_size=len(bounds) + 1)
                ),
            )
            if draw(st.booleans()):
                dp.sum = draw(doubles)
            if draw(st.booleans()):
                dp.min = draw(doubles)
            if draw(st.booleans()):
                dp.max = draw(doubles)
    elif kind == "exponential_histogram":
        m.exponential_histogram.aggregation_temporality = temporality
        for _ in range(draw(st.integers(0, 2))):
            dp = m.exponential_histogram.data_points.add(
                start_time_unix_nano=draw(uint64),
                time_unix_nano=draw(uint64),
                attributes=draw(key_values),
                count=draw(st.integers(0, 2**64 - 1)),
                sum=draw(doubles),
                scale=draw(st.integers(-10, 20)),
                zero_count=draw(st.integers(0, 2**64 - 1)),
            )
            dp.positive.offset = draw(st.integers(-(2**31), 2**31 - 1))
            dp.positive.bucket_counts.extend(draw(st.lists(st.integers(0, 2**64 - 1), max_size=4)))
    elif kind == "summary":
        for _ in range(draw(st.integers(0, 2))):
            dp = m.summary.data_points.add(
                start_time_unix_nano=draw(uint64),
                time_unix_nano=draw(uint64),
                attributes=draw(key_values),
                count=draw(st.integers(0, 2**64 - 1)),
                sum=draw(doubles),
            )
            for q in draw(st.lists(st.floats(0, 1), max_size=3)):
                dp.quantile_values.add(quantile=q, value=draw(doubles))
    return m


@st.composite
def metrics_requests(draw: st.DrawFn) -> metrics_service_pb2.ExportMetricsServiceRequest:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rm = request.resource_metrics.add(schema_url=draw(texts))
        rm.resource.attributes.extend(draw(key_values))
        for _ in range(draw(st.integers(0, 2))):
            sm = rm.scope_metrics.add()
            sm.scope.name = draw(texts)
            sm.metrics.extend(draw(st.lists(metric(), max_size=3)))
    return request


@st.composite
def logs_requests(draw: st.DrawFn) -> logs_service_pb2.ExportLogsServiceRequest:
    request = logs_service_pb2.ExportLogsServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rl = request.resource_logs.add()
        rl.resource.attributes.extend(draw(key_values))
        for _ in range(draw(st.integers(0, 2))):
            sl = rl.scope_logs.add()
            sl.scope.name = draw(texts)
            for _ in range(draw(st.integers(0, 3))):
                record = sl.log_records.add(
                    time_unix_nano=draw(uint64),
                    observed_time_unix_nano=draw(uint64),
                    severity_number=draw(st.integers(0, 24)),
                    severity_text=draw(texts),
                    attributes=draw(key_values),
                    trace_id=draw(ids),
                    span_id=draw(ids),
                    event_name=draw(
                        st.one_of(texts, st.sampled_from(["claude_code.user_prompt", "api_request"]))
                    ),
                    flags=draw(st.integers(0, 2**32 - 1)),
                )
                if draw(st.booleans()):
                    record.body.CopyFrom(draw(any_values))
                if draw(st.booleans()):
                    record.attributes.add(
                        key="event.name",
                        value=common_pb2.AnyValue(
                            string_value=draw(
                                st.sampled_from(["user_prompt", "api_request", "tool_result", "new"])
                            )
                        ),
                    )
                if draw(st.booleans()):
                    record.attributes.add(
                        key=draw(
                            st.sampled_from(
                                ["prompt_length", "duration_ms", "cost_usd", "input_tokens", "x_bytes"]
                            )
                        ),
                        value=common_pb2.AnyValue(
                            string_value=draw(
                                st.one_of(
                                    st.sampled_from(
                                        [
                                            "28",
                                            "1e400",
                                            "nan",
                                            "-0",
                                            "1_000",
                                            "0x10",
                                            " 7 ",
                                            "3.50",
                                            "inf",
                                            "99999999999999999999999",
                                        ]
                                    ),
                                    texts,
                                )
                            )
                        ),
                    )
    return request


@st.composite
def traces_requests(draw: st.DrawFn) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(draw(key_values))
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            for _ in range(draw(st.integers(0, 3))):
                span = ss.spans.add(
                    trace_id=draw(ids),
                    span_id=draw(ids),
                    parent_span_id=draw(ids),
                    name=draw(texts),
                    start_time_unix_nano=draw(uint64),
                    end_time_unix_nano=draw(uint64),
                    attributes=draw(key_values),
                )
                span.status.code = draw(st.integers(0, 2))
                for _ in range(draw(st.integers(0, 1))):
                    span.links.add(trace_id=draw(ids), span_id=draw(ids))
    return request


REQUESTS = {
    Signal.METRICS: metrics_requests(),
    Signal.LOGS: logs_requests(),
    Signal.TRACES: traces_requests(),
}
requests = st.sampled_from(list(Signal)).flatmap(lambda s: st.tuples(st.just(s), REQUESTS[s]))


_HEX_KEYS = {"traceId", "spanId", "parentSpanId"}


def _ids_to_hex(node: Any) -> Any:
    """proto3 JSON writes bytes in base64; OTLP/JSON wants trace and span ids in hex."""
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in _HEX_KEYS and isinstance(v, str) else _ids_to_hex(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_ids_to_hex(v) for v in node]
    return node


def otlp_json(message: Message) -> bytes:
    text = json_format.MessageToJson(message, use_integers_for_enums=True, indent=None)
    return json.dumps(_ids_to_hex(json.loads(text))).encode()


def batch_repr(batch: Any) -> str:
    """Batches compared by repr: NaN (kept in histogram extras) is equal to itself there, unlike in ==."""
    return repr(batch)


@SETTINGS
@given(requests)
def test_valid_messages_round_trip_protobuf_and_json_to_identical_batches(
    case: tuple[Signal, Message],
) -> None:
    signal, request = case
    wire = request.SerializeToString()
    from_protobuf = parse(signal, wire, PROTOBUF)
    assert from_protobuf.SerializeToString(deterministic=True) == request.SerializeToString(
        deterministic=True
    )
    from_json = parse(signal, otlp_json(request), JSON)
    assert from_json.SerializeToString(deterministic=True) == request.SerializeToString(deterministic=True)

    expected = to_batch(signal, request, now_ns=NOW_NS)
    assert batch_repr(to_batch(signal, from_protobuf, now_ns=NOW_NS)) == batch_repr(expected)
    assert batch_repr(to_batch(signal, from_json, now_ns=NOW_NS)) == batch_repr(expected)
    assert expected.rejected >= 0
    assert len(expected.problems) <= 10


@SETTINGS
@given(requests)
def test_to_batch_invariants(case: tuple[Signal, Message]) -> None:
    """What to_batch keeps is storable: finite values, non-negative monotonic sums, times SQLite can hold,
    JSON-serialisable attributes; everything else is counted as rejected."""
    signal, request = case
    batch = to_batch(signal, request, now_ns=NOW_NS)
    if signal is Signal.METRICS:
        total = sum(
            len(getattr(m, m.WhichOneof("data")).data_points)
            for rm in request.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.WhichOneof("data")
        )
        assert len(batch.points) + batch.rejected == total
        for point in batch.points:
            assert math.isfinite(point.value)
            assert not (point.monotonic and point.value < 0)
            assert 0 < point.time_ns <= 2**63 - 1 and 0 <= point.start_ns <= 2**63 - 1
            json.dumps(point.attrs, allow_nan=False)
    elif signal is Signal.LOGS:
        records = [r for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]
        # A record is rejected only for a measure beyond the bound (or a time ahead of the clock, which
        # to_batch is not asked to check here): every other record is kept.
        assert len(batch.events) + batch.rejected == len(records)
        assert all("beyond" in problem for problem in batch.problems if "rejected" in problem)
        for event in batch.events:
            assert 0 < event.time_ns <= 2**63 - 1
            assert not event.name.startswith("claude_code.")
            json.dumps(event.attrs, allow_nan=False)
    else:
        for span in batch.spans:
            assert len(span.trace_id) == 32 and len(span.span_id) == 16


PROMPT_VALUES = {
    "string": common_pb2.AnyValue(string_value="secret prompt"),
    "bytes": common_pb2.AnyValue(bytes_value=b"secret prompt"),
    "array": common_pb2.AnyValue(
        array_value=common_pb2.ArrayValue(values=[common_pb2.AnyValue(string_value="secret prompt")])
    ),
    "kvlist": common_pb2.AnyValue(
        kvlist_value=common_pb2.KeyValueList(
            values=[common_pb2.KeyValue(key="text", value=common_pb2.AnyValue(string_value="secret prompt"))]
        )
    ),
}


@pytest.mark.parametrize("kind", PROMPT_VALUES)
@pytest.mark.parametrize("key", sorted(TEXT_KEYS))
def test_prompt_text_is_not_kept_whatever_its_type(key: str, kind: str) -> None:
    """Without --store-prompts no prompt or response text is kept, whatever AnyValue type carries it."""
    request = logs_service_pb2.ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=NOW_NS)
    record.attributes.add(key="event.name", value=common_pb2.AnyValue(string_value="user_prompt"))
    record.attributes.add(key=key, value=PROMPT_VALUES[kind])
    (event,) = to_batch(Signal.LOGS, request, now_ns=NOW_NS).events
    leaked = [t for t in _strings(event.attrs) if "secret" in t or "c2VjcmV0" in t]  # plain or base64
    assert not leaked, event.attrs
    (kept,) = to_batch(Signal.LOGS, request, store_prompts=True, now_ns=NOW_NS).events
    assert kept.attrs[key] != REDACTED


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [t for v in value for t in _strings(v)]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in [k, *_strings(v)]]
    return []


@FEW
@given(requests, st.integers(1, 64))
def test_truncated_valid_messages(case: tuple[Signal, Message], cut: int) -> None:
    signal, request = case
    wire = request.SerializeToString()
    assume(len(wire) > cut)
    decode_all(signal, wire[:-cut], PROTOBUF)
    text = otlp_json(request)
    decode_all(signal, text[: max(len(text) - cut, 0)], JSON)
