"""When the store cannot take data the client is told to retry (503 + Retry-After, gRPC UNAVAILABLE), and
nothing is lost once it can again. Also: traces are accepted and stored, ids in OTLP/JSON's hex."""

from __future__ import annotations

import json
import resource
import sqlite3

import grpc
import httpx
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc

from .otlp_builders import SECOND, T0, sum_request

COST = "claude_code.cost.usage"


def test_a_locked_store_answers_503_then_keeps_the_retry(start_server):
    # A short busy timeout is not a setting: hold the lock longer than the writer waits (10 s).
    server = start_server()
    request = sum_request(COST, [(T0, T0 + SECOND, 1.5, {"user.id": "u", "session.id": "s"})])
    body = request.SerializeToString()
    headers = {"Content-Type": "application/x-protobuf"}
    blocker = sqlite3.connect(server.data_dir / "ccmetrics.db", timeout=1, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        refused = httpx.post(f"{server.otlp_http}/v1/metrics", content=body, headers=headers, timeout=60)
        assert refused.status_code == 503
        assert refused.headers["retry-after"].isdigit()
        assert "could not commit" in status_pb2.Status.FromString(refused.content).message
        with grpc.insecure_channel(server.otlp_grpc) as channel:
            stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
            try:
                stub.Export(request, timeout=60)
                raise AssertionError("the export was acknowledged while the store was locked")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert httpx.get(f"{server.url}/api/health", timeout=10).status_code == 200
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # The exporter retries: now it lands, once.
    for _ in range(2):
        assert (
            httpx.post(
                f"{server.otlp_http}/v1/metrics", content=body, headers=headers, timeout=30
            ).status_code
            == 200
        )
    assert server.summary()["cost_usd"] == 1.5


def cost_request(second: int, value: float):  # noqa: ANN201 - a protobuf request
    """One cost point of session s, over the given second after T0."""
    window = (T0 + second * SECOND, T0 + (second + 1) * SECOND)
    return sum_request(COST, [(*window, value, {"user.id": "u", "session.id": "s"})])


def post(server, request) -> httpx.Response:  # noqa: ANN001
    return httpx.post(
        f"{server.otlp_http}/v1/metrics",
        content=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
        timeout=30,
    )


def test_a_full_disk_answers_503_and_loses_nothing(start_server):
    """The server cannot grow its files (as on a full disk): exports are refused with 503 and gRPC
    UNAVAILABLE, what was stored stays, and once there is room again the exporters' retries land, once."""
    server = start_server()

    def export(i: int) -> httpx.Response:
        return post(server, cost_request(i, 0.5))

    assert export(0).status_code == 200
    writer = server.process.pid
    _, hard = resource.prlimit(writer, resource.RLIMIT_FSIZE)
    resource.prlimit(writer, resource.RLIMIT_FSIZE, (1, hard))  # no write may reach past the first byte
    try:
        refused = export(1)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"].isdigit()
        assert "could not commit" in status_pb2.Status.FromString(refused.content).message
        with grpc.insecure_channel(server.otlp_grpc) as channel:
            try:
                metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(cost_request(2, 0.5), timeout=30)
                raise AssertionError("an export was acknowledged while the disk was full")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert httpx.get(f"{server.url}/api/health", timeout=10).status_code == 200
        assert server.summary()["cost_usd"] == 0.5  # what was stored before is all there
    finally:
        resource.prlimit(writer, resource.RLIMIT_FSIZE, (hard, hard))
    assert [export(i).status_code for i in (1, 2, 1)] == [200, 200, 200]  # the retries, and a repeat of one
    assert server.summary()["cost_usd"] == 1.5


def test_traces_are_stored_with_hex_ids(server):
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "claude-code"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": "claude_code.interaction",
                                "startTimeUnixNano": str(T0),
                                "endTimeUnixNano": str(T0 + SECOND),
                                "attributes": [{"key": "session.id", "value": {"stringValue": "s1"}}],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    for _ in range(2):
        response = httpx.post(
            f"{server.otlp_http}/v1/traces",
            content=json.dumps(document),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 200 and response.json() == {}
    with sqlite3.connect(server.data_dir / "ccmetrics.db") as conn:
        rows = conn.execute(
            "SELECT trace_id, span_id, name, session_id, end_ns - start_ns FROM spans"
        ).fetchall()
    assert rows == [(trace_id, span_id, "claude_code.interaction", "s1", SECOND)]
