"""``Committer`` on a real, migrated SQLite file: identities stored once, retries stored never, running totals
turned into increments, rollups kept equal to the points, one batch's failure kept to itself, the store's own
failure reported for every batch, and the limit on new series and new kinds of event."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from ccmetrics.otlp.decode import Signal
from ccmetrics.otlp.normalize import to_batch
from ccmetrics.records import Batch, Span
from ccmetrics.store.committer import Committer, StoreUnavailable, WriteResult, connect
from ccmetrics.store.schema import DAY_NS, HOUR_NS, migrate

from .otlp_builders import CUMULATIVE, SECOND, T0, attrs, log_request, sum_request

COST = "claude_code.cost.usage"
TOKENS = "claude_code.token.usage"
MINUTE = 60 * SECOND
NOW = T0 + 2 * DAY_NS  # the committer's clock: T0's days have ended
S1 = {"user.id": "u1", "session.id": "s1", "model": "claude-opus-5-5"}
S2 = {**S1, "session.id": "s2"}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "ccmetrics.db"
    setup = connect(path)
    migrate(setup)
    setup.close()
    return path


@pytest.fixture
def committer(path: Path) -> Iterator[Committer]:
    committer = Committer(path)
    yield committer
    committer.close()


@pytest.fixture
def db(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection to the same file, to see what was committed."""
    conn = sqlite3.connect(path, isolation_level=None)
    yield conn
    conn.close()


def metrics(name: str, points: list[tuple[int, int, float, dict[str, Any]]], **options: Any) -> Batch:
    return to_batch(Signal.METRICS, sum_request(name, points, **options))


def events(records: list[tuple[int, str, dict[str, Any]]]) -> Batch:
    return to_batch(Signal.LOGS, log_request(records))


def from_source(source: str, batch: Batch) -> Batch:
    batch.source = source
    return batch


def commit(committer: Committer, *batches: Batch, now_ns: int = NOW) -> list[WriteResult]:
    """Commit the batches together; every one must have been stored."""
    outcomes = committer.commit(list(batches), now_ns)
    results = [outcome for outcome in outcomes if isinstance(outcome, WriteResult)]
    assert len(results) == len(batches), outcomes
    return results


def count(db: sqlite3.Connection, table: str) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def rollup_hours(db: sqlite3.Connection) -> dict[tuple[int, int], float]:
    return {(family, start): value for family, start, value in db.execute("SELECT * FROM rollup_hour")}


def raw_hours(db: sqlite3.Connection) -> dict[tuple[int, int], float]:
    """The sums' stored increments, added up by family and hour: what the hourly rollups must hold."""
    sums: dict[tuple[int, int], float] = defaultdict(float)
    rows = db.execute(
        "SELECT s.family_id, p.time_ns, p.value FROM points p JOIN series s ON s.id = p.series_id "
        "WHERE s.kind = 'sum'"
    )
    for family, time_ns, value in rows:
        sums[(family, time_ns - time_ns % HOUR_NS)] += value
    return dict(sums)


def values(db: sqlite3.Connection) -> list[float]:
    return [value for (value,) in db.execute("SELECT value FROM points ORDER BY time_ns")]


def orphans(db: sqlite3.Connection) -> int:
    """Points whose series is not stored: what a forgotten rollback would leave."""
    return int(
        db.execute("SELECT COUNT(*) FROM points WHERE series_id NOT IN (SELECT id FROM series)").fetchone()[0]
    )


def gauge(value: float) -> Batch:
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="claude_code.gauge")
    metric.gauge.data_points.add(time_unix_nano=T0 + MINUTE, as_double=value).attributes.extend(attrs(S1))
    return to_batch(Signal.METRICS, request)


def span(span_id: int) -> Span:
    return Span(
        trace_id="0" * 31 + "1",
        span_id=f"{span_id:016x}",
        parent_span_id="",
        name="claude_code.interaction",
        start_ns=T0,
        end_ns=T0 + SECOND,
        status_code=0,
        attrs={"session.id": "s1"},
    )


# --- identities and retries ---------------------------------------------------------------------------------


def test_a_series_is_stored_once_and_its_points_reuse_it(path: Path, db: sqlite3.Connection) -> None:
    committer = Committer(path)
    first = metrics(COST, [(T0, T0 + i * MINUTE, 0.25, S1) for i in (1, 2, 3)] + [(T0, T0 + MINUTE, 1.0, S2)])
    (result,) = commit(committer, first)
    later = metrics(COST, [(T0, T0 + 4 * MINUTE, 0.5, S1)])
    commit(committer, later, metrics(COST, [(T0, T0 + 5 * MINUTE, 0.5, S1)]))
    assert result.points == 4
    # two sessions: two series of one family (a family leaves the session out)
    assert (count(db, "series"), count(db, "families"), count(db, "points")) == (2, 1, 6)
    committer.close()

    reopened = Committer(path)  # a new process finds the series in the store
    commit(reopened, metrics(COST, [(T0, T0 + 6 * MINUTE, 0.5, S1)]))
    commit(reopened, events([(T0 + i, "api_request", S1 if i % 2 else S2) for i in range(4)]))
    reopened.close()
    assert (count(db, "series"), count(db, "families"), count(db, "points")) == (2, 1, 7)
    assert (count(db, "event_families"), count(db, "events")) == (1, 4)


def test_a_retried_batch_stores_nothing_new(committer: Committer, db: sqlite3.Connection) -> None:
    def export() -> Batch:
        batch = metrics(COST, [(T0, T0 + i * MINUTE, 0.25 * i, S1) for i in (1, 2)])
        batch.points += metrics(TOKENS, [(T0, T0 + MINUTE, 9.0, S1)], temporality=CUMULATIVE).points
        batch.events = events([(T0 + i, "api_request", {**S1, "duration_ms": i}) for i in range(3)]).events
        batch.spans = [span(1), span(2)]
        return batch

    (first,) = commit(committer, export())
    assert (first.points, first.events, first.spans) == (3, 3, 2)
    tables = ("series", "points", "events", "spans", "rollup_hour", "event_rollup_hour", "sessions")
    before = {table: count(db, table) for table in tables}
    rollups = rollup_hours(db)

    retry, again = commit(committer, export(), export())  # a retry alone, and twice in one transaction
    assert retry == again == WriteResult()
    assert not retry.stored_anything
    assert {table: count(db, table) for table in tables} == before
    assert rollup_hours(db) == rollups == raw_hours(db)


# --- running totals -----------------------------------------------------------------------------------------


def test_cumulative_totals_become_increments_late_points_are_slotted_in_and_resets_count_whole(
    committer: Committer, db: sqlite3.Connection
) -> None:
    """T0 is 800 s into its hour: points up to T0 + 46 min fall in that hour, the rest in the next."""

    def total(minutes: int, value: float, start_ns: int = T0) -> Batch:
        return metrics(TOKENS, [(start_ns, T0 + minutes * MINUTE, value, S1)], temporality=CUMULATIVE)

    hour = T0 - T0 % HOUR_NS
    commit(committer, total(1, 1.0), total(20, 3.0), total(60, 10.0))
    assert values(db) == [1.0, 2.0, 7.0]
    (family,) = db.execute("SELECT DISTINCT family_id FROM series").fetchone()
    assert rollup_hours(db) == {(family, hour): 3.0, (family, hour + HOUR_NS): 7.0}

    (late,) = commit(committer, total(40, 4.0))  # arrives late: the point after it is corrected
    assert late.points == 1
    assert values(db) == [1.0, 2.0, 1.0, 6.0]
    assert rollup_hours(db) == {(family, hour): 4.0, (family, hour + HOUR_NS): 6.0} == raw_hours(db)
    (retry,) = commit(committer, total(40, 4.0))
    assert retry.points == 0 and values(db) == [1.0, 2.0, 1.0, 6.0]

    commit(committer, total(80, 2.0))  # lower than the total before it: the counter was reset
    commit(committer, total(90, 0.5, start_ns=T0 + 85 * MINUTE))  # a new start time: a new stream
    assert values(db) == [1.0, 2.0, 1.0, 6.0, 2.0, 0.5]
    assert rollup_hours(db) == {(family, hour): 4.0, (family, hour + HOUR_NS): 8.5} == raw_hours(db)


def test_the_hourly_and_daily_rollups_equal_the_sum_of_the_raw_points(
    committer: Committer, db: sqlite3.Connection
) -> None:
    quarter_hours = range(0, 12 * 60, 15)  # twelve hours, over two days
    batches = [
        metrics(COST, [(T0, T0 + m * MINUTE + SECOND, 0.125 * (m % 7), S1 if m % 2 else S2)])
        for m in quarter_hours
    ]
    batches.append(
        metrics(
            TOKENS,
            [(T0, T0 + m * MINUTE, 4.0 * m, {**S1, "type": "input"}) for m in quarter_hours],
            temporality=CUMULATIVE,
        )
    )
    commit(committer, *batches[:10])
    commit(committer, *batches[10:], gauge(99.0))  # a gauge is not added up
    commit(committer, *batches[5:15])  # retries change nothing

    expected = raw_hours(db)
    assert len({hour for _, hour in expected}) == 12
    assert rollup_hours(db) == expected
    daily: dict[tuple[int, int], float] = defaultdict(float)
    for (family, hour), value in expected.items():
        daily[(family, hour - hour % DAY_NS)] += value
    assert len({start for _, start in daily}) == 2
    # T0's days have ended: late data for them adds to their daily sums as well
    assert {(f, start): v for f, start, v in db.execute("SELECT * FROM rollup_day")} == dict(daily)

    event_batch = events(
        [(T0 + m * MINUTE, "api_request", {**S1, "duration_ms": m}) for m in range(0, 180, 7)]
    )
    commit(committer, event_batch)
    rollup = db.execute(
        "SELECT start_ns, count, duration_ms_sum, duration_ms_count FROM event_rollup_hour ORDER BY 1"
    ).fetchall()
    raw = db.execute(
        f"SELECT time_ns - time_ns % {HOUR_NS}, COUNT(*), SUM(duration_ms), COUNT(duration_ms) FROM events "
        "GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rollup == raw and sum(row[1] for row in rollup) == len(event_batch.events)


# --- failures -----------------------------------------------------------------------------------------------


POISON_TRIGGER = (
    "CREATE TRIGGER poison BEFORE INSERT ON series WHEN NEW.metric = 'poison' "
    "BEGIN SELECT RAISE(ABORT, 'poison is refused'); END"
)


def poisoned() -> Batch:
    """A point of a new series that would be stored, then one that SQLite refuses."""
    batch = metrics(COST, [(T0, T0 + MINUTE, 2.0, {**S1, "session.id": "s9"})])
    batch.points += metrics("poison", [(T0, T0 + MINUTE, 1.0, S1)]).points
    return batch


def test_a_batch_that_fails_inside_sqlite_is_reported_and_the_others_of_its_commit_stored(
    committer: Committer, db: sqlite3.Connection
) -> None:
    db.execute(POISON_TRIGGER)
    good = [metrics(COST, [(T0, T0 + i * MINUTE, 0.5, S1)]) for i in (1, 2)]
    first, failed, last = committer.commit([good[0], poisoned(), good[1]], NOW)
    assert isinstance(first, WriteResult) and isinstance(last, WriteResult)
    assert first.points == last.points == 1
    assert isinstance(failed, sqlite3.IntegrityError) and "poison is refused" in str(failed)
    # nothing of the failed batch: not its first point, its new series, or its share of the rollups
    assert (count(db, "series"), count(db, "points")) == (1, 2)
    assert sum(rollup_hours(db).values()) == 1.0 == sum(raw_hours(db).values())

    db.execute("DROP TRIGGER poison")
    (retry,) = commit(committer, poisoned())  # the series it had created were forgotten with it
    assert retry.points == 2 and (count(db, "series"), orphans(db)) == (3, 0)
    assert rollup_hours(db) == raw_hours(db)


def test_a_batch_that_fails_gives_back_the_new_series_it_took_from_the_limit(
    path: Path, db: sqlite3.Connection
) -> None:
    committer = Committer(path, new_series_per_minute=2)
    db.execute(POISON_TRIGGER)
    two_new = metrics(COST, [(T0, T0 + MINUTE, 1.0, {**S1, "session.id": s}) for s in ("a", "b")])
    failed, stored = committer.commit([poisoned(), two_new], NOW)
    committer.close()
    assert isinstance(failed, sqlite3.IntegrityError)
    assert isinstance(stored, WriteResult) and (stored.points, stored.rejected) == (2, 0)


def test_a_failure_of_the_store_itself_fails_every_batch_and_stores_nothing(
    committer: Committer, db: sqlite3.Connection
) -> None:
    """A database whose schema cannot be read (SQLITE_CORRUPT): the transaction is lost, every batch in it
    is answered StoreUnavailable (the client retries), and once it is repaired the same batches are stored.

    (A database locked past the busy timeout takes the same path, but only after the committer's fixed
    ten-second timeout: too slow for this suite.)"""
    commit(committer, metrics(COST, [(T0, T0 + MINUTE, 1.0, S1)]))
    (index_sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'sessions_last'").fetchone()
    (version,) = db.execute("PRAGMA schema_version").fetchone()
    db.execute("PRAGMA writable_schema = ON")
    db.execute("UPDATE sqlite_master SET sql = 'CREATE INDEX sessions_last ON' WHERE name = 'sessions_last'")
    db.execute(f"PRAGMA schema_version = {version + 1}")

    def group() -> list[Batch]:
        return [
            metrics(COST, [(T0, T0 + 2 * MINUTE, 1.0, S1)]),
            metrics(COST, [(T0, T0 + 2 * MINUTE, 1.0, {**S1, "session.id": "new"})]),
            events([(T0, "api_request", S1)]),
        ]

    outcomes = committer.commit(group(), NOW)
    assert len(outcomes) == 3 and all(isinstance(outcome, StoreUnavailable) for outcome in outcomes)
    assert "malformed database schema" in str(outcomes[0])

    db.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'sessions_last'", (index_sql,))
    db.execute(f"PRAGMA schema_version = {version + 2}")
    db.execute("PRAGMA writable_schema = OFF")
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert (count(db, "series"), count(db, "points"), count(db, "events")) == (1, 1, 0)
    results = commit(committer, *group())
    assert [(r.points, r.events) for r in results] == [(1, 0), (1, 0), (0, 1)]
    assert (count(db, "series"), orphans(db)) == (2, 0)
    assert rollup_hours(db) == raw_hours(db)


# --- the limit on new series --------------------------------------------------------------------------------


def users(names: list[str], minute: int = 1) -> list[tuple[int, int, float, dict[str, Any]]]:
    return [(T0, T0 + minute * MINUTE, 1.0, {**S1, "user.id": name}) for name in names]


def test_new_series_beyond_the_limit_are_refused_per_source_and_existing_ones_never(path: Path) -> None:
    committer = Committer(path, new_series_per_minute=3)
    five = [f"u{i}" for i in range(5)]
    (first,) = commit(committer, from_source("10.0.0.1", metrics(COST, users(five))))
    assert (first.points, first.rejected) == (3, 2)
    assert first.problems == [
        "2 points of new series were rejected: this client created more than 3 new series in a minute "
        "(--new-series-per-minute)"
    ]
    # the same minute: new points of the three series it has are stored, a new series is not
    (more,) = commit(committer, from_source("10.0.0.1", metrics(COST, users([*five[:3], "u5"], minute=2))))
    assert (more.points, more.rejected) == (3, 1)
    (retry,) = commit(committer, from_source("10.0.0.1", metrics(COST, users(five))))
    assert (retry.points, retry.rejected) == (0, 2)
    (other,) = commit(committer, from_source("10.0.0.2", metrics(COST, users(five))))
    assert (other.points, other.rejected) == (2, 0)  # its own allowance: the two still missing
    (later,) = commit(
        committer, from_source("10.0.0.1", metrics(COST, users(["u5", "u6"]))), now_ns=NOW + MINUTE
    )
    assert (later.points, later.rejected) == (2, 0)  # a minute later: room again
    committer.close()


def test_new_kinds_of_event_beyond_the_limit_are_refused_and_existing_ones_never(
    path: Path, db: sqlite3.Connection
) -> None:
    committer = Committer(path, new_series_per_minute=2)
    kinds = [(T0, "api_request", {**S1, "user.id": f"e{i}"}) for i in range(4)]
    (first,) = commit(committer, from_source("10.0.0.1", events(kinds)))
    assert (first.events, first.rejected) == (2, 2)
    assert first.problems[0].startswith("2 events of new kinds were rejected")
    # new events of the two kinds stored are never refused; new series are counted apart
    again = [(T0 + SECOND, name, attrs) for _, name, attrs in kinds[:2]]
    (known, series) = commit(
        committer,
        from_source("10.0.0.1", events(again)),
        from_source("10.0.0.1", metrics(COST, users(["a", "b"]))),
    )
    assert (known.events, known.rejected) == (2, 0)
    assert (series.points, series.rejected) == (2, 0)
    assert (count(db, "event_families"), count(db, "events")) == (2, 4)
    committer.close()
