"""The dashboard in Chromium against a real server: what it asks the server for, and when.

Loading it is /api/config, /api/dashboard and the live stream; each live update after that is one request,
/api/dashboard; with nothing committed it asks for nothing. Its default range and group-by key are the
server's (the dashboard_range and dashboard_group_by settings)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx

from .browser import wait_stat
from .conftest import CAPTURES, fixture_exports, send
from .otlp_builders import SECOND, sum_request
from .test_browser import post


def new_session(server, session_id: str) -> None:
    now = time.time_ns()
    point = {"user.id": "u-" + session_id, "session.id": session_id}
    post(server, sum_request("claude_code.session.count", [(now - SECOND, now, 1, point)]))


def record_api_requests(page) -> list[str]:
    """The path and query of every request the page makes to the API from now on, but the alerts banner's
    (it asks /api/alerts on a clock of its own: tests/test_browser_alerts.py)."""
    seen: list[str] = []

    def on_request(request) -> None:
        url = urlsplit(request.url)
        if url.path.startswith("/api/") and url.path != "/api/alerts":
            seen.append(url.path + ("?" + url.query if url.query else ""))

    page.on("request", on_request)
    return seen


def test_each_live_update_is_one_request_and_no_update_none(server, page) -> None:
    new_session(server, "s-0")
    requests = record_api_requests(page)
    page.goto(server.url + "/")
    wait_stat(page, "sessions", "1")
    page.wait_for_selector("#live.on")
    page.wait_for_timeout(500)
    # /api/me: who is reading, for the top bar (asked beside the rest, in any order).
    dashboard = [path.split("?")[0] for path in requests if not path.startswith("/api/me")]
    assert dashboard == ["/api/config", "/api/dashboard", "/api/live"]
    assert [path for path in requests if path.startswith("/api/me")] == ["/api/me"]

    # Nothing committed: nothing asked.
    requests.clear()
    page.wait_for_timeout(2000)
    assert requests == []

    for n in range(1, 4):
        requests.clear()
        new_session(server, f"s-{n}")
        committed = time.monotonic()
        wait_stat(page, "sessions", str(n + 1), timeout=3000)
        assert time.monotonic() - committed < 2
        page.wait_for_timeout(1000)  # time enough for any other request it would make
        assert [path.split("?")[0] for path in requests] == ["/api/dashboard"], requests

    # A burst of commits: refreshes coalesce (the stream announces at most one every 250 ms).
    requests.clear()
    started = time.monotonic()
    for n in range(10, 30):
        new_session(server, f"s-{n}")
    took = time.monotonic() - started
    wait_stat(page, "sessions", "24", timeout=3000)
    page.wait_for_timeout(1000)
    assert {path.split("?")[0] for path in requests} == {"/api/dashboard"}
    assert len(requests) <= took / 0.25 + 2, (len(requests), took)
    assert page.errors == []


def test_the_page_starts_from_the_servers_defaults(start_server, page) -> None:
    server = start_server(None, "--dashboard-range", "14d", "--dashboard-group-by", "terminal.type")
    config = httpx.get(f"{server.url}/api/config", timeout=10).json()
    assert config["defaults"] == {"range": "14d", "group_by": "terminal.type"}
    requests = record_api_requests(page)
    page.goto(server.url + "/")
    page.wait_for_function("() => document.body.dataset.version !== undefined")
    assert page.locator("#range").input_value() == "14d"
    assert page.locator("#range option:checked").inner_text() == "14d"
    assert page.locator("#group-key").input_value() == "terminal.type"
    assert page.locator("#group-value-key").inner_text() == "terminal.type"
    assert page.locator("#range option").all_inner_texts()[-2:] == ["All time", "Custom…"]
    dashboard = next(path for path in requests if path.startswith("/api/dashboard"))
    assert parse_qs(urlsplit(dashboard).query) == {
        "since": ["14d"],
        "group_by": ["terminal.type"],
        "compare": ["previous"],  # the headline stats beside the previous period, by default
    }

    # Another range, then Clear: back to the server's default.
    page.select_option("#range", "30d")
    page.wait_for_function("() => location.search.includes('range=30d')")
    page.click("#clear")
    page.wait_for_function("() => location.search.includes('range=14d')")
    assert "group_by" not in page.url  # the default key is not spelt out in the link
    assert page.errors == []


def test_a_new_group_by_key_is_one_request_with_its_values(server, page) -> None:
    for capture in CAPTURES:
        for export in fixture_exports(capture):
            assert send(server.otlp_http, export).status_code == 200
    page.goto(server.url + "/?range=all")
    wait_stat(page, "sessions", "2")
    page.wait_for_selector("#live.on")
    terminals = httpx.get(f"{server.url}/api/filters", params={"key": "terminal.type"}, timeout=10).json()
    assert terminals["values"]
    requests = record_api_requests(page)
    page.select_option("#group-key", "terminal.type")
    page.wait_for_function(
        "(values) => values.every((v) => [...document.querySelectorAll('#group-value option')]"
        ".some((o) => o.value === v))",
        arg=terminals["values"],
    )
    page.wait_for_timeout(500)
    assert [path.split("?")[0] for path in requests] == ["/api/dashboard"]
    assert "group_by=terminal.type" in page.url
    assert page.locator("#group-value-key").inner_text() == "terminal.type"
    header = page.locator('[data-panel="leaderboard_groups"] th').first.inner_text()
    assert header == "terminal.type"
    assert page.errors == []


def test_after_a_server_restart_the_page_catches_up(server, page) -> None:
    new_session(server, "before")
    page.goto(server.url + "/")
    wait_stat(page, "sessions", "1")
    page.wait_for_selector("#live.on")
    page.evaluate("window.__sameDocument = true")
    server.stop()
    page.wait_for_selector("#live:not(.on)")
    server.start()  # the same ports and data; it counts versions from 0 again
    new_session(server, "after-1")
    wait_stat(page, "sessions", "2", timeout=10000)  # the browser reconnects within a few seconds
    new_session(server, "after-2")
    wait_stat(page, "sessions", "3", timeout=3000)
    assert page.evaluate("window.__sameDocument") is True
    assert page.errors == []
