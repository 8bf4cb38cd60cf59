"""The OTLP receivers in-process, on a real ``Store``: the bare ASGI app through httpx's ASGI transport, and
the ``grpc.aio`` server on a free loopback port. Each answer is checked, and then what the store holds."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ccmetrics.otlp import grpc as otlp_grpc
from ccmetrics.otlp.http import create_app
from ccmetrics.otlp.receiver import Intake, Receiver
from ccmetrics.store import Store
from ccmetrics.store.filters import Filters
from ccmetrics.store.summary import summary
from ccmetrics.store.timeline import stored_events

from .conftest import free_port
from .otlp_builders import SECOND, T0, attrs, log_request, sum_request

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
LIMIT = 64 * 1024  # max_body_bytes
COST = "claude_code.cost.usage"
USER = {"user.id": "u1", "session.id": "s1", "model": "claude-opus-5-5"}
METRICS_EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


@pytest.fixture
def receiver(store: Store) -> Iterator[Receiver]:
    receiver = Receiver(store, Intake(max_body_bytes=LIMIT, store_prompts=False, max_clock_skew_s=600))
    yield receiver
    receiver.close()


def totals(store: Store) -> dict[str, Any]:
    return summary(store.reader(), Filters.parse())


def cost(*values: float) -> ExportMetricsServiceRequest:
    """Cost points, a minute apart."""
    points = [(T0, T0 + (i + 1) * 60 * SECOND, v, USER) for i, v in enumerate(values)]
    return sum_request(COST, points, unit="USD")


def to_json(message: Message) -> bytes:
    return json_format.MessageToJson(message, indent=None).encode()


def far_ahead_ns() -> int:
    """An hour ahead of the clock: beyond the ten minutes of skew the receiver allows."""
    return time.time_ns() + 3600 * SECOND


# --- OTLP/HTTP ----------------------------------------------------------------------------------------------


def http(
    receiver: Receiver,
    path: str,
    body: bytes | None = None,
    content_type: str | None = PROTOBUF,
    *,
    method: str = "POST",
    encoding: str | None = None,
    stream: bool = False,
    token: str | None = None,
) -> httpx.Response:
    """One request to the OTLP/HTTP app; ``stream`` sends the body in chunks, without a Content-Length;
    ``token`` as a bearer token."""
    headers = {}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if content_type:
        headers["content-type"] = content_type
    if encoding:
        headers["content-encoding"] = encoding

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for at in range(0, len(data), 16 * 1024):
            yield data[at : at + 16 * 1024]

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(receiver))
        async with httpx.AsyncClient(transport=transport, base_url="http://otlp") as client:
            content: Any = chunks(body or b"") if stream else body
            return await client.request(method, path, content=content, headers=headers)

    return asyncio.run(send())


def ok(response: httpx.Response, media: str, response_type: type[Message]) -> Any:
    assert response.status_code == 200, (response.status_code, response.content[:300])
    assert response.headers["content-type"] == media
    if media == JSON:
        return json_format.Parse(response.content, response_type())
    return response_type.FromString(response.content)


def error(response: httpx.Response, status: int, media: str = PROTOBUF) -> status_pb2.Status:
    """The status, with a google.rpc.Status body in the request's encoding."""
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response.headers["content-type"] == media
    if media == JSON:
        return json_format.Parse(response.content, status_pb2.Status())
    return status_pb2.Status.FromString(response.content)


def test_http_protobuf_and_json_exports_are_stored_and_answered(store: Store, receiver: Receiver) -> None:
    answer = ok(
        http(receiver, "/v1/metrics", cost(0.5, 0.25).SerializeToString()),
        PROTOBUF,
        ExportMetricsServiceResponse,
    )
    assert not answer.HasField("partial_success")
    logs = log_request(
        [
            (T0, "api_request", {**USER, "cost_usd": "0.5"}),
            (T0 + 1, "user_prompt", {**USER, "prompt": "secret plans"}),
        ]
    )
    response = http(receiver, "/v1/logs", to_json(logs), JSON)
    assert response.json() == {}
    assert not ok(response, JSON, ExportLogsServiceResponse).HasField("partial_success")
    json_metrics = http(receiver, "/v1/metrics", to_json(cost(0.5, 0.25, 1.0)), JSON)  # two of them again
    ok(json_metrics, JSON, ExportMetricsServiceResponse)

    result = totals(store)
    assert (result["cost_usd"], result["api_requests"], result["prompts"]) == (1.75, 1, 1)
    assert result["avg_prompt_length"] == len("secret plans")
    (stored,) = [e for e in stored_events(store.reader()) if e.name == "user_prompt"]
    assert "secret plans" not in json.dumps(stored.attributes)
    assert stored.attributes["prompt"] == "<REDACTED>"


def test_http_traces_are_stored(store: Store, receiver: Receiver) -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add()
    for i in range(1, 4):
        span = spans.spans.add(
            trace_id=b"\x01" * 16,
            span_id=i.to_bytes(8, "big"),
            name="claude_code.interaction",
            start_time_unix_nano=T0,
            end_time_unix_nano=T0 + SECOND,
        )
        span.attributes.extend(attrs({"session.id": "s1"}))
    ok(http(receiver, "/v1/traces", request.SerializeToString()), PROTOBUF, ExportTraceServiceResponse)
    assert store.reader().execute("SELECT COUNT(*) FROM spans WHERE session_id = 's1'").fetchone() == (3,)


@pytest.mark.parametrize("media", [PROTOBUF, JSON], ids=["protobuf", "json"])
def test_http_rejected_points_and_records_are_reported_in_partial_success(
    store: Store, receiver: Receiver, media: str
) -> None:
    metrics = cost(0.5, math.nan, -1.0, 0.25)
    body = to_json(metrics) if media == JSON else metrics.SerializeToString()
    answer = ok(http(receiver, "/v1/metrics", body, media), media, ExportMetricsServiceResponse)
    assert answer.partial_success.rejected_data_points == 2
    assert "non-finite" in answer.partial_success.error_message
    assert "negative" in answer.partial_success.error_message

    logs = log_request([(T0, "api_request", USER), (far_ahead_ns(), "api_request", USER)])
    body = to_json(logs) if media == JSON else logs.SerializeToString()
    answer = ok(http(receiver, "/v1/logs", body, media), media, ExportLogsServiceResponse)
    assert answer.partial_success.rejected_log_records == 1
    assert "ahead of the server's clock" in answer.partial_success.error_message

    result = totals(store)
    assert (result["cost_usd"], result["api_requests"]) == (0.75, 1)


@pytest.mark.parametrize(
    ("body", "media"),
    [(b"\xff\xff\xff\xff", PROTOBUF), (b"{not json", JSON), (b"[1, 2]", JSON), (b"", JSON)],
    ids=["protobuf", "json", "json-array", "empty-json"],
)
def test_http_garbage_is_a_400_with_a_status(
    store: Store, receiver: Receiver, body: bytes, media: str
) -> None:
    status = error(http(receiver, "/v1/metrics", body, media), 400, media)
    assert status.code == code_pb2.INVALID_ARGUMENT and status.message
    assert totals(store)["cost_usd"] == 0


def test_http_unknown_media_type_or_encoding_is_a_415(store: Store, receiver: Receiver) -> None:
    body = cost(1.0).SerializeToString()
    status = error(http(receiver, "/v1/metrics", body, "text/plain"), 415)
    assert status.code == code_pb2.INVALID_ARGUMENT and "unsupported content type" in status.message
    assert error(http(receiver, "/v1/metrics", body, None), 415).code == code_pb2.INVALID_ARGUMENT
    status = error(http(receiver, "/v1/metrics", body, encoding="br"), 415)
    assert "unsupported content encoding" in status.message
    assert totals(store)["cost_usd"] == 0


def test_http_oversized_bodies_are_a_413(store: Store, receiver: Receiver) -> None:
    big = cost(*[0.125] * 2000).SerializeToString()
    assert len(gzip.compress(big)) < LIMIT < len(big)
    for response in (
        http(receiver, "/v1/metrics", big),  # with a Content-Length
        http(receiver, "/v1/metrics", big, stream=True),  # without one: counted as it arrives
        http(receiver, "/v1/metrics", gzip.compress(big), encoding="gzip"),  # small, until inflated
    ):
        assert error(response, 413).code == code_pb2.RESOURCE_EXHAUSTED
    assert totals(store)["cost_usd"] == 0


def test_http_gzip_is_accepted(store: Store, receiver: Receiver) -> None:
    body = gzip.compress(cost(0.5, 0.25).SerializeToString())
    ok(http(receiver, "/v1/metrics", body, encoding="gzip"), PROTOBUF, ExportMetricsServiceResponse)
    body = gzip.compress(to_json(cost(0.5, 0.25, 1.0)))  # the first two again, and one more
    ok(http(receiver, "/v1/metrics", body, JSON, encoding="gzip"), JSON, ExportMetricsServiceResponse)
    assert totals(store)["cost_usd"] == 1.75


def test_http_wrong_method_or_path(store: Store, receiver: Receiver) -> None:
    response = http(receiver, "/v1/metrics", method="GET")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert http(receiver, "/v1/profiles", cost(1.0).SerializeToString()).status_code == 404
    assert http(receiver, "/", method="GET").status_code == 404
    assert totals(store)["cost_usd"] == 0


# --- OTLP/gRPC ----------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def grpc_channel(receiver: Receiver) -> AsyncIterator[grpc.aio.Channel]:
    """The gRPC server on a free loopback port, and a channel to it; both stopped at the end."""
    port = free_port()
    server = await otlp_grpc.start(
        receiver, "127.0.0.1", port, max_connections=8, idle_timeout=30, header_timeout=10
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)


def test_grpc_valid_exports_are_ok_and_stored(store: Store, receiver: Receiver) -> None:
    async def export() -> tuple[ExportMetricsServiceResponse, ExportLogsServiceResponse]:
        async with grpc_channel(receiver) as channel:
            metrics = await metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(
                cost(0.5, 0.25), timeout=10
            )
            logs = await logs_service_pb2_grpc.LogsServiceStub(channel).Export(
                log_request([(T0, "api_request", USER)]), timeout=10
            )
            return metrics, logs

    metrics, logs = asyncio.run(export())
    assert not metrics.HasField("partial_success") and not logs.HasField("partial_success")
    result = totals(store)
    assert (result["cost_usd"], result["api_requests"]) == (0.75, 1)


def test_grpc_garbage_is_invalid_argument(store: Store, receiver: Receiver) -> None:
    async def export() -> tuple[grpc.aio.AioRpcError, bytes]:
        async with grpc_channel(receiver) as channel:
            # no serializer: the bytes go on the wire as they are
            raw: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METRICS_EXPORT)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await raw(b"\xff\xff\xff\xff", timeout=10)
            after = await raw(cost(1.0).SerializeToString(), timeout=10)  # the server goes on
            return info.value, after

    failure, after = asyncio.run(export())
    assert failure.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid ExportMetricsServiceRequest" in (failure.details() or "")
    assert not ExportMetricsServiceResponse.FromString(after).HasField("partial_success")
    assert totals(store)["cost_usd"] == 1.0


def test_grpc_rejected_points_are_reported_in_partial_success(store: Store, receiver: Receiver) -> None:
    async def export() -> ExportMetricsServiceResponse:
        async with grpc_channel(receiver) as channel:
            stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
            return await stub.Export(cost(0.5, math.inf, 0.25, -3.0), timeout=10)

    answer = asyncio.run(export())
    assert answer.partial_success.rejected_data_points == 2
    assert "non-finite" in answer.partial_success.error_message
    assert totals(store)["cost_usd"] == 0.75
