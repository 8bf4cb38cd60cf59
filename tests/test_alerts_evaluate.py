"""What each kind of rule measures, on a real store fed over OTLP, and how alerts move on in a real
``alerts.db``: pending, firing, resolved; repeats; silences; budget warnings once each per period, with the
projection computed here independently; users whose exports stop."""

from __future__ import annotations

import calendar
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ccmetrics.alerts.evaluate import Reading, measure, period_bounds
from ccmetrics.alerts.rules import Period, Rules, parse
from ccmetrics.alerts.state import AlertState

from .alert_traffic import PROTOBUF, api_events_body, cost_body, tokens_body

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE


def rules(body: str) -> Rules:
    return parse('[targets]\nhook = "json://127.0.0.1:9/hook"\n' + body)


def send(in_process, path: str, body: bytes) -> None:
    response = in_process.otlp.post(path, content=body, headers=PROTOBUF)
    assert response.status_code == 200, response.text


def observe(in_process, ruleset: Rules, now_ns: int):
    with in_process.store.snapshot() as conn:
        return measure(Reading(conn, now_ns), ruleset.rules)


def ns(moment: datetime) -> int:
    return calendar.timegm(moment.utctimetuple()) * SECOND


def last_month_at(days: float) -> int:
    """A moment ``days`` into the month before this one: in the past, whatever today is."""
    first = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (first - timedelta(days=1)).replace(day=1)
    return ns(start) + int(days * 86400 * SECOND)


def test_spend_tokens_and_error_rate_by_group(in_process):
    now = last_month_at(5)
    send(in_process, "/v1/metrics", cost_body(3.0, now - 10 * MINUTE, user="a@x.io", team="red"))
    send(in_process, "/v1/metrics", cost_body(4.0, now - 50 * MINUTE, user="b@x.io", team="red"))
    send(in_process, "/v1/metrics", cost_body(9.0, now - 2 * HOUR, user="c@x.io", team="blue"))  # before
    send(in_process, "/v1/metrics", tokens_body(60_000, now - 5 * MINUTE, user="a@x.io"))
    send(in_process, "/v1/logs", api_events_body(8, 2, now - MINUTE, user="a@x.io"))
    send(in_process, "/v1/logs", api_events_body(9, 1, now - MINUTE, user="b@x.io"))
    ruleset = rules(
        """
[[rules]]
name = "TeamCost"
kind = "spend"
window = "1h"
above = 5
group_by = "team"
[[rules]]
name = "AnyCost"
kind = "spend"
window = "1h"
above = 100
[[rules]]
name = "Tokens"
kind = "tokens_per_minute"
window = "10m"
above = 5000
group_by = "email"
[[rules]]
name = "Errors"
kind = "error_rate"
window = "10m"
above = 0.15
group_by = "email"
min_requests = 5
"""
    )
    seen = observe(in_process, ruleset, now)
    assert {labels: o.value for labels, o in seen["TeamCost"].items()} == {(("team.id", "red"),): 7.0}
    assert seen["AnyCost"] == {}
    assert {labels: o.value for labels, o in seen["Tokens"].items()} == {(("user.email", "a@x.io"),): 6000.0}
    assert {labels: o.value for labels, o in seen["Errors"].items()} == {(("user.email", "a@x.io"),): 0.2}


def test_a_spike_is_spend_above_a_multiple_of_its_trailing_average(in_process):
    now = last_month_at(10)
    for hour in range(1, 25):  # a dollar an hour for a day
        send(in_process, "/v1/metrics", cost_body(1.0, now - hour * HOUR - 30 * MINUTE, session=f"h{hour}"))
    ruleset = rules(
        '[[rules]]\nname = "Spike"\nkind = "spike"\nwindow = "1h"\nfactor = 3\nbaseline = "1d"\n'
        "min_spend = 0.5\n"
    )
    assert observe(in_process, ruleset, now)["Spike"] == {}
    send(in_process, "/v1/metrics", cost_body(2.5, now - 10 * MINUTE))
    assert observe(in_process, ruleset, now)["Spike"] == {}  # 2.5 against an average of 1 (24 / 24)
    send(in_process, "/v1/metrics", cost_body(1.0, now - 5 * MINUTE, session="more"))
    [(labels, spike)] = observe(in_process, ruleset, now)["Spike"].items()
    assert (labels, spike.value, spike.annotations["factor"]) == ((), 3.5, "3.5x")


def test_silence_finds_users_whose_exports_stopped(in_process):
    now = last_month_at(12)
    send(in_process, "/v1/metrics", cost_body(1.0, now - 3 * HOUR, user="gone@x.io"))
    send(in_process, "/v1/metrics", cost_body(1.0, now - 2 * HOUR, user="gone@x.io"))
    send(in_process, "/v1/metrics", cost_body(1.0, now - 3 * HOUR, user="here@x.io"))
    send(
        in_process, "/v1/logs", api_events_body(1, 0, now - 5 * MINUTE, user="here@x.io")
    )  # events count too
    send(in_process, "/v1/metrics", cost_body(1.0, now - 3 * 86400 * SECOND, user="long-gone@x.io"))
    ruleset = rules(
        '[[rules]]\nname = "Quiet"\nkind = "silence"\nseen_within = "1d"\nquiet_for = "90m"\n'
        'group_by = "email"\n'
    )
    assert set(observe(in_process, ruleset, now)["Quiet"]) == {(("user.email", "gone@x.io"),)}
    # An hour earlier, gone@ had sent data within the last 90 minutes, and here@ not (its event came later).
    assert set(observe(in_process, ruleset, now - HOUR)["Quiet"]) == {(("user.email", "here@x.io"),)}
    # Through a state machine: firing once, resolved when they are back.
    state = AlertState(in_process.store.path.parent / "alerts.db")
    try:
        queued = state.step(ruleset, observe(in_process, ruleset, now), now)
        assert [q.title for q in queued] == ["[FIRING:1] Quiet"]
        send(in_process, "/v1/metrics", cost_body(1.0, now + MINUTE, user="gone@x.io"))
        queued = state.step(ruleset, observe(in_process, ruleset, now + 2 * MINUTE), now + 2 * MINUTE)
        assert [q.title for q in queued] == ["[RESOLVED:1] Quiet"]
    finally:
        state.close()


BUDGET = """
[[rules]]
name = "Monthly"
kind = "budget"
period = "month"
amount = 100
group_by = "email"
warn_at = [50, 80, 100]
"""


def test_budget_warnings_at_each_percentage_once_each(in_process, tmp_path: Path):
    ruleset = rules(BUDGET)
    state = AlertState(tmp_path / "alerts.db")
    start = last_month_at(0)
    try:
        sent: list[tuple[str, str]] = []
        day = 1.0
        for spend in (20, 35, 10, 0, 20, 5, 15, 0):  # 20, 55, 65, 65, 85, 90, 105, 105
            now = last_month_at(day)
            if spend:
                send(in_process, "/v1/metrics", cost_body(float(spend), now - MINUTE, user="f@x.io"))
            for _ in range(3):  # rounds in a row change nothing more
                for q in state.step(ruleset, observe(in_process, ruleset, now), now):
                    sent.append((q.title, q.body))
            day += 1
        assert [title for title, _ in sent] == ["[FIRING:1] Monthly"] * 3
        assert ["threshold=50" in b for _, b in sent] == [True, False, False]
        assert ["threshold=80" in b for _, b in sent] == [False, True, False]
        assert ["threshold=100" in b for _, b in sent] == [False, False, True]
        # The next month starts again from nothing: no word of resolving.
        next_month = period_bounds(Period.MONTH, start)[1] + HOUR
        assert state.step(ruleset, observe(in_process, ruleset, next_month), next_month) == []
        assert state.overview(next_month)["alerts"] == []
    finally:
        state.close()


def test_budget_projection_is_the_spend_so_far_at_the_rate_so_far(in_process):
    now = last_month_at(10.25)
    send(in_process, "/v1/metrics", cost_body(30.0, now - 5 * 86400 * SECOND, user="g@x.io"))
    send(in_process, "/v1/metrics", cost_body(21.0, now - HOUR, user="g@x.io"))
    ruleset = rules(BUDGET)
    [(labels, seen)] = observe(in_process, ruleset, now)["Monthly"].items()
    assert dict(labels) == {"threshold": "50", "user.email": "g@x.io"}
    # Independently: the month has this many days, of which 10.25 have passed.
    moment = datetime.fromtimestamp(now / SECOND, UTC)
    days = calendar.monthrange(moment.year, moment.month)[1]
    expected = 51.0 * days / 10.25
    assert seen.annotations["projected"] == f"${expected:,.2f}"
    from ccmetrics.alerts.engine import budget_rows

    with in_process.store.snapshot() as conn:
        [row] = budget_rows(ruleset, Reading(conn, now), ())
    assert row["spend_usd"] == pytest.approx(51.0)
    assert row["projected_usd"] == pytest.approx(expected)
    assert row["percent"] == pytest.approx(51.0)
    assert row["period_start_ns"] == last_month_at(0)


def test_pending_repeat_and_silence_in_the_state_machine(tmp_path: Path):
    ruleset = parse(
        'repeat_interval = "1h"\n[targets]\na = "json://127.0.0.1:9/a"\nb = "json://127.0.0.1:9/b"\n'
        '[[rules]]\nname = "Cost"\nkind = "spend"\nwindow = "1h"\nabove = 1\nfor = "2m"\ngroup_by = "team"\n'
    )
    from ccmetrics.alerts.evaluate import Observation

    red, blue = (("team.id", "red"),), (("team.id", "blue"),)
    state = AlertState(tmp_path / "alerts.db")
    t = 1_000 * HOUR

    def step(at: int, *holding: tuple[tuple[str, str], ...]) -> list[str]:
        observed = {"Cost": {labels: Observation(2.0) for labels in holding}}
        return [f"{q.target} {q.title} {q.body}" for q in state.step(ruleset, observed, at)]

    try:
        assert step(t, red) == []  # pending
        assert step(t + MINUTE, red, blue) == []
        assert [a["state"] for a in state.overview(t)["alerts"]] == ["pending", "pending"]
        assert step(t + 2 * MINUTE, red, blue) == [
            "a [FIRING:1] Cost Cost {team.id=red}: 2",
            "b [FIRING:1] Cost Cost {team.id=red}: 2",
        ]
        # red resolves, notified to both; blue was only pending: nothing to say
        assert step(t + 3 * MINUTE) == [
            "a [RESOLVED:1] Cost Cost {team.id=red}",
            "b [RESOLVED:1] Cost Cost {team.id=red}",
        ]
        fired = state.overview(t)["history"]
        assert [(h["state"], h["labels"]) for h in fired] == [
            ("resolved", {"team.id": "red"}),
            ("firing", {"team.id": "red"}),
        ]
        # Firing for long: notified again every repeat_interval, not more.
        state.add_silence({"team.id": "blue"}, "", "ann", t, t + 10 * HOUR)
        assert step(t + 4 * MINUTE, red, blue) == []
        assert len(step(t + 6 * MINUTE, red, blue)) == 2  # red fires again; blue is silenced
        assert step(t + 30 * MINUTE, red, blue) == []
        assert len(step(t + 67 * MINUTE, red, blue)) == 2  # an hour after: the repeat
        assert json.loads(state.conn.execute("SELECT matchers FROM silences").fetchone()[0]) == {
            "team.id": "blue"
        }
    finally:
        state.close()
