"""The budget panels of a real ``ccmetrics serve --alerts`` with budgets of each period: spend sent over OTLP
at moments inside and outside each budget's current day, week and month (UTC) is shown as each group's spend
against its amount and its projection at the period's end, equal to an independent computation from what was
sent; the page's filters apply, its range does not; the alerts page's budgets say the same."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from .alert_traffic import cost_body, post
from .conftest import ServerProcess
from .webhook import Webhook

SECOND = 1_000_000_000
HOUR = 3600 * SECOND
RULES = """
evaluation_interval = "1s"

[targets]
hook = "{url}"

[[rules]]
name = "Monthly"
kind = "budget"
period = "month"
amount = 40
group_by = "email"

[[rules]]
name = "Daily"
kind = "budget"
period = "day"
amount = 8

[[rules]]
name = "PlatformWeekly"
kind = "budget"
period = "week"
amount = 25
filter = {{ "team.id" = "platform" }}
"""
PEOPLE = {"ana@example.com": "platform", "bo@example.com": "web"}


def bounds(period: str, now_ns: int) -> tuple[int, int]:
    """The current UTC day, week (from Monday) or month around ``now_ns``, worked out here on its own."""
    now = datetime.fromtimestamp(now_ns / SECOND, UTC)
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=now.isoweekday() - 1)
        end = start + timedelta(weeks=1)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return int(start.timestamp()) * SECOND, int(end.timestamp()) * SECOND


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def test_budget_panels_equal_spend_against_budget_and_the_projection(
    start_server: Callable[..., ServerProcess], tmp_path: Path, webhook: Webhook
) -> None:
    rules = tmp_path / "alerts.toml"
    rules.write_text(RULES.format(url=webhook.url))
    server = start_server(None, "--alerts", str(rules))

    # Every period ends at a day's end: one that ends within the test is waited out first.
    left = bounds("day", time.time_ns())[1] - time.time_ns()
    if left < 30 * SECOND:
        time.sleep(left / SECOND + 1)
    # Spend at moments each period may or may not hold, whatever the date: now, within today, at each
    # period's start, just before it, and long ago.
    now = time.time_ns()
    moments = {now - SECOND, now - (now - bounds("day", now)[0]) // 2}
    for period in ("day", "week", "month"):
        start = bounds(period, now)[0]
        moments |= {start + SECOND, start - HOUR}
    moments.add(now - 45 * 24 * HOUR)
    sent: list[tuple[int, str, float]] = []  # (when, who, USD)
    for i, moment in enumerate(sorted(moments)):
        for j, (user, team) in enumerate(PEOPLE.items()):
            usd = round(0.25 + 0.5 * i + 1.25 * j, 2)
            post(
                server.otlp_http, "/v1/metrics", cost_body(usd, moment, session=f"s{i}", user=user, team=team)
            )
            sent.append((moment, user, usd))

    def expected(
        period: str, amount: float, at_ns: int, who: Callable[[str], bool], group: str | None
    ) -> dict[str, Any]:
        start, end = bounds(period, at_ns)
        spend = sum(usd for moment, user, usd in sent if start <= moment <= at_ns and who(user))
        return {
            "group": group,
            "period": period,
            "spend": spend,
            "amount": amount,
            "start": start,
            "end": end,
        }

    def rows_now(at_ns: int, only: str | None = None) -> list[dict[str, Any]]:
        """Every budget row, by the rules, for the people ``only`` leaves in."""
        mine = (lambda user: user == only) if only else (lambda user: True)
        out = [
            {"budget": "Monthly", **expected("month", 40, at_ns, lambda u, e=email: u == e, email)}
            for email in PEOPLE
            if mine(email)
        ]
        out.sort(key=lambda row: -row["spend"])
        out.append({"budget": "Daily", **expected("day", 8, at_ns, mine, None)})
        platform = [e for e, team in PEOPLE.items() if team == "platform" and mine(e)]
        if platform:
            out.append(
                {"budget": "PlatformWeekly", **expected("week", 25, at_ns, lambda u: u in platform, None)}
            )
        return [row for row in out if row["spend"] > 0]

    def check(
        panel: dict[str, Any], projection: dict[str, Any], before: int, after: int, only: str | None
    ) -> None:
        want = rows_now(before, only)
        assert rows_now(after, only) == want
        got = panel["data"]["rows"]
        assert [(r["budget"], r["group"], r["period"]) for r in got] == [
            (w["budget"], w["group"] or "everyone", w["period"]) for w in want
        ]
        items = projection["data"]["items"]
        assert [i["label"] for i in items] == [f"{w['budget']} · {w['group'] or 'everyone'}" for w in want]
        for row, item, w in zip(got, items, want, strict=True):
            assert row["spend_usd"] == pytest.approx(w["spend"])
            assert row["budget_usd"] == w["amount"]
            assert row["share"] == pytest.approx(w["spend"] / w["amount"])
            # At the rate so far, to the period's end: evaluated at a moment between before and after.
            lowest = w["spend"] * (w["end"] - w["start"]) / (after - w["start"])
            highest = w["spend"] * (w["end"] - w["start"]) / (before - w["start"])
            assert lowest * (1 - 1e-9) <= row["projected_usd"] <= highest * (1 + 1e-9)
            # The projection panel's request came a moment later: between the same bounds, as a share.
            assert lowest * (1 - 1e-9) <= item["value"] * w["amount"] <= highest * (1 + 1e-9)

    def panels(**params: Any) -> tuple[dict[str, Any], dict[str, Any], int, int]:
        before = time.time_ns()
        table = httpx.get(f"{server.url}/api/panels/budgets", params=params, timeout=10)
        projection = httpx.get(f"{server.url}/api/panels/budget_projection", params=params, timeout=10)
        after = time.time_ns()
        assert table.status_code == projection.status_code == 200, table.text
        return table.json(), projection.json(), before, after

    # Everyone's, with a range that would leave most of the spend out: a budget's range is its period.
    table, projection, before, after = panels(since="1h")
    assert table["title"] == "Spend vs budget"
    check(table, projection, before, after, None)
    assert len(table["data"]["rows"]) == 4
    # The page's filters apply.
    table, projection, before, after = panels(since="7d", filter="user.email=bo@example.com")
    check(table, projection, before, after, "bo@example.com")
    assert [r["budget"] for r in table["data"]["rows"]] == ["Monthly", "Daily"]

    # The alerts page's budgets are the same numbers.
    before = time.time_ns()
    budgets = httpx.get(f"{server.url}/api/alerts", timeout=10).json()["budgets"]
    after = time.time_ns()
    want = rows_now(before)
    assert [(b["rule"], b["group"], b["period"]) for b in budgets] == [
        (w["budget"], w["group"], w["period"]) for w in want
    ]
    for b, w in zip(budgets, want, strict=True):
        assert (b["period_start_ns"], b["period_end_ns"]) == (w["start"], w["end"])
        assert b["spend_usd"] == pytest.approx(w["spend"]) and b["budget_usd"] == w["amount"]
        assert b["percent"] == pytest.approx(100 * w["spend"] / w["amount"])
        span = w["end"] - w["start"]
        assert w["spend"] * span / (after - w["start"]) * (1 - 1e-9) <= b["projected_usd"]
        assert b["projected_usd"] <= w["spend"] * span / (before - w["start"]) * (1 + 1e-9)
