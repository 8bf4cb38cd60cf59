"""DNS rebinding against a real ``ccmetrics serve``: its HTTP listeners answer only their own Host names.

A web page whose name resolves to 127.0.0.1 reaches a loopback-bound server from its visitor's browser, but
its requests carry its own name in the Host header. Those are refused (421, nothing read, nothing stored) on
the dashboard and API and on OTLP/HTTP alike; localhost, 127.0.0.1, [::1] and the names in --allowed-hosts
are answered. Each test sends the real CLI's capture first and checks after that it is counted exactly as
before and that normal exports still count.
"""

from __future__ import annotations

import time

import httpx
import pytest

from ccmetrics.hosts import allowed_names

from .conftest import ServerProcess, fixture_exports
from .good_traffic import assert_still_counts, assert_unchanged, send_before
from .otlp_builders import sum_request

EVIL = "evil.example"
DASHBOARD_PATHS = ("/api/health", "/api/summary", "/api/panels", "/", "/metrics", "/static/style.css")


def get(server: ServerProcess, path: str, host: str) -> httpx.Response:
    return httpx.get(server.url + path, headers={"Host": host}, timeout=10)


def export(server: ServerProcess, host: str) -> list[httpx.Response]:
    """The delta capture again, under another Host: stored data it would change, were it stored twice (it
    is the same export, so the server counts it once when it answers)."""
    return [
        httpx.post(server.otlp_http + e.path, content=e.body, headers={**e.headers, "Host": host}, timeout=10)
        for e in fixture_exports("http-protobuf-delta")
    ]


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 421, (response.status_code, response.text[:200])
    assert response.headers["content-type"].startswith("text/plain")
    assert "--allowed-hosts" in response.text


def assert_refused_everywhere(server: ServerProcess, host: str) -> None:
    for path in DASHBOARD_PATHS:
        assert_refused(get(server, path, host))
    for response in export(server, host):
        assert_refused(response)
    # A new export from the page, not a retry: nothing of it is stored either.
    now = time.time_ns()
    fresh = sum_request(
        "claude_code.cost.usage", [(now - 10**9, now, 5.0, {"session.id": "rebound"})], unit="USD"
    )
    response = httpx.post(
        server.otlp_http + "/v1/metrics",
        content=fresh.SerializeToString(),
        headers={"Host": host, "Content-Type": "application/x-protobuf"},
        timeout=10,
    )
    assert_refused(response)


def assert_answered(server: ServerProcess, host: str) -> None:
    for path in DASHBOARD_PATHS:
        assert get(server, path, host).status_code == 200, (path, host)
    for response in export(server, host):
        assert response.status_code == 200, (host, response.text[:200])


@pytest.fixture
def loopback(server: ServerProcess) -> tuple[ServerProcess, dict]:
    return server, send_before(server)


def test_a_foreign_host_is_refused_on_the_dashboard_and_on_otlp_http(loopback):
    server, before = loopback
    for host in (EVIL, f"{EVIL}:{server.port}", f"{EVIL}:{server.otlp_http_port}", "127.0.0.1.evil.example"):
        assert_refused_everywhere(server, host)
    assert_unchanged(server, before)
    assert_still_counts(server, before)


def test_a_request_without_a_host_is_refused(loopback):
    server, before = loopback
    with httpx.Client(headers={"Host": ""}) as client:
        assert client.get(server.url + "/api/health").status_code in (400, 421)
    assert_still_counts(server, before)


def test_the_loopback_names_are_answered_with_or_without_a_port(loopback):
    server, before = loopback
    for name in ("localhost", "127.0.0.1", "[::1]", "LOCALHOST", "localhost."):
        for port in ("", f":{server.port}", f":{server.otlp_http_port}"):
            assert_answered(server, name + port)
    assert_still_counts(server, before)


def test_allowed_hosts_adds_names(start_server):
    server = start_server(None, "--allowed-hosts", "metrics.example, Other.Example")
    before = send_before(server)
    assert_answered(server, f"metrics.example:{server.port}")
    assert_answered(server, "other.example")
    assert_answered(server, f"localhost:{server.otlp_http_port}")
    assert_refused_everywhere(server, EVIL)
    assert_refused_everywhere(server, "metrics.example.evil.example")
    assert_still_counts(server, before)


def test_a_wildcard_address_answers_every_name_unless_allowed_hosts_says_which(start_server):
    anything = start_server(None, "--host", "0.0.0.0", "--insecure-no-auth")
    before = send_before(anything)
    assert_answered(anything, EVIL)
    assert_still_counts(anything, before)
    anything.stop()

    listed = start_server(
        None, "--host", "0.0.0.0", "--insecure-no-auth", "--allowed-hosts", "metrics.example"
    )
    before = send_before(listed)
    assert_answered(listed, "metrics.example")
    assert_answered(listed, "127.0.0.1")
    assert_refused_everywhere(listed, EVIL)
    assert_still_counts(listed, before)


@pytest.mark.parametrize(
    ("bound", "allowed_hosts", "expected"),
    [
        ("127.0.0.1", "", {"localhost", "127.0.0.1", "::1"}),
        ("::1", "", {"localhost", "127.0.0.1", "::1"}),
        ("localhost", "a.example", {"localhost", "127.0.0.1", "::1", "a.example"}),
        ("192.168.1.5", "", {"192.168.1.5"}),
        ("192.168.1.5", "box.lan", {"192.168.1.5", "box.lan"}),
        ("FD00:0::5", "", {"fd00::5"}),
        ("0.0.0.0", "", None),
        ("::", "", None),
        ("0.0.0.0", "box.lan,[FD00::5]", {"localhost", "127.0.0.1", "::1", "box.lan", "fd00::5"}),
    ],
)
def test_which_names_each_bound_address_answers(bound, allowed_hosts, expected):
    """Addresses a test cannot bind to here (one of another interface) follow the same rule."""
    names = allowed_names(bound, allowed_hosts)
    assert (None if names is None else set(names)) == expected
