"""Alerts in a real ``ccmetrics serve``: spend sent over OTLP past a rule's threshold is notified once to a
local webhook (an Apprise ``json://`` URL) within two evaluation intervals, and resolved once when the window
has passed; a restart between the two sends nothing twice; a failed delivery is retried and shown; a target
that never answers slows neither ingest nor the dashboard; silences are an admin's."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .alert_traffic import cost_body, post
from .conftest import ServerProcess
from .webhook import Webhook

INTERVAL = 0.5  # seconds between evaluations
WINDOW = 6  # seconds of spend a rule adds up


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def rules_file(
    tmp_path: Path, url: str, *, for_: str = "0s", window: float = WINDOW, more_targets: str = ""
) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(
        f"""
evaluation_interval = "{INTERVAL}s"
repeat_interval = "1h"
retry_backoff = "0.2s"
delivery_attempts = 4

[targets]
hook = "{url}"
{more_targets}

[[rules]]
name = "HighCost"
kind = "spend"
window = "{window}s"
above = 1.0
group_by = "email"
for = "{for_}"
labels = {{ severity = "warning" }}
summary = "spend above $1"
"""
    )
    return path


def alerts(server: ServerProcess) -> dict:
    response = server.get("/api/alerts")
    assert response.status_code == 200, response.text
    return response.json()


def wait_until(condition, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_spend_past_a_threshold_fires_once_then_resolves_once(start_server, tmp_path, webhook):
    server = start_server(None, "--alerts", str(rules_file(tmp_path, webhook.url)))
    post(server.otlp_http, "/v1/metrics", cost_body(0.6, user="ana@example.com"))
    time.sleep(4 * INTERVAL)
    assert webhook.titles() == []  # $0.60: under the threshold
    post(server.otlp_http, "/v1/metrics", cost_body(0.7, user="ana@example.com"))
    landed = time.time()
    [firing] = webhook.wait_for(1, timeout=10)
    assert firing.title == "[FIRING:1] HighCost"
    assert "user.email=ana@example.com" in firing.message and "$1.30" in firing.message
    assert firing.at - landed <= 2 * INTERVAL + 0.5  # two intervals, and the time a delivery takes
    assert firing.body["type"] == "failure"
    state = alerts(server)
    assert [(a["rule"], a["labels"]) for a in state["firing"]] == [
        ("HighCost", {"severity": "warning", "user.email": "ana@example.com"})
    ]
    # The spend leaves the window WINDOW seconds after it was dated: then it resolves, once.
    [_, resolved] = webhook.wait_for(2, timeout=WINDOW + 10)
    assert resolved.title == "[RESOLVED:1] HighCost"
    assert resolved.body["type"] == "success"
    time.sleep(4 * INTERVAL)
    assert webhook.titles() == ["[FIRING:1] HighCost", "[RESOLVED:1] HighCost"]
    state = alerts(server)
    assert state["firing"] == []
    assert [h["state"] for h in state["history"]] == ["resolved", "firing"]
    assert [n["state"] for n in state["notifications"]] == ["sent", "sent"]


def test_a_restart_between_firing_and_resolving_sends_nothing_twice(start_server, tmp_path, webhook):
    rules = rules_file(tmp_path, webhook.url, window=20)  # long enough to outlast the restart
    server = start_server(None, "--alerts", str(rules))
    post(server.otlp_http, "/v1/metrics", cost_body(2.0, user="bo@example.com"))
    webhook.wait_for(1, timeout=10)
    assert server.stop() == 0
    server.start()
    time.sleep(4 * INTERVAL)  # rounds after the restart: still firing, already notified
    assert webhook.titles() == ["[FIRING:1] HighCost"]
    assert [a["labels"]["user.email"] for a in alerts(server)["firing"]] == ["bo@example.com"]
    webhook.wait_for(2, timeout=30)
    time.sleep(4 * INTERVAL)
    assert webhook.titles() == ["[FIRING:1] HighCost", "[RESOLVED:1] HighCost"]


def test_for_keeps_an_alert_pending_first(start_server, tmp_path, webhook):
    server = start_server(None, "--alerts", str(rules_file(tmp_path, webhook.url, for_="2s")))
    post(server.otlp_http, "/v1/metrics", cost_body(2.0, user="cy@example.com"))
    sent = time.time()
    wait_until(lambda: alerts(server)["pending"], 5, "the alert is pending")
    assert webhook.titles() == []
    [firing] = webhook.wait_for(1, timeout=10)
    assert firing.at - sent >= 2


def test_a_failed_delivery_is_retried_and_shown(start_server, tmp_path):
    hook = Webhook(fail_first=2)
    try:
        server = start_server(None, "--alerts", str(rules_file(tmp_path, hook.url)))
        post(server.otlp_http, "/v1/metrics", cost_body(2.0))
        [firing] = hook.wait_for(1, timeout=15)
        assert firing.title == "[FIRING:1] HighCost"
        assert hook.refused == 2
        sent = wait_until(
            lambda: [n for n in alerts(server)["notifications"] if n["state"] == "sent"], 5, "shown as sent"
        )
        assert sent[0]["attempts"] == 3
        assert sent[0]["error"]  # the last failure is kept
    finally:
        hook.close()


def test_a_target_that_never_answers_slows_neither_ingest_nor_the_dashboard(start_server, tmp_path, webhook):
    hanging = Webhook(delay=30)  # accepts, and answers after Apprise has given up
    try:
        path = rules_file(tmp_path, webhook.url, more_targets=f'stuck = "{hanging.url}"')
        server = start_server(None, "--alerts", str(path))
        post(server.otlp_http, "/v1/metrics", cost_body(2.0))
        webhook.wait_for(1, timeout=10)  # the other target is not held up
        slowest = 0.0
        for i in range(20):
            started = time.perf_counter()
            post(server.otlp_http, "/v1/metrics", cost_body(0.01, session=f"x{i}"))
            assert server.get("/api/dashboard").status_code == 200
            slowest = max(slowest, time.perf_counter() - started)
        assert slowest < 1.0
        queued = [n for n in alerts(server)["notifications"] if n["target"] == "stuck"]
        assert queued and queued[0]["state"] == "queued"
    finally:
        hanging.close()


def test_silences_are_an_admins_and_stop_notifications(start_server, tmp_path, webhook):
    server = start_server(None, "--alerts", str(rules_file(tmp_path, webhook.url)))
    url = server.url + "/api/alerts/silences"
    response = httpx.post(
        url, json={"matchers": {"user.email": "di@example.com"}, "duration": "1h"}, timeout=10
    )
    assert response.status_code == 201, response.text  # loopback, nobody to check: everyone is admin
    silence = response.json()
    post(server.otlp_http, "/v1/metrics", cost_body(2.0, user="di@example.com"))
    post(server.otlp_http, "/v1/metrics", cost_body(2.0, user="ed@example.com"))
    [firing] = webhook.wait_for(1, timeout=10)
    time.sleep(4 * INTERVAL)
    assert webhook.titles() == ["[FIRING:1] HighCost"]
    assert "ed@example.com" in firing.message and "di@example.com" not in firing.message
    state = alerts(server)
    assert {a["labels"]["user.email"] for a in state["firing"]} == {"di@example.com", "ed@example.com"}
    assert [s["id"] for s in state["silences"] if s["active"]] == [silence["id"]]
    assert httpx.delete(f"{url}/{silence['id']}", timeout=10).status_code == 200
    assert [s["active"] for s in alerts(server)["silences"]] == [False]
    # Unsilenced while it still fires: notified now.
    second = webhook.wait_for(2, timeout=10)[1]
    assert second.title == "[FIRING:1] HighCost" and "di@example.com" in second.message


def test_only_an_admin_silences_once_people_exist(start_server, tmp_path, webhook):
    data = tmp_path / "data"
    for name, role in (("ann", "admin"), ("vic", "viewer")):
        subprocess.run(
            [sys.executable, "-m", "ccmetrics", "user", "add", name, "--role", role,
             "--email", f"{name}@x.io", "--password-stdin", "--data-dir", str(data)],
            input="correct horse battery\n", text=True, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    server = start_server(data, "--alerts", str(rules_file(tmp_path, webhook.url)))

    def signed_in(name: str) -> tuple[httpx.Client, str]:
        client = httpx.Client(base_url=server.url, timeout=10)
        response = client.post("/api/signin", json={"name": name, "password": "correct horse battery"})
        assert response.status_code == 200, response.text
        return client, client.get("/api/me").json()["csrf_token"]

    body = {"matchers": {"alertname": "HighCost"}, "duration": "2h", "comment": "deploy"}
    viewer, viewer_csrf = signed_in("vic")
    assert viewer.get("/api/alerts").status_code == 200
    assert viewer.get("/api/alerts").json()["can_silence"] is False
    assert (
        viewer.post("/api/alerts/silences", json=body, headers={"X-CSRF-Token": viewer_csrf}).status_code
        == 403
    )
    admin, admin_csrf = signed_in("ann")
    assert admin.post("/api/alerts/silences", json=body).status_code == 403  # no CSRF token
    made = admin.post("/api/alerts/silences", json=body, headers={"X-CSRF-Token": admin_csrf})
    assert made.status_code == 201, made.text
    assert made.json()["created_by"] == "ann"
    assert httpx.get(server.url + "/api/alerts", timeout=10).status_code == 401
    viewer.close()
    admin.close()


def test_alerts_test_sends_to_every_target(tmp_path, webhook):
    path = rules_file(tmp_path, webhook.url, more_targets='nowhere = "json://127.0.0.1:1/hook"')
    result = subprocess.run(
        [sys.executable, "-m", "ccmetrics", "alerts", "test", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "hook: delivered" in result.stdout
    assert "nowhere: FAILED" in result.stdout
    [received] = webhook.received
    assert received.title == "ccmetrics test notification"
