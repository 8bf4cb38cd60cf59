"""Live updates: a commit that stores something wakes every waiter at once; nothing else does.

``Store.changed`` in-process on a real SQLite file, then ``GET /api/live`` of a real ``ccmetrics serve``: a
``data`` event within a second of a commit on every open stream, none without one, at most one per quarter
second under a stream of commits, and no stream that costs the server anything while nothing happens."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ccmetrics.store import Store

from .otlp_builders import SECOND, T0, sum_request
from .test_store import COST, USER, batch_of


def cost_request(minute: int, user: dict[str, str] = USER):
    start = T0 + minute * 60 * SECOND
    return sum_request(COST, [(start, start + 60 * SECOND, 0.25, user)], unit="USD")


# --- Store.version and Store.changed ---------------------------------------------------------------------


def test_a_commit_wakes_every_waiter_and_a_retry_wakes_none(tmp_path: Path) -> None:
    store = Store(tmp_path / "ccmetrics.db")

    async def scenario() -> None:
        assert store.version == 0
        # Nothing committed: changed() gives back what was seen once the timeout is up.
        started = time.monotonic()
        assert await store.changed(0, 0.2) == 0
        assert 0.15 <= time.monotonic() - started < 1

        waiters = [asyncio.ensure_future(store.changed(0, 10)) for _ in range(50)]
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in waiters)
        started = time.monotonic()
        assert (await store.write(batch_of(cost_request(0)))).stored_anything
        assert await asyncio.wait_for(asyncio.gather(*waiters), 2) == [1] * 50
        assert time.monotonic() - started < 1

        # A version already past what the caller saw is answered at once.
        assert await asyncio.wait_for(store.changed(0, 10), 0.1) == 1

        # The same export again stores nothing: no new version, nobody woken.
        waiter = asyncio.ensure_future(store.changed(1, 10))
        assert not (await store.write(batch_of(cost_request(0)))).stored_anything
        await asyncio.sleep(0.2)
        assert not waiter.done() and store.version == 1
        await store.write(batch_of(cost_request(1)))
        assert await asyncio.wait_for(waiter, 2) == 2

    try:
        asyncio.run(scenario())
    finally:
        store.close()
