"""The only code that writes to the database: one process of its own, committing in groups.

A caller hands a batch over and awaits it; the answer comes only once the transaction that holds the batch
is committed (and fsynced), so an acknowledgement always means "on disk". Batches that arrive while a
commit is under way share the next transaction (group commit), which keeps throughput high without
weakening that promise. They are handed to the writer as one message when it begins to write its
transaction to disk, so that it receives and prepares them while it waits for the disk, and starts on them
as soon as it has answered.

The writer runs in a child process so that storing (SQLite, rollups, identity lookups) and receiving
(HTTP, protobuf, normalising) use both cores instead of taking turns on one interpreter lock. The two talk
over a socket pair that the server's event loop reads and writes itself: no thread hops on the way. The
writer exits when the server does, even when the server is killed: its end of the socket closes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import itertools
import logging
import pickle
import queue
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from ..otlp.normalize import Batch, Point
from ..recent import Recent
from .committer import Committer, Prepared, SeriesPoint, StoreUnavailable, WriteResult, connect, prepare

__all__ = ["StoreUnavailable", "WriteResult", "Writer", "connect"]

log = logging.getLogger("ccmetrics")

MAX_GROUP = 256  # batches per transaction
MAX_IN_FLIGHT = 4096  # batches handed over and not yet committed; past this the client is asked to retry
RESTART_LOG_PAGES = 4096  # a write-ahead log longer than this (16 MiB) is started over
RESTART_INTERVAL_S = 5  # a writer that died is started again at most this often
_HEADER = struct.Struct("!Q")  # each message: its length, then its pickle
_COMMITTING = "committing"  # sent as (_COMMITTING, batch ids) when their rows are in and their commit begins


def _frame(message: Any) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


def _read_frame(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError
    return pickle.loads(payload)


class KnownSeries:
    """Ids of the series the writer has stored, by series key (see ``Point.key``), so that a point of a known
    series crosses to the writer as a few numbers instead of all its attributes. Series never change once
    stored, so an id learnt from a committed write stays right."""

    def __init__(self) -> None:
        # By series key: the start of its points' wire tuples (ids, session, kind, temporality), the same for
        # every point of the series. Sized for a large team's active series.
        self._heads: Recent[Any, tuple[Any, ...]] = Recent(20_000)

    def compact(self, batch: Batch) -> tuple[Batch, list[tuple[int, Any, Point]]]:
        """The batch as sent to the writer, and (index, key, point) of the points whose ids are still to
        learn."""
        points: list[Any] = []
        unknown = []
        heads = self._heads
        for index, point in enumerate(batch.points):
            head = heads.get(point.key) if point.key is not None else None
            if head is not None:
                points.append((*head, point.start_ns, point.time_ns, point.value, point.extra))
            else:
                if point.key is not None:
                    unknown.append((index, point.key, point))
                    point = dataclasses.replace(point, key=None)  # the key is for this side only
                points.append(point)
        return dataclasses.replace(batch, points=points), unknown

    def learn(self, unknown: list[tuple[int, Any, Point]], result: WriteResult) -> None:
        if not unknown:
            return
        stored = {index: (series_id, family_id) for index, series_id, family_id in result.series}
        for index, key, point in unknown:
            if index in stored:
                self._heads[key] = SeriesPoint.head(point, *stored[index])


class Writer:
    """The server's handle on the writer process: ``await write(batch)`` returns after the commit."""

    def __init__(self, path: Path, new_series_per_minute: int | None = None) -> None:
        self._path = path
        self._new_series_per_minute = new_series_per_minute
        self._sock, self._process = self._start()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, tuple[asyncio.Future[WriteResult], list[tuple[int, Any, Point]]]] = {}
        # Handed over and not yet sent: while the writer is busy (see _writer_busy), what arrives waits here
        # and goes as one message when it begins to commit.
        self._queued: list[tuple[int, Batch]] = []
        self._committing: set[int] = set()  # sent, and in the transaction the writer is writing to disk
        self._outgoing = bytearray()  # written as fast as the socket takes it
        self._incoming = bytearray()
        self._series = KnownSeries()
        self._ids = itertools.count()
        self._gone = False
        self._next_start = 0.0
        self.commits = 0  # bumped after every commit that stored something; watched by live dashboards

    def _start(self) -> tuple[socket.socket, subprocess.Popen[bytes]]:
        ours, theirs = socket.socketpair()
        # A fresh interpreter (never a fork of a process running threads and grpc), given its end of the pair.
        code = (
            "from ccmetrics.store.writer import _writer_main; "
            f"_writer_main({str(self._path)!r}, {theirs.fileno()}, {self._new_series_per_minute!r})"
        )
        process = subprocess.Popen([sys.executable, "-c", code], pass_fds=[theirs.fileno()])
        theirs.close()
        ours.settimeout(60)
        with ours.makefile("rb") as stream:
            try:
                ready = _read_frame(stream)
            except (EOFError, OSError):
                ready = None
        if ready != "ready":
            process.kill()
            ours.close()
            raise RuntimeError("the writer process did not start")
        ours.setblocking(False)
        return ours, process

    def _restart(self) -> None:
        """A writer that died (killed, out of memory) is started again: the exports it had not committed were
        answered 503, and their exporters send them again."""
        if time.monotonic() < self._next_start:
            raise StoreUnavailable("the writer stopped; it is being started again")
        self._next_start = (
            time.monotonic() + RESTART_INTERVAL_S
        )  # a writer that cannot start is not retried hot
        log.warning("the writer process stopped (exit status %s); starting it again", self._process.poll())
        self._sock.close()
        if self._process.poll() is None:
            self._process.kill()  # its socket failed: it cannot be reached anyway
        self._process.wait()
        try:
            self._sock, self._process = self._start()
        except (RuntimeError, OSError) as exc:
            raise StoreUnavailable(f"the writer could not start again: {exc}") from None
        self._outgoing, self._incoming, self._gone = bytearray(), bytearray(), False
        self._loop = None  # watch the new socket

    async def write(self, batch: Batch) -> WriteResult:
        if self._gone:
            self._restart()
        loop = self._attach()
        if len(self._pending) >= MAX_IN_FLIGHT:
            raise StoreUnavailable("the store is busy; retry shortly")
        wire, unknown = self._series.compact(batch)
        batch_id = next(self._ids)
        future: asyncio.Future[WriteResult] = loop.create_future()
        if not self._queued and not self._writer_busy():
            loop.call_soon(self._send_queued)  # at the end of this turn of the loop, with what else it brings
        self._pending[batch_id] = (future, unknown)
        self._queued.append((batch_id, wire))
        return await future

    def close(self) -> None:
        """Hand over what is left, wait until the writer has committed it, and let it stop."""
        self._detach()
        self._sock.setblocking(True)
        try:
            self._sock.sendall(bytes(self._outgoing) + _frame([*self._queued, None]))
            self._queued, self._outgoing = [], bytearray()
            for message in self._frames():
                self._received(message)
            with self._sock.makefile("rb") as stream:
                while True:
                    message = _read_frame(stream)
                    if message is None:
                        break
                    self._received(message)
        except (EOFError, OSError):
            pass
        self._fail_pending()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._sock.close()

    # --- the event loop's side of the socket ---------------------------------------------------------

    def _attach(self) -> asyncio.AbstractEventLoop:
        """Watch the socket from the running loop (a new one, in tests that run several)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._detach()
            self._loop = loop
            loop.add_reader(self._sock, self._on_readable)
            if self._outgoing:
                loop.add_writer(self._sock, self._on_writable)
        return loop

    def _detach(self) -> None:
        """Stop watching the socket from the loop that watched it, if that loop is still open."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._sock)
            self._loop.remove_writer(self._sock)

    def _send_queued(self) -> None:
        bundle, self._queued = self._queued, []
        if bundle:
            self._outgoing += _frame(bundle)
            self._on_writable()

    def _on_writable(self) -> None:
        try:
            sent = self._sock.send(self._outgoing)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._writer_gone()
            return
        del self._outgoing[:sent]
        assert self._loop is not None
        if self._outgoing:
            self._loop.add_writer(self._sock, self._on_writable)
        else:
            self._loop.remove_writer(self._sock)

    def _on_readable(self) -> None:
        try:
            data = self._sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._writer_gone()
            return
        self._incoming += data
        for message in self._frames():
            self._received(message)

    def _frames(self) -> list[Any]:
        """Whole messages received so far; a partial one stays for the next read."""
        buffer = self._incoming
        messages, at = [], 0
        while len(buffer) - at >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, at)
            if len(buffer) - at - _HEADER.size < size:
                break
            messages.append(pickle.loads(buffer[at + _HEADER.size : at + _HEADER.size + size]))
            at += _HEADER.size + size
        del buffer[:at]
        return messages

    def _received(self, message: Any) -> None:
        if type(message) is tuple and message[0] == _COMMITTING:
            self._committing.update(message[1])
        else:
            self._resolve(message)
        if not self._writer_busy():
            self._send_queued()

    def _resolve(self, message: list[tuple[int, WriteResult | BaseException]]) -> None:
        stored = False
        for batch_id, outcome in message:
            future, unknown = self._pending.pop(batch_id)
            self._committing.discard(batch_id)
            if isinstance(outcome, BaseException):
                if not future.done():
                    future.set_exception(outcome)
                continue
            self._series.learn(unknown, outcome)
            stored = stored or outcome.stored_anything
            if (
                not future.done()
            ):  # done: its request was cancelled (the client went away); stored all the same
                future.set_result(outcome)
        if stored:
            self.commits += 1

    def _writer_busy(self) -> bool:
        """Whether the writer holds batches it has not begun to commit (the pending ones neither queued here
        nor in the commit under way): more sent now would only wait behind them, and cost a message of
        their own."""
        return len(self._pending) > len(self._queued) + len(self._committing)

    def _writer_gone(self) -> None:
        self._gone = True
        self._queued = []  # their futures are failed below: never hand them to a writer started again
        self._committing = set()
        self._detach()
        self._fail_pending()

    def _fail_pending(self) -> None:
        orphans, self._pending = list(self._pending.values()), {}
        for future, _ in orphans:
            if not future.done() and not future.get_loop().is_closed():
                future.set_exception(StoreUnavailable("the writer stopped"))


def _writer_main(path: str, fd: int, new_series_per_minute: int | None = None) -> None:
    """The writer process: take what has arrived (up to MAX_GROUP batches), insert its rows, say that the
    commit begins (the server then sends what has arrived since), commit, report, repeat.

    Two threads help, so that committing is all the main thread does: one receives batches and prepares their
    rows, and one copies the write-ahead log into the database file, so no commit waits for a checkpoint.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when to stop, and says so on the socket
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    committer = Committer(Path(path), new_series_per_minute)
    arrived: queue.SimpleQueue[Any] = queue.SimpleQueue()
    checkpointer = Checkpointer(Path(path))
    threading.Thread(
        target=_receive_batches, args=(sock, arrived), name="ccmetrics-writer-receive", daemon=True
    ).start()
    checkpointer.start()
    gc.freeze()  # what has started lives as long as the process: out of the collector's full passes
    sock.sendall(_frame("ready"))
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
                committing = _frame((_COMMITTING, [batch_id for batch_id, _ in work]))
                say_committing = functools.partial(sock.sendall, committing)
                outcomes = committer.commit([batch for _, batch in work], before_commit=say_committing)
                if checkpointer.log_pages > RESTART_LOG_PAGES:
                    checkpointer.log_pages = 0
                    committer.restart_log()
                checkpointer.wake()
                sock.sendall(
                    _frame(
                        [
                            (batch_id, _portable(outcome))
                            for (batch_id, _), outcome in zip(work, outcomes, strict=True)
                        ]
                    )
                )
            if stop:
                sock.sendall(_frame(None))
                return
    except OSError:
        return  # the server is gone
    finally:
        checkpointer.stop()
        committer.close()


def _receive_batches(sock: socket.socket, arrived: queue.SimpleQueue[Any]) -> None:
    with sock.makefile("rb") as stream:
        while True:
            try:
                bundle = _read_frame(stream)
            except (EOFError, OSError):
                arrived.put([])  # the server is gone
                return
            arrived.put([item if item is None else (item[0], _prepared(item[1])) for item in bundle])
            if bundle[-1] is None:
                return


def _prepared(batch: Batch) -> Prepared | BaseException:
    try:
        return prepare(batch)
    except Exception as exc:  # this batch alone fails; the others go on
        return exc


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


def _portable(outcome: WriteResult | BaseException) -> WriteResult | BaseException:
    """Exceptions cross the socket as themselves when they can, as their message when they cannot."""
    if isinstance(outcome, BaseException) and not isinstance(outcome, StoreUnavailable):
        return RuntimeError(f"{type(outcome).__name__}: {outcome}")
    return outcome
