"""Idle, half-sent and surplus connections against a real ``ccmetrics serve``, on each of its three listeners.

Thousands of idle sockets used to exhaust the open-file limit: nothing closed a connection that sent nothing,
or only part of a request head, and nothing bounded how many were open. Each test sends the real CLI's capture
first, does one hostile thing to one listener (the dashboard, OTLP/HTTP or OTLP/gRPC) and then checks that the
totals are exactly what they were and that normal exports over both protocols are still counted.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import ServerProcess, fixture_exports
from .good_traffic import assert_still_counts, assert_unchanged, send_before

HEADER_TIMEOUT = 1
IDLE_TIMEOUT = 1
SLACK = 2.5  # how late a timeout may fire on a loaded machine
LIMIT = 100
SURPLUS = 50
LISTENERS = ("dashboard", "otlp_http", "otlp_grpc")
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HTTP2_EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def port_of(server: ServerProcess, listener: str) -> int:
    return {"dashboard": server.port, "otlp_http": server.otlp_http_port, "otlp_grpc": server.otlp_grpc_port}[
        listener
    ]


def half_a_request(listener: str) -> bytes:
    """The start of a request head that never ends."""
    if listener == "otlp_grpc":
        return HTTP2_PREFACE[:16]
    path = "/api/health" if listener == "dashboard" else "/v1/metrics"
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-prot".encode()


def slow_bytes(listener: str) -> bytes:
    """What a slow client sends a byte at a time: valid, and more than it sends within the timeout."""
    return HTTP2_PREFACE if listener == "otlp_grpc" else half_a_request(listener)


def a_whole_request(listener: str) -> bytes:
    if listener == "otlp_grpc":
        return HTTP2_PREFACE + HTTP2_EMPTY_SETTINGS  # the connection is set up; no call follows
    path = "/api/health" if listener == "dashboard" else "/v1/metrics"
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def is_closed(sock: socket.socket) -> bool:
    """Whether the server has closed this (non-blocking) connection; whatever it sent is read and dropped."""
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not data:
            return True


def seconds_until_closed(
    socks: dict[str, socket.socket], within: float, trickle: dict[str, bytes] | None = None
) -> dict[str, float | None]:
    """How long the server took to close each connection, watched together; None if one was still open
    after ``within``. ``trickle``: bytes sent meanwhile a byte at a time, as a slow client does (slowloris).
    """
    trickle = dict(trickle or {})
    closed: dict[str, float | None] = dict.fromkeys(socks)
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < within:
        open_ = {name: sock for name, sock in socks.items() if closed[name] is None}
        if not open_:
            break
        readable, _, _ = select.select(list(open_.values()), [], [], 0.2)
        for name, sock in open_.items():
            if sock in readable and is_closed(sock):
                closed[name] = elapsed
            elif trickle.get(name):
                try:
                    sock.send(trickle[name][:1])
                except OSError:
                    closed[name] = elapsed
                trickle[name] = trickle[name][1:]
    return closed


def open_fds(server: ServerProcess) -> int:
    assert server.process is not None
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


@pytest.fixture
def short_timeouts(start_server) -> tuple[ServerProcess, dict]:
    server = start_server(
        None,
        "--header-timeout",
        str(HEADER_TIMEOUT),
        "--idle-timeout",
        str(IDLE_TIMEOUT),
        "--max-connections",
        str(LIMIT),
    )
    return server, send_before(server)


@pytest.fixture
def long_timeouts(start_server) -> tuple[ServerProcess, dict]:
    """Timeouts far longer than the test, so that only the connection limit closes anything."""
    server = start_server(
        None, "--header-timeout", "60", "--idle-timeout", "60", "--max-connections", str(LIMIT)
    )
    return server, send_before(server)


@pytest.mark.parametrize("listener", LISTENERS)
def test_a_silent_or_half_sent_connection_is_closed_after_the_header_timeout(
    short_timeouts, connections, listener
):
    server, before = short_timeouts
    silent, half, slow = connections(port_of(server, listener), 3)
    half.sendall(half_a_request(listener))
    closed = seconds_until_closed(
        {"silent": silent, "half": half, "slow": slow},
        HEADER_TIMEOUT + SLACK,
        # A byte now and then does not keep a request head open for ever.
        trickle={"slow": slow_bytes(listener)},
    )
    # Closed by the timeout: neither at once (as a bad request would be) nor never.
    assert all(seconds is not None and seconds > HEADER_TIMEOUT / 2 for seconds in closed.values()), closed
    assert_still_counts(server, before)


@pytest.mark.parametrize("listener", LISTENERS)
def test_a_connection_idle_after_a_request_is_closed_after_the_idle_timeout(
    short_timeouts, connections, listener
):
    server, before = short_timeouts
    (sock,) = connections(port_of(server, listener), 1)
    sock.sendall(a_whole_request(listener))
    readable, _, _ = select.select([sock], [], [], 5)
    assert readable and sock.recv(65536), "no answer to a whole request"
    (seconds,) = seconds_until_closed({listener: sock}, IDLE_TIMEOUT + SLACK).values()
    assert seconds is not None and seconds > IDLE_TIMEOUT / 2
    assert_still_counts(server, before)


@pytest.mark.parametrize("listener", LISTENERS)
def test_connections_beyond_the_limit_are_closed_at_once(long_timeouts, connections, listener):
    server, before = long_timeouts
    fds_before = open_fds(server) if Path("/proc/self/fd").is_dir() else None
    socks = connections(port_of(server, listener), LIMIT + SURPLUS)
    time.sleep(1)
    closed = [sock for sock in socks if is_closed(sock)]
    # Connections left over from the requests before may still count for a moment; never more than the limit
    # stay open.
    assert SURPLUS <= len(closed) <= SURPLUS + 5, len(closed)
    if fds_before is not None:
        assert open_fds(server) <= fds_before + LIMIT + 5
    if listener != "otlp_grpc":
        # A request beyond the limit is answered 503 (retryable) or its connection closed, never left hanging.
        try:
            response = httpx.get(f"http://127.0.0.1:{port_of(server, listener)}/api/health", timeout=5)
        except httpx.TransportError:
            pass
        else:
            assert response.status_code == 503
            assert "max-connections" in response.text
    # The ones within the limit are still open (the long timeouts have not passed), until the client goes.
    assert not any(is_closed(sock) for sock in socks if sock not in closed)
    for sock in socks:
        sock.close()
    time.sleep(0.5)
    assert_still_counts(server, before)


def test_each_listener_has_its_own_limit(long_timeouts, connections):
    """The OTLP listeners full up to their limits leave the dashboard answering."""
    server, before = long_timeouts
    connections(server.otlp_http_port, LIMIT)
    connections(server.otlp_grpc_port, LIMIT)
    time.sleep(0.5)
    assert_unchanged(server, before)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs setrlimit and /proc")
@pytest.mark.parametrize(("soft", "hard", "expected"), [(256, 4000, (1000, 3128)), (256, 256, (42, 256))])
def test_the_open_file_limit_is_raised_to_fit_the_listeners_or_the_limit_lowered(soft, hard, expected):
    import resource

    if hard > resource.getrlimit(resource.RLIMIT_NOFILE)[1]:
        pytest.skip("the hard limit here is lower than the test needs")
    code = (
        "import resource; from ccmetrics.listeners import fit_open_files; "
        "print(fit_open_files(1000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert tuple(int(n) for n in done.stdout.split()) == expected


@pytest.fixture
def head_timeout_only(start_server) -> tuple[ServerProcess, dict]:
    """A short header timeout, and an idle timeout long enough that it closes nothing during the test."""
    server = start_server(None, "--header-timeout", str(HEADER_TIMEOUT), "--idle-timeout", "30")
    return server, send_before(server)


def read_response(sock: socket.socket, within: float = 10) -> bytes:
    """One whole response (with a Content-Length) from a blocking socket."""
    sock.settimeout(within)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    assert length, head
    while len(body) < int(length.group(1)):
        chunk = sock.recv(65536)
        assert chunk, "closed within a response"
        body += chunk
    return head


def test_the_header_timeout_ends_once_the_head_is_in(head_timeout_only):
    """A body that takes longer than the header timeout, and a second request after a pause longer than it
    on the same connection, are answered: the deadline covers request heads only."""
    server, before = head_timeout_only
    export = fixture_exports("http-protobuf-delta")[0]  # sent before: a retry, which changes nothing
    with socket.create_connection(("127.0.0.1", server.otlp_http_port), timeout=10) as sock:
        headers = {**export.headers, "Host": "127.0.0.1", "Content-Length": str(len(export.body))}
        sock.sendall(
            f"POST {export.path} HTTP/1.1\r\n".encode()
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode()
            + b"\r\n"
        )
        pieces = 5
        step = -(-len(export.body) // pieces)
        for start in range(0, len(export.body), step):
            time.sleep((HEADER_TIMEOUT + 1) / pieces)
            sock.sendall(export.body[start : start + step])
        assert read_response(sock).startswith(b"HTTP/1.1 200")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200")
            time.sleep(HEADER_TIMEOUT + 0.5)
    assert_still_counts(server, before)
