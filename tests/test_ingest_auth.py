"""Ingest authentication: once a token exists, every export needs one that may send (401/UNAUTHENTICATED
otherwise, 403/PERMISSION_DENIED for a viewer's), nothing refused is stored, and a token's user and team
replace whatever the export claims. In-process (OTLP/HTTP through the ASGI transport, gRPC on a loopback
port) and through a real ``ccmetrics serve`` whose tokens the CLI changes while it runs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ccmetrics.access.gate import Gate
from ccmetrics.access.store import AccessStore
from ccmetrics.access.tokens import Role
from ccmetrics.otlp.receiver import Intake, Receiver
from ccmetrics.store import Store
from ccmetrics.store.filters import Filters
from ccmetrics.store.summary import summary

from .conftest import ServerProcess, free_port
from .otlp_builders import SECOND, attrs, log_request, sum_request
from .test_receivers import error, grpc_channel, http

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
COST = "claude_code.cost.usage"
SPOOFED = {"user.id": "u1", "session.id": "s1", "user.email": "ceo@example.com", "team.id": "exec"}


@pytest.fixture
def access(tmp_path: Path) -> Iterator[AccessStore]:
    access = AccessStore(tmp_path / "access.db")
    yield access
    access.close()


@pytest.fixture
def tokens(access: AccessStore) -> dict[str, str]:
    return {
        "dev": access.create("dev", Role.INGEST, user="dev@example.com", team="web"),
        "admin": access.create("admin", Role.ADMIN),
        "viewer": access.create("viewer", Role.VIEWER),
    }


@pytest.fixture
def receiver(store: Store, tokens: dict[str, str], tmp_path: Path) -> Iterator[Receiver]:
    gate = Gate(AccessStore(tmp_path / "access.db"))
    receiver = Receiver(store, Intake(max_body_bytes=64 * 1024), gate)
    yield receiver
    receiver.close()


def recent_ns() -> int:
    return time.time_ns() - 3600 * SECOND


def cost(
    value: float, point_attrs: dict[str, Any] | None = None, **resource: Any
) -> ExportMetricsServiceRequest:
    t = recent_ns()
    return sum_request(
        COST, [(t, t + 60 * SECOND, value, point_attrs or SPOOFED)], unit="USD", resource=resource or None
    )


def total_cost(store: Store, *filters: str) -> float:
    return float(summary(store.reader(), Filters.parse(None, None, filters))["cost_usd"])


def post(
    receiver: Receiver, path: str, body: bytes, media: str = PROTOBUF, token: str | None = None
) -> httpx.Response:
    return http(receiver, path, body, media, token=token)


# --- OTLP/HTTP ----------------------------------------------------------------------------------------------


def test_http_without_a_valid_token_is_a_401_with_a_status_in_the_request_encoding(
    store: Store, receiver: Receiver, tokens: dict[str, str]
) -> None:
    body = cost(1.0).SerializeToString()
    missing = post(receiver, "/v1/metrics", body)
    assert error(missing, 401) == status_pb2.Status(
        code=code_pb2.UNAUTHENTICATED,
        message="this server needs a token: send the header Authorization: Bearer <token>",
    )
    assert missing.headers["www-authenticate"] == "Bearer"

    wrong = post(receiver, "/v1/metrics", json_format.MessageToJson(cost(1.0)).encode(), JSON, "ccm_wrong")
    assert json.loads(wrong.content) == {
        "code": code_pb2.UNAUTHENTICATED,
        "message": "the token is not valid: it is unknown or was revoked",
    }
    assert error(wrong, 401, JSON).code == code_pb2.UNAUTHENTICATED
    assert wrong.headers["www-authenticate"] == "Bearer"

    viewer = post(receiver, "/v1/metrics", body, token=tokens["viewer"])
    assert error(viewer, 403) == status_pb2.Status(
        code=code_pb2.PERMISSION_DENIED, message="the token 'viewer' is a viewer token: it may not send data"
    )
    assert viewer.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'

    unsupported = post(receiver, "/v1/metrics", body, "text/plain")  # refused before its type is looked at
    assert error(unsupported, 401).code == code_pb2.UNAUTHENTICATED
    assert total_cost(store) == 0  # nothing refused was stored

    assert post(receiver, "/v1/metrics", body, token=tokens["dev"]).status_code == 200
    assert (
        post(receiver, "/v1/metrics", cost(2.0).SerializeToString(), token=tokens["admin"]).status_code == 200
    )
    assert total_cost(store) == 3.0


def test_a_tokens_user_and_team_replace_what_the_export_claims(
    store: Store, receiver: Receiver, tokens: dict[str, str]
) -> None:
    t = recent_ns()
    metrics = cost(0.5, SPOOFED, **{"service.name": "claude-code", "user.email": "ceo@example.com"})
    logs = log_request(
        [(t, "api_request", {**SPOOFED, "cost_usd": "0.5", "model": "claude-opus-5-5"})],
        resource={"service.name": "claude-code", "team.id": "exec"},
    )
    traces = ExportTraceServiceRequest()
    span = (
        traces.resource_spans.add()
        .scope_spans.add()
        .spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="claude_code.interaction")
    )
    span.start_time_unix_nano, span.end_time_unix_nano = t, t + SECOND
    span.attributes.extend(attrs(SPOOFED))
    for path, request in (("/v1/metrics", metrics), ("/v1/logs", logs), ("/v1/traces", traces)):
        response = post(receiver, path, request.SerializeToString(), token=tokens["dev"])
        assert response.status_code == 200, response.content

    assert total_cost(store, "user.email=dev@example.com") == 0.5
    assert total_cost(store, "team.id=web") == 0.5
    assert total_cost(store, "user.email=ceo@example.com") == 0
    assert total_cost(store, "team.id=exec") == 0
    dev = summary(store.reader(), Filters.parse(None, None, ("user.email=dev@example.com", "team.id=web")))
    assert dev["api_requests"] == 1 and dev["cost_usd"] == 0.5
    ceo = summary(store.reader(), Filters.parse(None, None, ("user.email=ceo@example.com",)))
    assert ceo["api_requests"] == 0
    (span_attrs,) = store.reader().execute("SELECT attrs FROM spans").fetchone()
    stored = json.loads(span_attrs)
    assert (stored["user.email"], stored["team.id"], stored["user.id"]) == ("dev@example.com", "web", "u1")

    # A token without a user or team leaves the export's own.
    post(receiver, "/v1/metrics", cost(0.25).SerializeToString(), token=tokens["admin"])
    assert total_cost(store, "user.email=ceo@example.com", "team.id=exec") == 0.25


def test_without_any_token_ingest_stays_open(store: Store, tmp_path: Path) -> None:
    receiver = Receiver(store, Intake(max_body_bytes=64 * 1024), Gate(AccessStore(tmp_path / "access.db")))
    try:
        assert post(receiver, "/v1/metrics", cost(1.0).SerializeToString()).status_code == 200
    finally:
        receiver.close()
    assert total_cost(store, "user.email=ceo@example.com") == 1.0


# --- OTLP/gRPC ----------------------------------------------------------------------------------------------


def test_grpc_without_a_valid_token_is_unauthenticated(
    store: Store, receiver: Receiver, tokens: dict[str, str]
) -> None:
    async def export(metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
        async with grpc_channel(receiver) as channel:
            try:
                await metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(
                    cost(1.0), metadata=metadata, timeout=10
                )
                await logs_service_pb2_grpc.LogsServiceStub(channel).Export(
                    log_request([(recent_ns(), "api_request", {**SPOOFED, "cost_usd": "1"})]),
                    metadata=metadata,
                    timeout=10,
                )
            except grpc.aio.AioRpcError as failure:
                assert failure.details() in (
                    "this server needs a token: send the header Authorization: Bearer <token>",
                    "the token is not valid: it is unknown or was revoked",
                    "the token 'viewer' is a viewer token: it may not send data",
                )
                return failure.code()
            return grpc.StatusCode.OK

    assert asyncio.run(export(())) == grpc.StatusCode.UNAUTHENTICATED
    assert asyncio.run(export((("authorization", "Bearer ccm_wrong"),))) == grpc.StatusCode.UNAUTHENTICATED
    viewer = (("authorization", f"Bearer {tokens['viewer']}"),)
    assert asyncio.run(export(viewer)) == grpc.StatusCode.PERMISSION_DENIED
    assert total_cost(store) == 0
    assert summary(store.reader(), Filters.parse())["api_requests"] == 0

    dev = (("authorization", f"Bearer {tokens['dev']}"),)
    assert asyncio.run(export(dev)) == grpc.StatusCode.OK
    assert total_cost(store, "user.email=dev@example.com", "team.id=web") == 1.0
    assert summary(store.reader(), Filters.parse(None, None, ("team.id=web",)))["api_requests"] == 1


# --- a real server ------------------------------------------------------------------------------------------


def ccmetrics(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccmetrics", *args], capture_output=True, text=True, timeout=60
    )


def post_cost(server: ServerProcess, value: float | None, token: str | None = None) -> int:
    """An export of one cost point (``None``: an empty export, which stores nothing)."""
    headers = {"content-type": PROTOBUF}
    if token:
        headers["authorization"] = f"Bearer {token}"
    body = cost(value).SerializeToString() if value is not None else b""
    return httpx.post(server.otlp_http + "/v1/metrics", content=body, headers=headers, timeout=10).status_code


def wait_for_status(server: ServerProcess, token: str | None, status: int, timeout: float = 5) -> float:
    """Seconds until an empty export with ``token`` is answered ``status``."""
    started = time.monotonic()
    while post_cost(server, None, token) != status:
        assert time.monotonic() - started < timeout, f"not answered {status} within {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_tokens_made_and_revoked_by_the_cli_count_within_seconds_without_restart(start_server) -> None:
    server = start_server()
    log = server.log_path.read_text()
    assert f"OTLP/HTTP 127.0.0.1:{server.otlp_http_port}: authentication off" in log
    assert f"OTLP gRPC 127.0.0.1:{server.otlp_grpc_port}: authentication off" in log
    assert post_cost(server, 1.0) == 200

    made = ccmetrics(
        "token", "create", "ci", "--role", "ingest", "--team", "ci", "--data-dir", str(server.data_dir)
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert wait_for_status(server, None, 401) < 3
    assert post_cost(server, 2.0, token) == 200
    assert post_cost(server, 4.0, "ccm_wrong") == 401

    revoked = ccmetrics("token", "revoke", "ci", "--data-dir", str(server.data_dir))
    assert revoked.returncode == 0, revoked.stderr
    # Revoking the last token opens a loopback server again: the revoked token is then simply not needed.
    ccmetrics("token", "create", "other", "--role", "ingest", "--data-dir", str(server.data_dir))
    assert wait_for_status(server, token, 401) < 3
    # With tokens, the API reads only with a viewer's (or admin's) token.
    assert server.get("/api/summary", params={"filter": "team.id=ci"}).status_code == 401
    viewer = ccmetrics("token", "create", "reader", "--role", "viewer", "--data-dir", str(server.data_dir))
    reading = {"authorization": f"Bearer {viewer.stdout.strip()}"}
    deadline = time.monotonic() + 3  # the server sees the new token within a second or two
    while (
        answer := server.get("/api/summary", params={"filter": "team.id=ci"}, headers=reading)
    ).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.1)
    assert answer.json()["cost_usd"] == 2.0
    assert "Bearer" not in server.log_path.read_text() and token not in server.log_path.read_text()


def serve_args(data_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ccmetrics",
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        str(free_port()),
        "--otlp-http-port",
        str(free_port()),
        "--otlp-grpc-port",
        str(free_port()),
        *extra,
    ]


def test_serve_on_a_reachable_address_without_tokens_refuses_to_start(tmp_path: Path) -> None:
    refused = subprocess.run(
        serve_args(tmp_path / "data", "--host", "0.0.0.0"), capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert "refusing to listen on 0.0.0.0 without authentication" in refused.stderr
    assert "ccmetrics token create NAME --role ingest" in refused.stderr
    assert "ccmetrics user add NAME --role admin" in refused.stderr
    assert "--insecure-no-auth" in refused.stderr


def test_serve_on_a_reachable_address_starts_with_a_token_or_when_told_to(
    start_server, tmp_path: Path
) -> None:
    server = start_server(tmp_path / "open", "--host", "0.0.0.0", "--insecure-no-auth")
    assert post_cost(server, 1.0) == 200
    assert "authentication off" in server.log_path.read_text()

    data_dir = tmp_path / "guarded"
    made = ccmetrics("token", "create", "ci", "--role", "ingest", "--data-dir", str(data_dir))
    token = made.stdout.strip()
    guarded = start_server(data_dir, "--host", "0.0.0.0")
    assert "authentication on" in guarded.log_path.read_text()
    assert post_cost(guarded, 1.0) == 401
    assert post_cost(guarded, 1.0, token) == 200
    # Reachable from other machines, it stays closed once the last token is revoked.
    assert ccmetrics("token", "revoke", "ci", "--data-dir", str(data_dir)).returncode == 0
    time.sleep(1.5)
    assert post_cost(guarded, 1.0) == 401


def test_serve_on_a_reachable_address_starts_with_only_a_person_and_then_everything_is_closed(
    start_server, tmp_path: Path
) -> None:
    """A person who may sign in is enough to start: the dashboard then needs them, and with no token at all,
    nobody may send."""
    data_dir = tmp_path / "people-only"
    added = subprocess.run(
        [sys.executable, "-m", "ccmetrics", "user", "add", "ada", "--role", "admin", "--password-stdin"]
        + ["--data-dir", str(data_dir)],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    server = start_server(data_dir, "--host", "0.0.0.0")
    assert post_cost(server, 1.0) == 401
    assert httpx.get(server.url + "/api/summary", timeout=10).status_code == 401
    assert httpx.get(server.url + "/api/health", timeout=10).status_code == 200
    signed_in = httpx.post(
        server.url + "/api/signin", json={"name": "ada", "password": "correct horse battery"}, timeout=10
    )
    assert signed_in.status_code == 200
    assert httpx.get(server.url + "/api/summary", cookies=signed_in.cookies, timeout=10).status_code == 200
