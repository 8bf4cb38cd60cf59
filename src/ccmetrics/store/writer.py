"""The only code that writes to the database: one thread, fed by a bounded queue, committing in groups.

A caller hands a batch over and waits for its future; the future resolves only once the transaction that
holds the batch is committed (and fsynced), so an acknowledgement always means "on disk". Batches that
arrive while a commit is under way share the next transaction (group commit), which keeps throughput high
without weakening that promise.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..otlp.normalize import Batch, Event, Point, Span
from .schema import COMMON_COLUMNS, EVENT_COLUMNS

MAX_GROUP = 256  # batches per transaction


class StoreUnavailable(Exception):
    """The store cannot take data now (queue full, disk full, database locked): the client should retry."""


@dataclass
class WriteResult:
    points: int = 0  # new points stored (a retried point is not new)
    events: int = 0
    spans: int = 0


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")  # an acknowledged export survives power loss, not just a crash
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


_STOP = object()


class Writer:
    def __init__(self, path: Path, queue_size: int = 4096) -> None:
        self._conn = connect(path)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._series_ids: dict[bytes, int] = {}
        self.commits = 0  # bumped after every commit that stored something; watched by live dashboards
        self._thread = threading.Thread(target=self._run, name="ccmetrics-writer", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch) -> Future[WriteResult]:
        future: Future[WriteResult] = Future()
        try:
            self._queue.put_nowait((batch, future))
        except queue.Full:
            raise StoreUnavailable("the store is busy; retry shortly") from None
        return future

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        self._conn.close()

    # --- the writer thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            while len(group) < MAX_GROUP and group[-1] is not _STOP:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = group[-1] is _STOP
            work = [item for item in group if item is not _STOP]
            if work:
                self._commit(work)
            if stop:
                return

    def _commit(self, work: list[tuple[Batch, Future[WriteResult]]]) -> None:
        outcomes: list[tuple[Future[WriteResult], WriteResult | BaseException]] = []
        new_series: dict[bytes, int] = {}
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for batch, future in work:
                # A savepoint per batch: one batch that fails cannot take the others down with it.
                self._conn.execute("SAVEPOINT batch")
                known = set(new_series)
                try:
                    result = self._apply(batch, new_series)
                    self._conn.execute("RELEASE batch")
                    outcomes.append((future, result))
                except Exception as exc:
                    if isinstance(exc, sqlite3.Error) and _store_level(exc):
                        raise  # disk full, I/O error, locked: the whole transaction is lost, handled below
                    self._conn.execute("ROLLBACK TO batch")
                    self._conn.execute("RELEASE batch")
                    for key in set(new_series) - known:
                        del new_series[key]
                    outcomes.append((future, exc))
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"the store could not commit: {exc}")
            for _, future in work:
                future.set_exception(failure)
            return
        self._series_ids.update(new_series)
        if any(not isinstance(o, BaseException) and (o.points or o.events or o.spans) for _, o in outcomes):
            self.commits += 1
        for future, outcome in outcomes:
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _apply(self, batch: Batch, new_series: dict[bytes, int]) -> WriteResult:
        result = WriteResult()
        for point in batch.points:
            series_id = self._series_id(point, new_series)
            if point.kind == "sum" and point.temporality == "cumulative":
                result.points += self._insert_cumulative(series_id, point)
            else:
                result.points += self._insert_point(series_id, point, point.value, None)
        for event in batch.events:
            result.events += self._insert_event(event)
        for span in batch.spans:
            result.spans += self._insert_span(span)
        return result

    def _series_id(self, point: Point, new_series: dict[bytes, int]) -> int:
        key = point.series_key
        known = self._series_ids.get(key) or new_series.get(key)
        if known is not None:
            return known
        row = self._conn.execute("SELECT id FROM series WHERE key = ?", (key,)).fetchone()
        if row is None:
            common = [_text(point.attrs.get(attr)) for attr in COMMON_COLUMNS]
            cursor = self._conn.execute(
                f"INSERT INTO series (key, metric, unit, kind, temporality, monotonic, scope, "
                f"{', '.join(COMMON_COLUMNS.values())}, attrs) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?, {', '.join('?' * len(COMMON_COLUMNS))}, ?)",
                (key, point.metric, point.unit, point.kind, point.temporality, point.monotonic, point.scope,
                 *common, _json(point.attrs)),
            )  # fmt: skip
            series_id = int(cursor.lastrowid or 0)
            self._conn.executemany(
                "INSERT OR IGNORE INTO series_attrs (key, value, series_id) VALUES (?, ?, ?)",
                [(k, _text(v), series_id) for k, v in point.attrs.items()],
            )
        else:
            series_id = row[0]
        new_series[key] = series_id
        return series_id

    def _insert_point(self, series_id: int, point: Point, value: float, cumulative: float | None) -> int:
        cursor = self._conn.execute(
            "INSERT OR IGNORE INTO points (series_id, start_ns, time_ns, value, cumulative, extra) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (series_id, point.start_ns, point.time_ns, value, cumulative,
             _json(point.extra) if point.extra is not None else None),
        )  # fmt: skip
        return cursor.rowcount

    def _insert_cumulative(self, series_id: int, point: Point) -> int:
        """Store a running total as the increment since the stream's previous point.

        A stream is a series with one start time; a new start time, or a total lower than the one before,
        means the counter restarted, so the whole total is new. A point that arrives late is slotted in
        and the increment of the point after it corrected, so totals never depend on arrival order.
        """
        conn, key = self._conn, (series_id, point.start_ns)
        previous = conn.execute(
            "SELECT cumulative FROM points WHERE series_id = ? AND start_ns = ? AND time_ns < ? "
            "ORDER BY time_ns DESC LIMIT 1",
            (*key, point.time_ns),
        ).fetchone()
        if not self._insert_point(series_id, point, _increment(previous, point.value), point.value):
            return 0  # already stored: a retry
        following = conn.execute(
            "SELECT time_ns, cumulative FROM points WHERE series_id = ? AND start_ns = ? AND time_ns > ? "
            "ORDER BY time_ns LIMIT 1",
            (*key, point.time_ns),
        ).fetchone()
        if following is not None:
            conn.execute(
                "UPDATE points SET value = ? WHERE series_id = ? AND start_ns = ? AND time_ns = ?",
                (_increment((point.value,), following[1]), *key, following[0]),
            )
        return 1

    def _insert_event(self, event: Event) -> int:
        common = [_text(event.attrs.get(attr)) for attr in EVENT_COLUMNS]
        cursor = self._conn.execute(
            f"INSERT OR IGNORE INTO events (key, name, time_ns, {', '.join(EVENT_COLUMNS.values())}, attrs, body) "
            f"VALUES (?, ?, ?, {', '.join('?' * len(EVENT_COLUMNS))}, ?, ?)",
            (event.key, event.name, event.time_ns, *common, _json(event.attrs), event.body),
        )
        return cursor.rowcount

    def _insert_span(self, span: Span) -> int:
        cursor = self._conn.execute(
            "INSERT OR IGNORE INTO spans (trace_id, span_id, parent_span_id, name, start_ns, end_ns, "
            "status_code, session_id, attrs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (span.trace_id, span.span_id, span.parent_span_id, span.name, span.start_ns, span.end_ns,
             span.status_code, _text(span.attrs.get("session.id")), _json(span.attrs)),
        )  # fmt: skip
        return cursor.rowcount


def _store_level(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_READONLY",
                            "SQLITE_CANTOPEN", "SQLITE_CORRUPT", "SQLITE_NOTADB"))


def _increment(previous: tuple[float] | None, total: float) -> float:
    if previous is None or total < previous[0]:
        return total  # first point of the stream, or the counter reset
    return total - previous[0]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return _json(value)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
