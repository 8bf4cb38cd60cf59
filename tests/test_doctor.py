"""``ccmetrics doctor`` against a real ``ccmetrics serve``.

A running one, a stopped one, and each misconfiguration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ccmetrics.claude_settings import TELEMETRY_VARS
from ccmetrics.store.status import iso

from .conftest import ServerProcess, fixture_exports, free_port, send
from .otlp_builders import log_request, sum_request


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    (path / ".claude").mkdir(parents=True)
    return path


def write_settings(home: Path, env: dict[str, str]) -> None:
    (home / ".claude" / "settings.json").write_text(json.dumps({"env": env}, indent=2))


def configured(server: ServerProcess, protocol: str = "grpc", **extra: str) -> dict[str, str]:
    port = server.otlp_grpc_port if protocol == "grpc" else server.otlp_http_port
    return {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_METRIC_EXPORT_INTERVAL": "10000",
        "OTEL_LOGS_EXPORT_INTERVAL": "5000",
        **extra,
    }


def ccmetrics(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in TELEMETRY_VARS and not k.startswith("CCMETRICS_")}
    base.pop("CLAUDE_CONFIG_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "ccmetrics", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "HOME": str(home), **(env or {})},
        cwd=home,
    )


def doctor(home: Path, server_url: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    result = ccmetrics(
        home,
        "doctor",
        "--server",
        server_url,
        "--json",
        "--wait",
        "5",
        "--managed-settings",
        str(home / "no-managed.json"),
        *args,
        env=env,
    )
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def checks(report: dict, level: str = "error") -> set[str]:
    return {f["check"] for f in report["findings"] if f["level"] == level}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf", "http/json"])
def test_setup_then_doctor_passes_and_the_probe_is_stored(start_server, home: Path, protocol: str) -> None:
    server = start_server()
    port = server.otlp_grpc_port if protocol == "grpc" else server.otlp_http_port
    setup = ccmetrics(
        home,
        "setup",
        "--yes",
        "--protocol",
        protocol,
        "--endpoint",
        f"http://127.0.0.1:{port}",
        "--token",
        "s3cret",
    )
    assert setup.returncode == 0, setup.stderr
    code, report = doctor(home, server.url)
    assert code == 0, report["findings"]
    assert report["ok"] and checks(report) == set()
    assert report["probe"]["stored"] == {"metrics": True, "logs": True}
    variables = {v["name"]: v for v in report["variables"]}
    assert variables["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == protocol
    assert variables["OTEL_EXPORTER_OTLP_PROTOCOL"]["source"].startswith("user (")
    assert variables["OTEL_EXPORTER_OTLP_HEADERS"]["value"] == "Authorization=***"  # never printed
    assert "s3cret" not in json.dumps(report)
    probe = httpx.get(f"{server.url}/api/probes/{report['probe']['probe_id']}").json()
    assert probe["stored"] and probe["metric"] and probe["event"]


def _summary_around_doctor(start_server, home: Path) -> tuple[ServerProcess, dict, dict, dict]:
    server = start_server()
    for export in fixture_exports("http-protobuf-delta"):
        assert send(server.otlp_http, export).status_code == 200
    before = server.summary()
    status_before = httpx.get(f"{server.url}/api/status").json()
    write_settings(home, configured(server))
    assert doctor(home, server.url)[0] == 0
    assert doctor(home, server.url)[0] == 0
    return server, before, server.summary(), status_before


def test_doctor_is_not_counted_in_usage(start_server, home: Path) -> None:
    server, before, after, status_before = _summary_around_doctor(start_server, home)
    status_after = httpx.get(f"{server.url}/api/status").json()
    assert status_after["sessions"] == status_before["sessions"]  # a probe is no session and no user
    assert status_after["users"] == status_before["users"]
    assert status_after["without_session"] == status_before["without_session"]  # nor data without a session
    assert after == before


def test_human_output(start_server, home: Path) -> None:
    server = start_server()
    for export in fixture_exports("http-protobuf-delta"):
        send(server.otlp_http, export)
    write_settings(home, configured(server))
    result = ccmetrics(home, "doctor", "--server", server.url, "--managed-settings", str(home / "none"))
    assert result.returncode == 0, result.stdout
    assert "Data can flow" in result.stdout and "stored by the server" in result.stdout
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in result.stdout and "Recent sessions" in result.stdout
    assert "2.1.332" in result.stdout  # the versions seen


def test_stopped_server(start_server, home: Path) -> None:
    server = start_server()
    write_settings(home, configured(server))
    server.stop()
    code, report = doctor(home, server.url)
    assert code == 1 and not report["ok"]
    assert {"server_unreachable", "endpoint_unreachable"} <= checks(report)
    assert report["server"]["reachable"] is False


def test_no_settings_at_all(start_server, home: Path) -> None:
    server = start_server()
    code, report = doctor(home, server.url, "--no-probe")
    assert code == 1
    assert {"telemetry_off", "metrics_exporter_missing", "events_exporter_missing"} <= checks(report)
    assert {"protocol_unset", "endpoint_unset"} <= checks(report, "warn")


def _without(env: dict[str, str], key: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != key}


MISCONFIGURATIONS = {
    "telemetry_off": lambda s: configured(s, CLAUDE_CODE_ENABLE_TELEMETRY="0"),
    "metrics_exporter_missing": lambda s: _without(configured(s), "OTEL_METRICS_EXPORTER"),
    "events_exporter_missing": lambda s: configured(s, OTEL_LOGS_EXPORTER="console"),
    "protocol_invalid": lambda s: configured(s, "http/protobuf", OTEL_EXPORTER_OTLP_PROTOCOL="http"),
    "endpoint_unreachable": lambda s: configured(
        s, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}"
    ),
    # gRPC port, HTTP protocol: found from the ports the server reports, not just from 4317/4318
    "port_protocol_mismatch": lambda s: configured(s, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf"),
    "resource_attributes_spaces": lambda s: configured(
        s, OTEL_RESOURCE_ATTRIBUTES="team.id=platform,team.name=Platform Team"
    ),  # noqa: E501
    "temporality_invalid": lambda s: configured(
        s, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="cumulate"
    ),
    "endpoint_path": lambda s: configured(
        s, "http/protobuf", OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{s.otlp_http_port}/v1/metrics"
    ),  # noqa: E501
    "interval_invalid": lambda s: configured(s, OTEL_METRIC_EXPORT_INTERVAL="10s"),
}


@pytest.mark.parametrize("problem", sorted(MISCONFIGURATIONS))
def test_each_misconfiguration_is_an_error(start_server, home: Path, problem: str) -> None:
    server = start_server()
    write_settings(home, MISCONFIGURATIONS[problem](server))
    code, report = doctor(home, server.url)
    assert code == 1, report["findings"]
    assert problem in checks(report), report["findings"]
    fix = next(f["fix"] for f in report["findings"] if f["check"] == problem)
    assert fix


def test_port_protocol_mismatch_on_default_ports_without_a_server(home: Path) -> None:
    write_settings(
        home,
        {
            **configured_static(),
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        },
    )
    code, report = doctor(home, f"http://127.0.0.1:{free_port()}", "--no-probe")
    assert code == 1 and "port_protocol_mismatch" in checks(report)


def configured_static() -> dict[str, str]:
    return {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
    }


def test_temporality_the_stack_cannot_take(start_server, home: Path) -> None:
    server = start_server()
    write_settings(home, configured(server))
    assert doctor(home, server.url)[0] == 0  # ccmetrics takes delta
    code, report = doctor(home, server.url, "--backend", "stack")
    assert code == 1 and "temporality_backend" in checks(report)
    write_settings(home, configured(server, OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="cumulative"))
    assert doctor(home, server.url, "--backend", "stack")[0] == 0


def test_settings_beat_the_process_environment(start_server, home: Path) -> None:
    server = start_server()
    write_settings(home, configured(server))
    code, report = doctor(
        home,
        server.url,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
            "OTEL_RESOURCE_ATTRIBUTES": "team.id=platform",
        },
    )
    assert code == 0, report["findings"]
    variables = {v["name"]: v for v in report["variables"]}
    endpoint = variables["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint["source"].startswith("user") and endpoint["shadowed"] == [
        ["environment", "http://127.0.0.1:1"]
    ]
    assert variables["OTEL_RESOURCE_ATTRIBUTES"]["source"] == "environment"  # not in the file: falls through


def test_environment_alone_works(start_server, home: Path) -> None:
    server = start_server()
    code, report = doctor(home, server.url, env=configured(server))
    assert code == 0, report["findings"]


@pytest.mark.parametrize(
    ("value", "warned"), [("false", True), ("0", True), ("", True), ("TRUE", False), ("1", False)]
)
def test_telemetry_without_session_ids_is_warned_about(
    start_server, home: Path, value: str, warned: bool
) -> None:
    """Claude Code keeps session.id on its telemetry only for 1, true, yes or on (any case)."""
    server = start_server()
    code, report = doctor(home, server.url, env=configured(server, OTEL_METRICS_INCLUDE_SESSION_ID=value))
    assert code == 0, report["findings"]  # data flows all the same
    assert ("no_session_ids" in checks(report, "warn")) == warned


def test_managed_settings_win(start_server, home: Path) -> None:
    server = start_server()
    write_settings(home, configured(server))
    managed = home / "managed.json"
    managed.write_text(json.dumps({"env": {"CLAUDE_CODE_ENABLE_TELEMETRY": "0"}}))
    result = ccmetrics(home, "doctor", "--server", server.url, "--json", "--managed-settings", str(managed))
    report = json.loads(result.stdout)
    assert result.returncode == 1 and "telemetry_off" in checks(report)


def test_project_settings_are_reported_as_ignored(start_server, home: Path, tmp_path: Path) -> None:
    server = start_server()
    project = tmp_path / "project"
    (project / ".claude").mkdir(parents=True)
    (project / ".claude" / "settings.json").write_text(json.dumps({"env": configured(server)}))
    code, report = doctor(home, server.url, "--project-dir", str(project))
    assert code == 1 and "telemetry_off" in checks(report)
    assert "ignored_source" in checks(report, "warn")
    variables = {v["name"]: v for v in report["variables"]}
    assert variables["CLAUDE_CODE_ENABLE_TELEMETRY"]["ignored"][0][1] == "1"


def test_an_invalid_user_settings_file_is_an_error(start_server, home: Path) -> None:
    server = start_server()
    (home / ".claude" / "settings.json").write_text("{not json")
    code, report = doctor(home, server.url, "--no-probe", env=configured(server))
    assert code == 1 and "settings_file_invalid" in checks(report)


def test_sessions_with_one_signal_only_are_warned_about(start_server, home: Path) -> None:
    server = start_server()
    now = time.time_ns()
    resource = {
        "service.name": "claude-code",
        "service.version": "2.1.332",
        "host.arch": "amd64",
        "os.type": "linux",
    }
    logs_only = log_request([(now, "user_prompt", {"session.id": "s-events", "user.id": "u1"})], resource)
    metrics_only = sum_request(
        "claude_code.session.count",
        [(now - 1000, now, 1, {"session.id": "s-metrics", "user.id": "u2"})],
        resource=resource,
    )
    hour = 3600 * 10**9  # each signal's last time is its latest, not its last sent
    both_logs = log_request(
        [
            (now - 2 * hour, "user_prompt", {"session.id": "s-both", "user.id": "u1"}),
            (now - hour, "user_prompt", {"session.id": "s-both", "user.id": "u1"}),
            (now - 3 * hour, "user_prompt", {"session.id": "s-both", "user.id": "u1"}),
        ],
        resource,
    )
    both_metrics = sum_request(
        "claude_code.session.count",
        [
            (now - 1000, now, 1, {"session.id": "s-both", "user.id": "u1"}),
            (now - hour - 1000, now - hour, 1, {"session.id": "s-both", "user.id": "u1"}),
        ],
        resource=resource,
    )
    for path, request in (
        ("logs", logs_only),
        ("metrics", metrics_only),
        ("logs", both_logs),
        ("metrics", both_metrics),
    ):
        response = httpx.post(
            f"{server.otlp_http}/v1/{path}",
            content=request.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert response.status_code == 200
    status = httpx.get(f"{server.url}/api/status").json()
    assert status["sessions_events_only"] == ["s-events"]
    assert status["sessions_metrics_only"] == ["s-metrics"]
    assert [v["version"] for v in status["versions"]] == ["2.1.332"]
    hosts = {(u["user_id"], u["host"]) for u in status["users"]}
    assert hosts == {("u1", "amd64 linux"), ("u2", "amd64 linux")}
    both = next(s for s in status["sessions"] if s["session_id"] == "s-both")
    assert both["signals"] == "both"
    assert (both["last_metric"], both["last_event"]) == (iso(now), iso(now - hour))
    u1 = next(u for u in status["users"] if u["user_id"] == "u1")
    assert (u1["last_metric"], u1["last_event"]) == (iso(now), iso(now))  # s-events' prompt came at now
    assert status["session_count"] == 3 and status["last_ns"] == now

    write_settings(home, configured(server))
    code, report = doctor(home, server.url)
    assert code == 0  # a warning, not an error: this machine's telemetry flows
    assert {"sessions_events_only", "sessions_metrics_only"} <= checks(report, "warn")


def test_probe_lookup_rejects_odd_ids(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/api/probes/not%20an%20id").status_code == 400
    answer = httpx.get(f"{server.url}/api/probes/00000000-0000-0000-0000-000000000000").json()
    assert answer["stored"] is False


def test_doctor_with_a_token_checks_a_protected_server(start_server, home: Path) -> None:
    """With tokens, the server asks for one on the API as well: doctor looks its probe up with the token the
    settings send the probe with. An ingest token may do that, though it reads nothing else (status)."""
    server = start_server()
    made = ccmetrics(
        home, "token", "create", "laptop", "--role", "ingest", "--data-dir", str(server.data_dir)
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    setup = ccmetrics(
        home,
        "setup",
        "--yes",
        "--protocol",
        "http/protobuf",
        "--endpoint",
        f"http://127.0.0.1:{server.otlp_http_port}",
        "--token",
        token,
    )
    assert setup.returncode == 0, setup.stderr
    time.sleep(1.2)  # the running server sees the new token within a second
    code, report = doctor(home, server.url)
    assert code == 0, report["findings"]
    assert report["probe"]["stored"] == {"metrics": True, "logs": True}
    # The status shows every user: doctor says how to read it, and reads it with a viewer's token.
    assert "status_needs_reader" in checks(report, "info") and not checks(report, "warn")
    assert token not in json.dumps(report)
    assert httpx.get(f"{server.url}/api/probes/{report['probe']['probe_id']}").status_code == 401
    viewer = ccmetrics(
        home, "token", "create", "eyes", "--role", "viewer", "--data-dir", str(server.data_dir)
    )
    time.sleep(1.2)
    code, report = doctor(home, server.url, "--read-token", viewer.stdout.strip())
    assert code == 0 and report["status"] and "status_needs_reader" not in checks(report, "info")
