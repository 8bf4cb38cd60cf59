"""The writer: batches handed over while a commit is under way share the next transaction, every one is
answered once it is on disk, and closing commits what was handed over."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from ccmetrics.store import Store
from ccmetrics.store.filters import Filters
from ccmetrics.store.summary import summary

from .otlp_builders import SECOND, T0, sum_request
from .test_store import COST, USER, batch_of

HOUR_NS = 3600 * SECOND


def minutes(count: int) -> list:
    """One cost point a minute, all in the same hour."""
    return [
        sum_request(COST, [(T0 + m * 60 * SECOND, T0 + (m + 1) * 60 * SECOND, 0.25, USER)], unit="USD")
        for m in range(count)
    ]


def transactions_that_added_to(path: Path, time_ns: int) -> int:
    """Every transaction that adds to an hour bumps the hour's version once."""
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT version FROM hour_versions WHERE start_ns = ?", (time_ns - time_ns % HOUR_NS,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_batches_that_arrive_together_share_transactions_and_all_land(tmp_path: Path) -> None:
    store = Store(tmp_path / "ccmetrics.db")
    requests = minutes(40)

    async def hand_over() -> list:
        return await asyncio.wait_for(asyncio.gather(*(store.write(batch_of(r)) for r in requests)), 60)

    try:
        results = asyncio.run(hand_over())
        assert [result.points for result in results] == [1] * 40
        assert summary(store.reader(), Filters.parse())["cost_usd"] == 10.0
        hours = {(T0 + (m + 1) * 60 * SECOND) // HOUR_NS for m in range(40)}
        versions = sum(transactions_that_added_to(store.path, h * HOUR_NS) for h in hours)
        assert versions < 40  # group commit: far fewer transactions than batches
    finally:
        store.close()


def test_a_retried_batch_is_answered_and_counts_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "ccmetrics.db")
    request = minutes(1)[0]

    async def twice() -> list:
        return list(await asyncio.gather(store.write(batch_of(request)), store.write(batch_of(request))))

    try:
        first, second = asyncio.run(twice())
        assert sorted([first.points, second.points]) == [0, 1]
        assert not second.problems and not first.problems
        assert summary(store.reader(), Filters.parse())["cost_usd"] == 0.25
    finally:
        store.close()


def test_closing_commits_what_was_handed_over(tmp_path: Path) -> None:
    path = tmp_path / "ccmetrics.db"
    store = Store(path)

    async def hand_over_and_leave() -> None:
        for request in minutes(10):
            asyncio.ensure_future(store.write(batch_of(request)))
        await asyncio.sleep(0)  # handed over, not awaited

    asyncio.run(hand_over_and_leave())
    store.close()
    reopened = Store(path)
    try:
        assert summary(reopened.reader(), Filters.parse())["cost_usd"] == 2.5
    finally:
        reopened.close()
