"""The real CLI's captured exports, through a real server, give the totals the fixtures' README lists."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

from ccmetrics.otlp.decode import JSON, Signal, parse

from .conftest import fixture_exports, send

# From shared/fixtures/claude-code-2.1.332/README.md, computed there from the raw payloads.
EXPECTED = {
    "http-protobuf-delta": {
        "sessions": 1,
        "cost_usd": 0.044672,
        "tokens": {"input": 4130, "output": 230, "cache_read": 46010, "cache_creation": 2870},
        "lines_of_code": {"added": 8, "removed": 1},
        "commits": 1,
        "edit_decisions": {"accept": 2, "reject": 0},
        "active_cli": 0.367,
        "prompts": 1,
        "avg_prompt_length": 28,
        "api_requests": 5,
    },
    "http-json-cumulative": {
        "sessions": 1,
        "cost_usd": 0.052602,
        "tokens": {"input": 4455, "output": 305, "cache_read": 48535, "cache_creation": 3795},
        "lines_of_code": {"added": 0, "removed": 0},
        "commits": 0,
        "edit_decisions": {"accept": 0, "reject": 1},
        "active_cli": 0.26,
        "prompts": 1,
        "avg_prompt_length": 18,
        "api_requests": 5,
    },
}


def assert_totals(summary: dict, expected: dict) -> None:
    assert summary["sessions"] == expected["sessions"]
    assert summary["cost_usd"] == pytest.approx(expected["cost_usd"], abs=1e-9)
    assert summary["tokens"] == expected["tokens"]
    assert summary["lines_of_code"] == expected["lines_of_code"]
    assert summary["commits"] == expected["commits"]
    assert summary["edit_decisions"] == expected["edit_decisions"]
    assert summary["active_time_seconds"]["cli"] == pytest.approx(expected["active_cli"], abs=1e-9)
    assert summary["prompts"] == expected["prompts"]
    assert summary["avg_prompt_length"] == pytest.approx(expected["avg_prompt_length"])
    assert summary["api_requests"] == expected["api_requests"]
    assert summary["api_errors"] == 0
    assert summary["by_model"][0]["api_requests"] == expected["api_requests"]


@pytest.mark.parametrize("capture", sorted(EXPECTED))
def test_each_capture_over_http_gives_its_totals(server, capture):
    for export in fixture_exports(capture):
        response = send(server.otlp_http, export)
        assert response.status_code == 200, response.content
        assert response.headers["content-type"].startswith(export.content_type)
    assert_totals(server.summary(), EXPECTED[capture])


def test_both_captures_add_up_and_retries_count_once(server):
    exports = fixture_exports("http-protobuf-delta") + fixture_exports("http-json-cumulative")
    for _ in range(3):  # an exporter retrying every request twice
        for export in exports:
            assert send(server.otlp_http, export).status_code == 200
    summary = server.summary()
    delta, cumulative = EXPECTED["http-protobuf-delta"], EXPECTED["http-json-cumulative"]
    assert summary["sessions"] == 2
    assert summary["cost_usd"] == pytest.approx(delta["cost_usd"] + cumulative["cost_usd"], abs=1e-9)
    assert summary["tokens"] == {"input": 8585, "output": 535, "cache_read": 94545, "cache_creation": 6665}
    assert summary["api_requests"] == 10
    assert summary["prompts"] == 2
    assert summary["avg_prompt_length"] == pytest.approx(23)
    # Filters: the delta capture ran with OTEL_RESOURCE_ATTRIBUTES=team.id=web.
    assert_totals(server.summary(filter="team.id=web"), delta)


def _as_protobuf(export) -> tuple[Signal, bytes]:
    signal = Signal(export.path.rsplit("/", 1)[1])
    if export.content_type == JSON:
        return signal, parse(signal, export.body, JSON).SerializeToString()
    return signal, export.body


@pytest.mark.parametrize("capture", sorted(EXPECTED))
def test_each_capture_over_grpc_gives_its_totals(server, capture):
    with grpc.insecure_channel(server.otlp_grpc) as channel:
        metrics = metrics_service_pb2_grpc.MetricsServiceStub(channel)
        logs = logs_service_pb2_grpc.LogsServiceStub(channel)
        for _ in range(2):
            for export in fixture_exports(capture):
                signal, body = _as_protobuf(export)
                if signal is Signal.METRICS:
                    request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                    response = metrics.Export(request, timeout=10, compression=grpc.Compression.Gzip)
                else:
                    request = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
                    response = logs.Export(request, timeout=10)
                assert not response.HasField("partial_success"), json_format.MessageToJson(response)
    assert_totals(server.summary(), EXPECTED[capture])


def test_report_summary_reads_the_same_numbers(server, tmp_path):
    import json
    import subprocess
    import sys

    for export in fixture_exports("http-protobuf-delta"):
        assert send(server.otlp_http, export).status_code == 200
    for args in ([], ["--filter", "team.id=web", "--since", "3650d"]):
        params = {"filter": "team.id=web", "since": "3650d"} if args else {}
        assert json.loads(server.report_json(*args)) == server.summary(**params)

    def table(columns: int) -> str:
        """What `ccmetrics report summary` prints on a terminal this wide."""
        command = [sys.executable, "-m", "ccmetrics", "report", "summary", "--data-dir", str(server.data_dir)]
        env = {"COLUMNS": str(columns), "PATH": "/usr/bin:/bin"}
        return subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout

    wide = table(120)
    assert "$0.0447" in wide and "Sessions" in wide
    # On a narrow terminal a model's name folds onto more lines, whole, rather than ending in an ellipsis.
    narrow = table(60)
    by_model = narrow[narrow.index("By model") : narrow.index("By user")].splitlines()
    body = by_model[by_model.index(next(line for line in by_model if line.startswith("┡"))) + 1 : -1]
    first_cells = [line.split("│")[1].strip() for line in body]
    assert len(body) > 1 and "".join(first_cells) == "".join(m["model"] for m in server.summary()["by_model"])


def test_report_on_a_database_from_an_older_ccmetrics_says_how_to_upgrade_it(tmp_path):
    """`report` reads without writing, so it never upgrades a database a server may still be using: it
    says what to do instead of failing on a table the old schema lacks."""
    import sqlite3
    import subprocess
    import sys

    from ccmetrics.store.schema import MIGRATIONS, SCHEMA_VERSION, statements

    with sqlite3.connect(tmp_path / "ccmetrics.db", isolation_level=None) as conn:
        for statement in statements(MIGRATIONS[0]):
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
    command = [sys.executable, "-m", "ccmetrics", "report", "summary", "--data-dir", str(tmp_path)]
    cli = subprocess.run(command, capture_output=True, text=True)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert f"schema 1, this one reads {SCHEMA_VERSION}" in cli.stderr and "ccmetrics serve" in cli.stderr
