"""Writing batches to SQLite: identities, points, events, spans and the rollups, in one transaction per group.

Runs inside the writer process (see writer.py); nothing else writes to the database.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..otlp.normalize import Batch, Event, Point, split_event_key
from ..recent import Recent
from .schema import (
    COMMON_COLUMNS,
    DAY_NS,
    EVENT_COLUMNS,
    EVENT_DIMENSIONS,
    EVENT_FAMILY_COLUMNS,
    EVENT_MEASURES,
    FAMILY_COLUMNS,
    HOUR_NS,
    NOT_IN_FAMILY,
)

LOG_SIZE_LIMIT = 20_000_000  # bytes the write-ahead log file keeps once started over


class StoreUnavailable(Exception):
    """The store cannot take data now (queue full, disk full, database locked): the client should retry."""


class SeriesPoint(NamedTuple):
    """A point of a series the writer has stored before: the series' ids instead of its attributes.
    It crosses to the writer as a plain tuple of its fields, the cheapest thing to pickle."""

    series_id: int
    family_id: int
    session_id: str | None
    kind: str
    temporality: str | None
    start_ns: int
    time_ns: int
    value: float
    extra: dict[str, Any] | None

    @staticmethod
    def head(point: Point, series_id: int, family_id: int) -> tuple[Any, ...]:
        """The fields every point of the series shares: the start of each of its points' tuples."""
        return series_id, family_id, _text(point.attrs.get("session.id")), point.kind, point.temporality


@dataclass
class WriteResult:
    points: int = 0  # new points stored (a retried point is not new)
    events: int = 0
    spans: int = 0
    rejected: int = 0  # points the store refused (see ``problems``); the client is told in partial_success
    problems: list[str] = field(default_factory=list)
    # (index in the batch, series id, family id) of the points that came with their attributes
    series: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def stored_anything(self) -> bool:
        return bool(self.points or self.events or self.spans)


@dataclass
class Prepared:
    """A batch with the work that needs no database done already: the writer does it on the thread that
    receives batches, while the committing thread is inside SQLite (which lets go of the interpreter lock)."""

    batch: Batch
    # Points whose series ids came along and that are not cumulative: their rows, ready to insert, with
    # (family id, session id, is a sum) for each, and what they add to the rollups should all be new.
    rows: list[tuple[Any, ...]]
    rows_meta: list[tuple[int, str | None, bool]]
    rows_rollups: Rollups
    # The other points, by index: those whose series is to be found (with the series, should it be new),
    # and cumulative ones, which are turned into increments against what is stored.
    others: list[tuple[int, Point | SeriesPoint, NewSeries | None]]
    events: list[tuple[Any, dict[str, Any], tuple[Any, ...]]]  # per event: family identity, dimensions, row


def prepare(batch: Batch) -> Prepared:
    rows: list[tuple[Any, ...]] = []
    rows_meta: list[tuple[int, str | None, bool]] = []
    rows_rollups = Rollups()
    others: list[tuple[int, Point | SeriesPoint, NewSeries | None]] = []
    for index, point in enumerate(batch.points):
        if type(point) is not tuple:
            others.append((index, point, NewSeries.of(point)))
            continue
        series_id, family_id, session_id, kind, temporality, start_ns, time_ns, value, extra = point
        if kind == "sum" and temporality == "cumulative":
            others.append((index, SeriesPoint._make(point), None))
            continue
        rows.append(_point_row(series_id, start_ns, time_ns, value, extra))
        rows_meta.append((family_id, session_id, kind == "sum"))
        rows_rollups.point(family_id, session_id, time_ns, value if kind == "sum" else None)
    return Prepared(
        batch, rows, rows_meta, rows_rollups, others, [_event_parts(event) for event in batch.events]
    )


def _point_row(
    series_id: int, start_ns: int, time_ns: int, value: float, extra: dict[str, Any] | None
) -> tuple[Any, ...]:
    """A point that is not cumulative, as ``_INSERT_POINT`` (or, with an extra, ``_INSERT_POINT_EXTRA``)
    takes it."""
    if extra is None:
        return (series_id, start_ns, time_ns, value)  # no NULL to bind: each costs sqlite3 an adapter lookup
    return (series_id, start_ns, time_ns, value, _json(extra))


_FAMILY_TABLES = {  # table: (name column, columns of common attributes, table of every attribute)
    "families": ("metric, kind", FAMILY_COLUMNS, "family_attrs"),
    "event_families": ("name", EVENT_FAMILY_COLUMNS, "event_family_attrs"),
}


@dataclass(slots=True)
class NewFamily:
    """What storing a family takes (its row, its attributes), worked out before it is known to be new."""

    identity: tuple[Any, ...]
    row: tuple[Any, ...]  # key, name (and kind), common attributes, every attribute as JSON
    attrs: list[tuple[str, str | None]]  # never a None value: attributes that are None are left out

    @classmethod
    def of(
        cls, table: str, identity: tuple[Any, ...], names: tuple[str, ...], attrs: dict[str, Any]
    ) -> NewFamily:
        columns = _FAMILY_TABLES[table][1]
        row = (_digest(identity), *names, *[_text(attrs.get(attr)) for attr in columns], _json(attrs))
        return cls(identity, row, [(k, _text(v)) for k, v in attrs.items() if v is not None])


@dataclass(slots=True)
class NewSeries:
    """The same for a series, with its family."""

    identity: tuple[Any, ...]
    row: tuple[Any, ...]  # key, then every column after family_id
    family: NewFamily

    @classmethod
    def of(cls, point: Point) -> NewSeries:
        identity = (
            point.metric,
            point.unit,
            point.kind,
            point.temporality,
            point.scope,
            _frozen(point.attrs),
        )
        family_attrs = {k: v for k, v in point.attrs.items() if k not in NOT_IN_FAMILY}
        family = NewFamily.of(
            "families",
            ("family", point.metric, point.kind, _frozen(family_attrs)),
            (point.metric, point.kind),
            family_attrs,
        )
        row = (
            _digest(identity),
            point.metric,
            point.unit,
            point.kind,
            point.temporality,
            point.monotonic,
            point.scope,
            *[_text(point.attrs.get(attr)) for attr in COMMON_COLUMNS],
            _json(point.attrs),
        )
        return cls(identity, row, family)


def _event_parts(event: Event) -> tuple[Any, dict[str, Any], tuple[Any, ...]]:
    """An event's family identity and dimensions, and its row without the family id (known later)."""
    dims = {
        k: v
        for k, v in event.attrs.items()
        if (k in event.resource_keys or k in EVENT_DIMENSIONS) and k not in NOT_IN_FAMILY
    }
    measures = [_number(event.attrs.get(m)) for m in EVENT_MEASURES]
    common = [_text(event.attrs.get(attr)) for attr in EVENT_COLUMNS]
    row = (
        event.key,
        event.name,
        event.time_ns,
        *common,
        *measures,
        sample_level(event.key),
        _json(event.attrs),
        event.body,
    )
    return ("event", event.name, _frozen(dims)), dims, row


MINUTE_NS = 60_000_000_000
MAX_SOURCES = 100_000  # sources whose use of the limit below is remembered at a time


class NewSeriesLimit:
    """How many new series each source (a client's address) may still create, and, counted apart, how many
    new kinds of event (an event name with new attributes: a new event family).

    Each source has a bucket that holds up to ``per_minute`` and fills up again at that rate: a client may
    create that many at once, and that many a minute after. A bucket that has filled up is the same as none,
    so only the sources that created something in the last minute are remembered (at most MAX_SOURCES; past
    that, the longest unused are forgotten, which only ever gives them more). ``per_minute`` 0 or None: no
    limit."""

    def __init__(self, per_minute: int | None) -> None:
        self.per_minute = per_minute if per_minute and per_minute > 0 else None
        # (what, source): (what is left, as of when), in order of last use
        self._buckets: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()

    @property
    def sources(self) -> int:
        """Buckets remembered: (what, source) pairs that created something in the last minute."""
        return len(self._buckets)

    def allowance(self, what: str, source: str, now_ns: int) -> float:
        """How many ``what`` ("series" or "events") the source may create at ``now_ns``."""
        if self.per_minute is None:
            return math.inf
        left, as_of = self._buckets.get((what, source), (self.per_minute, now_ns))
        return min(self.per_minute, left + max(0, now_ns - as_of) * self.per_minute / MINUTE_NS)

    def spend(self, what: str, source: str, count: int, now_ns: int) -> None:
        if self.per_minute is None or count <= 0:
            return
        key = (what, source)
        self._buckets[key] = (max(0.0, self.allowance(what, source, now_ns) - count), now_ns)
        self._buckets.move_to_end(key)
        while self._buckets:  # forget the buckets that are full again, and the oldest past MAX_SOURCES
            _, as_of = next(iter(self._buckets.values()))
            if now_ns - as_of < MINUTE_NS and len(self._buckets) <= MAX_SOURCES:
                break
            self._buckets.popitem(last=False)


class _Allowance:
    """What one transaction's batches may create, per (what, source), from the limit as it stands."""

    def __init__(self, limit: NewSeriesLimit, now_ns: int) -> None:
        self.limit = limit
        self.now_ns = now_ns
        self.used: dict[tuple[str, str], int] = {}

    def take(self, what: str, source: str) -> bool:
        """One more new ``what`` for the source, if it may create it."""
        if self.limit.per_minute is None:
            return True
        used = self.used.get((what, source), 0)
        if used + 1 > self.limit.allowance(what, source, self.now_ns):
            return False
        self.used[(what, source)] = used + 1
        return True

    def spend(self) -> None:
        """The transaction is committed: what it created counts against the limit."""
        for (what, source), count in self.used.items():
            self.limit.spend(what, source, count, self.now_ns)


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

    def __init__(self, path: Path, new_series_per_minute: int | None = None) -> None:
        self.limit = NewSeriesLimit(new_series_per_minute)
        self._conn = connect(path)
        self._conn.execute("PRAGMA wal_autocheckpoint = 0")  # a thread of the writer's does it (writer.py)
        self._conn.execute(f"PRAGMA journal_size_limit = {LOG_SIZE_LIMIT}")
        self._ids: Recent[Any, Any] = Recent(
            10_000
        )  # identities of series on their way to being known, families
        (self._untimed_keys_until,) = self._conn.execute("SELECT until_ns FROM untimed_event_keys").fetchone()
        (self._closed_until,) = self._conn.execute("SELECT until_ns FROM closed_days").fetchone()

    def close(self) -> None:
        self._conn.close()

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

    def commit(
        self,
        work: list[Prepared | BaseException],
        now_ns: int | None = None,
        before_commit: Callable[[], object] | None = None,
    ) -> list[WriteResult | BaseException]:
        """One transaction for the group; each batch's outcome (an exception stands for a batch that could not
        be prepared, and is its outcome). Days that have ended by ``now_ns`` get their daily sums.
        ``before_commit`` is called once every row is in, before the transaction is written to disk."""
        now_ns = now_ns or time.time_ns()
        closed_until = max(now_ns // DAY_NS * DAY_NS, self._closed_until)
        outcomes: list[WriteResult | BaseException] = []
        new_ids: dict[Any, Any] = {}
        rollups = Rollups()
        allowance = _Allowance(self.limit, now_ns)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for batch in work:
                if isinstance(batch, BaseException):
                    outcomes.append(batch)
                    continue
                # A savepoint per batch: one batch that fails cannot take the others down with it.
                self._conn.execute("SAVEPOINT batch")
                known, used = set(new_ids), dict(allowance.used)
                try:
                    outcome, batch_rollups = self._apply(batch, new_ids, allowance)
                    self._conn.execute("RELEASE batch")
                    outcomes.append(outcome)
                    rollups.merge(batch_rollups)
                except Exception as exc:
                    if isinstance(exc, sqlite3.Error) and _store_level(exc):
                        raise  # disk full, I/O error, locked: the whole transaction is lost, handled below
                    self._conn.execute("ROLLBACK TO batch")
                    self._conn.execute("RELEASE batch")
                    for key in set(new_ids) - known:
                        del new_ids[key]
                    allowance.used = used
                    outcomes.append(exc)
            if closed_until > self._closed_until:
                self._close_days(self._closed_until, closed_until)
            rollups.flush(self._conn, closed_until)
            if before_commit is not None:
                before_commit()
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            return [StoreUnavailable(f"the store could not commit: {exc}")] * len(work)
        self._closed_until = closed_until
        allowance.spend()
        for identity, ids in new_ids.items():
            self._ids[identity] = ids
        return outcomes

    def _apply(
        self, prepared: Prepared, new_ids: dict[Any, Any], allowance: _Allowance
    ) -> tuple[WriteResult, Rollups]:
        """Store the batch; what it stored, and what that adds to the rollups."""
        batch = prepared.batch
        result = WriteResult()
        rollups = Rollups()
        plain, plain_meta, cumulative = list(prepared.rows), list(prepared.rows_meta), []
        refused = 0  # points of new series over the source's limit
        for i, point, new in prepared.others:
            if isinstance(point, SeriesPoint):
                series_id, family_id, session_id = point.series_id, point.family_id, point.session_id
            else:
                assert new is not None  # a point that came with its attributes comes with its NewSeries
                ids = self._series_id(new, new_ids, lambda: allowance.take("series", batch.source))
                if ids is None:
                    refused += 1
                    continue
                series_id, family_id = ids
                session_id = _text(point.attrs.get("session.id"))
                result.series.append((i, series_id, family_id))
            if point.kind == "sum" and point.temporality == "cumulative":
                cumulative.append((series_id, family_id, session_id, point))
            else:
                plain.append(_point_row(series_id, point.start_ns, point.time_ns, point.value, point.extra))
                plain_meta.append((family_id, session_id, point.kind == "sum"))
        if plain:
            if any(len(row) > 4 for row in plain):  # histograms or summaries among them
                rows = [row if len(row) > 4 else (*row, None) for row in plain]
                inserted = self._insert_new(_INSERT_POINT_EXTRA, rows)
            else:
                inserted = self._insert_new(_INSERT_POINT, plain)
            result.points += len(inserted)
            if len(inserted) == len(plain):  # the usual case: what prepare added up holds, so start from it
                rollups = prepared.rows_rollups
                inserted = inserted[len(prepared.rows) :]
            for i in inserted:
                family_id, session_id, is_sum = plain_meta[i]
                rollups.point(family_id, session_id, plain[i][2], plain[i][3] if is_sum else None)
        for series_id, family_id, session_id, point in cumulative:
            changes = self._insert_cumulative(series_id, point)
            result.points += bool(changes)
            for time_ns, delta in changes:
                rollups.point(family_id, session_id, time_ns, delta)
        if refused:
            result.rejected += refused
            result.problems.append(
                f"{refused} points of new series were rejected: this client created more than "
                f"{self.limit.per_minute} new series in a minute (--new-series-per-minute)"
            )
        if prepared.events:
            rows, refused = [], 0
            may_create = lambda: allowance.take("events", batch.source)  # noqa: E731
            for parts in prepared.events:
                if self._stored_under_untimed_key(parts[2][0]):
                    continue
                row = self._event_row(*parts, new_ids, may_create)
                if row is None:
                    refused += 1
                else:
                    rows.append(row)
            if refused:
                result.rejected += refused
                result.problems.append(
                    f"{refused} events of new kinds were rejected: this client sent more than "
                    f"{self.limit.per_minute} new kinds of event (a name with new attributes) in a minute "
                    "(--new-series-per-minute)"
                )
            inserted = self._insert_new(_INSERT_EVENT, rows)
            result.events += len(inserted)
            for i in inserted:
                rollups.event(
                    rows[i][1], rows[i][3], rows[i][_MEASURES_AT : _MEASURES_AT + len(EVENT_MEASURES)]
                )
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
                        _text(s.attrs.get("session.id")),
                        _json(s.attrs),
                    )
                    for s in batch.spans
                ],
            ).rowcount
        return result, rollups

    def _insert_new(self, sql: str, rows: list[tuple[Any, ...]]) -> list[int]:
        """INSERT OR IGNORE the rows; which of them were new (a retry's rows are not)."""
        self._conn.execute("SAVEPOINT rows")
        count = self._conn.executemany(sql, rows).rowcount
        if count in (0, len(rows)):  # the usual cases: all new, or an exporter's retry of all of them
            self._conn.execute("RELEASE rows")
            return list(range(len(rows))) if count else []
        self._conn.execute("ROLLBACK TO rows")  # some of each: find out row by row
        new = [i for i, row in enumerate(rows) if self._conn.execute(sql, row).rowcount]
        self._conn.execute("RELEASE rows")
        return new

    def _close_days(self, start_ns: int, end_ns: int) -> None:
        """The daily sums of the days in [start, end), which have ended: their hours added up. A day's daily
        sums are written here, once, rather than by every transaction that adds to one of its hours."""
        for prefix, columns in (("rollup", ["value"]), ("event_rollup", ["count", *_MEASURE_COLUMNS])):
            sums = ", ".join(f"SUM({c})" for c in columns)
            replace = ", ".join(f"{c} = excluded.{c}" for c in columns)
            self._conn.execute(
                f"INSERT INTO {prefix}_day (family_id, start_ns, {', '.join(columns)}) "
                f"SELECT family_id, start_ns - start_ns % {DAY_NS}, {sums} FROM {prefix}_hour "
                f"WHERE start_ns >= ? AND start_ns < ? GROUP BY 1, 2 "
                f"ON CONFLICT (start_ns, family_id) DO UPDATE SET {replace}",
                (start_ns, end_ns),
            )
        self._conn.execute("UPDATE closed_days SET until_ns = ?", (end_ns,))

    def _stored_under_untimed_key(self, key: bytes) -> bool:
        """Events stored before their keys began with their time (schema 3 and earlier) are keyed by the hash
        alone: an exporter's retry of one of them is found under that. Only events timed up to the last of
        them can be one."""
        time_ns, digest = split_event_key(key)
        if time_ns > self._untimed_keys_until:
            return False
        return self._conn.execute("SELECT 1 FROM events WHERE key = ?", (digest,)).fetchone() is not None

    # --- identities: series, their families, event families --------------------------------------------
    # Known ones are looked up in memory by a tuple of the attributes; only new ones are hashed and stored.

    def _series_id(
        self, new: NewSeries, new_ids: dict[Any, Any], may_create: Callable[[], bool]
    ) -> tuple[int, int] | None:
        """The series' and its family's ids, storing them when new; None for a new series that
        ``may_create`` refuses."""
        known = self._ids.get(new.identity) or new_ids.get(new.identity)
        if known is not None:
            return known
        row = self._conn.execute("SELECT id, family_id FROM series WHERE key = ?", (new.row[0],)).fetchone()
        if row is None:
            if not may_create():
                return None
            family_id = self._family_id("families", new.family.identity, new_ids, lambda: new.family)
            assert family_id is not None  # a new family comes with a new series: counted as that
            cursor = self._conn.execute(_INSERT_SERIES, (new.row[0], family_id, *new.row[1:]))
            row = (int(cursor.lastrowid or 0), family_id)
        new_ids[new.identity] = (row[0], row[1])
        return row[0], row[1]

    def _event_row(
        self,
        identity: tuple[Any, ...],
        dims: dict[str, Any],
        row: tuple[Any, ...],
        new_ids: dict[Any, int],
        may_create: Callable[[], bool],
    ) -> tuple[Any, ...] | None:
        """The event's row with its family id; None if its family is new and ``may_create`` refuses it."""
        family_id = self._family_id(
            "event_families",
            identity,
            new_ids,
            lambda: NewFamily.of("event_families", identity, (row[1],), dims),
            may_create,
        )
        return None if family_id is None else (row[0], family_id, *row[1:])

    def _family_id(
        self,
        table: str,
        identity: tuple[Any, ...],
        new_ids: dict[Any, Any],
        new: Callable[[], NewFamily],
        may_create: Callable[[], bool] = lambda: True,
    ) -> int | None:
        known = self._ids.get(identity) or new_ids.get(identity)
        if known is not None:
            return known
        family = new()
        row = self._conn.execute(f"SELECT id FROM {table} WHERE key = ?", (family.row[0],)).fetchone()
        if row is None:
            if not may_create():
                return None
            names, columns, attrs_table = _FAMILY_TABLES[table]
            cursor = self._conn.execute(
                f"INSERT INTO {table} (key, {names}, {', '.join(columns.values())}, attrs) "
                f"VALUES ({', '.join('?' * len(family.row))})",
                family.row,
            )
            family_id = int(cursor.lastrowid or 0)
            self._conn.executemany(
                f"INSERT OR IGNORE INTO {attrs_table} (key, value, family_id) VALUES (?, ?, ?)",
                [(k, v, family_id) for k, v in family.attrs],
            )
            row = (family_id,)
        new_ids[identity] = row[0]
        return row[0]

    def _insert_cumulative(self, series_id: int, point: Point | SeriesPoint) -> list[tuple[int, float]]:
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


class Rollups:
    """What a transaction adds to the hourly and daily rollups and to the sessions' activity, added up first
    so each (family, hour) is written once per transaction however many points fall in it."""

    def __init__(self) -> None:
        self.metrics: dict[tuple[int, int], float] = defaultdict(float)
        self.events: dict[tuple[int, int], list[float]] = {}
        self.sessions: dict[str, tuple[int, int]] = {}
        self.session_times: set[tuple[str, int]] = set()
        self._last_seen: tuple[str | None, int] | None = None

    def point(self, family_id: int, session_id: str | None, time_ns: int, increment: float | None) -> None:
        if increment is not None:  # sums only: gauges and histograms are not added up
            self.metrics[(family_id, time_ns - time_ns % HOUR_NS)] += increment
        seen = (session_id, time_ns)
        if seen == self._last_seen:
            return  # the points of an export share their session and time: noted once
        self._last_seen = seen
        self.session_times.add((session_id or "", time_ns))
        if session_id is not None:
            first, last = self.sessions.get(session_id, (time_ns, time_ns))
            self.sessions[session_id] = (min(first, time_ns), max(last, time_ns))

    def event(self, family_id: int, time_ns: int, measures: tuple[float | None, ...]) -> None:
        sums = self.events.setdefault((family_id, time_ns - time_ns % HOUR_NS), [0] * (1 + 2 * len(measures)))
        sums[0] += 1
        for i, value in enumerate(measures):
            if value is not None:
                sums[1 + 2 * i] += value
                sums[2 + 2 * i] += 1

    def merge(self, other: Rollups) -> None:
        for key, value in other.metrics.items():
            self.metrics[key] += value
        for key, sums in other.events.items():
            mine = self.events.setdefault(key, [0] * len(sums))
            for i, value in enumerate(sums):
                mine[i] += value
        for session_id, (first, last) in other.sessions.items():
            old_first, old_last = self.sessions.get(session_id, (first, last))
            self.sessions[session_id] = (min(first, old_first), max(last, old_last))
        self.session_times |= other.session_times

    def flush(self, conn: sqlite3.Connection, closed_until: int) -> None:
        """Write what was added up. The daily sums of days from ``closed_until`` on are left to the end of
        those days (see Committer._close_days): only late data for days that have ended adds to them here."""
        _upsert(conn, "hour", self.metrics, self.events)  # added up by hour already
        late_metrics: dict[tuple[int, int], float] = defaultdict(float)
        for (family_id, hour), value in self.metrics.items():
            if hour < closed_until:
                late_metrics[(family_id, hour - hour % DAY_NS)] += value
        late_events: dict[tuple[int, int], list[float]] = {}
        for (family_id, hour), sums in self.events.items():
            if hour < closed_until:
                mine = late_events.setdefault((family_id, hour - hour % DAY_NS), [0] * len(sums))
                for i, value in enumerate(sums):
                    mine[i] += value
        _upsert(conn, "day", late_metrics, late_events)
        hours = {hour for _, hour in self.metrics} | {hour for _, hour in self.events}
        conn.executemany(
            "INSERT INTO hour_versions (start_ns, version) VALUES (?, 1) "
            "ON CONFLICT (start_ns) DO UPDATE SET version = version + 1",
            [(hour,) for hour in hours],
        )
        conn.executemany(
            "INSERT INTO sessions (session_id, first_ns, last_ns) VALUES (?, ?, ?) ON CONFLICT (session_id) "
            "DO UPDATE SET first_ns = min(first_ns, excluded.first_ns), "
            "last_ns = max(last_ns, excluded.last_ns)",
            [(session_id, *span) for session_id, span in self.sessions.items()],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO session_times (session_id, time_ns) VALUES (?, ?)",
            sorted(self.session_times),
        )


def _upsert(
    conn: sqlite3.Connection,
    tier: str,
    metrics: dict[tuple[int, int], float],
    events: dict[tuple[int, int], list[float]],
) -> None:
    """Add sums to a tier's rollups, by (family, start of the hour or day)."""
    if metrics:
        conn.executemany(
            f"INSERT INTO rollup_{tier} (family_id, start_ns, value) VALUES (?, ?, ?) "
            "ON CONFLICT (start_ns, family_id) DO UPDATE SET value = value + excluded.value",
            [(*key, value) for key, value in metrics.items()],
        )
    if events:
        rows = [(*key, *sums) for key, sums in events.items()]
        conn.executemany(_UPSERT_EVENT_ROLLUP.format(tier=tier), rows)


_MEASURE_COLUMNS = [f"{m}_{part}" for m in EVENT_MEASURES for part in ("sum", "count")]
_UPSERT_EVENT_ROLLUP = (
    f"INSERT INTO event_rollup_{{tier}} (family_id, start_ns, count, {', '.join(_MEASURE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (3 + len(_MEASURE_COLUMNS)))}) "
    "ON CONFLICT (start_ns, family_id) DO UPDATE SET "
    f"count = count + excluded.count, " + ", ".join(f"{c} = {c} + excluded.{c}" for c in _MEASURE_COLUMNS)
)
_INSERT_SERIES = (
    f"INSERT INTO series (key, family_id, metric, unit, kind, temporality, monotonic, scope, "
    f"{', '.join(COMMON_COLUMNS.values())}, attrs) VALUES ({', '.join('?' * (9 + len(COMMON_COLUMNS)))})"
)
_INSERT_POINT = "INSERT OR IGNORE INTO points (series_id, start_ns, time_ns, value) VALUES (?, ?, ?, ?)"
_INSERT_POINT_EXTRA = (
    "INSERT OR IGNORE INTO points (series_id, start_ns, time_ns, value, extra) VALUES (?, ?, ?, ?, ?)"
)
_MEASURES_AT = 4 + len(EVENT_COLUMNS)  # where an event row's measures start


_INSERT_EVENT = (
    f"INSERT OR IGNORE INTO events (key, family_id, name, time_ns, {', '.join(EVENT_COLUMNS.values())}, "
    f"{', '.join(EVENT_MEASURES)}, sample, attrs, body) "
    f"VALUES ({', '.join('?' * (4 + len(EVENT_COLUMNS) + len(EVENT_MEASURES) + 3))})"
)


def sample_level(key: bytes) -> int:
    """Trailing zero bits of the event's hash: level L or above holds 1 in 2**L events, chosen evenly."""
    number = int.from_bytes(split_event_key(key)[1][:8], "little")
    return (number & -number).bit_length() - 1 if number else 64


def _frozen(attrs: dict[str, Any]) -> tuple[Any, ...]:
    try:
        return tuple(sorted(attrs.items()))
    except TypeError:  # lists or maps among the values: compare their JSON instead
        return tuple(sorted((k, _json(v)) for k, v in attrs.items()))


def _digest(identity: tuple[Any, ...]) -> bytes:
    return hashlib.blake2b(_json(identity).encode(), digest_size=16).digest()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    return None


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
