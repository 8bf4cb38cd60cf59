"""The real Claude Code CLI, driven past a spend threshold, fires an alert of a real ``ccmetrics serve
--alerts``: one firing notification to a local webhook (an Apprise ``json://`` URL) within two evaluation
intervals after the export that crossed the threshold landed, and one resolved notification once that spend
has left the rule's window. The spend and the moments come from what the CLI sent (recorded by the tee),
decoded without ccmetrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from claude_cli import Telemetry, make_home, run_print
from fake_anthropic import FakeAnthropic, reply
from ground_truth import flatten, sum_points
from otlp_tee import OtlpTee, Recorded

from tests.conftest import ServerProcess
from tests.webhook import Webhook

INTERVAL = 0.5  # seconds between evaluations
WINDOW = 10  # seconds of spend the rule adds up: longer than a short session, short enough to wait out
THRESHOLD = 0.001  # USD; one answer of the fake costs several times this
SLACK = 0.5  # what a delivery through Apprise takes on top of the evaluation
EMAIL = "spender@example.com"
COST = "claude_code.cost.usage"


def rules(tmp_path: Path, hook: Webhook) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(
        f"""
evaluation_interval = "{INTERVAL}s"
repeat_interval = "1h"

[targets]
hook = "{hook.url}"

[[rules]]
name = "SessionSpend"
kind = "spend"
window = "{WINDOW}s"
above = {THRESHOLD}
group_by = "email"
summary = "spend above ${THRESHOLD}"
"""
    )
    return path


def cost_exports(records: list[Recorded]) -> list[tuple[Recorded, float, int]]:
    """Each acknowledged metrics export that carried spend: the record, its spend, the newest point's time."""
    found = []
    for record in records:
        points = [p for p in flatten([record])[0] if p.metric == COST and p.attrs.get("user.email") == EMAIL]
        if points:
            found.append((record, sum_points(points), max(p.time for p in points)))
    return found


def test_the_real_cli_past_a_spend_threshold_fires_once_then_resolves_once(
    claude_binary: Path,
    fake_api: Callable[..., FakeAnthropic],
    start_server: Callable[..., ServerProcess],
    tmp_path: Path,
) -> None:
    hook = Webhook()
    try:
        server = start_server(None, "--alerts", str(rules(tmp_path, hook)))
        with OtlpTee(server.otlp_http, server.otlp_grpc) as tee:
            project = tmp_path / "project"
            project.mkdir()
            home = make_home(tmp_path, "spender", [project])
            fake = fake_api([reply("Thinking about it.")], final_text="All done.")
            time.sleep(3 * INTERVAL)
            assert hook.received == []  # no spend yet: nothing fires
            result = run_print(
                claude_binary,
                home=home,
                cwd=project,
                prompt="say hi",
                api_base_url=fake.base_url,
                telemetry=Telemetry(
                    tee.http_endpoint, resource_attributes={"user.email": EMAIL}, interval_ms=1000
                ),
            )
            assert result.returncode == 0, result.stderr
            assert fake.messages_served()

            [firing] = hook.wait_for(1, timeout=10)
            exports = cost_exports(tee.snapshot())
        assert exports, "the CLI sent no spend"
        spent, crossed_at = 0.0, None
        for record, usd, _ in exports:
            spent += usd
            if crossed_at is None and spent > THRESHOLD:
                crossed_at = record.received_at  # acknowledged: stored by then
        assert crossed_at is not None, f"the CLI spent ${spent}, not past ${THRESHOLD}"
        assert firing.at - crossed_at <= 2 * INTERVAL + SLACK
        assert firing.title == "[FIRING:1] SessionSpend"
        assert firing.body["type"] == "failure"
        assert f"user.email={EMAIL}" in firing.message

        # Every later export of the session landed while it fired: still one notification.
        state = httpx.get(f"{server.url}/api/alerts", timeout=10).json()
        [alert] = state["firing"]
        assert alert["rule"] == "SessionSpend" and alert["labels"] == {"user.email": EMAIL}

        # The spend leaves the window WINDOW seconds after its newest point is dated: then it resolves, once.
        last_point_s = max(newest for _, _, newest in exports) / 1e9
        [_, resolved] = hook.wait_for(2, timeout=last_point_s + WINDOW + 10 - time.time())
        assert resolved.title == "[RESOLVED:1] SessionSpend"
        assert resolved.body["type"] == "success"
        assert last_point_s + WINDOW <= resolved.at <= last_point_s + WINDOW + 2 * INTERVAL + SLACK
        time.sleep(4 * INTERVAL)
        assert hook.titles() == ["[FIRING:1] SessionSpend", "[RESOLVED:1] SessionSpend"]
        state = httpx.get(f"{server.url}/api/alerts", timeout=10).json()
        assert state["firing"] == [] and state["pending"] == []
        assert [(h["rule"], h["state"]) for h in state["history"]] == [
            ("SessionSpend", "resolved"),
            ("SessionSpend", "firing"),
        ]
        assert [n["state"] for n in state["notifications"]] == ["sent", "sent"]
    finally:
        hook.close()
