"""The real Claude Code CLI, set up only by ``ccmetrics setup``, sends a session ``ccmetrics serve`` stores.

The CLI's environment carries no telemetry variable at all: whatever arrives, arrives because the CLI honoured
the settings file setup wrote. After ``setup --undo`` the next session sends nothing.
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
from claude_cli import cli_env, make_home, run_print

from tests.conftest import ServerProcess

TELEMETRY_PREFIXES = ("OTEL_", "CLAUDE_CODE_ENABLE_TELEMETRY")


def ccmetrics(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(TELEMETRY_PREFIXES + ("CCMETRICS_",))}
    env.pop("CLAUDE_CONFIG_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "ccmetrics", *args],
        capture_output=True,
        text=True,
        env={**env, "HOME": str(home)},
        timeout=60,
    )


def sessions(server: ServerProcess) -> list[dict]:
    return httpx.get(f"{server.url}/api/status", timeout=10).json()["sessions"]


def wait_for_sessions(server: ServerProcess, count: int, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sessions(server)
        if len(found) >= count and all(s["signals"] == "both" for s in found):
            return found
        time.sleep(0.3)
    return sessions(server)


def configured_user(tmp_path: Path, name: str, *setup_args: str) -> tuple[Path, Path]:
    """A user's home and project, Claude Code configured by ``ccmetrics setup --yes`` with these arguments
    and one-second export intervals."""
    project = tmp_path / "project"
    project.mkdir()
    home = make_home(tmp_path, name, [project])
    setup = ccmetrics(
        home, "setup", "--yes", *setup_args, "--metric-interval", "1000", "--logs-interval", "1000"
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    return home, project


def doctor_report(home: Path, project: Path, server: ServerProcess, tmp_path: Path) -> tuple[int, dict]:
    doctor = ccmetrics(
        home,
        "doctor",
        "--server",
        server.url,
        "--json",
        "--project-dir",
        str(project),
        "--managed-settings",
        str(tmp_path / "none.json"),
    )
    return doctor.returncode, json.loads(doctor.stdout)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_cli_configured_only_by_setup_is_stored(
    claude_binary: Path, fake_api, tmp_path: Path, protocol: str, ccmetrics_server: ServerProcess
) -> None:
    server = ccmetrics_server
    already = len(sessions(server))
    port = server.otlp_grpc_port if protocol == "grpc" else server.otlp_http_port
    home, project = configured_user(
        tmp_path,
        "setup-user",
        "--protocol",
        protocol,
        "--endpoint",
        f"http://127.0.0.1:{port}",
        "--team",
        "e2e",
    )
    written = json.loads((home / ".claude" / "settings.json").read_text())["env"]
    assert written["OTEL_EXPORTER_OTLP_PROTOCOL"] == protocol

    fake = fake_api(final_text="All done.")
    env = cli_env(home, fake.base_url, telemetry=None)
    assert not [k for k in env if k.startswith(TELEMETRY_PREFIXES)]  # only the settings file configures it
    result = run_print(
        claude_binary, home=home, cwd=project, prompt="say hi", api_base_url=fake.base_url, telemetry=None
    )
    assert result.returncode == 0, result.stderr

    found = wait_for_sessions(server, already + 1)
    assert len(found) == already + 1, found
    newest = found[0]
    assert newest["signals"] == "both" and newest["version"] == "2.1.332"
    summary = httpx.get(f"{server.url}/api/summary", params={"filter": "team.id=e2e"}, timeout=10).json()
    assert summary["api_requests"] >= 1 and summary["sessions"] >= 1

    code, report = doctor_report(home, project, server, tmp_path)
    assert code == 0, report["findings"]
    assert newest["session_id"] in {s["session_id"] for s in report["status"]["sessions"]}

    undo = ccmetrics(home, "setup", "--undo", "--yes")
    assert undo.returncode == 0, undo.stderr
    assert not (home / ".claude" / "settings.json").exists()
    again = run_print(
        claude_binary, home=home, cwd=project, prompt="say hi", api_base_url=fake.base_url, telemetry=None
    )
    assert again.returncode == 0
    time.sleep(3)
    assert len(sessions(server)) == already + 1  # nothing more arrived


def test_telemetry_without_session_ids_is_explained(
    claude_binary: Path, fake_api, tmp_path: Path, ccmetrics_server: ServerProcess
) -> None:
    """With OTEL_METRICS_INCLUDE_SESSION_ID=false the real CLI names no session in its metrics nor its events:
    the usage is counted, no session can be listed, and doctor says which setting did it."""
    server = ccmetrics_server
    before = httpx.get(f"{server.url}/api/status", timeout=10).json()
    home, project = configured_user(
        tmp_path,
        "no-session-user",
        "--protocol",
        "http/protobuf",
        "--endpoint",
        server.otlp_http,
        "--team",
        "no-session",
    )
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    settings["env"]["OTEL_METRICS_INCLUDE_SESSION_ID"] = "false"
    (home / ".claude" / "settings.json").write_text(json.dumps(settings))

    fake = fake_api(final_text="All done.")
    started_ns = time.time_ns()
    result = run_print(
        claude_binary, home=home, cwd=project, prompt="say hi", api_base_url=fake.base_url, telemetry=None
    )
    assert result.returncode == 0, result.stderr

    team = {"filter": "team.id=no-session"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        summary = httpx.get(f"{server.url}/api/summary", params=team, timeout=10).json()
        status = httpx.get(f"{server.url}/api/status", timeout=10).json()
        unattributed = status["without_session"]
        if (
            summary["cost_usd"] > 0
            and summary["prompts"] >= 1
            and unattributed["last_metric"]
            and unattributed["last_event"]
        ):
            break
        time.sleep(0.3)
    assert summary["sessions"] == 1 and summary["cost_usd"] > 0 and summary["prompts"] >= 1
    assert status["sessions"] == before["sessions"]  # no session could be told apart
    assert status["last_ns"] >= started_ns and unattributed["last_metric"] and unattributed["last_event"]

    code, report = doctor_report(home, project, server, tmp_path)
    assert code == 0, report["findings"]
    assert "no_session_ids" in {f["check"] for f in report["findings"] if f["level"] == "warn"}
