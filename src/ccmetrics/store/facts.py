"""The few primitive questions every panel and summary is built from, asked under one set of filters.

Answers come from the hourly rollups wherever whole hours are asked for, and from the raw points and
events only for the partial hours at the edges of the range (or for one session), so they are exact and
cheap at once. Everything is totalled per family first (a series without its session: a few per person);
grouping by any attribute then happens on those few rows. Each primitive is memoised for the life of a
``Facts``, so a dashboard that shows one number in several panels computes it once.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from .filters import Filters
from .schema import (
    EVENT_COLUMNS,
    EVENT_DIMENSIONS,
    EVENT_MEASURES,
    FAMILY_COLUMNS,
    HOUR_NS,
    NOT_IN_FAMILY,
    TIERS,
)

Key = tuple[Any, ...]
T = TypeVar("T")
SAMPLE_TARGET = 5_000  # events read (about, at most) for percentiles: p95 to within a fraction of a percent
MAX_CACHED_FAMILY_KEYS = 200_000  # (family, grouping) pairs FamilyCache keeps: 10 to 50 MB
KEEP_GROUPING_S = 60  # a grouping used this recently is not forgotten to make room for another
FEW_EVENTS = 4 * SAMPLE_TARGET  # under a filter, this many events are cheaper to read by family than sampled
PERCENTILE_MEASURES = ("duration_ms", "ttft_ms")
NO_FILTERS = Filters()  # the default: everything; frozen, so one instance serves every caller
Span = tuple[str, int | None, int | None]  # ("day" | "hour" | "raw", from, to)


@dataclass(frozen=True)
class Stats:
    count: int  # events that carry the measure
    total: float
    p50: float | None
    p95: float | None
    sampled: bool = False  # percentiles read from an even sample of the events

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


# An event family's totals as read: [count, then (sum, count) for each of EVENT_MEASURES], added up in place.
_SUM_AT = {measure: 1 + 2 * i for i, measure in enumerate(EVENT_MEASURES)}


def memoized(method: Callable[..., T]) -> Callable[..., T]:
    """Remember a method's answers on its instance (functools.cache would keep every instance alive)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any) -> T:
        key = (method.__name__, args)
        memo = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            memo[key] = method(self, *args)
        return memo[key]

    return wrapper


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least a share q of all values at or below it."""
    if not sorted_values:
        return None
    return sorted_values[max(1, math.ceil(q * len(sorted_values))) - 1]


class FamilyCache:
    """Metric or event names and group keys of families, by id. Families never change once written, so what
    is learnt about them stays right. A group key (the values of a tuple of attribute keys) is read once per
    family and grouping, straight from SQL (only those attributes, never a family's whole JSON), so grouping
    thousands of families is one dictionary lookup each.

    Bounded, whatever clients send: at most ``max_entries`` (family, grouping) pairs are kept between
    requests, and groupings used least recently are forgotten first, but only those not used for a minute:
    the groupings a dashboard asks for in turn would otherwise push each other out, and none would ever be
    found. A grouping that does not fit is worked out for the request that asks and not kept: a store with
    more families than that (a cardinality flood) costs time, its keys read again by every request, never
    memory that stays.
    """

    _NAME = {"families": "metric", "event_families": "name"}

    def __init__(self, max_entries: int = MAX_CACHED_FAMILY_KEYS) -> None:
        self._max = max_entries
        # By (table, attribute keys, or None for the names): family id -> key (or name).
        self._kept: OrderedDict[tuple[str, tuple[str, ...] | None], dict[int, Any]] = OrderedDict()
        self._used: dict[tuple[str, tuple[str, ...] | None], float] = {}  # when each was last asked for
        self._size = 0
        self._lock = threading.Lock()  # the reader threads share the cache

    @property
    def entries(self) -> int:
        """(family, grouping) pairs kept."""
        return self._size

    def names(self, conn: sqlite3.Connection, table: str, ids: Iterable[int]) -> dict[int, str]:
        """``{family_id: metric or event name}`` for (at least) the families asked for."""
        return self._lookup(conn, table, ids, None)

    def keys(
        self, conn: sqlite3.Connection, table: str, ids: Iterable[int], by: tuple[str, ...]
    ) -> dict[int, Key]:
        """``{family_id: (value of each key in by)}`` for (at least) the families asked for."""
        return self._lookup(conn, table, ids, by)

    def _lookup(
        self, conn: sqlite3.Connection, table: str, ids: Iterable[int], by: tuple[str, ...] | None
    ) -> dict[int, Any]:
        grouping = (table, by)
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(grouping)
            if kept is not None:
                self._kept.move_to_end(grouping)
                self._used[grouping] = now
        known = kept if kept is not None else {}
        asked = ids if isinstance(ids, set | dict) else set(ids)
        missing = [family_id for family_id in asked if family_id not in known]
        if not missing:
            return known
        loaded = self._read(conn, table, missing, by)
        with self._lock:
            kept = self._kept.get(grouping)
            for other in list(self._kept):  # make room: the groupings used least recently go first
                if self._size + len(loaded) <= self._max or now - self._used[other] < KEEP_GROUPING_S:
                    break
                if other != grouping:
                    self._size -= len(self._kept.pop(other))
                    del self._used[other]
            if self._size + len(loaded) <= self._max:
                self._used[grouping] = now
                if kept is None:
                    kept = self._kept[grouping] = {}
                before = len(kept)
                kept.update(loaded)  # never removed from while kept: other threads may be reading it
                self._size += len(kept) - before
                return kept
        for family_id in asked:  # too many to keep: this request's own answer
            if family_id in known:
                loaded[family_id] = known[family_id]
        return loaded

    def _read(
        self, conn: sqlite3.Connection, table: str, ids: list[int], by: tuple[str, ...] | None
    ) -> dict[int, Any]:
        out: dict[int, Any] = {}
        if by is None:
            sql = f"SELECT id, {self._NAME[table]} FROM {table} WHERE id IN (SELECT value FROM json_each(?))"
            out.update(conn.execute(sql, (json.dumps(ids),)))
            return {family_id: out.get(family_id, "") for family_id in ids}
        if not by:
            return dict.fromkeys(ids, ())
        columns = ", ".join("json_type(attrs, ?), json_extract(attrs, ?)" for _ in by)
        sql = f"SELECT id, {columns} FROM {table} WHERE id IN (SELECT value FROM json_each(?))"
        params = [path for key in by for path in (json_path(key), json_path(key))]
        shared: dict[Key, Key] = {}  # one tuple per distinct key, however many families share it
        for family_id, *typed in conn.execute(sql, (*params, json.dumps(ids))):
            key = tuple(_json_value(typed[i], typed[i + 1]) for i in range(0, len(typed), 2))
            out[family_id] = shared.setdefault(key, key)
        nothing = (None,) * len(by)
        return {family_id: out.get(family_id, nothing) for family_id in ids}


def _json_value(kind: str | None, value: Any) -> Any:
    """An attribute's value as json.loads gives it, from SQLite's json_type and json_extract."""
    if kind == "true":
        return True
    if kind == "false":
        return False
    if kind in ("array", "object"):
        return json.loads(value)
    return value  # text, integer, real; None for null or a missing key


class AnswerCache:
    """Answers read from the rollups, kept for as long as the hours they cover do not change.

    Every transaction that adds to an hour bumps that hour's version (``hour_versions``), so an answer is
    reused only while the versions of its hours are what they were when it was read: a month of history is
    read once, and then only the hours still receiving data are read again. Bounded by the rows it holds.
    """

    def __init__(self, max_rows: int = 100_000) -> None:
        self._answers: OrderedDict[Key, tuple[Key, list[tuple[Any, ...]]]] = OrderedDict()
        self._rows = 0
        self._max_rows = max_rows
        self._lock = threading.Lock()

    def rows(
        self, conn: sqlite3.Connection, sql: str, params: list[Any], lo: int | None, hi: int | None
    ) -> list[tuple[Any, ...]]:
        # The versions are read before the answer: a commit landing in between can only make it look stale.
        version = conn.execute(
            "SELECT COUNT(*), TOTAL(version) FROM hour_versions WHERE start_ns >= ? AND start_ns < ?",
            (-(2**63) if lo is None else lo, 2**63 - 1 if hi is None else hi),
        ).fetchone()
        key = (sql, *params)
        with self._lock:
            known = self._answers.get(key)
            if known is not None and known[0] == version:
                self._answers.move_to_end(key)
                return known[1]
        rows = conn.execute(sql, params).fetchall()
        with self._lock:
            old = self._answers.pop(key, None)
            self._rows -= len(old[1]) if old else 0
            if len(rows) <= self._max_rows // 4:
                self._answers[key] = (version, rows)
                self._rows += len(rows)
            while self._rows > self._max_rows:
                _, (_, dropped) = self._answers.popitem(last=False)
                self._rows -= len(dropped)
        return rows


def _split(lo: int | None, hi: int | None, tiers: list[tuple[str, int]]) -> list[Span]:
    """Cut [lo, hi) into the largest whole units of the first tier, the remainders into the next ones."""
    if lo is not None and hi is not None and lo >= hi:
        return []
    if not tiers:
        return [("raw", lo, hi)]
    (tier, size), finer = tiers[0], tiers[1:]
    first = -(-lo // size) * size if lo is not None else None
    last = hi // size * size if hi is not None else None
    if first is not None and last is not None and first >= last:
        return _split(lo, hi, finer)
    head = _split(lo, first, finer) if lo is not None else []
    tail = _split(last, hi, finer) if hi is not None else []
    return [*head, (tier, first, last), *tail]


def _on(where: str, family_column: str) -> str:
    """Filter conditions, aimed at the family id column of the table being read. A unary plus
    (``+s.family_id``) keeps SQLite on the time index when only a few minutes of raw points are wanted."""
    return where.replace("{fid}", family_column)


def json_path(key: str) -> str:
    return '$."' + key.replace('"', "") + '"'


def _sum_by(values: dict[int, T], keys: dict[int, Key]) -> dict[Key, T]:
    """Per-family numbers added up per group key."""
    out: dict[Key, Any] = {}
    for family_id, value in values.items():
        key = keys[family_id]
        out[key] = out.get(key, 0) + value
    return out


def _group(totals: dict[int, T], keys: dict[int, Key]) -> dict[Key, list[T]]:
    groups: dict[Key, list[T]] = defaultdict(list)
    for family_id, value in totals.items():
        groups[keys[family_id]].append(value)
    return groups


class Facts:
    def __init__(
        self,
        conn: sqlite3.Connection,
        filters: Filters = NO_FILTERS,
        cache: FamilyCache | None = None,
        answers: AnswerCache | None = None,
    ) -> None:
        self.conn = conn
        self.filters = filters
        self.cache = cache or FamilyCache()
        self.answers = answers

    # --- where to read from ---------------------------------------------------------------------------

    def _spans(self, raw_only: bool, bucket_ns: int | None = None) -> list[Span]:
        """Pieces of the time range and where each is read: whole days from the daily rollups, whole hours
        from the hourly ones, the rest from raw rows; a chart's buckets must be whole units of the tier."""
        lo, hi = self.filters.since_ns, self.filters.until_ns
        if raw_only:
            return [("raw", lo, hi)]
        tiers = [(tier, size) for tier, size in TIERS.items() if not bucket_ns or bucket_ns % size == 0]
        tiers.sort(key=lambda t: -t[1])
        now_hour = time.time_ns() // HOUR_NS * HOUR_NS
        if hi is None and (lo is None or lo < now_hour):
            # Up to now: the hours before this one no longer receive data, so they are a piece of their own,
            # whose answer can be kept (see AnswerCache); only this hour's piece is read every time.
            return [*self._pieces(lo, now_hour, tiers), *self._pieces(now_hour, None, tiers)]
        return self._pieces(lo, hi, tiers)

    def _pieces(self, lo: int | None, hi: int | None, tiers: list[tuple[str, int]]) -> list[Span]:
        """``_split``, with the days that have no daily sums yet (today, and any after) read by the hour."""
        closed = self._closed_until
        by_hour = [(tier, size) for tier, size in tiers if tier != "day"]
        if hi is not None and hi <= closed:
            return _split(lo, hi, tiers)
        if lo is not None and lo >= closed:
            return _split(lo, hi, by_hour)
        return [*_split(lo, closed, tiers), *_split(closed, hi, by_hour)]

    @functools.cached_property
    def _closed_until(self) -> int:
        """Days before this have their daily sums (read first: it only grows, and days read by the hour are
        right either way)."""
        return self.conn.execute("SELECT until_ns FROM closed_days").fetchone()[0]

    def _read(
        self, source: str, lo: int | None, hi: int | None, sql: str, params: list[Any]
    ) -> Iterable[Any]:
        """Rows of a query on one piece of the range; answers from rollups are reused while still right."""
        if source == "raw" or self.answers is None:
            return self.conn.execute(sql, params)
        return self.answers.rows(self.conn, sql, params, lo, hi)

    @staticmethod
    def _time(column: str, lo: int | None, hi: int | None) -> tuple[str, list[int]]:
        clauses, params = [], []
        if lo is not None:
            clauses.append(f"{column} >= ?")
            params.append(lo)
        if hi is not None:
            clauses.append(f"{column} < ?")
            params.append(hi)
        return " AND ".join(clauses) or "1", params

    @functools.cached_property
    def _metric_filter(self) -> tuple[str, list[Any], bool]:
        """Conditions on ``family_id`` (and ``s.session_id``), and whether only raw points can answer."""
        clauses, params, raw_only = [], [], False
        for key, value in self.filters.attrs:
            if key == "session.id":
                clauses.append("s.session_id = ?")
                raw_only = True
            elif key in NOT_IN_FAMILY:
                clauses.append("CAST(json_extract(s.attrs, ?) AS TEXT) = ?")
                params.append(json_path(key))
                raw_only = True
            else:
                clauses.append("{fid} IN (SELECT family_id FROM family_attrs WHERE key = ? AND value = ?)")
                params.append(key)
            params.append(value)
        return " AND ".join(clauses) or "1", params, raw_only

    @functools.cached_property
    def _raw_points(self) -> tuple[str, list[Any]]:
        """What raw reads of points (``p``, with their series ``s``) read from, and its parameters. Points are
        ordered by time: a range of time is read straight from them, a session through the times it sent."""
        sessions = [value for key, value in self.filters.attrs if key == "session.id"]
        if not sessions:
            return "points p CROSS JOIN series s ON s.id = p.series_id", []
        return (
            "session_times t CROSS JOIN points p ON p.time_ns = t.time_ns "
            "CROSS JOIN series s ON s.id = p.series_id "
            f"AND {' AND '.join('t.session_id = ?' for _ in sessions)}",
            sessions,
        )

    @functools.cached_property
    def _event_filter(self) -> tuple[str, list[Any], bool]:
        clauses, params, raw_only = [], [], False
        for key, value in self.filters.attrs:
            if key not in NOT_IN_FAMILY and (key in EVENT_DIMENSIONS or self._is_event_dimension(key)):
                clauses.append(
                    "{fid} IN (SELECT family_id FROM event_family_attrs WHERE key = ? AND value = ?)"
                )
                params += [key, value]
            elif key in EVENT_COLUMNS:
                clauses.append(f"e.{EVENT_COLUMNS[key]} = ?")
                params.append(value)
                raw_only = True
            else:
                clauses.append("CAST(json_extract(e.attrs, ?) AS TEXT) = ?")
                params += [json_path(key), value]
                raw_only = True
        return " AND ".join(clauses) or "1", params, raw_only

    def _is_event_dimension(self, key: str) -> bool:
        return (
            self.conn.execute("SELECT 1 FROM event_family_attrs WHERE key = ? LIMIT 1", (key,)).fetchone()
            is not None
        )

    # --- metrics --------------------------------------------------------------------------------------

    @memoized
    def family_totals(
        self, metric: str, bucket_ns: int | None = None, columns: tuple[str, ...] = ()
    ) -> dict[Key, float]:
        """A counter's increments per family, or per value of common ``columns`` (grouped in SQL, for big
        groupings such as timelines), and per time bucket when asked:
        ``{(family_id | *values[, bucket]): sum}``."""
        where, params, raw_only = self._metric_filter
        out: dict[Key, float] = defaultdict(float)
        for source, lo, hi in self._spans(raw_only, bucket_ns):
            rollup = source != "raw"
            time_column = "r.start_ns" if rollup else "p.time_ns"
            owner = "f" if rollup else "s"
            keys = [f"{owner}.{FAMILY_COLUMNS[c]}" for c in columns] or [
                f"{owner}.{'id' if rollup else 'family_id'}"
            ]
            if bucket_ns:
                keys.append(f"{time_column} - {time_column} % {int(bucket_ns)}")
            group = ", ".join(str(i + 1) for i in range(len(keys)))
            time_sql, time_params = self._time(time_column, lo, hi)
            if rollup:
                sql = (
                    f"SELECT {', '.join(keys)}, SUM(r.value) FROM rollup_{source} r "
                    "CROSS JOIN families f ON f.id = r.family_id WHERE f.metric = ? AND f.kind = 'sum' "
                    f"AND {time_sql} AND {_on(where, 'r.family_id')} GROUP BY {group}"
                )
                args = [metric, *time_params, *params]
            else:
                points, points_params = self._raw_points
                sql = (
                    f"SELECT {', '.join(keys)}, SUM(p.value) FROM {points} "
                    f"WHERE s.metric = ? AND s.kind = 'sum' AND {time_sql} AND {_on(where, '+s.family_id')} "
                    f"GROUP BY {group}"
                )
                args = [*points_params, metric, *time_params, *params]
            for *key, value in self._read(source, lo, hi, sql, args):
                out[tuple(key)] += value
        return dict(out)

    @memoized
    def _all_metric_sums(self) -> dict[int, float]:
        """Every counter's increments per family in one pass: the panels then pick the metrics they show."""
        where, params, raw_only = self._metric_filter
        out: dict[int, float] = defaultdict(float)
        for source, lo, hi in self._spans(raw_only):
            if source != "raw":
                time_sql, time_params = self._time("r.start_ns", lo, hi)
                sql = (
                    f"SELECT r.family_id, SUM(r.value) FROM rollup_{source} r WHERE {time_sql} "
                    f"AND {_on(where, 'r.family_id')} GROUP BY 1"
                )
                args = [*time_params, *params]
            else:
                time_sql, time_params = self._time("p.time_ns", lo, hi)
                points, points_params = self._raw_points
                sql = (
                    f"SELECT s.family_id, SUM(p.value) FROM {points} "
                    f"WHERE s.kind = 'sum' AND {time_sql} AND {_on(where, '+s.family_id')} GROUP BY 1"
                )
                args = [*points_params, *time_params, *params]
            for family_id, value in self._read(source, lo, hi, sql, args):
                out[family_id] += value
        return dict(out)

    @memoized
    def _metric_sums_by_name(self) -> dict[str, dict[int, float]]:
        return self._by_name("families", self._all_metric_sums())

    def _by_name(self, table: str, totals: dict[int, T]) -> dict[str, dict[int, T]]:
        """Per-family totals split by the families' metric or event name, in one pass."""
        names = self.cache.names(self.conn, table, totals)
        out: dict[str, dict[int, T]] = defaultdict(dict)
        for family_id, value in totals.items():
            out[names.get(family_id, "")][family_id] = value
        return out

    @memoized
    def metric_totals(self, metric: str, by: tuple[str, ...] = ()) -> dict[Key, float]:
        """Sum of a counter's increments, grouped by attributes."""
        per_family = self._metric_sums_by_name().get(metric, {})
        return _sum_by(per_family, self.cache.keys(self.conn, "families", per_family, by))

    @memoized
    def metric_timeline(self, metric: str, by: tuple[str, ...], bucket_ns: int) -> dict[Key, float]:
        """Like ``metric_totals``, with the start of the time bucket as the key's first element."""
        if all(key in FAMILY_COLUMNS for key in by):
            return {
                (bucket, *values): v
                for (*values, bucket), v in self.family_totals(metric, bucket_ns, by).items()
            }
        totals = self.family_totals(metric, bucket_ns)
        keys = self.cache.keys(self.conn, "families", {family_id for family_id, _ in totals}, by)
        out: dict[Key, float] = defaultdict(float)
        for (family_id, bucket), value in totals.items():
            out[(bucket, *keys[family_id])] += value
        return dict(out)

    def metric_total(self, metric: str, **where: str) -> float:
        """One number: the counter's total, optionally only where attributes have the given values."""
        totals = self.metric_totals(metric, tuple(where))
        return totals.get(tuple(where.values()), 0.0) if where else sum(totals.values())

    # --- events ---------------------------------------------------------------------------------------

    def event_family_totals(self, name: str) -> dict[int, list[float]]:
        """Each family's ``[count, then sum and count of each of EVENT_MEASURES]`` for one event name."""
        return self._event_totals_by_name().get(name, {})

    @memoized
    def _event_totals_by_name(self) -> dict[str, dict[int, list[float]]]:
        return self._by_name("event_families", self._all_event_totals())

    @memoized
    def _all_event_totals(self) -> dict[int, list[float]]:
        """Counts and measure sums of every event family in one pass."""
        where, params, raw_only = self._event_filter
        sums = ", ".join(f"SUM(r.{m}_sum), SUM(r.{m}_count)" for m in EVENT_MEASURES)
        raw_sums = ", ".join(f"TOTAL(e.{m}), COUNT(e.{m})" for m in EVENT_MEASURES)
        out: dict[int, list[float]] = {}
        for source, lo, hi in self._spans(raw_only):
            if source != "raw":
                time_sql, time_params = self._time("r.start_ns", lo, hi)
                sql = (
                    f"SELECT r.family_id, SUM(r.count), {sums} FROM event_rollup_{source} r WHERE {time_sql} "
                    f"AND {_on(where, 'r.family_id')} GROUP BY 1"
                )
            else:
                time_sql, time_params = self._time("e.time_ns", lo, hi)
                sql = (
                    f"SELECT e.family_id, COUNT(*), {raw_sums} FROM events e WHERE {time_sql} "
                    f"AND {_on(where, 'e.family_id')} GROUP BY 1"
                )
            for family_id, *values in self._read(source, lo, hi, sql, [*time_params, *params]):
                mine = out.get(family_id)
                if mine is None:
                    out[family_id] = [v or 0 for v in values]
                else:
                    for i, value in enumerate(values):
                        mine[i] += value or 0
        return out

    def event_values(self, name: str, measure: str) -> tuple[list[tuple[int, float]], bool]:
        """``(family_id, value)`` of a measure for percentiles, and whether they are an even sample."""
        rows, sampled = self._event_samples(name)
        column = PERCENTILE_MEASURES.index(measure) + 1
        return [(row[0], row[column]) for row in rows if row[column] is not None], sampled

    @memoized
    def _event_samples(self, name: str) -> tuple[list[tuple[Any, ...]], bool]:
        """Every percentile measure of an event, read in one pass over a covering index.

        Past SAMPLE_TARGET events, only the events of a high enough sample level are read: a uniform
        sample of a known fraction, so a month of a large team costs no more than a busy hour. When a
        filter leaves only a few events, they are read family by family instead of picked out of all.
        """
        totals = self.event_family_totals(name)
        total = sum(t[0] for t in totals.values())
        level = math.ceil(math.log2(total / SAMPLE_TARGET)) if total > SAMPLE_TARGET else 0
        where, params, _ = self._event_filter
        time_sql, time_params = self._time("e.time_ns", self.filters.since_ns, self.filters.until_ns)
        measures = ", ".join(f"e.{m}" for m in PERCENTILE_MEASURES)
        if self.filters.attrs and total <= FEW_EVENTS:
            sql = (
                f"SELECT e.family_id, {measures} FROM events e INDEXED BY events_family "
                f"WHERE e.family_id IN (SELECT value FROM json_each(?)) AND e.sample >= ? AND {time_sql} "
                f"AND {_on(where, 'e.family_id')}"
            )
            args = [json.dumps(list(totals)), level, *time_params, *params]
        else:
            sql = (
                f"SELECT e.family_id, {measures} FROM events e "
                f"WHERE e.name = ? AND e.sample >= ? AND {time_sql} AND {_on(where, 'e.family_id')}"
            )
            args = [name, level, *time_params, *params]
        return self.conn.execute(sql, args).fetchall(), level > 0

    @memoized
    def event_counts(self, name: str, by: tuple[str, ...] = ()) -> dict[Key, int]:
        # the first of a family's totals is its count, an int, though the list is typed as floats
        counts = cast(
            dict[int, int], {family_id: t[0] for family_id, t in self.event_family_totals(name).items()}
        )
        return _sum_by(counts, self.cache.keys(self.conn, "event_families", counts, by))

    @memoized
    def event_stats(self, name: str, measure: str, by: tuple[str, ...] = ()) -> dict[Key, Stats]:
        """Count, sum and percentiles of an event measure (latency, duration, length), by attributes."""
        totals = self.event_family_totals(name)
        values, sampled = self.event_values(name, measure) if measure in PERCENTILE_MEASURES else ([], False)
        keys = self.cache.keys(self.conn, "event_families", set(totals).union(f for f, _ in values), by)
        per_group: dict[Key, list[float]] = defaultdict(list)
        for family_id, value in values:
            per_group[keys[family_id]].append(value)
        at = _SUM_AT[measure]
        out = {}
        for key, family_totals in _group(totals, keys).items():
            count = sum(t[at + 1] for t in family_totals)
            total = sum(t[at] for t in family_totals)
            ordered = sorted(per_group.get(key, ()))
            if count:
                out[key] = Stats(
                    int(count), total, percentile(ordered, 0.5), percentile(ordered, 0.95), sampled
                )
        return out

    # --- sessions -------------------------------------------------------------------------------------

    @functools.cached_property
    def _sessions_in_range(self) -> tuple[str, list[Any]]:
        """Conditions on ``sessions t``: active in the range, and under the filters."""
        where, params, _ = self._metric_filter
        lo, hi = self.filters.since_ns, self.filters.until_ns
        clauses, args = [], []
        if lo is not None:
            clauses.append("t.last_ns >= ?")
            args.append(lo)
        if hi is not None:
            clauses.append("t.first_ns < ?")
            args.append(hi)
        if self.filters.attrs:
            clauses.append(
                f"t.session_id IN (SELECT s.session_id FROM series s WHERE {_on(where, 's.family_id')})"
            )
            args += params
        return " AND ".join(clauses) or "1", args

    @memoized
    def session_count(self) -> int:
        """Sessions active in the range (under the filters)."""
        where, args = self._sessions_in_range
        return self.conn.execute(f"SELECT COUNT(*) FROM sessions t WHERE {where}", args).fetchone()[0]

    def sessions(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recently active sessions (under the filters), with their totals in the range."""
        where, params, _ = self._metric_filter
        lo, hi = self.filters.since_ns, self.filters.until_ns
        in_range, args = self._sessions_in_range
        ids = [
            row[0]
            for row in self.conn.execute(
                f"SELECT t.session_id FROM sessions t WHERE {in_range} ORDER BY t.last_ns DESC LIMIT ?",
                [*args, limit],
            )
        ]
        if not ids:
            return []
        time_sql, time_params = self._time("t.time_ns", lo, hi)
        rows = self.conn.execute(
            f"""
            SELECT s.session_id, MIN(p.start_ns), MAX(p.time_ns), MAX(s.user_id), MAX(s.user_email),
                   GROUP_CONCAT(DISTINCT s.model),
                   SUM(CASE WHEN s.metric = 'claude_code.cost.usage' THEN p.value END),
                   SUM(CASE WHEN s.metric = 'claude_code.token.usage' THEN p.value END),
                   SUM(CASE WHEN s.metric = 'claude_code.lines_of_code.count' AND s.type = 'added'
                       THEN p.value END),
                   SUM(CASE WHEN s.metric = 'claude_code.lines_of_code.count' AND s.type = 'removed'
                       THEN p.value END),
                   SUM(CASE WHEN s.metric = 'claude_code.commit.count' THEN p.value END)
            FROM session_times t CROSS JOIN points p ON p.time_ns = t.time_ns
            CROSS JOIN series s ON s.id = p.series_id AND s.session_id = t.session_id
            WHERE t.session_id IN ({", ".join("?" * len(ids))}) AND s.kind = 'sum'
              AND s.metric LIKE 'claude_code.%' AND {time_sql} AND {_on(where, "+s.family_id")}
            GROUP BY s.session_id
            ORDER BY MAX(p.time_ns) DESC
            """,
            [*ids, *time_params, *params],
        ).fetchall()
        prompts = self._prompts_per_session(ids)
        return [
            {
                "session_id": sid,
                "start_ns": start or end,
                "end_ns": end,
                "user_id": user,
                "user_email": email,
                "models": sorted(m for m in (models or "").split(",") if m),
                "prompts": prompts.get(sid, 0),
                "cost_usd": cost or 0.0,
                "tokens": tokens or 0,
                "lines_added": added or 0,
                "lines_removed": removed or 0,
                "commits": commits or 0,
                "duration_s": max(0.0, (end - (start or end)) / 1e9),
            }
            for sid, start, end, user, email, models, cost, tokens, added, removed, commits in rows
        ]

    def _prompts_per_session(self, session_ids: list[str]) -> dict[str, int]:
        where, params, _ = self._event_filter
        # The unary + keeps SQLite on the session index: a few sessions, not a month of prompts.
        time_sql, time_params = self._time("+e.time_ns", self.filters.since_ns, self.filters.until_ns)
        return dict(
            self.conn.execute(
                f"SELECT e.session_id, COUNT(*) FROM events e WHERE +e.name = 'user_prompt' "
                f"AND e.session_id IN ({', '.join('?' * len(session_ids))}) AND {time_sql} "
                f"AND {_on(where, 'e.family_id')} GROUP BY e.session_id",
                [*session_ids, *time_params, *params],
            ).fetchall()
        )


# --- what there is to filter on, and one session in detail -------------------------------------------


FILTER_CHOICES = 100  # users, models, keys, and values of a key that /api/filters lists at most


def _containing(q: str | None, *columns: str) -> tuple[str, list[str]]:
    """A condition that one of the columns contains ``q``, ignoring the case of letters A-Z (SQLite's
    lower()); always true without ``q``."""
    if not q:
        return "1", []
    return "(" + " OR ".join(f"instr(lower({c}), ?) > 0" for c in columns) + ")", [q.lower()] * len(columns)


def _most_common(
    conn: sqlite3.Connection, sql: str, params: list[Any], limit: int
) -> tuple[list[tuple[Any, ...]], bool]:
    """Up to ``limit`` rows of a query ordered by how common they are, and whether there were more."""
    rows = conn.execute(f"{sql} LIMIT ?", [*params, limit + 1]).fetchall()
    return rows[:limit], len(rows) > limit


def filter_options(
    conn: sqlite3.Connection, q: str | None = None, limit: int = FILTER_CHOICES
) -> dict[str, Any]:
    """Users, models and attribute keys to filter on: at most ``limit`` of each, the most common first (in
    the most families), only those containing ``q`` when given (a user's id or email). ``*_truncated`` says
    that a list was cut (``truncated``: any of them): search with ``q`` for the rest."""
    where, params = _containing(q, "user_id", "coalesce(user_email, '')")
    users, users_cut = _most_common(
        conn,
        "SELECT user_id, MAX(user_email) FROM families WHERE user_id IS NOT NULL AND "
        f"{where} GROUP BY user_id ORDER BY COUNT(*) DESC, user_id",
        params,
        limit,
    )
    where, params = _containing(q, "model")
    models, models_cut = _most_common(
        conn,
        f"SELECT model FROM families WHERE model IS NOT NULL AND {where} GROUP BY model "
        "ORDER BY COUNT(*) DESC, model",
        params,
        limit,
    )
    where, params = _containing(q, "key")
    keys, keys_cut = _most_common(
        conn,
        f"SELECT key FROM family_attrs WHERE {where} GROUP BY key ORDER BY COUNT(*) DESC, key",
        params,
        limit,
    )
    return {
        "users": [{"id": user, "email": email} for user, email in users],
        "models": [row[0] for row in models],
        "keys": [row[0] for row in keys],
        "truncated": users_cut or models_cut or keys_cut,
        "users_truncated": users_cut,
        "models_truncated": models_cut,
        "keys_truncated": keys_cut,
    }


def attribute_values(
    conn: sqlite3.Connection, key: str, q: str | None = None, limit: int = FILTER_CHOICES
) -> dict[str, Any]:
    """Values of an attribute key: at most ``limit``, the most common first, only those containing ``q``
    when given; ``truncated`` says there were more."""
    where, params = _containing(q, "value")
    rows, cut = _most_common(
        conn,
        f"SELECT value FROM family_attrs WHERE key = ? AND {where} GROUP BY value "
        "ORDER BY COUNT(*) DESC, value",
        [key, *params],
        limit,
    )
    return {"key": key, "values": [row[0] for row in rows], "truncated": cut}


TIMELINE_FIELDS = (
    "prompt.id",
    "prompt_length",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cost_usd",
    "duration_ms",
    "ttft_ms",
    "tool_name",
    "decision",
    "source",
    "success",
    "error",
    "status_code",
    "attempt",
    "response_length",
    "query_source",
    "effort",
)


def session_timeline(conn: sqlite3.Connection, session_id: str, limit: int = 5000) -> list[dict[str, Any]]:
    """What happened in a session, in order. Only whitelisted fields: never conversation text."""
    rows = conn.execute(
        "SELECT time_ns, name, attrs FROM events WHERE session_id = ? ORDER BY time_ns, "
        "CAST(json_extract(attrs, '$.\"event.sequence\"') AS INTEGER) LIMIT ?",
        (session_id, limit),
    ).fetchall()
    timeline = []
    for time_ns, name, attrs in rows:
        values = json.loads(attrs)
        timeline.append(
            {
                "time_ns": time_ns,
                "name": name,
                "fields": {k: values[k] for k in TIMELINE_FIELDS if k in values},
            }
        )
    return timeline
