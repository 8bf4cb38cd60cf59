"""Each request reads one snapshot: what the writer commits while a request is being answered is not seen by
the request's later statements (Store.read runs a request's work in one read transaction)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from ccmetrics.otlp.decode import Signal
from ccmetrics.otlp.normalize import to_batch
from ccmetrics.store import read_transaction
from ccmetrics.store.filters import Filters
from ccmetrics.store.summary import summary

from .otlp_builders import SECOND, T0, log_request, sum_request

COST = "claude_code.cost.usage"
USER = {"user.id": "u1", "session.id": "s1", "model": "claude-opus-5-5"}


def cost(at: int, value: float):
    return to_batch(Signal.METRICS, sum_request(COST, [(at, at + SECOND, value, USER)]), store_prompts=False)


def request(at: int):
    return to_batch(Signal.LOGS, log_request([(at, "api_request", USER)]), store_prompts=False)


def numbers(conn: sqlite3.Connection) -> tuple[float, int]:
    """Two of a request's statements' worth: the cost (metrics) and the API requests (events)."""
    answer = summary(conn, Filters())
    return answer["cost_usd"], answer["api_requests"]


def test_a_request_on_a_reader_thread_sees_one_snapshot_while_the_writer_commits(store):
    """The work runs through Store.read, as every API request does; the writer commits between its two
    readings. Both readings agree, and the next request sees the new data."""

    async def go() -> tuple[tuple[float, int], tuple[float, int], tuple[float, int]]:
        await store.write(cost(T0, 1.0))
        await store.write(request(T0))
        first_read, written = threading.Event(), threading.Event()

        def work() -> tuple[tuple[float, int], tuple[float, int]]:
            first = numbers(store.reader())
            first_read.set()
            assert written.wait(30)
            return first, numbers(store.reader())

        answer = asyncio.ensure_future(store.read(work))
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, first_read.wait, 30)
        await store.write(cost(T0 + 60 * SECOND, 0.5))  # committed by the writer process
        await store.write(request(T0 + 60 * SECOND))
        written.set()
        first, second = await answer
        return first, second, await store.read(lambda: numbers(store.reader()))

    first, second, after = asyncio.run(go())
    assert first == second == (1.0, 1)
    assert after == (1.5, 2)


def test_without_the_transaction_a_commit_between_two_statements_is_seen_by_the_second(store):
    """The same two readings on a connection in autocommit mode: each statement reads its own snapshot, and
    one answer would mix two. In a read transaction, they read one."""

    def write(batch) -> None:
        asyncio.run(store.write(batch))

    write(cost(T0, 1.0))
    conn = store.reader()
    before = numbers(conn)
    write(cost(T0 + 60 * SECOND, 0.5))
    assert (before, numbers(conn)) == ((1.0, 0), (1.5, 0))  # autocommit: two snapshots

    with store.snapshot() as reading:
        assert reading is conn and conn.in_transaction
        first = numbers(conn)
        write(cost(T0 + 120 * SECOND, 0.25))
        write(request(T0))
        with read_transaction(conn):  # nested: part of the same one
            second = numbers(conn)
    assert first == second == (1.5, 0)
    assert not conn.in_transaction
    assert numbers(conn) == (1.75, 1)


def test_a_failed_request_ends_its_transaction(store):
    conn = store.reader()
    with pytest.raises(ValueError), store.snapshot():
        conn.execute("SELECT COUNT(*) FROM points").fetchone()
        raise ValueError("a bad filter")
    assert not conn.in_transaction


def test_doctors_status_reads_within_the_requests_transaction(store):
    """status() asks for one snapshot itself; run by Store.read, it is part of the request's."""
    from ccmetrics.store.status import status

    async def go() -> tuple[int, bool]:
        await store.write(cost(T0, 1.0))

        def work() -> tuple[int, bool]:
            answer = status(store.reader())
            return answer["session_count"], store.reader().in_transaction

        return await store.read(work)

    assert asyncio.run(go()) == (1, True)
