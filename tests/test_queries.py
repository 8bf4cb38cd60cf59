"""The read side's answers, against a real SQLite file filled through the real store: counter totals for any
range (inside an hour, across midnight, whole days, open ends), groupings, filters, event counts and
percentiles, the sessions list, what there is to filter on, and a session's timeline."""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from pathlib import Path

import pytest

from ccmetrics.metrics import COST, TOKENS
from ccmetrics.otlp.decode import Signal
from ccmetrics.otlp.normalize import to_batch
from ccmetrics.store import Store
from ccmetrics.store.filter_choices import attribute_values, filter_options
from ccmetrics.store.filters import Filters
from ccmetrics.store.selection import Selection
from ccmetrics.store.timeline import session_timeline

from .otlp_builders import log_request, sum_request

SECOND = 1_000_000_000
MINUTE, HOUR, DAY = 60 * SECOND, 3600 * SECOND, 86400 * SECOND
BASE = (time.time_ns() // DAY - 3) * DAY  # midnight, three days ago: every point is in a day that has ended
SESSIONS = {  # session: (user, team, model)
    "s1": ("u1", "platform", "claude-opus-5-5"),
    "s2": ("u2", "web", "claude-sonnet-5"),
    "s3": ("u1", "platform", "claude-haiku-5"),
}
# Cost points (session, time, value): every hour of three days, at minutes that move from hour to hour.
COSTS = [
    (sid, BASE + h * HOUR + (7 * h + 3 * i) % 60 * MINUTE + SECOND, 0.25 * ((h + i) % 7 + 1))
    for h in range(72)
    for i, sid in enumerate(SESSIONS)
    if (h + i) % 5
]
TOKEN_TYPES = ("input", "output", "cacheRead")
# API requests (session, time, duration_ms), and prompts (session, time, length).
REQUESTS = [(sid, t + 5 * SECOND, 100.0 + (int(v * 4) * 37) % 900) for sid, t, v in COSTS]
PROMPTS = [(sid, t + 2 * SECOND, 10.0 * (1 + int(v * 4))) for sid, t, v in COSTS[::3]]


def _attrs(sid: str, **more: object) -> dict[str, object]:
    user, _, model = SESSIONS[sid]
    return {"user.id": user, "user.email": f"{user}@example.com", "session.id": sid, "model": model, **more}


def _resource(sid: str) -> dict[str, object]:
    return {"service.name": "claude-code", "team.id": SESSIONS[sid][1]}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    store = Store(Path(tmp_path_factory.mktemp("queries")) / "ccmetrics.db")
    requests = []
    for sid in SESSIONS:
        mine = [(t, v) for s, t, v in COSTS if s == sid]
        requests.append(
            sum_request(
                COST.name, [(t - MINUTE, t, v, _attrs(sid)) for t, v in mine], resource=_resource(sid)
            )
        )
        requests.append(
            sum_request(
                TOKENS.name,
                [
                    (t - MINUTE, t, float(int(v * 400) * (k + 1)), _attrs(sid, type=kind))
                    for t, v in mine
                    for k, kind in enumerate(TOKEN_TYPES)
                ],
                resource=_resource(sid),
            )
        )
        records = [(t, "api_request", _attrs(sid, duration_ms=d)) for s, t, d in REQUESTS if s == sid]
        records += [(t, "user_prompt", _attrs(sid, prompt_length=n)) for s, t, n in PROMPTS if s == sid]
        records += [(BASE + 30 * HOUR, "api_error", _attrs(sid, status_code=529))]
        requests.append(log_request(records, resource=_resource(sid)))

    async def write() -> None:
        for request in requests:
            signal = Signal.LOGS if hasattr(request, "resource_logs") else Signal.METRICS
            await store.write(to_batch(signal, request, store_prompts=False))

    asyncio.run(write())
    yield store
    store.close()


def select(store: Store, since: int | None = None, until: int | None = None, **attrs: str) -> Selection:
    filters = Filters(since, until, tuple(attrs.items()))
    return Selection(store.reader(), filters, store.family_cache, store.answers)


def within(t: int, since: int | None, until: int | None) -> bool:
    return (since is None or t >= since) and (until is None or t < until)


RANGES = {
    "inside one hour": (BASE + 5 * HOUR + 10 * MINUTE, BASE + 5 * HOUR + 40 * MINUTE),
    "one whole hour": (BASE + 5 * HOUR, BASE + 6 * HOUR),
    "across midnight": (BASE + DAY - 2 * HOUR - 10 * MINUTE, BASE + DAY + HOUR + 30 * MINUTE),
    "whole days": (BASE, BASE + 2 * DAY),
    "days, hours and minutes": (BASE + 20 * HOUR + 5 * MINUTE, BASE + 2 * DAY + 3 * HOUR + 59 * MINUTE),
    "open end": (BASE + DAY + 3 * HOUR + 5 * MINUTE, None),
    "open start": (None, BASE + DAY + 5 * MINUTE),
    "all time": (None, None),
    "empty": (BASE + HOUR, BASE + HOUR),
}


@pytest.mark.parametrize("name", RANGES)
def test_a_counter_total_for_any_range_is_the_sum_of_its_points(store, name):
    since, until = RANGES[name]
    expected = math.fsum(v for _, t, v in COSTS if within(t, since, until))
    for _ in range(2):  # the second time, from the answers kept
        assert select(store, since, until).metric_total(COST) == pytest.approx(expected, abs=1e-9)


def test_totals_grouped_and_filtered_by_family_attributes_and_by_session(store):
    since, until = RANGES["days, hours and minutes"]
    per_user: dict[tuple, float] = defaultdict(float)
    for sid, t, v in COSTS:
        if within(t, since, until):
            per_user[(SESSIONS[sid][0],)] += v
    assert select(store, since, until).metric_totals(COST, ("user.id",)) == pytest.approx(per_user)

    web = math.fsum(v for sid, t, v in COSTS if within(t, since, until) and SESSIONS[sid][1] == "web")
    assert select(store, since, until, **{"team.id": "web"}).metric_total(COST) == pytest.approx(web)
    # A session is not part of a family: its points are read raw, and give the same numbers.
    s3 = math.fsum(v for sid, t, v in COSTS if within(t, since, until) and sid == "s3")
    assert select(store, since, until, **{"session.id": "s3"}).metric_total(COST) == pytest.approx(s3)
    both = select(store, since, until, **{"team.id": "platform", "model": "claude-haiku-5"})
    assert both.metric_total(COST) == pytest.approx(s3)
    assert select(store, since, until, **{"team.id": "nobody"}).metric_totals(COST, ("user.id",)) == {}


def test_token_totals_by_type(store):
    selection = select(store, *RANGES["across midnight"])
    since, until = RANGES["across midnight"]
    for k, kind in enumerate(TOKEN_TYPES):
        expected = sum(int(v * 400) * (k + 1) for _, t, v in COSTS if within(t, since, until))
        assert selection.metric_total(TOKENS, type=kind) == expected


@pytest.mark.parametrize("bucket", [HOUR, 3 * HOUR, DAY])
@pytest.mark.parametrize("by", [("model",), ("team.id",)])
def test_a_timeline_puts_each_point_in_its_bucket(store, bucket, by):
    since, until = BASE + 2 * HOUR + 30 * MINUTE, BASE + 3 * DAY
    expected: dict[tuple, float] = defaultdict(float)
    for sid, t, v in COSTS:
        if within(t, since, until):
            _, team, model = SESSIONS[sid]
            expected[(t - t % bucket, model if by == ("model",) else team)] += v
    assert select(store, since, until).metric_timeline(COST, by, bucket) == pytest.approx(expected)


def test_a_chart_under_a_session_filter_is_read_from_its_points(store):
    since, until = BASE + 2 * HOUR + 30 * MINUTE, BASE + 3 * DAY
    expected: dict[tuple, float] = defaultdict(float)
    for sid, t, v in COSTS:
        if sid == "s2" and within(t, since, until):
            expected[(t - t % HOUR, SESSIONS[sid][2])] += v
    selection = select(store, since, until, **{"session.id": "s2"})
    assert selection.metric_timeline(COST, ("model",), HOUR) == pytest.approx(expected)
    assert selection.metric_timeline(COST, ("team.id",), HOUR) == pytest.approx(
        {(bucket, "web"): v for (bucket, _), v in expected.items()}
    )


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@pytest.mark.parametrize("name", ["inside one hour", "across midnight", "whole days", "all time"])
def test_event_counts_means_and_percentiles(store, name):
    since, until = RANGES[name]
    selection = select(store, since, until)
    durations = [d for _, t, d in REQUESTS if within(t, since, until)]
    assert selection.event_counts("api_request") == ({(): len(durations)} if durations else {})
    stats = selection.event_stats("api_request", "duration_ms").get(())
    assert stats is not None and stats.count == len(durations)
    assert stats.mean == pytest.approx(sum(durations) / len(durations))
    assert (stats.p50, stats.p95, stats.sampled) == (
        nearest_rank(durations, 0.5),
        nearest_rank(durations, 0.95),
        False,
    )
    lengths = [n for _, t, n in PROMPTS if within(t, since, until)]
    prompt = selection.event_stats("user_prompt", "prompt_length").get(())
    assert (prompt.mean if prompt else None) == (
        pytest.approx(sum(lengths) / len(lengths)) if lengths else None
    )


def test_event_counts_by_attribute_and_under_filters(store):
    since, until = RANGES["whole days"]
    per_model: dict[tuple, int] = defaultdict(int)
    for sid, t, _ in REQUESTS:
        if within(t, since, until):
            per_model[(SESSIONS[sid][2],)] += 1
    assert select(store, since, until).event_counts("api_request", ("model",)) == per_model
    s2 = [d for sid, t, d in REQUESTS if sid == "s2" and within(t, since, until)]
    for attrs in ({"session.id": "s2"}, {"team.id": "web"}, {"user.id": "u2"}):
        selection = select(store, since, until, **attrs)
        assert selection.event_counts("api_request") == {(): len(s2)}
        stats = selection.event_stats("api_request", "duration_ms", ("model",))
        assert stats[("claude-sonnet-5",)].p95 == nearest_rank(s2, 0.95)
    assert select(store, **{"status_code": "529"}).event_counts("api_error", ("user.id",)) == {
        ("u1",): 2,
        ("u2",): 1,
    }


def test_the_latest_sessions_with_their_totals_in_the_range(store):
    since, until = RANGES["whole days"]
    selection = select(store, since, until)
    sessions = selection.sessions(limit=2)
    last = {sid: max(t for s, t, _ in COSTS if s == sid and within(t, since, until)) for sid in SESSIONS}
    latest = sorted(last, key=lambda sid: -last[sid])[:2]
    assert [s["session_id"] for s in sessions] == latest
    for session in sessions:
        sid = session["session_id"]
        mine = [(t, v) for s, t, v in COSTS if s == sid and within(t, since, until)]
        assert session["cost_usd"] == pytest.approx(math.fsum(v for _, v in mine))
        assert session["end_ns"] == max(t for t, _ in mine)
        assert session["start_ns"] == min(t for t, _ in mine) - MINUTE
        assert session["user_id"] == SESSIONS[sid][0] and session["models"] == [SESSIONS[sid][2]]
        assert session["prompts"] == sum(1 for s, t, _ in PROMPTS if s == sid and within(t, since, until))
    assert selection.session_count() == 3
    assert select(store, since, until, **{"team.id": "web"}).session_count() == 1
    assert [s["session_id"] for s in select(store, **{"user.id": "u1"}).sessions()] == sorted(
        ["s1", "s3"], key=lambda sid: -max(t for s, t, _ in COSTS if s == sid)
    )


def test_what_there_is_to_filter_on(store):
    conn = store.reader()
    options = filter_options(conn)
    assert options["users"] == [
        {"id": "u1", "email": "u1@example.com", "name": "u1@example.com"},
        {"id": "u2", "email": "u2@example.com", "name": "u2@example.com"},
    ]
    assert sorted(options["models"]) == sorted(model for _, _, model in SESSIONS.values())
    assert {"team.id", "user.id", "model", "type"} <= set(options["keys"])
    assert not options["truncated"]
    assert filter_options(conn, q="U2@EXAMPLE")["users"] == [
        {"id": "u2", "email": "u2@example.com", "name": "u2@example.com"}
    ]
    assert filter_options(conn, q="haiku")["models"] == ["claude-haiku-5"]
    one = filter_options(conn, limit=1)
    assert len(one["users"]) == 1 and one["users_truncated"] and one["truncated"]
    assert attribute_values(conn, "team.id") == {
        "key": "team.id",
        "values": ["platform", "web"],
        "truncated": False,
    }
    assert attribute_values(conn, "team.id", q="WE")["values"] == ["web"]
    assert attribute_values(conn, "team.id", limit=1)["truncated"]


def test_a_session_timeline_in_order_with_only_its_fields(store):
    timeline = session_timeline(store.reader(), "s2")
    times = [entry["time_ns"] for entry in timeline]
    assert times == sorted(times)
    expected = len([1 for s, *_ in REQUESTS if s == "s2"]) + len([1 for s, *_ in PROMPTS if s == "s2"]) + 1
    assert len(timeline) == expected
    first_request = next(entry for entry in timeline if entry["name"] == "api_request")
    assert set(first_request["fields"]) == {"duration_ms", "model"}
    assert session_timeline(store.reader(), "s2", limit=3) == timeline[:3]
