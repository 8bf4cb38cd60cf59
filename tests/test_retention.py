"""Retention: on a real store with 120 days of a team's data, pruning leaves the raw tables holding only the
window, every summary within the rollups' window as it was, and a smaller file; a server killed with SIGKILL
while it prunes loses nothing and its rollups stay exact. Times are relative to now, so any date will do."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ccmetrics.records import Batch, Point
from ccmetrics.store import Retention, Store, open_reader, read_transaction
from ccmetrics.store.filters import Filters
from ccmetrics.store.retention import kept_since
from ccmetrics.store.schema import DAY_NS, HOUR_NS, WEEK_NS
from ccmetrics.store.summary import summary

from .conftest import ServerProcess
from .in_process import InProcessServer
from .otlp_builders import sum_request
from .team_month import generate

NOW = time.time_ns() // HOUR_NS * HOUR_NS  # the hour the module started in: ranges end on whole hours
RAW_DAYS = 30
COST = "claude_code.cost.usage"
RUNNING_TOTAL = {"user.id": "cumulative-user", "session.id": "cumulative-session", "model": "m"}


def ranges(rollups_since_ns: int = 0) -> dict[str, Filters]:
    """Ranges of whole hours (whose ends are read from the hourly sums, not from raw data), those that start
    where the rollups are kept."""
    every = {
        "all": Filters(),
        "90 days": Filters(NOW - 90 * DAY_NS, NOW),
        "last 7 days, open": Filters(NOW - 7 * DAY_NS),
        "60 to 30 days ago": Filters(NOW - 60 * DAY_NS, NOW - 30 * DAY_NS),
        "one day 100 days ago": Filters(NOW - 100 * DAY_NS, NOW - 99 * DAY_NS),
        "one team over 90 days": Filters(NOW - 90 * DAY_NS, NOW, (("team.id", "platform"),)),
        "one model over 45 days": Filters(NOW - 45 * DAY_NS, None, (("model", "claude-sonnet-5"),)),
    }
    return {
        name: f for name, f in every.items() if rollups_since_ns == 0 or (f.since_ns or 0) >= rollups_since_ns
    }


def summaries(path: Path, rollups_since_ns: int = 0) -> dict[str, Any]:
    conn = open_reader(path)
    try:
        with read_transaction(conn):
            return {name: covered(summary(conn, f), f) for name, f in ranges(rollups_since_ns).items()}
    finally:
        conn.close()


def covered(totals: dict[str, Any], filters: Filters) -> dict[str, Any]:
    """The totals the rollups cover. Under a model filter, the sessions are those that used the model (the
    session counter names none), read from the sessions the raw window keeps: not among them."""
    if any(key == "model" for key, _ in filters.attrs):
        return {k: v for k, v in totals.items() if k != "sessions"}
    return totals


def running_total(time_ns: int, total: float) -> Point:
    """A point of a cumulative cost counter: one stream (one start time), from 50 days ago on."""
    return Point(
        COST, "USD", "sum", "cumulative", True, "s", dict(RUNNING_TOTAL), NOW - 50 * DAY_NS, time_ns, total
    )


def write(path: Path, *points: Point, retention: Retention | None = None) -> list[Any]:
    async def run() -> list[Any]:
        store = Store(path, retention=retention)
        try:
            return [await store.write(Batch(points=[p])) for p in points]
        finally:
            store.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two developers over 120 days, and a running total whose stream began 50 days ago."""
    path = tmp_path_factory.mktemp("team") / "ccmetrics.db"
    asyncio.run(generate(path, developers=2, days=120, seed=5, quiet=True, now=NOW))
    write(path, running_total(NOW - 45 * DAY_NS, 10.0), running_total(NOW - 40 * DAY_NS, 25.0))
    return path


def announced(path: Path) -> bool:
    """Whether a server has begun pruning this store (see retention.Pruning)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return kept_since(conn)[0] > 0
    except sqlite3.Error:
        return False  # not migrated yet
    finally:
        conn.close()


def count(conn: sqlite3.Connection, sql: str, *params: Any) -> int:
    return int(conn.execute(sql, params).fetchone()[0])


def raw_rows(path: Path, since_ns: int) -> dict[str, int]:
    """Rows of each raw table from since_ns on (what the window must keep), and before it."""
    conn = sqlite3.connect(path)
    try:
        return {
            "points kept": count(conn, "SELECT COUNT(*) FROM points WHERE time_ns >= ?", since_ns),
            "events kept": count(conn, "SELECT COUNT(*) FROM events WHERE time_ns >= ?", since_ns),
            # a running total's latest point stays, whenever it was taken: its next increment is reckoned
            # from it
            "points before": count(
                conn, "SELECT COUNT(*) FROM points WHERE time_ns < ? AND cumulative IS NULL", since_ns
            ),
            "events before": count(conn, "SELECT COUNT(*) FROM events WHERE time_ns < ?", since_ns),
            "times of ended sessions before": count(
                conn,
                "SELECT COUNT(*) FROM session_times t JOIN sessions s USING (session_id) WHERE s.last_ns < ?",
                since_ns,
            ),
        }
    finally:
        conn.close()


def wait_until_pruned(path: Path, raw_since_ns: int, timeout: float = 120) -> None:
    """Until the raw data before the cut is gone and the freed pages have been given back."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = sqlite3.connect(path)
        try:
            done = (
                kept_since(conn)[0] >= raw_since_ns
                and conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
            )
            rows = raw_rows(path, raw_since_ns)
        finally:
            conn.close()
        if done and not (
            rows["points before"] or rows["events before"] or rows["times of ended sessions before"]
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"not pruned after {timeout} s: {raw_rows(path, raw_since_ns)}")


@pytest.mark.parametrize("rollup_days", [400, 63])
def test_pruning_keeps_the_window_and_every_total_the_rollups_cover(
    team: Path, tmp_path: Path, rollup_days: int
) -> None:
    path = tmp_path / "ccmetrics.db"
    shutil.copy(team, path)
    retention = Retention(RAW_DAYS * DAY_NS, rollup_days * DAY_NS)
    raw_cut, rollups_cut = retention.cuts(time.time_ns())
    before = summaries(path, rollups_cut)
    rows_before = raw_rows(path, raw_cut)
    size_before = path.stat().st_size
    assert rows_before["points before"] and rows_before["events before"]  # there is something to prune

    store = Store(path, retention=retention)
    try:
        wait_until_pruned(path, raw_cut)
    finally:
        store.close()

    rows_after = raw_rows(path, raw_cut)
    assert rows_after == {
        **rows_before,
        "points before": 0,
        "events before": 0,
        "times of ended sessions before": 0,
    }
    after = summaries(path, rollups_cut)
    assert after == before
    assert before["90 days" if rollup_days > 90 else "last 7 days, open"]["cost_usd"] > 0
    conn = sqlite3.connect(path)
    for table in ("rollup_hour", "rollup_day", "rollup_week", "event_rollup_hour", "hour_versions"):
        assert count(conn, f"SELECT COUNT(*) FROM {table} WHERE start_ns < ?", rollups_cut) == 0, table
    assert count(conn, "SELECT COUNT(*) FROM sessions WHERE last_ns < ?", rollups_cut) == 0
    # What sessions ended before the raw cut leave goes too: their series (but a running total's), the ids
    # of their sessions and prompts; every id a kept event names stays.
    ended_series = (
        "SELECT COUNT(*) FROM series s JOIN sessions x USING (session_id) WHERE x.last_ns < ? "
        "AND NOT EXISTS (SELECT 1 FROM points p WHERE p.series_id = s.id)"
    )
    assert count(conn, ended_series, raw_cut) == 0
    unnamed = (
        "SELECT COUNT(*) FROM strings WHERE id NOT IN (SELECT session FROM events WHERE session IS NOT NULL) "
        "AND id NOT IN (SELECT prompt FROM events WHERE prompt IS NOT NULL)"
    )
    assert count(conn, unnamed) == 0
    dangling = (
        "SELECT COUNT(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM strings WHERE id = e.session) "
        "OR (e.prompt IS NOT NULL AND NOT EXISTS (SELECT 1 FROM strings WHERE id = e.prompt))"
    )
    assert count(conn, dangling) == 0
    conn.close()
    assert path.stat().st_size < size_before * 0.7, (size_before, path.stat().st_size)

    # The running total's last point before the cut is kept: its next point counts only what it added.
    results = write(path, running_total(NOW - DAY_NS, 40.0), retention=retention)
    assert results[0].points == 1
    conn = open_reader(path)
    cost = summary(conn, Filters(attrs=(("user.id", RUNNING_TOTAL["user.id"]),)))["cost_usd"]
    conn.close()
    assert cost == (40.0 if rollup_days > 50 else 15.0)  # 10 + 15 + 15, or what the rollups still hold


def test_records_older_than_the_raw_data_kept_are_rejected(team: Path, tmp_path: Path) -> None:
    """A retry of a pruned export could not be told from new data: it is refused, and said why."""
    path = tmp_path / "ccmetrics.db"
    shutil.copy(team, path)
    retention = Retention(RAW_DAYS * DAY_NS, 400 * DAY_NS)
    store = Store(path, retention=retention)
    try:
        wait_until_pruned(path, retention.cuts(time.time_ns())[0])
    finally:
        store.close()
    before = summaries(path)["all"]["cost_usd"]
    old = Point(
        COST,
        "USD",
        "sum",
        "delta",
        True,
        "s",
        {"user.id": "late"},
        NOW - 40 * DAY_NS,
        NOW - 40 * DAY_NS + 1,
        3.0,
    )
    new = Point(
        COST,
        "USD",
        "sum",
        "delta",
        True,
        "s",
        {"user.id": "late"},
        NOW - 2 * DAY_NS,
        NOW - 2 * DAY_NS + 1,
        2.0,
    )
    old_result, new_result = write(path, old, new, retention=retention)
    assert (old_result.points, old_result.rejected) == (0, 1)
    assert "--retention" in old_result.problems[0]
    assert (new_result.points, new_result.rejected) == (1, 0)
    assert summaries(path)["all"]["cost_usd"] == pytest.approx(before + 2.0, abs=1e-9)


def test_retention_cuts_at_whole_hours_and_weeks_and_keeps_rollups_at_least_as_long() -> None:
    now = NOW + 1234
    raw, rollups = Retention(30 * DAY_NS, 400 * DAY_NS).cuts(now)
    assert (
        raw == NOW - 30 * DAY_NS
        and rollups % WEEK_NS == 0
        and now - 407 * DAY_NS < rollups <= now - 400 * DAY_NS
    )
    assert Retention(None, None).cuts(now) == (0, 0)
    assert Retention(None, 400 * DAY_NS).cuts(now) == (0, 0)  # raw data kept for ever: so are the rollups


def test_sigkill_while_pruning_loses_nothing_and_leaves_the_rollups_exact(
    team: Path, tmp_path: Path, start_server: Any
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = data_dir / "ccmetrics.db"
    shutil.copy(team, path)
    before = summaries(path)
    retention = ("--retention", f"{RAW_DAYS}d", "--rollup-retention", "400d")
    raw_cut = Retention(RAW_DAYS * DAY_NS, 400 * DAY_NS).cuts(time.time_ns())[0]

    # First killed as soon as it has announced the cut, in the middle of the run.
    server = ServerProcess(data_dir, list(retention))
    server.spawn()
    try:
        deadline = time.monotonic() + 60
        while not announced(path) and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        server.stop(signal.SIGKILL)
    assert raw_rows(path, raw_cut)["events before"], "the run was over before the kill"

    sent = 0.0
    for attempt in range(2):
        server = start_server(data_dir, *retention)
        # An export acknowledged while it prunes (or gives pages back) is on disk, whatever happens next.
        cost = 0.5 * (attempt + 1)
        window = NOW + attempt * 10 * 1_000_000_000
        request = sum_request(COST, [(window, window + 1, cost, {"user.id": "while-pruning"})], unit="USD")
        response = httpx.post(
            server.otlp_http + "/v1/metrics",
            content=request.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
            timeout=10,
        )
        assert response.status_code == 200
        sent += cost
        server.stop(signal.SIGKILL)

    server = start_server(data_dir, *retention)
    wait_until_pruned(path, raw_cut)
    after = summaries(path)
    server.stop()
    assert after["all"]["cost_usd"] == pytest.approx(before["all"]["cost_usd"] + sent, abs=1e-9)
    for name in ranges():
        if name not in ("all", "last 7 days, open"):  # those hold the exports sent meanwhile
            assert after[name] == before[name], name
    conn = open_reader(path)
    late = summary(conn, Filters(attrs=(("user.id", "while-pruning"),)))
    conn.close()
    assert late["cost_usd"] == sent


def test_running_totals_are_written_as_increments(tmp_path: Path) -> None:
    """The stream the retention test relies on: two running totals count as their last one."""
    path = tmp_path / "ccmetrics.db"
    write(path, running_total(NOW - 45 * DAY_NS, 10.0), running_total(NOW - 40 * DAY_NS, 25.0))
    assert summaries(path)["all"]["cost_usd"] == 25.0


def test_the_api_says_where_a_view_reaches_past_the_raw_data(team: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = data_dir / "ccmetrics.db"
    shutil.copy(team, path)
    retention = Retention(RAW_DAYS * DAY_NS, 400 * DAY_NS)
    raw_cut = retention.cuts(time.time_ns())[0]
    store = Store(path, retention=retention)
    try:
        wait_until_pruned(path, raw_cut)
    finally:
        store.close()
    conn = sqlite3.connect(path)
    (old,) = conn.execute("SELECT session_id FROM sessions WHERE first_ns < ? LIMIT 1", (raw_cut,)).fetchone()
    (new,) = conn.execute("SELECT session_id FROM sessions WHERE first_ns > ? LIMIT 1", (raw_cut,)).fetchone()
    conn.close()

    server = InProcessServer(data_dir)
    try:
        reaching = server.get_json("/api/dashboard", since="90d")
        within = server.get_json("/api/dashboard", since="7d")
        pruned = server.get_json(f"/api/sessions/{old}")
        whole = server.get_json(f"/api/sessions/{new}")
    finally:
        server.close()
    assert reaching["raw_since_ns"] == within["raw_since_ns"] == raw_cut
    assert reaching["start_ns"] < raw_cut <= within["start_ns"]
    assert pruned["pruned"] and pruned["raw_since_ns"] == raw_cut and pruned["timeline"] == []
    assert not whole["pruned"] and whole["timeline"]


def ccmetrics(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccmetrics", *args], capture_output=True, text=True, timeout=120
    )


def test_vacuum_makes_an_older_database_give_space_back_and_waits_for_the_server(
    team: Path, tmp_path: Path, start_server: Any
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = data_dir / "ccmetrics.db"
    shutil.copy(team, path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA auto_vacuum = NONE")  # as a database made before retention
    conn.execute("VACUUM")
    conn.close()

    server = start_server(data_dir)
    refused = ccmetrics("vacuum", "--data-dir", str(data_dir))
    assert refused.returncode == 1 and "stop it first" in refused.stderr
    server.stop()

    before = summaries(path)
    size = path.stat().st_size
    done = ccmetrics("vacuum", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental from now on
    conn.close()
    assert summaries(path) == before

    # Now pruning gives the space back.
    server = start_server(data_dir, "--retention", f"{RAW_DAYS}d")
    wait_until_pruned(path, Retention(RAW_DAYS * DAY_NS, 400 * DAY_NS).cuts(time.time_ns())[0])
    server.stop()
    assert path.stat().st_size < size * 0.7, (size, path.stat().st_size)
