"""Exactly-once storage on a real SQLite file: temporalities, resets, late points, retries, filters."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from ccmetrics.otlp.decode import Signal
from ccmetrics.otlp.normalize import to_batch
from ccmetrics.store import Store, WriteResult
from ccmetrics.store.filters import Filters, QueryError
from ccmetrics.store.schema import SCHEMA_VERSION
from ccmetrics.store.summary import summary
from ccmetrics.store.timeline import stored_events

from .old_schema import database_at, wait_until_upgraded
from .otlp_builders import CUMULATIVE, SECOND, T0, log_request, sum_request

COST = "claude_code.cost.usage"
TOKENS = "claude_code.token.usage"


def batch_of(request, store_prompts: bool = False):
    signal = Signal.METRICS if isinstance(request, ExportMetricsServiceRequest) else Signal.LOGS
    return to_batch(signal, request, store_prompts=store_prompts)


def ingest(store: Store, *requests, store_prompts: bool = False) -> None:
    async def go():
        for request in requests:
            await store.write(batch_of(request, store_prompts))

    asyncio.run(go())


def totals(store: Store, **filters) -> dict:
    return summary(store.reader(), Filters.parse(**filters))


USER = {"user.id": "u1", "session.id": "s1", "model": "claude-opus-5-5"}


def test_delta_points_add_up_and_an_identical_retry_counts_once(store):
    first = sum_request(COST, [(T0, T0 + 60 * SECOND, 0.5, USER)], unit="USD")
    second = sum_request(COST, [(T0 + 60 * SECOND, T0 + 120 * SECOND, 0.25, USER)], unit="USD")
    ingest(store, first, first, second, first, second)
    assert totals(store)["cost_usd"] == 0.75


def test_cumulative_totals_become_increments(store):
    points = [(T0, T0 + i * SECOND, v, USER) for i, v in enumerate([1.0, 1.5, 4.0], start=1)]
    ingest(store, *(sum_request(COST, [p], temporality=CUMULATIVE) for p in points))
    assert totals(store)["cost_usd"] == 4.0


def test_cumulative_reset_by_lower_value_or_new_start_time_is_not_negative(store):
    ingest(
        store,
        sum_request(COST, [(T0, T0 + 1 * SECOND, 3.0, USER)], temporality=CUMULATIVE),
        sum_request(COST, [(T0, T0 + 2 * SECOND, 5.0, USER)], temporality=CUMULATIVE),
        # The process restarted without a new start time: a lower total is a reset.
        sum_request(COST, [(T0, T0 + 3 * SECOND, 1.0, USER)], temporality=CUMULATIVE),
        sum_request(COST, [(T0, T0 + 4 * SECOND, 2.0, USER)], temporality=CUMULATIVE),
        # A new start time is a new stream, counted from zero.
        sum_request(COST, [(T0 + 10 * SECOND, T0 + 11 * SECOND, 0.5, USER)], temporality=CUMULATIVE),
    )
    assert totals(store)["cost_usd"] == 5.0 + 2.0 + 0.5


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2, 3, 1]])
def test_cumulative_points_in_any_order_give_the_same_total(store, order):
    values = [2.0, 3.0, 7.0, 7.5]
    requests = [
        sum_request(
            TOKENS,
            [(T0, T0 + (i + 1) * SECOND, values[i], {**USER, "type": "input"})],
            temporality=CUMULATIVE,
        )
        for i in range(4)
    ]
    ingest(store, *(requests[i] for i in order))
    assert totals(store)["tokens"]["input"] == 7.5
    rows = store.reader().execute("SELECT value FROM points ORDER BY time_ns").fetchall()
    assert [r[0] for r in rows] == [2.0, 1.0, 4.0, 0.5]


def test_time_range_counts_each_increment_once(store):
    ingest(
        store,
        *(
            sum_request(COST, [(T0 + i * 60 * SECOND, T0 + (i + 1) * 60 * SECOND, 1.0, USER)])
            for i in range(10)
        ),
    )
    since = "2026-09-21T14:16:40+00:00"  # T0 + 200 s, between the 3rd and 4th points
    assert totals(store)["cost_usd"] == 10
    assert totals(store, since=since)["cost_usd"] == 7
    assert totals(store, until=since)["cost_usd"] == 3


def test_filters_on_any_attribute_resource_or_point(store):
    ingest(
        store,
        sum_request(
            COST,
            [(T0, T0 + SECOND, 1.0, {**USER, "effort": "high"})],
            resource={"service.name": "claude-code", "team.id": "platform", "cost_center": "cc-1"},
        ),
        sum_request(
            COST,
            [(T0, T0 + SECOND, 2.0, {**USER, "user.id": "u2", "effort": "low"})],
            resource={"service.name": "claude-code", "team.id": "web"},
        ),
    )
    assert totals(store, filters=["team.id=platform"])["cost_usd"] == 1.0
    assert totals(store, filters=["cost_center=cc-1"])["cost_usd"] == 1.0
    assert totals(store, filters=["effort=low"])["cost_usd"] == 2.0
    assert totals(store, filters=["user.id=u2", "team.id=platform"])["cost_usd"] == 0
    assert [u["user_id"] for u in totals(store)["by_user"]] == ["u2", "u1"]


def test_bad_filters_and_times_are_clear_errors():
    with pytest.raises(QueryError, match="KEY=VALUE"):
        Filters.parse(filters=["team.id"])
    with pytest.raises(QueryError, match="7d"):
        Filters.parse(since="last tuesday")


def test_events_numbers_from_strings_prompt_text_dropped_and_unknown_events_kept(store):
    ingest(
        store,
        log_request(
            [
                (T0, "user_prompt", {"prompt_length": "28", "prompt": "secret plans", "session.id": "s1"}),
                (T0 + 1, "user_prompt", {"prompt_length": 18, "session.id": "s1"}),
                (T0 + 2, "api_request", {"model": "m", "cost_usd": "0.5", "input_tokens": "100"}),
                (T0 + 3, "brand_new_event", {"whatever": "x"}),
            ]
        ),
    )
    result = totals(store)
    assert result["prompts"] == 2 and result["avg_prompt_length"] == 23
    assert result["api_requests"] == 1 and result["cost_usd"] == 0  # cost comes from metrics only
    rows = {e.name: e.attributes for e in stored_events(store.reader())}
    first = next(e.attributes for e in stored_events(store.reader()) if e.time_ns == T0)
    assert first["prompt"] == "<REDACTED>" and first["prompt_length"] == 28
    assert rows["api_request"]["cost_usd"] == 0.5 and rows["api_request"]["input_tokens"] == 100
    assert rows["brand_new_event"]["whatever"] == "x"
    assert "secret plans" not in Path(store.path).read_bytes().decode("latin-1")


def test_a_retry_of_an_event_stored_before_keys_began_with_time_counts_once(tmp_path):
    """Events stored by schema 3 and earlier are keyed by their hash alone. An exporter's retry of one that
    arrives after the upgrade is recognised under that key; new events, and later ones, are still stored."""
    path = tmp_path / "ccmetrics.db"
    first = log_request([(T0 + i, "api_request", {**USER, "duration_ms": i}) for i in range(3)])
    store = Store(path)
    ingest(store, first)
    levels = store.reader().execute("SELECT sample FROM events ORDER BY time_ns").fetchall()
    store.close()
    with sqlite3.connect(path, isolation_level=None) as conn:  # as schema 3 left them
        conn.execute("UPDATE events SET key = substr(key, 9)")
        conn.execute("UPDATE untimed_event_keys SET until_ns = (SELECT MAX(time_ns) FROM events)")
    store = Store(path)
    try:
        later = log_request([(T0 + 10, "api_request", {**USER, "duration_ms": 10})])
        ingest(store, first, later, first, later)
        assert totals(store)["api_requests"] == 4
        rows = store.reader().execute("SELECT length(key), sample FROM events ORDER BY time_ns").fetchall()
        assert [length for length, _ in rows] == [16, 16, 16, 24]
        assert [(sample,) for _, sample in rows[:3]] == levels  # the same record keeps its sampling level
    finally:
        store.close()


@pytest.mark.parametrize("store_prompts", [False, True])
def test_conversation_text_kept_only_when_asked(store, store_prompts):
    ingest(
        store,
        log_request(
            [
                (T0, "user_prompt", {"prompt_text": "keep me"}),
                (T0 + 1, "assistant_response", {"response": "a reply"}),
            ]
        ),
        store_prompts=store_prompts,
    )
    rows = {e.name: e.attributes for e in stored_events(store.reader())}
    assert rows["user_prompt"]["prompt_text"] == ("keep me" if store_prompts else "<REDACTED>")
    assert rows["user_prompt"]["prompt_length"] == 7
    assert rows["assistant_response"]["response"] == ("a reply" if store_prompts else "<REDACTED>")
    assert rows["assistant_response"]["response_length"] == 7


def test_gauges_histograms_and_unknown_metrics_are_kept(store):
    request = sum_request("claude_code.future.metric", [(T0, T0 + SECOND, 3, USER)])
    metrics = request.resource_metrics[0].scope_metrics[0].metrics
    gauge = metrics.add(name="some.gauge", unit="1")
    gauge.gauge.data_points.add(time_unix_nano=T0, as_double=0.75)
    histogram = metrics.add(name="some.histogram", unit="ms")
    histogram.histogram.aggregation_temporality = CUMULATIVE
    histogram.histogram.data_points.add(
        time_unix_nano=T0, count=3, sum=12.5, explicit_bounds=[10], bucket_counts=[2, 1]
    )
    ingest(store, request)
    rows = (
        store.reader()
        .execute(
            "SELECT s.metric, s.kind, p.value, p.extra FROM points p JOIN series s ON s.id = p.series_id "
            "ORDER BY 1"
        )
        .fetchall()
    )
    assert rows == [
        ("claude_code.future.metric", "sum", 3.0, None),
        ("some.gauge", "gauge", 0.75, None),
        ("some.histogram", "histogram", 12.5, '{"count":3,"bounds":[10.0],"buckets":[2,1]}'),
    ]


def test_data_survives_reopening_and_schema_is_versioned(tmp_path):
    path = tmp_path / "ccmetrics.db"
    store = Store(path)
    ingest(store, sum_request(COST, [(T0, T0 + SECOND, 1.25, USER)]))
    store.close()
    store = Store(path)
    try:
        assert totals(store)["cost_usd"] == 1.25
        assert store.reader().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.reader().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer than this ccmetrics"):
        Store(path)


def test_any_time_range_is_exact_across_rollup_hours_and_raw_edges(store):
    """Whole days and hours come from rollups, partial hours from raw points: every range adds up exactly."""
    import random

    rng = random.Random(3)
    points = []
    for i in range(400):
        end = T0 + rng.randint(0, 3 * 86400) * SECOND
        points.append((end - SECOND, end, float(rng.randint(1, 100)), {**USER, "session.id": f"s{i % 7}"}))
    ingest(store, *(sum_request(COST, [p]) for p in points))
    cumulative = [
        (T0, T0 + (i + 1) * 900 * SECOND, float(10 * (i + 1)), {**USER, "type": "input"}) for i in range(30)
    ]
    rng.shuffle(cumulative)  # late points: the increments after them are corrected, in the rollup too
    ingest(store, *(sum_request(TOKENS, [p], temporality=CUMULATIVE) for p in cumulative))
    for _ in range(40):
        lo = T0 + rng.randint(-3600, 3 * 86400) * SECOND + rng.randint(0, SECOND)
        hi = lo + rng.randint(0, 2 * 86400) * SECOND
        since, until = _iso(lo), _iso(hi)
        lo, hi = Filters.parse(since=since).since_ns, Filters.parse(until=until).until_ns
        expected = sum(v for _, end, v, _ in points if lo <= end < hi)
        result = totals(store, since=since, until=until)
        assert result["cost_usd"] == pytest.approx(expected), (since, until)
        in_range = sorted(end for _, end, _, _ in cumulative if lo <= end < hi)
        tokens = sum(10.0 for _ in in_range)  # each cumulative step adds 10
        assert result["tokens"]["input"] == pytest.approx(tokens), (since, until)
        one = totals(store, since=since, until=until, filters=["session.id=s3"])["cost_usd"]
        assert one == pytest.approx(
            sum(v for _, end, v, a in points if lo <= end < hi and a["session.id"] == "s3")
        )


def _iso(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


class ClockedStore:
    """A store written by a committer told what time it is, and read as the API reads it."""

    def __init__(self, tmp_path: Path, closed_until: int) -> None:
        from ccmetrics.store.committer import Committer

        path = tmp_path / "ccmetrics.db"
        Store(path).close()
        with sqlite3.connect(path, isolation_level=None) as conn:
            conn.execute("UPDATE closed_days SET until_ns = ?", (closed_until,))
        self.committer = Committer(path)
        self.reader = sqlite3.connect(path)

    def commit(self, now_ns: int, *requests) -> None:
        outcomes = self.committer.commit([batch_of(request) for request in requests], now_ns)
        assert all(isinstance(outcome, WriteResult) for outcome in outcomes)

    def cost(self, since: int, until: int) -> tuple[float, int]:
        answer = summary(self.reader, Filters.parse(since=_iso(since), until=_iso(until)))
        return answer["cost_usd"], answer["api_requests"]

    def sums(self, table: str, tier: str) -> list:
        """``(start, value or count)`` of a tier's metric (``rollup``) or event (``event_rollup``) sums."""
        column = "value" if table == "rollup" else "count"
        return self.reader.execute(f"SELECT start_ns, {column} FROM {table}_{tier} ORDER BY 1").fetchall()

    def close(self) -> None:
        self.committer.close()
        self.reader.close()


def test_a_day_gets_its_daily_sums_once_it_has_ended_and_every_range_stays_exact(tmp_path):
    """Daily sums are written when a day ends, from its hours; until then the day is read by the hour. Late
    data for a day that has ended adds to both. Answers are the same before and after the day is closed."""
    from ccmetrics.store.schema import DAY_NS, HOUR_NS

    day = T0 // DAY_NS * DAY_NS + DAY_NS
    store = ClockedStore(tmp_path, closed_until=day)  # as if `day` were today
    commit, cost = store.commit, store.cost

    def daily(table: str) -> list:
        return store.sums(table, "day")

    hours = [1, 5, 23, 24 + 2]  # three in the day, one in the next
    commit(
        day + 12 * HOUR_NS,
        sum_request(
            COST, [(day + h * HOUR_NS, day + h * HOUR_NS + SECOND, 0.5 * (h + 1), USER) for h in hours]
        ),
        log_request([(day + h * HOUR_NS + SECOND, "api_request", USER) for h in hours]),
    )
    ranges = [(day, day + DAY_NS), (day - DAY_NS, day + 2 * DAY_NS), (day + HOUR_NS, day + 2 * DAY_NS)]
    before = [cost(lo, hi) for lo, hi in ranges]
    assert before[0] == (0.5 * (2 + 6 + 24), 3) and before[1] == (0.5 * (2 + 6 + 24 + 27), 4)
    assert daily("rollup") == [] and daily("event_rollup") == []  # the day has not ended

    commit(day + DAY_NS + 3 * HOUR_NS)  # the next day: `day` is closed, from its hours
    assert daily("rollup") == [(day, 16.0)] and daily("event_rollup") == [(day, 3)]
    assert store.reader.execute("SELECT until_ns FROM closed_days").fetchone() == (day + DAY_NS,)
    assert [cost(lo, hi) for lo, hi in ranges] == before

    commit(
        day + DAY_NS + 4 * HOUR_NS,  # late data for the closed day, and more for the open one
        sum_request(
            COST,
            [
                (day + 7 * HOUR_NS, day + 7 * HOUR_NS + SECOND, 4.0, USER),
                (day + DAY_NS + 3 * HOUR_NS, day + DAY_NS + 3 * HOUR_NS + SECOND, 8.0, USER),
            ],
        ),
        log_request([(day + 7 * HOUR_NS + SECOND, "api_request", USER)]),
    )
    assert daily("rollup") == [(day, 20.0)] and daily("event_rollup") == [(day, 4)]
    assert cost(day, day + DAY_NS) == (20.0, 4)
    assert cost(day - DAY_NS, day + 2 * DAY_NS) == (20.0 + 13.5 + 8.0, 5)
    store.close()


def test_a_week_gets_its_weekly_sums_once_its_days_have_ended_and_every_range_stays_exact(tmp_path):
    """Weekly sums are written when a week's last day ends, from its days; late data for a week that has ended
    adds to them. Answers are the same whichever of hours, days and weeks they are read from."""
    from ccmetrics.store.schema import DAY_NS, HOUR_NS, WEEK_NS

    week = T0 // WEEK_NS * WEEK_NS + WEEK_NS
    store = ClockedStore(tmp_path, closed_until=week)  # as if the week began today
    commit, cost = store.commit, store.cost

    def weekly(table: str) -> list:
        return store.sums(table, "week")

    hours = [1, 3 * 24 + 5, 6 * 24 + 23, 7 * 24 + 2]  # on the week's first, fourth and last days; the next
    for h in hours:  # each day as it comes: the days before it end, and get their daily sums
        commit(
            week + h * HOUR_NS,
            sum_request(COST, [(week + h * HOUR_NS, week + h * HOUR_NS + SECOND, 0.5 * (h + 1), USER)]),
            log_request([(week + h * HOUR_NS + SECOND, "api_request", USER)]),
        )
    assert weekly("rollup") == [(week, 0.5 * (2 + 78 + 168))] and weekly("event_rollup") == [(week, 3)]
    ranges = [
        (week, week + WEEK_NS),
        (week - DAY_NS, week + WEEK_NS + DAY_NS),
        (week + 2 * HOUR_NS, week + WEEK_NS + 2 * DAY_NS),
    ]
    expected = [(0.5 * (2 + 78 + 168), 3), (0.5 * (2 + 78 + 168 + 171), 4), (0.5 * (78 + 168 + 171), 3)]
    assert [cost(lo, hi) for lo, hi in ranges] == expected

    commit(  # late data for a day of the ended week
        week + WEEK_NS + 4 * HOUR_NS,
        sum_request(COST, [(week + 2 * DAY_NS, week + 2 * DAY_NS + SECOND, 4.0, USER)]),
        log_request([(week + 2 * DAY_NS + SECOND, "api_request", USER)]),
    )
    assert weekly("rollup") == [(week, 0.5 * (2 + 78 + 168) + 4.0)] and weekly("event_rollup") == [(week, 4)]
    assert [cost(lo, hi) for lo, hi in ranges] == [(c + 4.0, n + 1) for c, n in expected]
    store.close()


def test_an_export_that_repeats_some_points_adds_only_the_new_ones(store):
    hour = 3600 * SECOND
    p1, p2, p3 = ((T0 + i * hour, T0 + i * hour + SECOND, float(i + 1), USER) for i in range(3))
    ingest(store, sum_request(COST, [p1, p2]), sum_request(COST, [p2, p3]), sum_request(COST, [p3, p1, p2]))
    assert totals(store)["cost_usd"] == 6.0  # rollups (whole range)
    assert totals(store, filters=["session.id=s1"])["cost_usd"] == 6.0  # raw points
    (events,) = store.reader().execute("SELECT COUNT(*) FROM points").fetchone()
    assert events == 3


def test_answers_from_rollups_are_reused_only_while_their_hours_are_unchanged(store):
    """A month of history is read once; a late export into one of its hours makes it read again."""
    hour, day = 3600 * SECOND, 86400 * SECOND
    usage = [(T0 + d * day + hour, T0 + d * day + hour + SECOND, float(d + 1), USER) for d in range(5)]
    ingest(
        store,
        *(sum_request(COST, [p]) for p in usage),
        log_request([(T0 + hour, "api_request", {**USER, "duration_ms": 100})]),
    )
    since, until = _iso(T0 - day), _iso(T0 + 6 * day)
    statements: list[str] = []
    conn = store.reader()
    conn.set_trace_callback(statements.append)

    def ask(**filters) -> dict:
        statements.clear()
        return summary(
            conn, Filters.parse(since=since, until=until, **filters), store.family_cache, store.answers
        )

    def rollups_read() -> int:
        return sum("FROM rollup_" in s or "FROM event_rollup_" in s for s in statements)

    try:
        first = ask()
        assert (first["cost_usd"], first["api_requests"]) == (15.0, 1)
        assert rollups_read() > 0
        again = ask()
        assert again == first and rollups_read() == 0  # nothing changed: nothing read again
        # A late export lands in the third day's hour, long after it was read.
        ingest(
            store,
            sum_request(COST, [(T0 + 2 * day + hour, T0 + 2 * day + hour + 2 * SECOND, 0.5, USER)]),
            log_request([(T0 + 2 * day + hour, "api_request", {**USER, "duration_ms": 300})]),
        )
        late = ask()
        assert (late["cost_usd"], late["api_requests"]) == (15.5, 2)
        assert rollups_read() > 0
        assert ask(filters=["model=claude-opus-5-5"])["cost_usd"] == 15.5  # other filters, other answers
    finally:
        conn.set_trace_callback(None)


def test_a_version_1_database_is_migrated_with_its_numbers_intact(tmp_path):
    """A database written by the first schema (rollups keyed by family first, points by series) opens and
    answers the same: totals, a session's own totals, and the sessions list."""
    from ccmetrics.store.selection import Selection

    current = tmp_path / "current.db"
    store = Store(current)
    hour = 3600 * SECOND
    other = {**USER, "session.id": "s2"}
    ingest(
        store,
        *(
            sum_request(
                COST, [(T0 + i * hour, T0 + i * hour + SECOND, 0.25 * (i + 1), other if i % 3 else USER)]
            )
            for i in range(30)
        ),
        log_request([(T0 + i * hour, "api_request", {**USER, "duration_ms": 10 * i}) for i in range(30)]),
    )
    expected = totals(store, since=_iso(T0 + 2 * hour + 5), until=_iso(T0 + 27 * hour))
    expected_session = totals(store, filters=["session.id=s2"])
    expected_sessions = Selection(store.reader(), Filters()).sessions()
    store.close()

    old = tmp_path / "old" / "ccmetrics.db"
    database_at(1, current, old)
    store = Store(old)
    try:
        wait_until_upgraded(old)
        assert store.reader().execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert totals(store, since=_iso(T0 + 2 * hour + 5), until=_iso(T0 + 27 * hour)) == expected
        assert expected["cost_usd"] == sum(0.25 * (i + 1) for i in range(2, 27))
        assert totals(store, filters=["session.id=s2"]) == expected_session
        assert expected_session["cost_usd"] == sum(0.25 * (i + 1) for i in range(30) if i % 3)
        assert Selection(store.reader(), Filters()).sessions() == expected_sessions
        assert [s["session_id"] for s in expected_sessions] == ["s2", "s1"]
        (key,) = (
            store.reader()
            .execute("SELECT group_concat(name) FROM pragma_index_info('sqlite_autoindex_rollup_hour_1')")
            .fetchone()
        )
        assert key == "start_ns,family_id"
    finally:
        store.close()
