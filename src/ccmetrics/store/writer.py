"""The only code that writes to the database: one thread, committing what has arrived in one transaction.

A caller hands a batch over and awaits it; the answer comes only once the transaction that holds the batch
is committed (and fsynced), so an acknowledgement always means "on disk". Batches that arrive while a commit
is under way share the next transaction (group commit), which keeps throughput high without weakening that
promise. SQLite lets go of the interpreter lock while it works and while it waits for the disk, so the event
loop goes on receiving meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..records import Batch
from .committer import Committer, StoreUnavailable, WriteResult, connect
from .retention import Retention

__all__ = ["StoreUnavailable", "WriteResult", "Writer", "connect"]

log = logging.getLogger("ccmetrics")

MAX_GROUP = 256  # batches per transaction
MAX_IN_FLIGHT = 4096  # batches handed over and not yet committed; past this the client is asked to retry
UPKEEP_CHECK_S = 1.0  # an idle writer asks this often whether there is forgetting or pruning to do
RESTART_LOG_PAGES = 4096  # a write-ahead log longer than this (16 MiB) is started over


@dataclass(frozen=True, slots=True)
class _Job:
    batch: Batch
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[WriteResult]


class Writer:
    """``await write(batch)`` returns once the batch is committed; ``close()`` commits what is left."""

    def __init__(
        self,
        path: Path,
        new_series_per_minute: int | None = None,
        retention: Retention | None = None,
        forgotten: Callable[[], None] = lambda: None,
    ) -> None:
        """``forgotten`` is called, on the writer's thread, once a request to forget is carried out."""
        self._committer = Committer(path, new_series_per_minute, retention)
        self._forgotten = forgotten
        self._checkpointer = Checkpointer(path)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._in_flight = 0  # changed on the event loop only
        self._moving = self._committer.upgrade.left()  # events of an older database (see upgrade.py)
        if self._moving:
            log.info("upgrading the database: %s events move to the new layout as data arrives", self._moving)
        self._thread = threading.Thread(target=self._run, name="ccmetrics-writer", daemon=True)
        self._thread.start()
        self._checkpointer.start()

    async def write(self, batch: Batch) -> WriteResult:
        if self._in_flight >= MAX_IN_FLIGHT:
            raise StoreUnavailable("the store is busy; retry shortly")
        if not self._thread.is_alive():
            raise StoreUnavailable("the writer has stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult] = loop.create_future()
        self._in_flight += 1
        try:
            self._jobs.put(_Job(batch, loop, future))
            return await asyncio.shield(future)  # a client that goes away does not take its batch back
        finally:
            self._in_flight -= 1

    def close(self) -> None:
        """Commit what has been handed over, and stop."""
        self._jobs.put(None)
        self._thread.join()
        self._checkpointer.stop()
        self._committer.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            if self._upkeep_pending() and self._jobs.empty():
                self._upkeep_step()  # between commits, when nothing waits (see upgrade.py, retention.py)
                continue
            try:
                group = [self._jobs.get(timeout=min(UPKEEP_CHECK_S, self._committer.pruning.wait_s()))]
            except queue.Empty:
                continue  # time to ask whether there is forgetting or pruning to do
            while len(group) < MAX_GROUP and group[-1] is not None:
                try:
                    group.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            stopping = group[-1] is None
            jobs = [job for job in group if job is not None]
            if not jobs:
                continue
            try:
                outcomes = self._committer.commit([job.batch for job in jobs])
            except Exception as exc:  # a bug, not bad data: every batch of the group is answered with it
                log.exception("the writer could not commit")
                outcomes = [exc] * len(jobs)
            for job, outcome in zip(jobs, outcomes, strict=True):
                try:
                    job.loop.call_soon_threadsafe(_settle, job.future, outcome)
                except RuntimeError:
                    pass  # its event loop has closed: nobody waits for the answer (the batch is stored)
            if self._upkeep_pending():
                self._upkeep_step()  # under a steady stream too, one step after each commit
            if self._checkpointer.log_pages > RESTART_LOG_PAGES:
                self._checkpointer.log_pages = 0
                self._committer.restart_log()
            self._checkpointer.wake()

    def _upkeep_pending(self) -> bool:
        """Whether the events of an older database are still to be moved or, once they are, old data is to be
        pruned."""
        committer = self._committer
        return committer.upgrade.pending or committer.forgetting.pending() or committer.pruning.pending()

    def _upkeep_step(self) -> None:
        committer = self._committer
        upgrading = committer.upgrade.pending
        forgetting = not upgrading and committer.forgetting.pending()
        what = "upgrade the database's events" if upgrading else "forget" if forgetting else "prune"
        done = committer.forgetting.forgotten
        try:
            if upgrading:
                committer.upgrade.step()
            elif forgetting:
                committer.forget_step()
            else:
                committer.prune_step()
        except sqlite3.Error as exc:  # disk full, locked by someone else: a later step tries again
            log.warning("could not %s now: %s", what, exc)
            if upgrading:
                time.sleep(1)
            else:  # without holding ingest up meanwhile
                (committer.forgetting if forgetting else committer.pruning).back_off()
        else:
            if upgrading and self._moving and not committer.upgrade.pending:
                log.info("the database is upgraded: its %s events are in the new layout", self._moving)
            if committer.forgetting.forgotten != done:
                self._forgotten()
        self._checkpointer.wake()


def _settle(future: asyncio.Future[WriteResult], outcome: WriteResult | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class Checkpointer(threading.Thread):
    """Copies committed pages from the write-ahead log into the database file, beside the writer.

    SQLite would otherwise do it inside whichever commit crosses the log's size limit, making that one
    commit (and every export waiting on it) ten times slower than the others.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(name="ccmetrics-checkpoint", daemon=True)
        self.log_pages = 0  # in the log at the last checkpoint
        self._conn = connect(path)
        self._wake = threading.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self.join(timeout=30)
        self._conn.close()

    def run(self) -> None:
        while not self._stopping:
            self._wake.wait()
            self._wake.clear()
            try:
                _, self.log_pages, _ = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error:
                pass  # busy or full: the next round tries again, and commits go on either way
