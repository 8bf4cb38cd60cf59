"""``ccmetrics serve`` as a process: one uvicorn server answers both HTTP listeners, each port with its own
app, and SIGINT or SIGTERM stops it cleanly: uvicorn's graceful shutdown, then the gRPC listener and the
store."""

from __future__ import annotations

import signal
import socket

import httpx
import pytest

from .conftest import ServerProcess, fixture_exports, send
from .good_traffic import send_before, totals


def test_each_http_listener_answers_with_its_own_app(server: ServerProcess):
    assert httpx.get(server.url + "/api/health", timeout=10).status_code == 200
    assert httpx.get(server.otlp_http + "/api/health", timeout=10).status_code == 404
    export = fixture_exports("http-protobuf-delta")[0]
    assert send(server.otlp_http, export).status_code == 200
    assert send(server.url, export).status_code in (404, 405)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_every_listener_and_keeps_the_data(start_server, signum):
    server = start_server()
    before = send_before(server)
    ports = (server.port, server.otlp_http_port, server.otlp_grpc_port)
    assert server.stop(signum) == 0
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert "Traceback" not in server.log_path.read_text()
    assert totals(start_server(server.data_dir).summary()) == before
