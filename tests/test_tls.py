"""``ccmetrics serve --tls-cert --tls-key``: every listener speaks TLS only, with the listener guards intact.

A real server with a certificate from a test CA (trustme): the dashboard and API over HTTPS, OTLP/HTTP over
HTTPS and OTLP/gRPC over TLS are stored and counted exactly; plain HTTP and plain gRPC get nothing; a
connection that never completes its handshake counts against the connection limit and is closed after the
header timeout; a mistake in the settings stops the start with one clear line.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import trustme
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc

from .conftest import ServerProcess
from .good_traffic import assert_still_counts, assert_unchanged, send_before
from .otlp_builders import log_request, sum_request
from .test_listeners import (
    HEADER_TIMEOUT,
    LIMIT,
    LISTENERS,
    SLACK,
    SURPLUS,
    is_closed,
    port_of,
    seconds_until_closed,
)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    @property
    def args(self) -> tuple[str, ...]:
        return ("--tls-cert", str(self.cert), "--tls-key", str(self.key))


def make_tls_files(directory: Path) -> TlsFiles:
    """A test CA and a certificate for 127.0.0.1 and localhost, signed by an intermediate: the chain file
    holds both, as a real deployment's does."""
    ca = trustme.CA()
    issued = ca.create_child_ca().issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(pem.bytes() for pem in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(files.key))
    return files


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path)


@pytest.fixture
def start_tls_server(tmp_path: Path, tls_files: TlsFiles):
    started: list[ServerProcess] = []

    def start(*extra_args: str) -> ServerProcess:
        server = ServerProcess(
            tmp_path / f"data{len(started)}", [*tls_files.args, *extra_args], tls_ca=tls_files.ca
        )
        started.append(server.start())
        return server

    yield start
    for server in started:
        if server.process is not None:
            server.stop()


def test_every_listener_serves_tls_and_counts_exactly(start_tls_server, tls_files: TlsFiles):
    server = start_tls_server()
    assert server.url.startswith("https://")
    # The dashboard and the API, trusting the test CA.
    page = server.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert server.summary()["cost_usd"] == 0
    # The empty dashboard tells Claude Code to send here over TLS.
    setup = server.get("/api/config").json()["setup"]
    assert setup["http"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"https://127.0.0.1:{server.otlp_http_port}"
    # Claude Code's gRPC client takes no IP address over TLS; the certificate names localhost too.
    assert setup["grpc"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"https://localhost:{server.otlp_grpc_port}"
    # OTLP/HTTP over HTTPS: the real CLI's capture; then OTLP/gRPC over TLS: a cost point and an event.
    before = send_before(server)
    assert_still_counts(server, before)
    now = time.time_ns()
    with server.grpc_channel() as channel:
        metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(
            sum_request(
                "claude_code.cost.usage",
                [(now - 1_000_000_000, now, 1.5, {"session.id": "tls-grpc", "model": "claude-test"})],
                unit="USD",
            ),
            timeout=10,
        )
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            log_request([(now, "user_prompt", {"session.id": "tls-grpc", "prompt_length": "7"})]),
            timeout=10,
        )
    summary = server.summary()
    assert summary["cost_usd"] == pytest.approx(before["cost_usd"] + 0.052602 + 0.25 + 1.5, abs=1e-9)
    assert summary["prompts"] == before["prompts"] + 1 + 1
    assert "TLS is on for the dashboard, OTLP/HTTP and OTLP/gRPC" in server.log_path.read_text()
    assert f"dashboard https://127.0.0.1:{server.port}" in server.log_path.read_text()


def test_plain_http_and_plain_grpc_get_nothing(start_tls_server):
    server = start_tls_server()
    before = send_before(server)
    for port in (server.port, server.otlp_http_port):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
    with pytest.raises(grpc.RpcError) as failed, grpc.insecure_channel(server.otlp_grpc) as channel:
        metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(
            sum_request("claude_code.cost.usage", [(1, time.time_ns(), 9.0, {"session.id": "plain"})]),
            timeout=5,
        )
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    # A client that does not trust the certificate is refused by its own TLS check.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{server.url}/api/health", timeout=5)
    assert_unchanged(server, before)


@pytest.mark.parametrize("listener", LISTENERS)
def test_a_connection_without_a_handshake_is_closed_after_the_header_timeout(
    start_tls_server, connections: Callable[[int, int], list[socket.socket]], listener: str
):
    server = start_tls_server(
        "--header-timeout", str(HEADER_TIMEOUT), "--idle-timeout", "60", "--max-connections", str(LIMIT)
    )
    before = send_before(server)
    silent, half = connections(port_of(server, listener), 2)
    half.sendall(_client_hello()[:20])  # the start of a handshake that never ends
    closed = seconds_until_closed({"silent": silent, "half": half}, HEADER_TIMEOUT + SLACK)
    assert all(seconds is not None and seconds > HEADER_TIMEOUT / 2 for seconds in closed.values()), closed
    assert_still_counts(server, before)


@pytest.mark.parametrize("listener", LISTENERS)
def test_connections_in_their_handshake_count_against_the_limit(
    start_tls_server, connections: Callable[[int, int], list[socket.socket]], listener: str
):
    server = start_tls_server(
        "--header-timeout", "60", "--idle-timeout", "60", "--max-connections", str(LIMIT)
    )
    before = send_before(server)
    socks = connections(port_of(server, listener), LIMIT + SURPLUS)
    time.sleep(1)
    closed = [sock for sock in socks if is_closed(sock)]
    # Connections left over from the exports before may still count for a moment.
    assert SURPLUS <= len(closed) <= SURPLUS + 5, len(closed)
    assert not any(is_closed(sock) for sock in socks if sock not in closed)
    for sock in socks:
        sock.close()
    time.sleep(0.5)
    assert_still_counts(server, before)


def _client_hello() -> bytes:
    """The first bytes a real TLS client sends."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_the_dashboard_shows_http_for_grpc_when_only_an_ip_address_reaches_a_tls_server():
    from ccmetrics.config import Config
    from ccmetrics.web.app import dashboard_config

    config = Config(tls_cert=Path("cert.pem"), tls_key=Path("key.pem"))
    assert config.tls and not Config().tls
    setup = dashboard_config(config, "10.0.0.5")["setup"]
    assert setup["grpc"] == setup["http"]
    assert setup["http"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://10.0.0.5:4318"
    named = dashboard_config(config, "ccmetrics.example.com")["setup"]["grpc"]
    assert named["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://ccmetrics.example.com:4317"


# --- mistakes in the settings ---------------------------------------------------------------------------


def serve_fails(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``ccmetrics serve`` with these arguments: it must stop at once with one clear line, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "ccmetrics", "serve", "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("CCMETRICS_")}, **(env or {})},
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "ccmetrics.db").exists(), "nothing may start"
    return result.stderr


def test_a_certificate_without_its_key_or_a_key_without_its_certificate_is_refused(
    tmp_path: Path, tls_files: TlsFiles
):
    assert "--tls-cert needs --tls-key too" in serve_fails(tmp_path, "--tls-cert", str(tls_files.cert))
    assert "--tls-key needs --tls-cert too" in serve_fails(tmp_path, "--tls-key", str(tls_files.key))
    # The same from the environment, as the settings table promises.
    stderr = serve_fails(tmp_path, env={"CCMETRICS_TLS_CERT": str(tls_files.cert)})
    assert "--tls-cert needs --tls-key too" in stderr


def test_an_unreadable_or_wrong_key_is_refused(tmp_path: Path, tls_files: TlsFiles):
    missing = tmp_path / "missing.pem"
    stderr = serve_fails(tmp_path, "--tls-cert", str(tls_files.cert), "--tls-key", str(missing))
    assert f"cannot read --tls-key {missing}: No such file or directory" in stderr
    if os.geteuid() != 0:  # root reads any file
        unreadable = tmp_path / "unreadable.pem"
        unreadable.write_bytes(tls_files.key.read_bytes())
        unreadable.chmod(0)
        stderr = serve_fails(tmp_path, "--tls-cert", str(tls_files.cert), "--tls-key", str(unreadable))
        assert f"cannot read --tls-key {unreadable}: Permission denied" in stderr
    # The key of another certificate, and a certificate given as the key.
    (tmp_path / "other").mkdir()
    other = make_tls_files(tmp_path / "other")
    stderr = serve_fails(tmp_path, "--tls-cert", str(tls_files.cert), "--tls-key", str(other.key))
    assert f"cannot use --tls-cert {tls_files.cert} with --tls-key {other.key}" in stderr
    stderr = serve_fails(tmp_path, "--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.cert))
    assert f"--tls-key {tls_files.cert} holds no PEM private key" in stderr
    # A directory instead of a file.
    stderr = serve_fails(tmp_path, "--tls-cert", str(tmp_path), "--tls-key", str(tls_files.key))
    assert "--tls-cert" in stderr and "Traceback" not in stderr


# --- the clients: doctor and health ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_doctor_and_health_talk_to_a_tls_server_trusting_ssl_cert_file(
    start_tls_server, tls_files: TlsFiles, tmp_path: Path, protocol: str
):
    from .test_doctor import ccmetrics, doctor

    server = start_tls_server()
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    port = server.otlp_grpc_port if protocol == "grpc" else server.otlp_http_port
    host = "localhost" if protocol == "grpc" else "127.0.0.1"  # setup refuses gRPC over TLS to an address
    setup = ccmetrics(home, "setup", "--yes", "--protocol", protocol, "--endpoint", f"https://{host}:{port}")
    assert setup.returncode == 0, setup.stderr
    trust = {"SSL_CERT_FILE": str(tls_files.ca)}
    code, report = doctor(home, server.url, env=trust)
    assert code == 0, report["findings"]
    assert report["probe"]["stored"] == {"metrics": True, "logs": True}
    health = ccmetrics(home, "health", "--ccmetrics", server.url, "--json", env=trust)
    assert health.returncode == 0, health.stdout + health.stderr
    # Without the CA, both say the server cannot be trusted instead of passing or failing obscurely.
    code, report = doctor(home, server.url)
    assert code == 1
    (unreachable,) = [f for f in report["findings"] if f["check"] == "server_unreachable"]
    assert "CERTIFICATE_VERIFY_FAILED" in unreachable["message"] and "SSL_CERT_FILE" in unreachable["fix"]
    health = ccmetrics(home, "health", "--ccmetrics", server.url, "--json")
    assert health.returncode == 1
    assert "TLS certificate is not trusted" in json.loads(health.stdout)[0]["detail"]
