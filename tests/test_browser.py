"""The dashboard in a real browser (Playwright driving Debian's Chromium) over real data."""

from __future__ import annotations

import time

from .browser import shot, stat, wait_stat
from .conftest import Export, fixture_exports, send
from .otlp_builders import SECOND, log_request, sum_request

XSS = "<img src=x onerror=alert(1)>"


def hostile_exports(now_ns: int):
    """A session whose every client-chosen string is markup."""
    attrs = {"user.id": XSS, "user.email": XSS, "session.id": XSS, "model": XSS, "type": "input"}
    resource = {"service.name": "claude-code", "team.id": XSS}
    return (
        sum_request("claude_code.token.usage", [(now_ns - SECOND, now_ns, 5, attrs)], resource=resource),
        log_request(
            [
                (
                    now_ns,
                    "tool_result",
                    {"tool_name": XSS, "success": "true", "duration_ms": 5, "session.id": XSS},
                )
            ],
            resource=resource,
        ),
    )


def post(server, request) -> None:
    response = server.send(Export.of(request))
    assert response.status_code == 200


def test_dashboard_shows_filters_drills_down_and_updates_live(server, page):
    # Empty first: the page says exactly how to send data here.
    page.goto(server.url + "/")
    page.wait_for_selector("#empty:not([hidden])")
    env = page.locator("#empty-env").inner_text()
    assert f"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{server.otlp_grpc_port}" in env
    assert f":{server.otlp_http_port}" in page.locator("#empty-env-http").inner_text()
    shot(page, "dashboard-empty")

    for capture in ("http-protobuf-delta", "http-json-cumulative"):
        for export in fixture_exports(capture):
            assert send(server.otlp_http, export).status_code == 200
    # Live: the open page notices the data without a reload.
    page.evaluate("window.__sameDocument = true")
    wait_stat(page, "sessions", "2")
    assert page.evaluate("window.__sameDocument") is True
    page.goto(server.url + "/?range=all")
    wait_stat(page, "sessions", "2")
    assert stat(page, "cost") == "$0.0973"
    assert stat(page, "commits") == "1"
    assert stat(page, "lines_net") == "7"
    assert page.locator(".panel-error").count() == 0
    assert page.locator(".panel").count() == len(
        page.evaluate("fetch('/api/panels').then(r => r.json())")["panels"]
    )
    shot(page, "dashboard")

    # A filter changes the numbers and lands in the URL.
    page.select_option("#group-value", "web")
    wait_stat(page, "cost", "$0.0447")
    assert stat(page, "sessions") == "1"
    assert "filter=team.id%3Dweb" in page.url
    page.reload()
    wait_stat(page, "cost", "$0.0447")
    shot(page, "dashboard-filtered")

    # Drill down into the session.
    page.locator('[data-panel="recent_sessions"] td a').first.click()
    page.wait_for_url("**/session/**")
    page.wait_for_selector("#timeline li[data-event]")
    events = page.locator("#timeline li").evaluate_all("els => els.map(e => e.dataset.event)")
    assert events[0] in ("managed_settings_resolved", "plugin_loaded", "user_prompt")
    assert "api_request" in events and "tool_result" in events
    shot(page, "session")

    # Live again, on a filtered view: a new export appears within 2 s.
    page.goto(server.url + "/?range=all")
    wait_stat(page, "sessions", "2")
    page.evaluate("window.__sameDocument = true")
    now = time.time_ns()
    post(
        server,
        sum_request(
            "claude_code.session.count", [(now - SECOND, now, 1, {"user.id": "new", "session.id": "live-1"})]
        ),
    )
    started = time.monotonic()
    wait_stat(page, "sessions", "3", timeout=2000)
    assert time.monotonic() - started < 2.0
    assert page.evaluate("window.__sameDocument") is True
    assert page.errors == []


def test_client_strings_are_shown_as_text_never_as_markup(server, page):
    for request in hostile_exports(time.time_ns()):
        post(server, request)
    page.goto(server.url + "/?range=all&group_by=team.id")
    page.wait_for_selector('[data-panel="leaderboard_users"] tbody tr')
    page.wait_for_timeout(500)
    assert page.locator("img").count() == 0
    assert page.errors == []
    board = page.locator('[data-panel="leaderboard_users"] tbody').inner_text()
    assert XSS in board
    assert XSS in page.locator('[data-panel="tools"] tbody').inner_text()
    assert XSS in page.locator('[data-panel="recent_sessions"] tbody').inner_text()
    assert XSS in [o for o in page.locator("#model option").all_inner_texts()]
    shot(page, "dashboard-hostile-strings")
    page.locator('[data-panel="recent_sessions"] td a').first.click()
    page.wait_for_selector("#timeline li[data-event]")
    assert page.locator("#session-id").inner_text() == XSS
    assert page.locator("img").count() == 0 and page.errors == []


def test_people_are_shown_by_name_and_filtered_by_id(server, page):
    user_id = "f6" * 32
    name = "Ada <b>Lovelace</b>"  # a user.name, as setup sends it: client data, shown as text
    now = time.time_ns()
    point = (now - SECOND, now, 2.5, {"user.id": user_id, "session.id": "named-1", "model": "m"})
    resource = {"service.name": "claude-code", "user.name": name}
    post(server, sum_request("claude_code.cost.usage", [point], unit="USD", resource=resource))
    other = (now - SECOND, now, 1.0, {"user.id": "0a" * 32, "session.id": "unnamed-1", "model": "m"})
    post(server, sum_request("claude_code.cost.usage", [other], unit="USD"))  # no name: a short hash
    page.goto(server.url + "/?range=24h")
    wait_stat(page, "cost", "$3.5000")
    board = page.locator('[data-panel="leaderboard_users"] tbody').inner_text()
    assert name in board and "0a0a0a0a0a…" in board
    assert user_id not in board and "0a" * 32 not in board
    assert page.locator("b").count() == 0
    option = page.locator("#user option", has_text=name)
    assert option.get_attribute("value") == user_id  # the name is shown, the filter takes the id
    page.select_option("#user", user_id)
    page.wait_for_url(f"**filter=user.id%3D{user_id}**")
    wait_stat(page, "cost", "$2.5000")
    assert page.errors == []
