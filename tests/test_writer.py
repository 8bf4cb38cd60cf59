"""The writer process's hand-over: batches that wait for a commit, and what they come back with."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ccmetrics.store import Store
from ccmetrics.store.filters import Filters
from ccmetrics.store.summary import summary

from .otlp_builders import SECOND, T0, sum_request
from .test_store import COST, USER, batch_of


def test_batches_that_wait_reach_the_writer_while_it_commits_and_all_land(tmp_path: Path) -> None:
    store = Store(tmp_path / "ccmetrics.db")
    writer = store._writer
    sent = []  # per message to the writer: the batch ids in it, and those then in the commit under way
    send = writer._send_queued

    def recording_send() -> None:
        if writer._queued:
            sent.append(([batch_id for batch_id, _ in writer._queued], set(writer._committing)))
        send()

    writer._send_queued = recording_send  # type: ignore[method-assign]
    minutes = [
        sum_request(COST, [(T0 + m * 60 * SECOND, T0 + (m + 1) * 60 * SECOND, 0.25, USER)], unit="USD")
        for m in range(20)
    ]

    async def hand_over() -> list:
        first = asyncio.ensure_future(store.write(batch_of(minutes[0])))
        await asyncio.sleep(0)  # the first goes to the writer alone
        rest = [asyncio.ensure_future(store.write(batch_of(request))) for request in minutes[1:]]
        return await asyncio.wait_for(asyncio.gather(first, *rest), 60)

    try:
        results = asyncio.run(hand_over())
        assert [result.points for result in results] == [1] * 20
        assert sent[0] == ([0], set())
        # The other 19 waited while the writer had the first, and went together as soon as it began to commit
        # it: not after its answer, when the writer would have had nothing to do while they arrived.
        assert sent[1:] == [(list(range(1, 20)), {0})]
        assert summary(store.reader(), Filters.parse())["cost_usd"] == 5.0
        assert not writer._committing and not writer._pending
    finally:
        store.close()
