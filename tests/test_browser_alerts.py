"""Alerts in a real browser (Playwright driving Debian's Chromium) against a real ``ccmetrics serve --alerts``
with spend sent over OTLP: the banner on every page while an alert fires and gone once it resolves; the alerts
page's firing, history and silences; an admin silences an alert from the page (with its CSRF token) and it is
notified no more, while a viewer sees the alerts but no silence controls."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .alert_traffic import cost_body, post
from .browser import shot
from .conftest import ServerProcess
from .people import PASSWORD
from .webhook import Webhook

INTERVAL = 0.5  # seconds between evaluations


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def rules_file(tmp_path: Path, url: str, *, window: float, repeat: str = "1h") -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(
        f"""
evaluation_interval = "{INTERVAL}s"
repeat_interval = "{repeat}"

[targets]
hook = "{url}"

[[rules]]
name = "HighCost"
kind = "spend"
window = "{window}s"
above = 1.0
group_by = "email"
labels = {{ severity = "warning" }}
summary = "spend above $1"
"""
    )
    return path


def rows(page: Any, table: str) -> list[list[str]]:
    """The text of each cell of each row of a table's body."""
    return page.eval_on_selector_all(
        f"#{table} tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))"
    )


def wait_rows(page: Any, table: str, check: Callable[[list[list[str]]], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check(found := rows(page, table)):
        if time.monotonic() > deadline:
            raise AssertionError(f"#{table} is {found}")
        page.wait_for_timeout(50)


def add_person(data_dir: Path, name: str, role: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "ccmetrics", "user", "add", name, "--role", role, "--password-stdin",
         "--data-dir", str(data_dir)],
        input=PASSWORD, text=True, check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def sign_in(page: Any, server: ServerProcess, name: str, target: str) -> None:
    page.goto(server.url + target)
    page.wait_for_url(f"{server.url}/signin?**")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url(server.url + target)


def test_the_banner_shows_while_an_alert_fires_and_goes_when_it_resolves(
    start_server: Callable[..., ServerProcess], tmp_path: Path, webhook: Webhook, page: Any
) -> None:
    window = 8
    server = start_server(None, "--alerts", str(rules_file(tmp_path, webhook.url, window=window)))
    page.goto(server.url + "/?range=24h")
    page.wait_for_selector("#admin-link")  # loopback, nobody to check: everyone is admin
    page.wait_for_timeout(3 * INTERVAL * 1000)
    assert page.locator("#alert-banner").count() == 0  # nothing fires

    post(server.otlp_http, "/v1/metrics", cost_body(0.5, user="ana@example.com"))
    post(server.otlp_http, "/v1/metrics", cost_body(0.8, user="ana@example.com"))
    sent = time.time()
    banner = page.locator("#alert-banner")
    banner.wait_for(timeout=5000)  # without reloading: the page asks again every evaluation interval
    assert banner.inner_text() == "1 alert firing: HighCost"
    assert banner.get_attribute("href") == "/alerts"
    shot(page, "alerts-banner")

    # The same banner on the alerts page, which it links to.
    banner.click()
    page.wait_for_url(server.url + "/alerts")
    wait_rows(page, "firing", lambda found: len(found) == 1)
    [firing] = rows(page, "firing")
    assert firing[:3] == ["HighCost", "severity=warning, user.email=ana@example.com", "$1.30"]
    assert page.locator("#alert-banner").inner_text() == "1 alert firing: HighCost"

    # Resolved once the spend has left the window: the banner goes, the history says so.
    page.locator("#alert-banner").wait_for(state="detached", timeout=(window + 6) * 1000)
    assert time.time() - sent >= window - 1
    wait_rows(page, "history", lambda found: [r[3] for r in found] == ["resolved", "firing"])
    assert rows(page, "firing") == []
    assert [r[1:3] for r in rows(page, "history")] == [
        ["HighCost", "severity=warning, user.email=ana@example.com"]
    ] * 2
    shot(page, "alerts-resolved")
    page.goto(server.url + "/?range=24h")
    page.wait_for_selector("#admin-link")  # loopback, nobody to check: everyone is admin
    page.wait_for_timeout(3 * INTERVAL * 1000)
    assert page.locator("#alert-banner").count() == 0
    assert webhook.titles() == ["[FIRING:1] HighCost", "[RESOLVED:1] HighCost"]
    assert page.errors == []


def test_an_admin_silences_from_the_page_and_a_viewer_sees_no_silence_controls(
    start_server: Callable[..., ServerProcess],
    tmp_path: Path,
    webhook: Webhook,
    new_page: Callable[..., Any],
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    add_person(data, "ada", "admin")
    add_person(data, "vera", "viewer")
    # A firing alert is notified again every second, so a silence shows as notifications that stop.
    rules = rules_file(tmp_path, webhook.url, window=600, repeat="1s")
    server = start_server(data, "--alerts", str(rules))
    users = ("di@example.com", "ed@example.com")
    for user in users:
        post(server.otlp_http, "/v1/metrics", cost_body(2.0, user=user))
    deadline = time.monotonic() + 10
    while not all(user in " ".join(r.message for r in webhook.received) for user in users):
        assert time.monotonic() < deadline, webhook.titles()
        time.sleep(0.05)

    admin = new_page()
    sign_in(admin, server, "ada", "/alerts")
    wait_rows(admin, "firing", lambda found: len(found) == 2)
    assert sorted(r[1] for r in rows(admin, "firing")) == [
        "severity=warning, user.email=di@example.com",
        "severity=warning, user.email=ed@example.com",
    ]
    assert [r[3] for r in rows(admin, "history")] == ["firing", "firing"]
    assert rows(admin, "silences") == []
    form = admin.locator("#silence-form")
    assert form.is_visible()

    admin.fill("#silence-form [name=matchers]", "alertname=HighCost, user.email=di@example.com")
    admin.fill("#silence-form [name=duration]", "90m")
    admin.fill("#silence-form [name=comment]", "<b>known</b>: di's migration")
    clicked = time.time_ns()
    admin.click("#silence-form button[type=submit]")
    wait_rows(admin, "silences", lambda found: len(found) == 1)
    [silence_row] = rows(admin, "silences")
    assert silence_row[:3] == [
        "alertname=HighCost, user.email=di@example.com",
        "<b>known</b>: di's migration",
        "ada",
    ]
    assert silence_row[4] == "End"
    assert admin.locator("#silences b").count() == 0  # the comment is text
    assert admin.locator("#alerts-error").is_hidden()
    assert admin.input_value("#silence-form [name=matchers]") == ""  # the form is cleared
    shot(admin, "alerts-silenced")

    # What the page sent was stored with the admin's name and an expiry 90 minutes on.
    cookies = {c["name"]: c["value"] for c in admin.context.cookies()}
    state = httpx.get(server.url + "/api/alerts", cookies=cookies, timeout=10).json()
    [silence] = state["silences"]
    assert silence["matchers"] == {"alertname": "HighCost", "user.email": "di@example.com"}
    assert silence["created_by"] == "ada" and silence["active"]
    assert (
        clicked <= silence["created_ns"] and silence["expires_ns"] - silence["created_ns"] == 90 * 60 * 10**9
    )
    # Without the page's CSRF token the same request is refused.
    refused = httpx.post(
        server.url + "/api/alerts/silences",
        json={"matchers": {"alertname": "HighCost"}, "duration": "1h"},
        cookies=cookies,
        timeout=10,
    )
    assert refused.status_code == 403

    # The silenced alert is notified no more; the other one still is, every second.
    silenced_at = time.time()
    before = len(webhook.received)
    later = [
        r for r in webhook.wait_for(before + 3, timeout=10)[before:] if r.at > silenced_at + 2 * INTERVAL
    ]
    assert later
    assert all(r.title == "[FIRING:1] HighCost" for r in later)
    assert all("ed@example.com" in r.message and "di@example.com" not in r.message for r in later)
    assert len(rows(admin, "firing")) == 2  # silenced, still firing

    viewer = new_page()
    sign_in(viewer, server, "vera", "/alerts")
    wait_rows(viewer, "silences", lambda found: len(found) == 1)
    assert len(rows(viewer, "firing")) == 2
    assert viewer.locator("#silence-form").is_hidden()
    assert viewer.locator("#silences button").count() == 0
    assert rows(viewer, "silences")[0][4] == ""
    assert viewer.locator("#alert-banner").inner_text() == "2 alerts firing: HighCost"
    shot(viewer, "alerts-viewer")

    # The admin ends the silence from the page: di is notified again.
    ended = len(webhook.received)
    admin.click("#silences button")
    wait_rows(admin, "silences", lambda found: found[0][3].startswith("ended"))
    # (ed's repeats go on meanwhile: one of them may come first)
    deadline = time.monotonic() + 5
    while not any("di@example.com" in r.message for r in webhook.received[ended:]):
        assert time.monotonic() < deadline, webhook.titles()[ended:]
        time.sleep(0.05)
    assert admin.errors == [] and viewer.errors == []
