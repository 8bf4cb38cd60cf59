"""The only code that writes to the database: one process of its own, committing in groups.

A caller hands a batch over and waits for its future; the future resolves only once the transaction that
holds the batch is committed (and fsynced), so an acknowledgement always means "on disk". Batches that
arrive while a commit is under way share the next transaction (group commit), which keeps throughput high
without weakening that promise.

The writer runs in a child process so that storing (SQLite, rollups, identity lookups) and receiving
(HTTP, protobuf, normalising) use both cores instead of taking turns on one interpreter lock. It exits when
the server does, even when the server is killed: its end of the pipe closes.
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue
import signal
import sqlite3
import threading
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..otlp.normalize import Batch
from .committer import Committer, StoreUnavailable, WriteResult, connect

__all__ = ["StoreUnavailable", "WriteResult", "Writer", "connect"]

MAX_GROUP = 256  # batches per transaction
MAX_IN_FLIGHT = 4096  # batches handed over and not yet committed; past this the client is asked to retry


class Writer:
    """The server's handle on the writer process: ``submit`` returns a future resolved after the commit."""

    def __init__(self, path: Path) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that runs threads and grpc
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(target=_writer_main, args=(str(path), child_end), name="ccmetrics-writer",
                                        daemon=True)  # fmt: skip
        self._process.start()
        child_end.close()
        if not self._pipe.poll(60) or self._pipe.recv() != "ready":
            raise RuntimeError("the writer process did not start")
        self._pending: dict[int, Future[WriteResult]] = {}
        self._outbox: queue.Queue[Any] = queue.Queue(maxsize=MAX_IN_FLIGHT)
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.commits = 0  # bumped after every commit that stored something; watched by live dashboards
        # Sending can block while the writer is busy: a thread of its own does it, never the event loop.
        self._threads = [threading.Thread(target=self._send, name="ccmetrics-writer-send", daemon=True),
                         threading.Thread(target=self._receive, name="ccmetrics-writer-results", daemon=True)]  # fmt: skip
        for thread in self._threads:
            thread.start()

    def submit(self, batch: Batch) -> Future[WriteResult]:
        future: Future[WriteResult] = Future()
        with self._lock:
            batch_id = next(self._ids)
            self._pending[batch_id] = future
        try:
            self._outbox.put_nowait((batch_id, batch))
        except queue.Full:
            with self._lock:
                del self._pending[batch_id]
            raise StoreUnavailable("the store is busy; retry shortly") from None
        return future

    def close(self) -> None:
        self._outbox.put(None)
        for thread in self._threads:
            thread.join()
        self._process.join(timeout=30)
        self._pipe.close()

    def _send(self) -> None:
        """Hand batches over in bundles: whatever waits in the outbox goes in one message."""
        while True:
            bundle = [self._outbox.get()]
            while bundle[-1] is not None and len(bundle) < MAX_GROUP:
                try:
                    bundle.append(self._outbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self._pipe.send(bundle)
            except (OSError, ValueError):
                return  # the writer is gone; _receive fails what is pending
            if bundle[-1] is None:
                return

    def _receive(self) -> None:
        while True:
            try:
                message = self._pipe.recv()
            except (EOFError, OSError):
                break
            if message is None:
                break
            stored = False
            with self._lock:
                futures = [(self._pending.pop(batch_id), outcome) for batch_id, outcome in message]
            for future, outcome in futures:
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    stored = stored or outcome.stored_anything
                    future.set_result(outcome)
            if stored:
                self.commits += 1
        with self._lock:
            orphans, self._pending = list(self._pending.values()), {}
        for future in orphans:
            future.set_exception(StoreUnavailable("the writer stopped"))


def _writer_main(path: str, pipe: Connection) -> None:
    """The writer process: take what has arrived (up to MAX_GROUP batches), commit it, report, repeat.

    Two threads help, so that committing is all the main thread does: one receives and unpickles the next
    batches while a commit runs (SQLite lets go of the interpreter lock while it works), and one copies the
    write-ahead log into the database file, so no commit waits for a checkpoint.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when to stop, and says so on the pipe
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    committer = Committer(Path(path))
    arrived: queue.SimpleQueue[Any] = queue.SimpleQueue()
    checkpointer = Checkpointer(Path(path))
    threading.Thread(target=_receive_batches, args=(pipe, arrived), name="ccmetrics-writer-receive",
                     daemon=True).start()  # fmt: skip
    checkpointer.start()
    pipe.send("ready")
    try:
        while True:
            group = arrived.get()
            while group and group[-1] is not None and len(group) < MAX_GROUP:
                try:
                    group += arrived.get_nowait()
                except queue.Empty:
                    break
            if not group:
                return  # the server is gone
            stop = None in group
            work = [item for item in group if item is not None]
            if work:
                outcomes = committer.commit([batch for _, batch in work])
                checkpointer.wake()
                pipe.send([(batch_id, _portable(outcome)) for (batch_id, _), outcome in zip(work, outcomes, strict=True)])
            if stop:
                pipe.send(None)
                return
    finally:
        checkpointer.stop()
        committer.close()


def _receive_batches(pipe: Connection, arrived: queue.SimpleQueue[Any]) -> None:
    while True:
        try:
            bundle = pipe.recv()
        except (EOFError, OSError):
            arrived.put([])  # the server is gone
            return
        arrived.put(bundle)
        if bundle[-1] is None:
            return


class Checkpointer(threading.Thread):
    """Copies committed pages from the write-ahead log into the database file, beside the writer.

    SQLite would otherwise do it inside whichever commit crosses the log's size limit, making that one
    commit (and every export waiting on it) ten times slower than the others.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(name="ccmetrics-checkpoint", daemon=True)
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
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass  # busy or full: the next round tries again, and commits go on either way


def _portable(outcome: WriteResult | BaseException) -> WriteResult | BaseException:
    """Exceptions cross the pipe as themselves when they can, as their message when they cannot."""
    if isinstance(outcome, BaseException) and not isinstance(outcome, StoreUnavailable):
        return RuntimeError(f"{type(outcome).__name__}: {outcome}")
    return outcome
