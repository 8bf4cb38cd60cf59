"""Writing batches to SQLite: points, events, spans and their rollups, one transaction for a group of batches.

Only the writer (writer.py) calls it; nothing else writes to the database.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..records import Batch, Event, Point, split_event_key
from .event_rows import INSERT_EVENT, EventKind, EventRow, event_kind, measure, own_attributes
from .forgetting import Forgetting
from .identities import Identities, SeriesIds, text, to_json
from .limits import Allowance, NewSeriesLimit
from .retention import Pruning, Retention
from .rollups import Rollups, close_days
from .schema import DAY_NS, EVENT_MEASURES, EVENT_STRINGS
from .sources import reconcile, store_progress
from .upgrade import EventsUpgrade

LOG_SIZE_LIMIT = 20_000_000  # bytes the write-ahead log file keeps once started over


class StoreUnavailable(Exception):
    """The store cannot take data now (queue full, disk full, database locked): the client should retry."""


@dataclass
class WriteResult:
    points: int = 0  # new points stored (a retried point is not new)
    events: int = 0
    spans: int = 0
    rejected: int = 0  # records the store refused (see ``problems``); the client is told in partial_success
    problems: list[str] = field(default_factory=list)

    def reject(self, count: int, why: str) -> None:
        self.rejected += count
        self.problems.append(why)

    @property
    def stored_anything(self) -> bool:
        return bool(self.points or self.events or self.spans)


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")  # an acknowledged export survives power loss, not just a crash
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


class Committer:
    """Writes groups of batches in one transaction each, every batch in a savepoint of its own.

    ``new_series_per_minute`` limits the new series each source creates (see NewSeriesLimit): a point of a
    series that does not exist yet, from a source that has used up its allowance, is rejected, and so is an
    event that would start a new event family. Points of series that exist, and events of families that
    exist, are never refused, so an exporter's retry stays a no-op.
    """

    def __init__(
        self, path: Path, new_series_per_minute: int | None = None, retention: Retention | None = None
    ) -> None:
        self.limit = NewSeriesLimit(new_series_per_minute)
        self._conn = connect(path)
        self._conn.execute("PRAGMA wal_autocheckpoint = 0")  # the writer's checkpointer does it (writer.py)
        self._conn.execute(f"PRAGMA journal_size_limit = {LOG_SIZE_LIMIT}")
        self._identities = Identities(self._conn)
        self.upgrade = EventsUpgrade(self._conn, self._identities)
        self.pruning = Pruning(self._conn, retention)
        self.forgetting = Forgetting(self._conn)
        (self._untimed_keys_until,) = self._conn.execute("SELECT until_ns FROM untimed_event_keys").fetchone()
        (self._closed_until,) = self._conn.execute("SELECT until_ns FROM closed_days").fetchone()

    def close(self) -> None:
        self._conn.close()

    def prune_step(self) -> None:
        """One step of pruning; when it deleted series, the ids of series known are forgotten."""
        if self.pruning.step():
            self._identities.clear()

    def forget_step(self) -> None:
        """One step of forgetting; the ids of series and families known are forgotten: rows may be gone."""
        try:
            self.forgetting.step()
        finally:
            self._identities.clear()

    def restart_log(self) -> None:
        """Have the next commit write the write-ahead log from its start, once what is left of it is copied
        into the database: under a steady stream the log would otherwise never stop growing, as there is
        always a commit or a checkpoint under way. Does not wait for readers: if one is busy, next time."""
        self._conn.execute("PRAGMA busy_timeout = 0")
        try:
            self._conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.Error:
            pass
        finally:
            self._conn.execute("PRAGMA busy_timeout = 10000")

    def commit(self, batches: list[Batch], now_ns: int | None = None) -> list[WriteResult | Exception]:
        """One transaction for the group; each batch's outcome: what it stored, or why it could not be.
        Days that have ended by ``now_ns`` get their daily sums."""
        now_ns = now_ns or time.time_ns()
        closed_until = max(now_ns // DAY_NS * DAY_NS, self._closed_until)
        outcomes: list[WriteResult | Exception] = []
        rollups = Rollups()
        allowance = Allowance(self.limit, now_ns)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for batch in batches:
                # A savepoint per batch: one batch that fails cannot take the others down with it.
                self._conn.execute("SAVEPOINT batch")
                mark, used = self._identities.mark(), dict(allowance.used)
                try:
                    outcomes.append(self._store(batch, rollups, allowance))
                    self._conn.execute("RELEASE batch")
                except Exception as exc:
                    if isinstance(exc, sqlite3.Error) and _store_level(exc):
                        raise  # disk full, I/O error, locked: the whole transaction is lost, handled below
                    self._conn.execute("ROLLBACK TO batch")
                    self._conn.execute("RELEASE batch")
                    self._identities.forget_since(mark)
                    allowance.used = used
                    outcomes.append(exc)
            if closed_until > self._closed_until:
                close_days(self._conn, self._closed_until, closed_until)
            rollups.flush(self._conn, closed_until)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._identities.rolled_back()
            return [StoreUnavailable(f"the store could not commit: {exc}")] * len(batches)
        self._closed_until = closed_until
        allowance.spend()
        self._identities.committed()
        return outcomes

    def _store(self, batch: Batch, rollups: Rollups, allowance: Allowance) -> WriteResult:
        """Store the batch and add it to the transaction's rollups; what it stored.

        The rollups are added to only once the batch is stored: a batch rolled back adds nothing."""
        result = WriteResult()
        if self.pruning.raw_since_ns:
            batch = _within_retention(batch, self.pruning.raw_since_ns, result)
        batch_rollups = Rollups()
        unseen: set[str] = set()  # sessions the store has no series of: their series are not looked for
        points = reconcile(self._conn, batch.points, batch_rollups, unseen)  # telemetry or transcript
        self._store_points(
            points, batch, result, batch_rollups, lambda: allowance.take("series", batch.source), unseen
        )
        self._store_events(batch, result, batch_rollups, lambda: allowance.take("events", batch.source))
        if batch.spans:
            result.spans += self._conn.executemany(
                "INSERT OR IGNORE INTO spans (trace_id, span_id, parent_span_id, name, start_ns, end_ns, "
                "status_code, session_id, attrs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        s.trace_id,
                        s.span_id,
                        s.parent_span_id,
                        s.name,
                        s.start_ns,
                        s.end_ns,
                        s.status_code,
                        text(s.attrs.get("session.id")),
                        to_json(s.attrs),
                    )
                    for s in batch.spans
                ],
            ).rowcount
        if batch.transcript is not None:
            store_progress(self._conn, batch.transcript)
        rollups.merge(batch_rollups)
        return result

    def _store_points(
        self,
        points: list[Point],
        batch: Batch,
        result: WriteResult,
        rollups: Rollups,
        may_create: Any,
        unseen: set[str] | None = None,
    ) -> None:
        plain: list[tuple[Point, SeriesIds]] = []
        refused = 0  # points of new series over the source's limit
        for point in points:
            new = unseen is not None and text(point.attrs.get("session.id")) in unseen
            ids = self._identities.series(point, may_create, new)
            if ids is None:
                refused += 1
            elif point.cumulative:
                changes = self._insert_cumulative(ids.series_id, point)
                result.points += bool(changes)
                for time_ns, delta in changes:
                    rollups.point(ids.family_id, text(point.attrs.get("session.id")), time_ns, delta)
            else:
                plain.append((point, ids))
        rows = [
            (ids.series_id, p.start_ns, p.time_ns, p.value, None if p.extra is None else to_json(p.extra))
            for p, ids in plain
        ]
        for i in self._insert_new(_INSERT_POINT, rows):
            point, ids = plain[i]
            increment = point.value if point.kind == "sum" else None  # gauges and histograms do not add up
            rollups.point(ids.family_id, text(point.attrs.get("session.id")), point.time_ns, increment)
            result.points += 1
        if refused:
            result.reject(
                refused,
                f"{refused} points of new series were rejected: this client created more than "
                f"{self.limit.per_minute} new series in a minute (--new-series-per-minute)",
            )

    def _store_events(self, batch: Batch, result: WriteResult, rollups: Rollups, may_create: Any) -> None:
        rows: list[EventRow] = []
        refused = 0
        for event in batch.events:
            if self._stored_before(event.key):
                continue
            kind = event_kind(event)
            family_id = self._identities.event_family(kind, may_create)
            if family_id is None:
                refused += 1
            else:
                rows.append(self._event_row(event, kind, family_id))
        for i in self._insert_new(INSERT_EVENT, [row.params() for row in rows]):
            rollups.event(rows[i].family_id, rows[i].time_ns, rows[i].measures)
            result.events += 1
        if refused:
            result.reject(
                refused,
                f"{refused} events of new kinds were rejected: this client sent more than "
                f"{self.limit.per_minute} new kinds of event (a name with new attributes) in a minute "
                "(--new-series-per-minute)",
            )

    def _event_row(self, event: Event, kind: EventKind, family_id: int) -> EventRow:
        strings = [event.attrs.get(attr) for attr in EVENT_STRINGS]
        session, prompt = [None if v is None else self._identities.string(text(v) or "") for v in strings]
        return EventRow(
            key=event.key,
            family_id=family_id,
            time_ns=event.time_ns,
            session=session,
            prompt=prompt,
            measures=tuple(measure(event.attrs.get(m)) for m in EVENT_MEASURES),
            sample=sample_level(event.key),
            attrs=to_json(own_attributes(event.attrs, kind.attrs)),
            body=None if kind.body is not None else event.body,
        )

    def _insert_new(self, sql: str, rows: list[tuple[Any, ...]]) -> list[int]:
        """INSERT OR IGNORE the rows; which of them were new (a retry's rows are not)."""
        if not rows:
            return []
        self._conn.execute("SAVEPOINT rows")
        count = self._conn.executemany(sql, rows).rowcount
        if count in (0, len(rows)):  # the usual cases: all new, or an exporter's retry of all of them
            self._conn.execute("RELEASE rows")
            return list(range(len(rows))) if count else []
        self._conn.execute("ROLLBACK TO rows")  # some of each: find out row by row
        new = [i for i, row in enumerate(rows) if self._conn.execute(sql, row).rowcount]
        self._conn.execute("RELEASE rows")
        return new

    def _stored_before(self, key: bytes) -> bool:
        """Whether an event is stored where its key alone would not find it: in the events still to be moved
        by an upgrade (see upgrade.py), or, when stored before event keys began with their time (schema 3 and
        earlier), under the hash alone. Only events timed up to the last of those can be the latter."""
        time_ns, digest = split_event_key(key)
        untimed = time_ns <= self._untimed_keys_until
        if untimed and self._conn.execute("SELECT 1 FROM events WHERE key = ?", (digest,)).fetchone():
            return True
        return self.upgrade.holds(key, digest if untimed else None)

    def _insert_cumulative(self, series_id: int, point: Point) -> list[tuple[int, float]]:
        """Store a running total as the increment since the stream's previous point.

        A stream is a series with one start time; a new start time, or a total lower than the one before,
        means the counter restarted, so the whole total is new. A point that arrives late is slotted in
        and the increment of the point after it corrected, so totals never depend on arrival order.
        Returns what changed, as (time, change of increment) pairs for the rollups; nothing for a retry.
        """
        conn, key = self._conn, (series_id, point.start_ns)
        previous = conn.execute(
            "SELECT cumulative FROM points WHERE series_id = ? AND start_ns = ? AND time_ns < ? "
            "AND cumulative IS NOT NULL ORDER BY time_ns DESC LIMIT 1",
            (*key, point.time_ns),
        ).fetchone()
        increment = _increment(previous, point.value)
        inserted = conn.execute(
            "INSERT OR IGNORE INTO points (series_id, start_ns, time_ns, value, cumulative) "
            "VALUES (?, ?, ?, ?, ?)",
            (*key, point.time_ns, increment, point.value),
        ).rowcount
        if not inserted:
            return []  # already stored: a retry
        changes = [(point.time_ns, increment)]
        following = conn.execute(
            "SELECT time_ns, cumulative, value FROM points WHERE series_id = ? AND start_ns = ? "
            "AND time_ns > ? AND cumulative IS NOT NULL ORDER BY time_ns LIMIT 1",
            (*key, point.time_ns),
        ).fetchone()
        if following is not None:
            corrected = _increment((point.value,), following[1])
            conn.execute(
                "UPDATE points SET value = ? WHERE series_id = ? AND start_ns = ? AND time_ns = ?",
                (corrected, *key, following[0]),
            )
            changes.append((following[0], corrected - following[2]))
        return changes


_INSERT_POINT = (
    "INSERT OR IGNORE INTO points (series_id, start_ns, time_ns, value, extra) VALUES (?, ?, ?, ?, ?)"
)


def _within_retention(batch: Batch, since_ns: int, result: WriteResult) -> Batch:
    """The batch without its records dated before the raw data kept: those could be retries of pruned ones,
    which nothing would tell apart, and count twice."""
    points = [p for p in batch.points if p.time_ns >= since_ns]
    events = [e for e in batch.events if e.time_ns >= since_ns]
    spans = [s for s in batch.spans if s.start_ns >= since_ns]
    old = batch.records - len(points) - len(events) - len(spans)
    if not old:
        return batch
    result.reject(old, f"{old} records older than the raw data kept (--retention) were rejected")
    return Batch(batch.source, points, events, spans)


def sample_level(key: bytes) -> int:
    """Trailing zero bits of the event's hash: level L or above holds 1 in 2**L events, chosen evenly."""
    number = int.from_bytes(split_event_key(key)[1][:8], "little")
    return (number & -number).bit_length() - 1 if number else 64


def _store_level(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(
        (
            "SQLITE_FULL",
            "SQLITE_IOERR",
            "SQLITE_BUSY",
            "SQLITE_LOCKED",
            "SQLITE_READONLY",
            "SQLITE_CANTOPEN",
            "SQLITE_CORRUPT",
            "SQLITE_NOTADB",
        )
    )


def _increment(previous: tuple[float] | None, total: float) -> float:
    if previous is None or total < previous[0]:
        return total  # first point of the stream, or the counter reset
    return total - previous[0]
