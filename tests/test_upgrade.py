"""Upgrading a database written by schema 5 (events whole on their rows) to schema 6 (each fact stored once):
a team's generated weeks, migrated in place, answer the same, every panel and the summary; a real server
killed with SIGKILL in the middle of moving the events finishes the move when it starts again, and takes
exports all along. Real SQLite files, a real server process."""

from __future__ import annotations

import asyncio
import math
import signal
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from ccmetrics.panels import PANELS, PanelRequest
from ccmetrics.store import Store, open_reader
from ccmetrics.store.caches import AnswerCache, FamilyCache
from ccmetrics.store.filters import Filters
from ccmetrics.store.selection import Selection
from ccmetrics.store.summary import summary
from ccmetrics.store.transactions import read_transaction
from ccmetrics.store.upgrade import pending_events

from .conftest import ServerProcess
from .old_schema import database_at, wait_until_upgraded
from .otlp_builders import sum_request
from .team_month import generate
from .test_store import COST

# (since, until, filters): ranges relative to the data's end, and filters on families and on raw events.
VIEWS = [
    ("30d", None, []),
    ("7d", None, []),
    ("26h", "2h", []),
    ("9d", "3d", ["team.id=web"]),
    ("30d", None, ["user.email=dev001@example.com"]),
    ("30d", None, ["model=claude-haiku-5"]),
    ("8d", None, ["tool_name=Edit"]),
]


def answers(path: Path, now: datetime) -> list[dict[str, Any]]:
    """Every panel's data and the summary, for each view, read afresh (no cache kept from before)."""
    conn = open_reader(path)
    try:
        out = []
        for since, until, filters in VIEWS:
            with read_transaction(conn):
                chosen = Filters.parse(since, until or now.isoformat(), filters, now=now)
                selection = Selection(conn, chosen, FamilyCache(), AnswerCache())
                view = PanelRequest(selection, chosen.since_ns or 0, chosen.until_ns or 0, "team.id")
                panels = {panel.id: panel.data(view) for panel in PANELS}
                out.append({"panels": panels, "summary": summary(conn, chosen)})
        return out
    finally:
        conn.close()


def differences(before: Any, after: Any, where: str = "") -> list[str]:
    """Where two answers differ. Floats may differ in their last bits, as sums of the same numbers added in
    another order (a week's from its days rather than from each late hour) do: rounding both to a number of
    digits would still split a pair that straddles a rounding boundary, so they are compared relatively."""
    if isinstance(before, float) or isinstance(after, float):
        same = isinstance(before, int | float) and isinstance(after, int | float)
        return (
            []
            if same and math.isclose(before, after, rel_tol=1e-9, abs_tol=1e-12)
            else [f"{where}: {before!r} != {after!r}"]
        )
    if isinstance(before, dict) and isinstance(after, dict):
        if before.keys() != after.keys():
            return [f"{where}: keys {sorted(before)} != {sorted(after)}"]
        return [d for key in before for d in differences(before[key], after[key], f"{where}/{key}")]
    if isinstance(before, list | tuple) and isinstance(after, list | tuple) and len(before) == len(after):
        return [
            d
            for i, pair in enumerate(zip(before, after, strict=True))
            for d in differences(*pair, f"{where}[{i}]")
        ]
    return [] if before == after else [f"{where}: {before!r} != {after!r}"]


def team(tmp_path: Path, developers: int, days: int) -> tuple[Path, datetime]:
    """A database at the current schema holding a team's generated weeks, and when they end."""
    path = tmp_path / "current" / "ccmetrics.db"
    path.parent.mkdir()
    now_ns = time.time_ns()
    asyncio.run(generate(path, developers, days, seed=11, quiet=True, now=now_ns))
    return path, datetime.fromtimestamp(now_ns / 1e9, UTC)


def test_a_schema_5_database_answers_the_same_after_the_upgrade(tmp_path):
    current, now = team(tmp_path, developers=4, days=10)
    expected = answers(current, now)
    assert expected[0]["summary"]["api_requests"] > 1000  # a real amount of data, in every view

    old = tmp_path / "old" / "ccmetrics.db"
    database_at(5, current, old)
    conn = sqlite3.connect(old)
    (events_before,) = conn.execute("SELECT COUNT(*) FROM events").fetchone()
    conn.close()
    store = Store(old)  # migrates, and its writer moves the events
    try:
        wait_until_upgraded(old)
    finally:
        store.close()
    conn = sqlite3.connect(old)
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (events_before,)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'events_before_6'").fetchall() == []
    conn.close()
    assert differences(expected, answers(old, now)) == []


def _export(server: ServerProcess, session_id: str, cost: float) -> httpx.Response:
    now = time.time_ns()
    request = sum_request(COST, [(now - 10**9, now, cost, {"session.id": session_id})], unit="USD")
    headers = {"Content-Type": "application/x-protobuf"}
    return httpx.post(f"{server.otlp_http}/v1/metrics", content=request.SerializeToString(), headers=headers)


def test_an_upgrade_killed_midway_finishes_on_restart_and_ingest_goes_on(tmp_path):
    current, now = team(tmp_path, developers=10, days=10)
    expected = answers(current, now)
    data = tmp_path / "data"
    old = data / "ccmetrics.db"
    database_at(5, current, old)
    conn = sqlite3.connect(old)
    (events_before,) = conn.execute("SELECT COUNT(*) FROM events").fetchone()
    conn.close()

    server = ServerProcess(data).start(timeout=60)
    assert f"{events_before} events move to the new layout" in server.log_path.read_text()
    assert _export(server, "during-upgrade", 0.5).status_code == 200  # taken while the events move
    answer = httpx.get(f"{server.url}/api/summary", timeout=30)
    reader = sqlite3.connect(f"file:{old}?mode=ro", uri=True)
    left = pending_events(reader)
    assert 0 < left < events_before, "the upgrade should still be under way"
    assert answer.status_code == 503 and answer.json()["upgrading"] is True
    while pending_events(reader) > left // 2:
        time.sleep(0.005)
    server.stop(signal.SIGKILL)
    left = pending_events(reader)
    assert 0 < left < events_before, "killed in the middle of the move"
    reader.close()

    server = ServerProcess(data).start(timeout=60)
    try:
        assert _export(server, "during-upgrade", 0.25).status_code == 200
        wait_until_upgraded(old)
        assert server.summary(filter="session.id=during-upgrade")["cost_usd"] == 0.75
    finally:
        server.stop()
    conn = sqlite3.connect(old)
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (events_before,)
    conn.close()
    assert (
        differences(expected, answers(old, now)) == []
    )  # the exports came after the data's end: outside every view
