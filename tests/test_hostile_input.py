"""Inputs that used to cost good data, answer 500 or stall every listener, against a real ``ccmetrics serve``.

Each test sends the real CLI's capture first (``good_traffic.send_before``), then the hostile input, and then
checks the answer, that the server kept answering meanwhile, and that the good data's totals are exact.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from .conftest import ServerProcess
from .good_traffic import assert_still_counts, assert_unchanged, send_before
from .otlp_builders import SECOND, log_request, sum_request

PROTOBUF = "application/x-protobuf"
COST = "claude_code.cost.usage"


def post(server: ServerProcess, path: str, body: bytes, **headers: str) -> httpx.Response:
    headers = {"Content-Type": PROTOBUF, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return httpx.post(server.otlp_http + path, content=body, headers=headers, timeout=120)


def exported(response: httpx.Response, response_type: type) -> Any:
    assert response.status_code == 200, (response.status_code, response.content[:300])
    return response_type.FromString(response.content)


def cost_points(
    values: list[float], session: str, **attrs: Any
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    now = time.time_ns()
    points = [
        (
            now - (i + 2) * SECOND,
            now - (i + 1) * SECOND,
            value,
            {"session.id": session, "model": "m", **attrs},
        )
        for i, value in enumerate(values)
    ]
    return sum_request(COST, points, unit="USD")


@contextmanager
def watch_health(server: ServerProcess) -> Iterator[list[float]]:
    """Asks ``/api/health`` again and again while the block runs; yields the list of each answer's time."""
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=30) as client:
            while not done.is_set():
                started = time.perf_counter()
                assert client.get(f"{server.url}/api/health").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        yield latencies
    finally:
        done.set()
        poller.join()


# The old server stalled for seconds; on a busy two-core machine a healthy one still answers within this.
STALL_S = 0.8


# --- 1. decompression is linear, and 2. no export stalls the event loop -------------------------------------


def test_many_empty_gzip_members_take_linear_time_and_stall_nothing(server: ServerProcess) -> None:
    before = send_before(server)
    real = cost_points([0.5], "gzip-members")
    # 200,000 empty gzip members (4 MB), then the export itself: one valid gzip stream.
    body = gzip.compress(b"", mtime=0) * 200_000 + gzip.compress(real.SerializeToString())
    with watch_health(server) as latencies:
        started = time.perf_counter()
        response = post(server, "/v1/metrics", body, content_encoding="gzip")
        took = time.perf_counter() - started
    exported(response, metrics_service_pb2.ExportMetricsServiceResponse)
    assert took < 15, took  # quadratic took about 16 s for this on a quiet machine; linear takes about 1 s
    assert latencies and max(latencies) < STALL_S, max(latencies)
    assert server.summary()["cost_usd"] == pytest.approx(before["cost_usd"] + 0.5, abs=1e-9)


def test_an_export_of_150000_points_does_not_stall_the_server(server: ServerProcess) -> None:
    before = send_before(server)
    now = time.time_ns()
    millisecond = SECOND // 1000
    points = [  # ten series, each with points a millisecond apart
        (now - (i + 1) * millisecond, now - i * millisecond, 0.001, {"session.id": f"big-{i % 10}"})
        for i in range(150_000)
    ]
    body = sum_request(COST, points, unit="USD").SerializeToString()
    assert len(body) < 16 * 1024 * 1024
    with watch_health(server) as latencies:
        response = exported(
            post(server, "/v1/metrics", body), metrics_service_pb2.ExportMetricsServiceResponse
        )
    assert not response.HasField("partial_success")
    assert latencies and max(latencies) < STALL_S, sorted(latencies)[-5:]
    assert server.summary()["cost_usd"] == pytest.approx(before["cost_usd"] + 150, rel=1e-9)


# --- 3. no sum can become infinite, and every JSON is valid JSON --------------------------------------------


def test_values_beyond_the_bound_are_rejected_and_every_answer_stays_valid_json(
    server: ServerProcess,
) -> None:
    before = send_before(server)
    response = exported(
        post(server, "/v1/metrics", cost_points([1.7e308, 1.7e308, 0.25], "huge").SerializeToString()),
        metrics_service_pb2.ExportMetricsServiceResponse,
    )
    assert response.partial_success.rejected_data_points == 2
    assert "beyond" in response.partial_success.error_message
    now = time.time_ns()
    events = log_request([(now - SECOND, "api_request", {"session.id": "huge", "duration_ms": "1e308"})])
    response = exported(
        post(server, "/v1/logs", events.SerializeToString()), logs_service_pb2.ExportLogsServiceResponse
    )
    assert response.partial_success.rejected_log_records == 1
    # Within the bound, but their ratio is not finite: cost per 1k output tokens is then unknown (null).
    extreme = sum_request(
        "claude_code.token.usage",
        [(now - 2 * SECOND, now - SECOND, 1e-300, {"session.id": "huge", "type": "output", "model": "m"})],
        unit="tokens",
    )
    exported(
        post(server, "/v1/metrics", extreme.SerializeToString()),
        metrics_service_pb2.ExportMetricsServiceResponse,
    )
    exported(
        post(server, "/v1/metrics", cost_points([1e12], "huge").SerializeToString()),
        metrics_service_pb2.ExportMetricsServiceResponse,
    )
    assert server.summary(filter="session.id=huge")["cost_per_1k_output_tokens"] is None
    for path in ("/api/summary", "/api/dashboard", "/api/panels/cost_per_1k_output", "/api/sessions/huge"):
        answer = httpx.get(server.url + path, timeout=30)
        assert answer.status_code in (200, 404), (path, answer.status_code)
        json.loads(answer.text, parse_constant=_no_constants)
    assert server.summary()["cost_usd"] == pytest.approx(before["cost_usd"] + 0.25 + 1e12, rel=1e-12)
    answer = json.loads(server.report_json(), parse_constant=_no_constants)
    assert answer["cost_usd"] == pytest.approx(before["cost_usd"] + 0.25 + 1e12, rel=1e-12)


def _no_constants(name: str) -> None:
    raise AssertionError(f"{name} is not JSON")


# --- 4. arrays and key-value lists as attribute values ------------------------------------------------------


def _array(*items: str) -> common_pb2.AnyValue:
    return common_pb2.AnyValue(
        array_value=common_pb2.ArrayValue(values=[common_pb2.AnyValue(string_value=i) for i in items])
    )


def _kvlist(**items: str) -> common_pb2.AnyValue:
    pairs = [common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v)) for k, v in items.items()]
    return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=pairs))


def test_array_and_kvlist_attributes_are_stored_as_json_text(server: ServerProcess) -> None:
    before = send_before(server)
    metrics = cost_points([0.5], "nested-values")
    resource = metrics.resource_metrics[0].resource
    resource.attributes.add(key="process.command_args", value=_array("claude", "-p", "hi"))
    point = metrics.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0]
    point.attributes.add(key="details", value=_kvlist(tool="Bash", outcome="ok"))
    exported(
        post(server, "/v1/metrics", metrics.SerializeToString()),
        metrics_service_pb2.ExportMetricsServiceResponse,
    )

    logs = log_request([(time.time_ns() - SECOND, "tool_result", {"session.id": "nested-values"})])
    logs.resource_logs[0].resource.attributes.add(key="process.command_args", value=_array("claude", "-p"))
    logs.resource_logs[0].scope_logs[0].log_records[0].attributes.add(key="args", value=_kvlist(path="/x"))
    exported(post(server, "/v1/logs", logs.SerializeToString()), logs_service_pb2.ExportLogsServiceResponse)

    # The same over gRPC, which answered UNKNOWN before.
    metrics = cost_points([0.25], "nested-values-grpc")
    metrics.resource_metrics[0].resource.attributes.add(key="process.command_args", value=_array("a", "b"))
    with grpc.insecure_channel(server.otlp_grpc) as channel:
        metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(metrics, timeout=30)

    assert server.summary()["cost_usd"] == pytest.approx(before["cost_usd"] + 0.75, abs=1e-9)
    selected = server.summary(filter='process.command_args=["claude", "-p", "hi"]')
    assert selected["cost_usd"] == pytest.approx(0.5, abs=1e-9)
    (stored,) = httpx.get(f"{server.url}/api/events", params={"session": "nested-values"}).json()["events"]
    event = stored["attributes"]
    assert json.loads(event["args"]) == {"path": "/x"}
    assert json.loads(event["process.command_args"]) == ["claude", "-p"]


def _read(server: ServerProcess, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{server.data_dir / 'ccmetrics.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --- 5. an export is never answered 500 ---------------------------------------------------------------------


def test_a_failure_while_storing_is_answered_503_and_the_retry_counts_once(server: ServerProcess) -> None:
    before = send_before(server)
    with sqlite3.connect(server.data_dir / "ccmetrics.db") as conn:  # a real failure inside SQLite
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON series WHEN NEW.metric = 'claude_code.refused' "
            "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"
        )
    now = time.time_ns()
    refused = sum_request("claude_code.refused", [(now - 2 * SECOND, now - SECOND, 1.0, {"session.id": "r"})])
    response = post(server, "/v1/metrics", refused.SerializeToString())
    assert response.status_code == 503, (response.status_code, response.content)
    assert int(response.headers["retry-after"]) > 0
    assert "retry" in status_pb2.Status.FromString(response.content).message
    with grpc.insecure_channel(server.otlp_grpc) as channel, pytest.raises(grpc.RpcError) as failure:
        metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(refused, timeout=30)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "could not store an export" in server.log_path.read_text()
    assert "Traceback" in server.log_path.read_text()
    assert_unchanged(server, before)

    with sqlite3.connect(server.data_dir / "ccmetrics.db") as conn:
        conn.execute("DROP TRIGGER refuse")
    for _ in range(2):  # the exporter's retry, and a second one: counted once
        exported(
            post(server, "/v1/metrics", refused.SerializeToString()),
            metrics_service_pb2.ExportMetricsServiceResponse,
        )
    ((total,),) = _read(
        server,
        "SELECT SUM(p.value) FROM points p JOIN series s ON s.id = p.series_id WHERE s.metric = ?",
        "claude_code.refused",
    )
    assert total == 1.0
    assert_still_counts(server, before)


# --- 7. times out of range ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"since": "0001-01-01"},
        {"until": "9999-12-31"},
        {"since": "999999999d"},
        {"since": "99999999999999999999w"},
    ],
)
def test_a_time_out_of_range_is_a_400(server: ServerProcess, params: dict[str, str]) -> None:
    before = send_before(server)
    for path in ("/api/summary", "/api/dashboard", "/api/panels/cost", "/api/filters"):
        answer = httpx.get(server.url + path, params=params, timeout=30)
        if path == "/api/filters" and answer.status_code == 200:
            continue  # takes no time range
        assert answer.status_code == 400, (path, params, answer.status_code, answer.text[:200])
        assert "range" in answer.json()["error"] or "cannot read" in answer.json()["error"]
    csv = httpx.get(f"{server.url}/api/panels/cost", params={**params, "format": "csv"}, timeout=30)
    assert csv.status_code == 400
    (flag, value) = next(iter(params.items()))
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccmetrics",
            "report",
            "summary",
            "--data-dir",
            str(server.data_dir),
            f"--{flag}",
            value,
        ],
        capture_output=True,
        text=True,
    )
    assert report.returncode != 0 and "Traceback" not in report.stderr, report.stderr
    assert_unchanged(server, before)


def test_the_latest_time_the_store_holds_is_answered(server: ServerProcess) -> None:
    send_before(server)
    answer = httpx.get(
        f"{server.url}/api/dashboard", params={"since": "30d", "until": "2262-01-01"}, timeout=60
    )
    assert answer.status_code == 200, answer.text[:300]


# --- 8. clocks that run ahead -------------------------------------------------------------------------------


YEAR_2200_NS = 7_258_118_400 * SECOND


def test_data_dated_in_the_future_is_rejected(server: ServerProcess) -> None:
    before = send_before(server)
    future = sum_request(
        COST, [(YEAR_2200_NS - SECOND, YEAR_2200_NS, 5.0, {"session.id": "from-2200"})], unit="USD"
    )
    response = exported(
        post(server, "/v1/metrics", future.SerializeToString()),
        metrics_service_pb2.ExportMetricsServiceResponse,
    )
    assert response.partial_success.rejected_data_points == 1
    assert "ahead of the server's clock" in response.partial_success.error_message
    events = log_request([(YEAR_2200_NS, "user_prompt", {"session.id": "from-2200", "prompt_length": 5})])
    response = exported(
        post(server, "/v1/logs", events.SerializeToString()), logs_service_pb2.ExportLogsServiceResponse
    )
    assert response.partial_success.rejected_log_records == 1
    traces = trace_service_pb2.ExportTraceServiceRequest()
    span = (
        traces.resource_spans.add()
        .scope_spans.add()
        .spans.add(name="s", trace_id=b"t" * 16, span_id=b"s" * 8)
    )
    span.start_time_unix_nano, span.end_time_unix_nano = YEAR_2200_NS, YEAR_2200_NS + SECOND
    response = exported(
        post(server, "/v1/traces", traces.SerializeToString()), trace_service_pb2.ExportTraceServiceResponse
    )
    assert response.partial_success.rejected_spans == 1
    # Ten minutes ahead is within the default allowance; an hour is not.
    now = time.time_ns()
    soon = cost_points([0.5], "soon")
    for point in soon.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points:
        point.start_time_unix_nano, point.time_unix_nano = now + 200 * SECOND, now + 300 * SECOND
    response = exported(
        post(server, "/v1/metrics", soon.SerializeToString()),
        metrics_service_pb2.ExportMetricsServiceResponse,
    )
    assert not response.HasField("partial_success")
    assert_unchanged(server, {**before, "cost_usd": pytest.approx(before["cost_usd"] + 0.5, abs=1e-9)})
    recent = httpx.get(f"{server.url}/api/summary", params={"since": "2199-01-01"}, timeout=30).json()
    assert recent["cost_usd"] == 0


def test_the_clock_skew_allowed_is_a_setting(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(None, "--max-clock-skew", "7200")
    now = time.time_ns()
    later = sum_request(
        COST, [(now + 3599 * SECOND, now + 3600 * SECOND, 1.0, {"session.id": "later"})], unit="USD"
    )
    response = exported(
        post(server, "/v1/metrics", later.SerializeToString()),
        metrics_service_pb2.ExportMetricsServiceResponse,
    )
    assert not response.HasField("partial_success")
    assert server.summary()["cost_usd"] == 1.0


# --- 10. attribute keys are cut as values are ---------------------------------------------------------------


def test_megabyte_attribute_keys_are_cut(server: ServerProcess) -> None:
    before = send_before(server)
    huge_keys = {f"k{i:02d}" + "x" * (1024 * 1024): "v" for i in range(15)}
    metrics = cost_points([0.5], "huge-keys", **huge_keys)
    response = exported(
        post(server, "/v1/metrics", metrics.SerializeToString()),
        metrics_service_pb2.ExportMetricsServiceResponse,
    )
    assert "keys longer than 256 characters were shortened" in response.partial_success.error_message
    logs = log_request([(time.time_ns() - SECOND, "tool_result", {"session.id": "huge-keys", **huge_keys})])
    exported(post(server, "/v1/logs", logs.SerializeToString()), logs_service_pb2.ExportLogsServiceResponse)
    assert server.summary()["cost_usd"] == pytest.approx(before["cost_usd"] + 0.5, abs=1e-9)
    runs = [len(run) for run in _runs_of_x(server.data_dir / "ccmetrics.db")]
    assert runs and max(runs) == 256 - len("k00"), max(runs)
    assert (server.data_dir / "ccmetrics.db").stat().st_size < 20 * 1024 * 1024


def _runs_of_x(db: Path) -> list[str]:
    """Every run of 100 or more x in the database's text: what is left of the huge keys."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    runs = []
    try:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for cell in row:
                    text = cell.decode("utf-8", "replace") if isinstance(cell, bytes) else cell
                    if isinstance(text, str):
                        runs += re.findall("x{100,}", text)
    finally:
        conn.close()
    return runs


# --- 13. prompt text is stored nowhere unless asked ---------------------------------------------------------


SECRET = "SECRET-PROMPT-TEXT-7f3a"


def _prompt_everywhere(now: int) -> list[tuple[str, bytes]]:
    logs = log_request(
        [
            (now - 3 * SECOND, "user_prompt", {"session.id": "secret", "prompt_length": 24}),
            (now - 2 * SECOND, "user_prompt", {"session.id": "secret", "user_prompt": SECRET}),
            (now - SECOND, "tool_result", {"session.id": "secret"}),
        ]
    )
    records = logs.resource_logs[0].scope_logs[0].log_records
    records[0].body.string_value = SECRET  # the text as the record's body
    records[2].attributes.add(key="input", value=_kvlist(prompt=SECRET, path="/x"))  # nested
    metrics = cost_points([0.5], "secret", prompt=SECRET)  # on a metric point
    traces = trace_service_pb2.ExportTraceServiceRequest()
    span = (
        traces.resource_spans.add()
        .scope_spans.add()
        .spans.add(name="interaction", trace_id=b"t" * 16, span_id=b"s" * 8)
    )
    span.start_time_unix_nano, span.end_time_unix_nano = now - 2 * SECOND, now - SECOND
    span.attributes.add(key="user_prompt", value=common_pb2.AnyValue(string_value=SECRET))
    span.attributes.add(key="response", value=common_pb2.AnyValue(string_value=SECRET))
    return [
        ("/v1/logs", logs.SerializeToString()),
        ("/v1/metrics", metrics.SerializeToString()),
        ("/v1/traces", traces.SerializeToString()),
    ]


def _database_bytes(server: ServerProcess) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(server.data_dir.glob("ccmetrics.db*")))


def test_prompt_text_is_redacted_wherever_it_arrives(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()
    before = send_before(server)
    for path, body in _prompt_everywhere(time.time_ns()):
        assert post(server, path, body).status_code == 200
    server.stop()
    assert SECRET.encode() not in _database_bytes(server)
    server.start()
    timeline = httpx.get(f"{server.url}/api/sessions/secret", timeout=30).json()["timeline"]
    prompts = [e for e in timeline if e["name"] == "user_prompt"]
    assert sorted(e["fields"]["prompt_length"] for e in prompts) == [len(SECRET), 24]
    assert server.summary()["cost_usd"] == pytest.approx(before["cost_usd"] + 0.5, abs=1e-9)

    keeping = start_server(None, "--store-prompts")  # asked to: then it is kept
    for path, body in _prompt_everywhere(time.time_ns()):
        assert post(keeping, path, body).status_code == 200
    keeping.stop()
    assert _database_bytes(keeping).count(SECRET.encode()) >= 5


# --- 11. a body sent a byte at a time -----------------------------------------------------------------------


def test_a_body_that_trickles_in_is_cut_off(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(None, "--idle-timeout", "2")
    before = send_before(server)
    body = cost_points([0.5], "trickle").SerializeToString()
    head = (
        f"POST /v1/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {PROTOBUF}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.otlp_http_port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sock.settimeout(0.3)
            try:
                answer += sock.recv(4096)
            except TimeoutError:
                continue
            if answer:
                break
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert 1.5 < took < 8, took
    assert_unchanged(server, before)


# --- client strings in the terminal report are text ---------------------------------------------------------


def test_client_strings_reach_the_terminal_report_as_text(server: ServerProcess) -> None:
    # rich reads a str cell as markup: "[/]" closes nothing and ended the report with a MarkupError.
    model, email = "[/]claude-[bold]x", "[red]ada[/red]@example.com"
    request = cost_points([1.5], "markup", **{"model": model, "user.id": "ada", "user.email": email})
    exported(
        post(server, "/v1/metrics", request.SerializeToString()),
        metrics_service_pb2.ExportMetricsServiceResponse,
    )
    command = [sys.executable, "-m", "ccmetrics", "report", "summary", "--data-dir", str(server.data_dir)]
    report = subprocess.run(
        command, capture_output=True, text=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    )
    assert report.returncode == 0, report.stderr[-500:]
    assert model in report.stdout and email in report.stdout, report.stdout
