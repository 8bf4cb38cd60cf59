"""Hostile and broken OTLP input against a real ``ccmetrics serve`` process, over OTLP/HTTP and OTLP/gRPC.

Every test first ingests the real Claude Code captures, so there is earlier data that a bad request could
damage; then sends one kind of bad input and checks the exact answer, that the server is still healthy,
and that the totals are exactly what they were (or exactly what they were plus what the valid part of the
request carried).
"""

from __future__ import annotations

import gzip
import json
import math
import random
import re
import sqlite3
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from .conftest import ServerProcess, fixture_exports, send

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CAPTURES = ("http-protobuf-delta", "http-json-cumulative")
SMALL_LIMIT = 65536
MAX_STRING = 16 * 1024  # what the server documents it cuts attribute strings to

METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

T0 = 1_760_000_000_000_000_000  # Oct 2025, in ns
BAD_USER = "bad-input-user"
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA


# --- building requests ----------------------------------------------------------------------------------


def any_value(value: Any) -> common_pb2.AnyValue:
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    return common_pb2.AnyValue(string_value=value)


def key_values(attrs: dict[str, Any]) -> list[common_pb2.KeyValue]:
    return [common_pb2.KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


@dataclass
class P:
    """One sum data point: its value (int -> as_int, float -> as_double), times and extra attributes."""

    value: int | float
    time_ns: int
    start_ns: int | None = None
    attrs: dict[str, Any] | None = None


def sum_metric(name: str, unit: str, points: list[P], *, base_attrs: dict[str, Any]) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name, unit=unit)
    metric.sum.aggregation_temporality = DELTA
    metric.sum.is_monotonic = True
    for p in points:
        dp = metric.sum.data_points.add()
        dp.start_time_unix_nano = p.start_ns if p.start_ns is not None else max(p.time_ns - 1_000_000_000, 1)
        dp.time_unix_nano = p.time_ns
        if isinstance(p.value, float):
            dp.as_double = p.value
        else:
            dp.as_int = p.value
        dp.attributes.extend(key_values({**base_attrs, **(p.attrs or {})}))
    return metric


def metrics_request(*metrics: metrics_pb2.Metric) -> metrics_service_pb2.ExportMetricsServiceRequest:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(key_values({"service.name": "claude-code", "service.version": "2.1.332"}))
    sm = rm.scope_metrics.add()
    sm.scope.name = "com.anthropic.claude_code"
    sm.metrics.extend(metrics)
    return request


def bad_user_attrs(type_: str | None = "input") -> dict[str, Any]:
    attrs = {"user.id": BAD_USER, "session.id": "bad-session", "model": "claude-test", "terminal.type": "tty"}
    if type_:
        attrs["type"] = type_
    return attrs


def tokens(points: list[P], type_: str = "input") -> metrics_pb2.Metric:
    return sum_metric("claude_code.token.usage", "tokens", points, base_attrs=bad_user_attrs(type_))


def cost(points: list[P]) -> metrics_pb2.Metric:
    return sum_metric("claude_code.cost.usage", "USD", points, base_attrs=bad_user_attrs(None))


def to_otlp_json(message: Message) -> bytes:
    """OTLP/JSON: lowerCamelCase keys, enums as integers, int64 as strings (no trace ids in these)."""
    return json_format.MessageToJson(message, use_integers_for_enums=True, indent=None).encode()


def encode(message: Message, media: str) -> bytes:
    return to_otlp_json(message) if media == JSON else message.SerializeToString()


# --- talking to the server ------------------------------------------------------------------------------


@dataclass
class Loaded:
    server: ServerProcess
    before: dict  # /api/summary after the fixtures
    fixture_user: str
    before_fixture_user: dict  # /api/summary?filter=user.id=<the fixtures' user>


def load_fixtures(server: ServerProcess) -> Loaded:
    for capture in CAPTURES:
        for export in fixture_exports(capture):
            response = send(server.otlp_http, export)
            assert response.status_code == 200, (capture, export.path, response.status_code, response.content)
    before = server.summary()
    assert before["tokens"] == {"input": 8585, "output": 535, "cache_read": 94545, "cache_creation": 6665}
    assert len(before["by_user"]) == 1
    user = before["by_user"][0]["user_id"]
    return Loaded(server, before, user, server.summary(filter=f"user.id={user}"))


@pytest.fixture
def loaded(server: ServerProcess) -> Loaded:
    return load_fixtures(server)


@pytest.fixture
def loaded_small(start_server) -> Loaded:
    return load_fixtures(start_server(None, "--max-body-bytes", str(SMALL_LIMIT)))


@pytest.fixture
def channel(loaded: Loaded) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(loaded.server.otlp_grpc) as ch:
        yield ch


def post(
    server: ServerProcess,
    path: str,
    body: bytes | Iterator[bytes],
    content_type: str | None,
    encoding: str | None = None,
) -> httpx.Response:
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    return httpx.post(server.otlp_http + path, content=body, headers=headers, timeout=30)


def assert_http_error(response: httpx.Response, status: int, media: str, *words: str) -> status_pb2.Status:
    """The exact status, a google.rpc.Status body in the request's encoding, a message naming the problem."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response.headers["content-type"].split(";")[0] == media
    if media == JSON:
        rpc_status = json_format.Parse(response.content, status_pb2.Status())
    else:
        rpc_status = status_pb2.Status.FromString(response.content)
    expected_code = code_pb2.RESOURCE_EXHAUSTED if status == 413 else code_pb2.INVALID_ARGUMENT
    assert rpc_status.code == expected_code
    message = rpc_status.message.lower()
    for word in words:
        assert word.lower() in message, (word, rpc_status.message)
    return rpc_status


def assert_http_ok(response: httpx.Response, media: str, response_type: type[Message]) -> Message:
    assert response.status_code == 200, (response.status_code, response.content[:500])
    assert response.headers["content-type"].split(";")[0] == media
    if media == JSON:
        return json_format.Parse(response.content, response_type())
    return response_type.FromString(response.content)


def assert_intact(loaded: Loaded, **added: float) -> None:
    """Healthy, and the totals are exactly those from before plus ``added`` (tokens by type, cost_usd)."""
    server = loaded.server
    health = httpx.get(f"{server.url}/api/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert server.summary(filter=f"user.id={loaded.fixture_user}") == loaded.before_fixture_user
    now = server.summary()
    if not added:
        assert now == loaded.before
        return
    expected_tokens = dict(loaded.before["tokens"])
    for token_type in expected_tokens:
        expected_tokens[token_type] += added.get(token_type, 0)
    assert now["tokens"] == expected_tokens
    assert now["cost_usd"] == pytest.approx(loaded.before["cost_usd"] + added.get("cost_usd", 0), abs=1e-9)
    for key in (
        "sessions",
        "lines_of_code",
        "commits",
        "edit_decisions",
        "prompts",
        "api_requests",
        "api_errors",
    ):
        assert now[key] == loaded.before[key], key


def rss_kb(server: ServerProcess) -> int:
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def grpc_raw(channel: grpc.Channel, method: str, body: bytes) -> bytes:
    """Send raw bytes as the request message: no serializer, so anything can go on the wire."""
    return channel.unary_unary(method)(body, timeout=30)


MEDIA = pytest.mark.parametrize("media", [PROTOBUF, JSON], ids=["protobuf", "json"])


def metrics_body(media: str) -> bytes:
    return next(
        e.body
        for e in fixture_exports("http-protobuf-delta" if media == PROTOBUF else "http-json-cumulative")
        if e.path == "/v1/metrics"
    )


# --- undecodable bodies: HTTP ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/metrics", "/v1/logs", "/v1/traces"])
def test_http_truncated_protobuf(loaded: Loaded, path: str) -> None:
    capture = next(
        e.body for e in fixture_exports("http-protobuf-delta") if e.path == path.replace("traces", "logs")
    )
    truncated = capture[: len(capture) // 2]
    response = post(loaded.server, path, truncated, PROTOBUF)
    assert_http_error(response, 400, PROTOBUF, "protobuf")
    assert_intact(loaded)


def test_http_truncated_json(loaded: Loaded) -> None:
    body = metrics_body(JSON)
    response = post(loaded.server, "/v1/metrics", body[: len(body) // 2], JSON)
    assert_http_error(response, 400, JSON, "json")
    assert_intact(loaded)


# Bytes no protobuf parser accepts: a tag with field number 0, then wire type 7 (which does not exist).
GARBAGE = [
    b"\x00\x00\x00\x00",
    b"\xff" * 64,
    b"\x0f" + random.Random(1).randbytes(4096),
    b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 10,
]


@pytest.mark.parametrize("path", ["/v1/metrics", "/v1/logs", "/v1/traces"])
def test_http_garbage_protobuf(loaded: Loaded, path: str) -> None:
    for garbage in GARBAGE:
        with pytest.raises(Exception):  # noqa: B017 - precondition: this really is not protobuf
            metrics_service_pb2.ExportMetricsServiceRequest.FromString(garbage)
        assert_http_error(post(loaded.server, path, garbage, PROTOBUF), 400, PROTOBUF, "protobuf")
        assert_intact(loaded)


@pytest.mark.parametrize("path", ["/v1/metrics", "/v1/logs", "/v1/traces"])
def test_http_garbage_as_json(loaded: Loaded, path: str) -> None:
    garbage = random.Random(2).randbytes(4096)
    assert_http_error(post(loaded.server, path, garbage, JSON), 400, JSON, "json")
    assert_intact(loaded)


INVALID_JSON = [
    b"{",
    b'{"resourceMetrics": [',
    b"{'resourceMetrics': []}",
    b"nul",
    b"\xef\xbb\xbf{",
    b'{"resourceMetrics": []} trailing',
    b"\xff\xfe\x00garbage",
]


def test_http_invalid_json(loaded: Loaded) -> None:
    for body in INVALID_JSON:
        assert_http_error(post(loaded.server, "/v1/metrics", body, JSON), 400, JSON, "not valid json")
        assert_intact(loaded)


WRONG_SHAPE = {
    "array": (b"[]", "json object"),
    "string": (b'"resourceMetrics"', "json object"),
    "number": (b"42", "json object"),
    "null": (b"null", "json object"),
    "list-is-string": (b'{"resourceMetrics": "nope"}', "ExportMetricsServiceRequest"),
    "int-not-int": (
        b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"claude_code.token.usage","sum":'
        b'{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[{"timeUnixNano":"1","asInt":"abc"}]}}]}]}]}',
        "ExportMetricsServiceRequest",
    ),
    "time-over-uint64": (
        b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","gauge":'
        b'{"dataPoints":[{"timeUnixNano":"18446744073709551616","asInt":"1"}]}}]}]}]}',
        "ExportMetricsServiceRequest",
    ),
    "attributes-object": (
        b'{"resourceMetrics":[{"resource":{"attributes":{"a":"b"}}}]}',
        "ExportMetricsServiceRequest",
    ),
}


def test_http_json_of_the_wrong_shape(loaded: Loaded) -> None:
    for body, word in WRONG_SHAPE.values():
        assert_http_error(post(loaded.server, "/v1/metrics", body, JSON), 400, JSON, word)
        assert_intact(loaded)


def test_http_json_trace_id_not_hex(loaded: Loaded) -> None:
    body = (
        b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"not-hex!","spanId":"0102030405060708"}]}]}]}'
    )
    assert_http_error(post(loaded.server, "/v1/traces", body, JSON), 400, JSON, "traceId", "hex")
    assert_intact(loaded)


@pytest.mark.parametrize("depth", [100, 10_000, 60_000])
def test_http_deeply_nested_json(loaded: Loaded, depth: int) -> None:
    """Nesting is a classic parser DoS: it must be a 400 like any other bad JSON, never a 500."""
    body = b'{"resourceMetrics":' + b"[" * depth + b"]" * depth + b"}"
    assert_http_error(post(loaded.server, "/v1/metrics", body, JSON), 400, JSON)
    assert_intact(loaded)


def test_http_protobuf_invalid_utf8_string(loaded: Loaded) -> None:
    request = metrics_request(tokens([P(1, T0)]))
    body = request.SerializeToString().replace(b"claude_code.token.usage", b"claude_code.token.\xff\xfeage")
    assert_http_error(post(loaded.server, "/v1/metrics", body, PROTOBUF), 400, PROTOBUF, "protobuf")
    assert_intact(loaded)


# --- headers ----------------------------------------------------------------------------------------------


def test_http_wrong_content_type(loaded: Loaded) -> None:
    for content_type in (
        None,
        "",
        "text/plain",
        "application/xml",
        "application/grpc",
        "application/jsonx",
        "multipart/form-data; boundary=x",
    ):
        response = post(loaded.server, "/v1/metrics", metrics_body(PROTOBUF), content_type)
        assert_http_error(response, 415, PROTOBUF, "content type")
        assert_intact(loaded)


def test_http_content_type_parameters_are_fine(loaded: Loaded) -> None:
    """``application/json; charset=utf-8`` is the same media type: accepted, and a retry counts once."""
    response = post(loaded.server, "/v1/metrics", metrics_body(JSON), "Application/JSON; charset=utf-8")
    assert_http_ok(response, JSON, metrics_service_pb2.ExportMetricsServiceResponse)
    assert_intact(loaded)


@MEDIA
def test_http_unsupported_content_encoding(loaded: Loaded, media: str) -> None:
    for encoding in ("br", "zstd", "compress", "gzip, br", "x-gzip-ish"):
        response = post(loaded.server, "/v1/metrics", metrics_body(media), media, encoding)
        assert_http_error(response, 415, media, "content encoding")
        assert_intact(loaded)


@MEDIA
def test_http_compression_claimed_but_not_compressed(loaded: Loaded, media: str) -> None:
    for encoding in ("gzip", "deflate"):
        response = post(loaded.server, "/v1/metrics", metrics_body(media), media, encoding)
        assert_http_error(response, 400, media, f"not valid {encoding}")
        assert_intact(loaded)


@MEDIA
def test_http_truncated_gzip(loaded: Loaded, media: str) -> None:
    compressed = gzip.compress(metrics_body(media))
    response = post(loaded.server, "/v1/metrics", compressed[: len(compressed) // 2], media, "gzip")
    assert_http_error(response, 400, media, "gzip")
    assert_intact(loaded)


@MEDIA
def test_http_gzip_with_trailing_garbage(loaded: Loaded, media: str) -> None:
    """Bytes after the end of the gzip stream are not part of any valid body: refuse, do not ignore them."""
    request = metrics_request(tokens([P(5, T0)]))
    compressed = gzip.compress(encode(request, media)) + b"this is not gzip data"
    response = post(loaded.server, "/v1/metrics", compressed, media, "gzip")
    assert_http_error(response, 400, media, "gzip")
    assert_intact(loaded)


def test_http_multi_member_gzip_is_not_silently_truncated(loaded: Loaded) -> None:
    """A gzip body may hold several members (RFC 1952 §2.2; ``cat a.gz b.gz``). Either all of it is
    decoded, or the body is refused: storing only the first member and answering 200 loses data."""
    first = metrics_request(tokens([P(3, T0)]))
    second = metrics_request(tokens([P(4, T0 + 10**9)], type_="output"))
    # Concatenated protobuf encodings merge: this is one request carrying both resource_metrics.
    body = gzip.compress(first.SerializeToString()) + gzip.compress(second.SerializeToString())
    response = post(loaded.server, "/v1/metrics", body, PROTOBUF, "gzip")
    if response.status_code == 200:
        assert_intact(loaded, input=3, output=4)
    else:
        assert_http_error(response, 400, PROTOBUF, "gzip")
        assert_intact(loaded)


@MEDIA
def test_http_valid_compression_is_accepted(loaded: Loaded, media: str) -> None:
    added = 0
    for n, encoding in enumerate(["gzip", "deflate", "deflate-raw", "identity", "GZIP"]):
        body = encode(metrics_request(tokens([P(n + 1, T0 + n * 10**9)])), media)
        if encoding.lower() == "gzip":
            body = gzip.compress(body)
        elif encoding == "deflate":
            body = zlib.compress(body)
        elif encoding == "deflate-raw":  # what some clients send as "deflate": no zlib header
            compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
            body, encoding = compressor.compress(body) + compressor.flush(), "deflate"
        response = post(loaded.server, "/v1/metrics", body, media, encoding)
        result = assert_http_ok(response, media, metrics_service_pb2.ExportMetricsServiceResponse)
        assert not result.HasField("partial_success")
        added += n + 1
        assert_intact(loaded, input=added)


# --- size limits -----------------------------------------------------------------------------------------


def oversized_request() -> metrics_service_pb2.ExportMetricsServiceRequest:
    """Over the small limit even compressed: random text does not compress much."""
    noise = random.Random(3).randbytes(SMALL_LIMIT).hex()
    return metrics_request(tokens([P(1, T0, attrs={"noise": noise})]))


@MEDIA
def test_http_oversized_body(loaded_small: Loaded, media: str) -> None:
    body = encode(oversized_request(), media)
    assert len(body) > SMALL_LIMIT
    assert_http_error(post(loaded_small.server, "/v1/metrics", body, media), 413, media, "limit")
    assert_intact(loaded_small)


@MEDIA
def test_http_oversized_body_without_content_length(loaded_small: Loaded, media: str) -> None:
    """Chunked transfer: no Content-Length to refuse up front, so the limit must hold while reading."""
    body = encode(oversized_request(), media)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    assert_http_error(post(loaded_small.server, "/v1/metrics", chunks(), media), 413, media, "limit")
    assert_intact(loaded_small)


def test_http_body_just_under_the_limit_is_accepted(loaded_small: Loaded) -> None:
    pad = SMALL_LIMIT
    while (
        len(body := metrics_request(tokens([P(9, T0, attrs={"pad": "p" * pad})])).SerializeToString())
        > SMALL_LIMIT
    ):
        pad -= 1
    assert SMALL_LIMIT - 16 < len(body) <= SMALL_LIMIT
    assert_http_ok(
        post(loaded_small.server, "/v1/metrics", body, PROTOBUF),
        PROTOBUF,
        metrics_service_pb2.ExportMetricsServiceResponse,
    )
    assert_intact(loaded_small, input=9)


BOMB_INFLATED = 60 * 1024 * 1024  # ~1000x the limit; deflate's best ratio keeps it under the limit compressed


def gzip_bomb(size: int = BOMB_INFLATED) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [compressor.compress(zeros) for _ in range(size // len(zeros))]
    return b"".join(parts) + compressor.flush()


@MEDIA
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_http_gzip_bomb(loaded_small: Loaded, media: str, encoding: str) -> None:
    if encoding == "gzip":
        bomb = gzip_bomb()
    else:
        compressor = zlib.compressobj(9)
        bomb = b"".join(compressor.compress(bytes(1024 * 1024)) for _ in range(60)) + compressor.flush()
    assert len(bomb) < SMALL_LIMIT  # small on the wire: only the inflated size is over the limit
    server = loaded_small.server
    rss_before = rss_kb(server)
    for _ in range(3):
        response = post(server, "/v1/metrics", bomb, media, encoding)
        assert_http_error(response, 413, media, "limit")
    growth_mb = (rss_kb(server) - rss_before) / 1024
    assert growth_mb < 20, f"the server's RSS grew by {growth_mb:.0f} MB on a {len(bomb)} byte gzip bomb"
    assert_intact(loaded_small)


# --- data that decodes but is partly wrong ----------------------------------------------------------------


def nan_negative_request() -> metrics_service_pb2.ExportMetricsServiceRequest:
    return metrics_request(
        tokens(
            [
                P(100, T0),
                P(math.nan, T0 + 1 * 10**9),
                P(-5, T0 + 2 * 10**9),
                P(-0.5, T0 + 3 * 10**9),
                P(math.inf, T0 + 4 * 10**9),
                P(-math.inf, T0 + 5 * 10**9),
                P(7, T0 + 6 * 10**9),
            ]
        ),
        cost([P(0.25, T0), P(math.nan, T0 + 1 * 10**9), P(-0.125, T0 + 2 * 10**9)]),
    )


NAN_NEGATIVE_REJECTED = 7
NAN_NEGATIVE_ADDED = {"input": 107, "cost_usd": 0.25}


def check_partial(
    response: metrics_service_pb2.ExportMetricsServiceResponse, rejected: int, *words: str
) -> None:
    assert response.HasField("partial_success")
    assert response.partial_success.rejected_data_points == rejected
    assert response.partial_success.error_message
    for word in words:
        assert word in response.partial_success.error_message, (word, response.partial_success.error_message)


@MEDIA
def test_http_nan_and_negative_on_monotonic_sum(loaded: Loaded, media: str) -> None:
    body = encode(nan_negative_request(), media)
    response = assert_http_ok(
        post(loaded.server, "/v1/metrics", body, media),
        media,
        metrics_service_pb2.ExportMetricsServiceResponse,
    )
    check_partial(response, NAN_NEGATIVE_REJECTED, "non-finite", "negative")
    assert_intact(loaded, **NAN_NEGATIVE_ADDED)
    # a retry of the same export changes nothing
    post(loaded.server, "/v1/metrics", body, media)
    assert_intact(loaded, **NAN_NEGATIVE_ADDED)


def test_negative_values_of_a_non_monotonic_sum_are_kept(loaded: Loaded) -> None:
    metric = tokens([P(-5, T0), P(20, T0 + 10**9)])
    metric.sum.is_monotonic = False
    response = assert_http_ok(
        post(loaded.server, "/v1/metrics", metrics_request(metric).SerializeToString(), PROTOBUF),
        PROTOBUF,
        metrics_service_pb2.ExportMetricsServiceResponse,
    )
    assert not response.HasField("partial_success")
    assert_intact(loaded, input=15)


HUGE = 1024 * 1024


def huge_attribute_requests() -> tuple[
    metrics_service_pb2.ExportMetricsServiceRequest, logs_service_pb2.ExportLogsServiceRequest
]:
    value = "é" + "x" * (HUGE - 1)  # non-ASCII first: the cut is counted in characters, not bytes
    metrics = metrics_request(tokens([P(13, T0, attrs={"huge": value})]))
    logs = logs_service_pb2.ExportLogsServiceRequest()
    record = logs.resource_logs.add().scope_logs.add().log_records.add()
    record.time_unix_nano = T0
    record.body.string_value = "claude_code.user_prompt"
    record.attributes.extend(
        key_values(
            {**bad_user_attrs(None), "event.name": "user_prompt", "huge": value, "prompt_length": "42"}
        )
    )
    return metrics, logs


def check_huge_stored(server: ServerProcess) -> None:
    """Schema-agnostic: every copy of the huge value anywhere in the database is cut to MAX_STRING
    characters."""
    conn = sqlite3.connect(f"file:{server.data_dir / 'ccmetrics.db'}?mode=ro", uri=True)
    runs = []
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for cell in row:
                    if isinstance(cell, bytes):
                        cell = cell.decode("utf-8", "replace")
                    if isinstance(cell, str) and "éxxx" in cell:
                        runs += [len(m) for m in re.findall("éx+", cell)]
    finally:
        conn.close()
    assert len(runs) >= 2, "the huge value was not stored with the metric and the event"
    assert set(runs) == {MAX_STRING}, sorted(set(runs))


@MEDIA
def test_http_one_megabyte_attribute(loaded: Loaded, media: str) -> None:
    metrics, logs = huge_attribute_requests()
    response = assert_http_ok(
        post(loaded.server, "/v1/metrics", encode(metrics, media), media),
        media,
        metrics_service_pb2.ExportMetricsServiceResponse,
    )
    assert response.partial_success.rejected_data_points == 0
    assert "shortened" in response.partial_success.error_message
    response = assert_http_ok(
        post(loaded.server, "/v1/logs", encode(logs, media), media),
        media,
        logs_service_pb2.ExportLogsServiceResponse,
    )
    assert response.partial_success.rejected_log_records == 0
    check_huge_stored(loaded.server)
    assert loaded.server.summary(filter=f"user.id={BAD_USER}")["prompts"] == 1
    assert loaded.server.summary()["prompts"] == loaded.before["prompts"] + 1
    assert loaded.server.summary(filter=f"user.id={loaded.fixture_user}") == loaded.before_fixture_user
    assert loaded.server.summary(filter=f"user.id={BAD_USER}")["tokens"]["input"] == 13


KEYS, KEYS_PER_POINT = 10_000, 100


def many_keys_request() -> metrics_service_pb2.ExportMetricsServiceRequest:
    """10,000 distinct keys ``key_0`` ... ``key_9999``, 100 per point; point ``n`` has value ``n + 1``."""
    points = [
        P(
            n + 1,
            T0 + n * 10**9,
            attrs={f"key_{k}": "v" for k in range(n * KEYS_PER_POINT, (n + 1) * KEYS_PER_POINT)},
        )
        for n in range(KEYS // KEYS_PER_POINT)
    ]
    return metrics_request(tokens(points))


def check_many_keys(loaded: Loaded) -> None:
    server = loaded.server
    assert server.summary(filter="key_1234=v")["tokens"]["input"] == 1234 // KEYS_PER_POINT + 1
    assert server.summary(filter="key_0=v")["tokens"]["input"] == 1
    assert server.summary(filter="key_9999=v")["tokens"]["input"] == 100
    assert server.summary(filter="key_1234=w")["tokens"]["input"] == 0
    assert server.summary(filter=["key_1234=v", "key_1299=v"])["tokens"]["input"] == 13
    assert server.summary(filter=["key_1234=v", "key_1300=v"])["tokens"]["input"] == 0
    assert_intact(loaded, input=sum(range(1, KEYS // KEYS_PER_POINT + 1)))


@MEDIA
def test_http_ten_thousand_attribute_keys(loaded: Loaded, media: str) -> None:
    response = assert_http_ok(
        post(loaded.server, "/v1/metrics", encode(many_keys_request(), media), media),
        media,
        metrics_service_pb2.ExportMetricsServiceResponse,
    )
    assert not response.HasField("partial_success")
    check_many_keys(loaded)


def max_time_request() -> metrics_service_pb2.ExportMetricsServiceRequest:
    return metrics_request(
        tokens(
            [
                P(1, 2**64 - 1, start_ns=T0),
                P(2, T0 + 5 * 10**9, start_ns=2**64 - 1),
                P(4, 2**63, start_ns=T0),
                P(8, 0, start_ns=0),
                P(16, 2**63 - 1, start_ns=T0),
                P(32, T0 + 10**9, start_ns=T0),
            ]
        )
    )


# 2**64-1 as time, as start time, 2**63 (over SQLite's INTEGER), 0, and 2**63-1 (year 2262: representable, but
# far ahead of the server's clock)
MAX_TIME_REJECTED = 5
MAX_TIME_ADDED = {"input": 32}


@MEDIA
def test_http_time_unix_nano_max_uint64(loaded: Loaded, media: str) -> None:
    response = assert_http_ok(
        post(loaded.server, "/v1/metrics", encode(max_time_request(), media), media),
        media,
        metrics_service_pb2.ExportMetricsServiceResponse,
    )
    check_partial(response, MAX_TIME_REJECTED, "time_unix_nano")
    assert_intact(loaded, **MAX_TIME_ADDED)


@pytest.mark.parametrize(
    "path, response_type",
    [
        ("/v1/metrics", metrics_service_pb2.ExportMetricsServiceResponse),
        ("/v1/logs", logs_service_pb2.ExportLogsServiceResponse),
        ("/v1/traces", trace_service_pb2.ExportTraceServiceResponse),
    ],
)
def test_http_empty_body(loaded: Loaded, path: str, response_type: type[Message]) -> None:
    """An empty protobuf body is a valid, empty export; so is ``{}`` in JSON."""
    response = post(loaded.server, path, b"", PROTOBUF)
    assert response.content == b""
    assert not assert_http_ok(response, PROTOBUF, response_type).HasField("partial_success")
    assert_intact(loaded)
    response = post(loaded.server, path, gzip.compress(b""), PROTOBUF, "gzip")
    assert_http_ok(response, PROTOBUF, response_type)
    response = post(loaded.server, path, b"{}", JSON)
    assert json.loads(response.content) == {}
    assert_http_ok(response, JSON, response_type)
    assert_intact(loaded)


def test_http_empty_body_claiming_json(loaded: Loaded) -> None:
    """Zero bytes are not a JSON document: a 400 in JSON (not a 500, not a silent 200)."""
    assert_http_error(post(loaded.server, "/v1/metrics", b"", JSON), 400, JSON, "json")
    assert_intact(loaded)


def test_http_wrong_method_and_path(loaded: Loaded) -> None:
    server = loaded.server
    assert httpx.get(server.otlp_http + "/v1/metrics", timeout=10).status_code == 405
    assert post(server, "/v1/profiles", metrics_body(PROTOBUF), PROTOBUF).status_code == 404
    assert_intact(loaded)


# --- OTLP/gRPC ---------------------------------------------------------------------------------------------


def grpc_error(call, *args) -> grpc.RpcError:  # noqa: ANN001
    with pytest.raises(grpc.RpcError) as info:
        call(*args)
    return info.value


@pytest.mark.parametrize("method", [METRICS_METHOD, LOGS_METHOD, TRACES_METHOD])
def test_grpc_truncated_protobuf(loaded: Loaded, channel: grpc.Channel, method: str) -> None:
    body = metrics_body(PROTOBUF)
    error = grpc_error(grpc_raw, channel, method, body[: len(body) // 2])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "protobuf" in error.details()
    assert_intact(loaded)


@pytest.mark.parametrize("method", [METRICS_METHOD, LOGS_METHOD, TRACES_METHOD])
def test_grpc_garbage(loaded: Loaded, channel: grpc.Channel, method: str) -> None:
    for garbage in GARBAGE:
        error = grpc_error(grpc_raw, channel, method, garbage)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "protobuf" in error.details()
        assert_intact(loaded)


def test_grpc_json_is_not_protobuf(loaded: Loaded, channel: grpc.Channel) -> None:
    error = grpc_error(grpc_raw, channel, METRICS_METHOD, metrics_body(JSON))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_intact(loaded)


def test_grpc_unknown_method(loaded: Loaded, channel: grpc.Channel) -> None:
    error = grpc_error(
        grpc_raw, channel, "/opentelemetry.proto.collector.metrics.v1.MetricsService/Nope", b""
    )
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert_intact(loaded)


def test_grpc_oversized(loaded_small: Loaded) -> None:
    with grpc.insecure_channel(loaded_small.server.otlp_grpc) as ch:
        stub = metrics_service_pb2_grpc.MetricsServiceStub(ch)
        error = grpc_error(stub.Export, oversized_request())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_intact(loaded_small)


def test_grpc_gzip_bomb(loaded_small: Loaded) -> None:
    """gRPC's own message compression: a small gzip message inflating to ~60 MB against a 64 KB limit."""
    request = metrics_request(tokens([P(1, T0, attrs={"bomb": "0" * BOMB_INFLATED})]))
    server = loaded_small.server
    rss_before = rss_kb(server)
    with grpc.insecure_channel(server.otlp_grpc, compression=grpc.Compression.Gzip) as ch:
        stub = metrics_service_pb2_grpc.MetricsServiceStub(ch)
        for _ in range(3):
            error = grpc_error(stub.Export, request)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    del request
    growth_mb = (rss_kb(server) - rss_before) / 1024
    assert growth_mb < 20, f"the server's RSS grew by {growth_mb:.0f} MB on a gzip bomb over gRPC"
    assert_intact(loaded_small)


def test_grpc_compressed_export_is_accepted(loaded: Loaded) -> None:
    with grpc.insecure_channel(loaded.server.otlp_grpc, compression=grpc.Compression.Gzip) as ch:
        response = metrics_service_pb2_grpc.MetricsServiceStub(ch).Export(
            metrics_request(tokens([P(21, T0)]))
        )
    assert not response.HasField("partial_success")
    assert_intact(loaded, input=21)


def test_grpc_nan_and_negative_on_monotonic_sum(loaded: Loaded, channel: grpc.Channel) -> None:
    stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
    response = stub.Export(nan_negative_request(), timeout=30)
    check_partial(response, NAN_NEGATIVE_REJECTED, "non-finite", "negative")
    assert_intact(loaded, **NAN_NEGATIVE_ADDED)


def test_grpc_one_megabyte_attribute(loaded: Loaded, channel: grpc.Channel) -> None:
    metrics, logs = huge_attribute_requests()
    response = metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(metrics, timeout=30)
    assert response.partial_success.rejected_data_points == 0
    assert "shortened" in response.partial_success.error_message
    response = logs_service_pb2_grpc.LogsServiceStub(channel).Export(logs, timeout=30)
    assert response.partial_success.rejected_log_records == 0
    check_huge_stored(loaded.server)
    assert loaded.server.summary(filter=f"user.id={loaded.fixture_user}") == loaded.before_fixture_user
    assert loaded.server.summary(filter=f"user.id={BAD_USER}")["tokens"]["input"] == 13


def test_grpc_ten_thousand_attribute_keys(loaded: Loaded, channel: grpc.Channel) -> None:
    response = metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(many_keys_request(), timeout=30)
    assert not response.HasField("partial_success")
    check_many_keys(loaded)


def test_grpc_time_unix_nano_max_uint64(loaded: Loaded, channel: grpc.Channel) -> None:
    response = metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(max_time_request(), timeout=30)
    check_partial(response, MAX_TIME_REJECTED, "time_unix_nano")
    assert_intact(loaded, **MAX_TIME_ADDED)


@pytest.mark.parametrize("method", [METRICS_METHOD, LOGS_METHOD, TRACES_METHOD])
def test_grpc_empty_message(loaded: Loaded, channel: grpc.Channel, method: str) -> None:
    assert grpc_raw(channel, method, b"") == b""
    assert_intact(loaded)


# --- everything at once, then a restart -------------------------------------------------------------------


def test_bad_input_leaves_nothing_behind_after_restart(start_server) -> None:
    """The rejected requests leave no trace on disk either: a restarted server reports the same totals."""
    loaded = load_fixtures(start_server())
    server = loaded.server
    for garbage in GARBAGE:
        assert post(server, "/v1/metrics", garbage, PROTOBUF).status_code == 400
    for body in INVALID_JSON:
        assert post(server, "/v1/metrics", body, JSON).status_code == 400
    assert post(server, "/v1/metrics", metrics_body(PROTOBUF), "text/plain").status_code == 415
    assert post(server, "/v1/metrics", metrics_body(PROTOBUF), PROTOBUF, "gzip").status_code == 400
    server.stop()
    restarted = start_server(server.data_dir)
    assert restarted.summary() == loaded.before
