"""The good data sent around a hostile input: for the tests of the listeners, the Host check, the CSV export.

Before the hostile input: the real CLI's delta capture over OTLP/HTTP. After it: the server must still answer
``/api/health``, the totals must be exactly what they were, and a normal export over OTLP/HTTP (the cumulative
capture) and one over OTLP/gRPC (one cost point) must both be counted, exactly once.
"""

from __future__ import annotations

import time

import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc

from .conftest import ServerProcess, fixture_exports
from .in_process import InProcessServer
from .otlp_builders import sum_request

DELTA_COST = 0.044672  # tests/fixtures/claude-code-2.1.332/README.md
CUMULATIVE_COST = 0.052602
GRPC_COST = 0.25
CUMULATIVE_TOKENS = {"input": 4455, "output": 305, "cache_read": 48535, "cache_creation": 3795}
TOTALS = ("sessions", "cost_usd", "tokens", "lines_of_code", "commits", "api_requests", "prompts")


def totals(summary: dict) -> dict:
    return {key: summary[key] for key in TOTALS}


def send_before(server: ServerProcess | InProcessServer) -> dict:
    """The delta capture, sent before anything hostile; returns its totals."""
    for export in fixture_exports("http-protobuf-delta"):
        response = server.send(export)
        assert response.status_code == 200, response.content
    before = totals(server.summary())
    assert before["cost_usd"] == pytest.approx(DELTA_COST, abs=1e-9)
    return before


def assert_unchanged(server: ServerProcess, before: dict) -> None:
    assert server.get("/api/health").status_code == 200
    assert totals(server.summary()) == before


def assert_still_counts(server: ServerProcess, before: dict) -> None:
    """Nothing changed since ``before``, and then a normal export over each protocol is counted exactly."""
    assert_unchanged(server, before)
    for export in fixture_exports("http-json-cumulative"):
        response = server.send(export)
        assert response.status_code == 200, response.content
    now = time.time_ns()
    request = sum_request(
        "claude_code.cost.usage",
        [(now - 1_000_000_000, now, GRPC_COST, {"session.id": "after-grpc", "model": "claude-test"})],
        unit="USD",
    )
    with server.grpc_channel() as channel:
        metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(request, timeout=10)
    after = server.summary()
    assert after["cost_usd"] == pytest.approx(before["cost_usd"] + CUMULATIVE_COST + GRPC_COST, abs=1e-9)
    assert after["tokens"] == {key: before["tokens"][key] + n for key, n in CUMULATIVE_TOKENS.items()}
    assert after["api_requests"] == before["api_requests"] + 5
    assert after["prompts"] == before["prompts"] + 1
