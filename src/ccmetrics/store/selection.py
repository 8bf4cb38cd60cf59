"""The data a request selects (a time range and attribute filters), and the few questions every panel and
the summary ask of it: counter totals, event counts and measures, and sessions.

Answers come from the rollups wherever whole hours are asked for, and from the raw points and events only
for the partial hours at the edges of the range (or for one session): see ``ranges.plan``. Everything is
totalled per family first (a series without its session: a few per person); grouping by any attribute then
happens on those few rows. Each answer is kept for the life of a ``Selection`` (one request), so a
dashboard that shows one number in several panels computes it once.
"""

from __future__ import annotations

import functools
import math
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ..metrics import COMMITS, COST, LINES, TOKENS, Metric
from . import queries
from .caches import AnswerCache, FamilyCache, Key
from .filters import Filters
from .queries import PERCENTILE_MEASURES, EventFilter, FamilyTable, MetricFilter, Query
from .ranges import RangePart, plan
from .schema import EVENT_DIMENSIONS, EVENT_MEASURES, FAMILY_COLUMNS, NOT_IN_FAMILY

T = TypeVar("T")
SAMPLE_TARGET = 5_000  # events read (about, at most) for percentiles: p95 to within a fraction of a percent
FEW_EVENTS = 4 * SAMPLE_TARGET  # under a filter, this many events are cheaper to read by family than sampled
NO_FILTERS = Filters()  # the default: everything; frozen, so one instance serves every caller


@dataclass(frozen=True)
class Stats:
    """An event measure's statistics (latency, duration, length)."""

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
        memo: dict[Any, T] = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            memo[key] = method(self, *args)
        return memo[key]

    return wrapper


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least a share q of all values at or below it."""
    if not sorted_values:
        return None
    return sorted_values[max(1, math.ceil(q * len(sorted_values))) - 1]


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


class Selection:
    """The data under one set of filters, read through one connection (in one transaction when run by
    ``Store.read``), for one request."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        filters: Filters = NO_FILTERS,
        family_cache: FamilyCache | None = None,
        answers: AnswerCache | None = None,
    ) -> None:
        self.conn = conn
        self.filters = filters
        self.family_cache = family_cache or FamilyCache()
        self.answers = answers
        self.metric_filter = MetricFilter(filters.attrs)

    # --- where to read from ---------------------------------------------------------------------------

    def _parts(self, raw_only: bool, bucket_ns: int | None = None) -> list[RangePart]:
        """The parts of the range and where each is read (see ``ranges.plan``)."""
        since, until = self.filters.since_ns, self.filters.until_ns
        if raw_only:
            return plan(since, until, days_closed_until=0, now_ns=0, raw_only=True)
        return plan(
            since,
            until,
            days_closed_until=self._days_closed_until,
            now_ns=time.time_ns(),
            bucket_ns=bucket_ns,
        )

    @functools.cached_property
    def _days_closed_until(self) -> int:
        """Days before this have their daily sums."""
        return int(self.conn.execute(queries.DAYS_CLOSED_UNTIL).fetchone()[0])

    def _rows(self, part: RangePart, query: Query) -> Iterable[Any]:
        """Rows of a query on one part of the range; answers from the rollups are reused while still right."""
        if part.source == "raw" or self.answers is None:
            return self.conn.execute(query.sql, query.params)
        return self.answers.rows(self.conn, query, part.since_ns, part.until_ns)

    @functools.cached_property
    def event_filter(self) -> EventFilter:
        attrs = self.filters.attrs
        dimensions = frozenset(
            key
            for key, _ in attrs
            if key not in NOT_IN_FAMILY
            and key not in queries.SESSION_PLACES
            and (key in EVENT_DIMENSIONS or self._is_event_dimension(key))
        )
        return EventFilter(attrs, dimensions)

    def _is_event_dimension(self, key: str) -> bool:
        return self.conn.execute(queries.IS_EVENT_DIMENSION, (key,)).fetchone() is not None

    def _by_name(self, table: FamilyTable, totals: dict[int, T]) -> dict[str, dict[int, T]]:
        """Per-family totals split by the families' metric or event name, in one pass."""
        names = self.family_cache.names(self.conn, table, totals)
        out: dict[str, dict[int, T]] = defaultdict(dict)
        for family_id, value in totals.items():
            out[names.get(family_id, "")][family_id] = value
        return out

    # --- metrics --------------------------------------------------------------------------------------

    @memoized
    def family_totals(
        self, metric: Metric, bucket_ns: int | None = None, columns: tuple[str, ...] = ()
    ) -> dict[Key, float]:
        """A counter's increments per family, or per value of common ``columns`` (grouped in SQL, for big
        groupings such as timelines), and per time bucket when asked:
        ``{(family_id | *values[, bucket]): sum}``."""
        filters = self.metric_filter
        out: dict[Key, float] = defaultdict(float)
        for part in self._parts(filters.raw_only, bucket_ns):
            query = queries.metric_sums_by(part, filters, metric.name, columns, bucket_ns)
            for *key, value in self._rows(part, query):
                out[tuple(key)] += value
        return dict(out)

    @memoized
    def _metric_sums(self) -> dict[int, float]:
        """Every counter's increments per family in one pass: the panels then pick the metrics they show."""
        filters = self.metric_filter
        out: dict[int, float] = defaultdict(float)
        for part in self._parts(filters.raw_only):
            for family_id, value in self._rows(part, queries.metric_sums(part, filters)):
                out[family_id] += value
        return dict(out)

    @memoized
    def _metric_sums_by_name(self) -> dict[str, dict[int, float]]:
        return self._by_name("families", self._metric_sums())

    @memoized
    def metric_totals(self, metric: Metric, by: tuple[str, ...] = ()) -> dict[Key, float]:
        """Sum of a counter's increments, grouped by attributes."""
        per_family = self._metric_sums_by_name().get(metric.name, {})
        return _sum_by(per_family, self.family_cache.keys(self.conn, "families", per_family, by))

    @memoized
    def metric_timeline(self, metric: Metric, by: tuple[str, ...], bucket_ns: int) -> dict[Key, float]:
        """Like ``metric_totals``, with the start of the time bucket as the key's first element."""
        if by and all(key in FAMILY_COLUMNS for key in by):  # without any, family_totals is per family
            return {
                (bucket, *values): v
                for (*values, bucket), v in self.family_totals(metric, bucket_ns, by).items()
            }
        totals = self.family_totals(metric, bucket_ns)
        keys = self.family_cache.keys(self.conn, "families", {family_id for family_id, _ in totals}, by)
        out: dict[Key, float] = defaultdict(float)
        for (family_id, bucket), value in totals.items():
            out[(bucket, *keys[family_id])] += value
        return dict(out)

    def metric_total(self, metric: Metric, **where: str) -> float:
        """One number: the counter's total, optionally only where attributes have the given values."""
        totals = self.metric_totals(metric, tuple(where))
        return totals.get(tuple(where.values()), 0.0) if where else sum(totals.values())

    # --- events ---------------------------------------------------------------------------------------

    def event_family_totals(self, name: str) -> dict[int, list[float]]:
        """Each family's ``[count, then sum and count of each of EVENT_MEASURES]`` for one event name."""
        return self._event_sums_by_name().get(name, {})

    @memoized
    def _event_sums_by_name(self) -> dict[str, dict[int, list[float]]]:
        return self._by_name("event_families", self._event_sums())

    @memoized
    def _event_sums(self) -> dict[int, list[float]]:
        """Counts and measure sums of every event family in one pass."""
        filters = self.event_filter
        out: dict[int, list[float]] = {}
        for part in self._parts(filters.raw_only):
            for family_id, *values in self._rows(part, queries.event_sums(part, filters)):
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
        sample of a known fraction, so a month of a large team costs no more than a busy hour. When there are
        few (a short range, or a filter), they are read family by family instead of picked out of all.
        """
        totals = self.event_family_totals(name)
        total = sum(t[0] for t in totals.values())
        level = math.ceil(math.log2(total / SAMPLE_TARGET)) if total > SAMPLE_TARGET else 0
        since, until = self.filters.since_ns, self.filters.until_ns
        if level < queries.SAMPLED_FROM or (self.filters.attrs and total <= FEW_EVENTS):
            query = queries.event_samples_of_families(list(totals), level, since, until, self.event_filter)
        else:
            query = queries.event_samples(name, level, since, until, self.event_filter)
        return self.conn.execute(query.sql, query.params).fetchall(), level > 0

    @memoized
    def event_counts(self, name: str, by: tuple[str, ...] = ()) -> dict[Key, int]:
        # the first of a family's totals is its count, an int, though the list is typed as floats
        counts = cast(
            dict[int, int], {family_id: t[0] for family_id, t in self.event_family_totals(name).items()}
        )
        return _sum_by(counts, self.family_cache.keys(self.conn, "event_families", counts, by))

    @memoized
    def event_means(self, name: str, measure: str, bucket_ns: int) -> dict[int, float]:
        """An event measure's mean per time bucket (by its start), in the buckets that have one."""
        filters = self.event_filter
        totals: dict[int, float] = defaultdict(float)
        counts: dict[int, int] = defaultdict(int)
        for part in self._parts(filters.raw_only, bucket_ns):
            query = queries.event_measure_timeline(part, filters, name, measure, bucket_ns)
            for bucket, total, count in self._rows(part, query):
                totals[bucket] += total or 0
                counts[bucket] += count or 0
        return {bucket: totals[bucket] / count for bucket, count in counts.items() if count}

    @memoized
    def event_stats(self, name: str, measure: str, by: tuple[str, ...] = ()) -> dict[Key, Stats]:
        """Count, sum and percentiles of an event measure (latency, duration, length), by attributes."""
        totals = self.event_family_totals(name)
        values, sampled = self.event_values(name, measure) if measure in PERCENTILE_MEASURES else ([], False)
        keys = self.family_cache.keys(
            self.conn, "event_families", set(totals).union(f for f, _ in values), by
        )
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

    # --- what the filters cannot split ----------------------------------------------------------------

    @memoized
    def unsplit(self, metric: Metric) -> tuple[str, ...]:
        """The filtered keys a metric cannot be split by: it has data, and none of it carries the key (Claude
        Code sends commits and sessions without a model). Under such a filter its total would be 0, which
        would be wrong rather than small."""
        has = queries.METRIC_HAS_FAMILIES, queries.METRIC_HAS_KEY
        return self._unsplit(*has, metric.name, family_keys=True)

    @memoized
    def unsplit_event(self, name: str) -> tuple[str, ...]:
        """The same for an event (a tool's result names no model)."""
        return self._unsplit(queries.EVENT_HAS_FAMILIES, queries.EVENT_HAS_KEY, name, family_keys=False)

    def _unsplit(self, has_families: str, has_key: str, name: str, *, family_keys: bool) -> tuple[str, ...]:
        # Keys of single sessions or events are read from the rows themselves: never a family's.
        keys = [
            key
            for key, _ in self.filters.attrs
            if key not in NOT_IN_FAMILY
            and key not in queries.SESSION_PLACES
            and (family_keys or key in self.event_filter.dimensions)
        ]
        if not keys or self.conn.execute(has_families, (name,)).fetchone() is None:
            return ()
        return tuple(key for key in keys if self.conn.execute(has_key, (key, name)).fetchone() is None)

    def seen(self, by: tuple[str, ...]) -> set[Key]:
        """The values of ``by`` of every metric and event family with a point or an event in the range."""
        out: set[Key] = set(self.family_cache.keys(self.conn, "families", self._metric_sums(), by).values())
        out.update(self.family_cache.keys(self.conn, "event_families", self._event_sums(), by).values())
        return out

    # --- sessions -------------------------------------------------------------------------------------

    @memoized
    def session_count(self) -> int:
        """Sessions active in the range (under the filters)."""
        query = queries.session_count(self.filters.since_ns, self.filters.until_ns, self.metric_filter)
        return int(self.conn.execute(query.sql, query.params).fetchone()[0])

    def sessions(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recently active sessions (under the filters), with their totals in the range."""
        since, until = self.filters.since_ns, self.filters.until_ns
        latest = queries.latest_sessions(since, until, self.metric_filter, limit)
        ids = [row[0] for row in self.conn.execute(latest.sql, latest.params)]
        if not ids:
            return []
        totals = queries.session_totals(
            ids, since, until, self.metric_filter, cost=COST, tokens=TOKENS, lines=LINES, commits=COMMITS
        )
        rows = self.conn.execute(totals.sql, totals.params).fetchall()
        prompts = queries.prompts_per_session(ids, since, until, self.event_filter)
        prompt_counts = dict(self.conn.execute(prompts.sql, prompts.params).fetchall())
        return [
            {
                "session_id": sid,
                "start_ns": start or end,
                "end_ns": end,
                "user_id": user,
                "user_email": email,
                "models": sorted(m for m in (models or "").split(",") if m),
                "prompts": prompt_counts.get(sid, 0),
                "cost_usd": cost or 0.0,
                "tokens": tokens or 0,
                "lines_added": added or 0,
                "lines_removed": removed or 0,
                "commits": commits or 0,
                "duration_s": max(0.0, (end - (start or end)) / 1e9),
            }
            for sid, start, end, user, email, models, cost, tokens, added, removed, commits in rows
        ]

    # --- the store as a whole -------------------------------------------------------------------------

    def raw_since_ns(self) -> int | None:
        """From when the raw points and events are kept, once older ones have been pruned (None: all kept).
        Before it, totals still come from the rollups, but a session's own numbers, its timeline and the
        partial hours at the ends of a range have no raw data to come from."""
        return int(self.conn.execute(queries.RAW_SINCE).fetchone()[0]) or None

    def first_point_ns(self) -> int | None:
        """When the earliest point stored was taken, if there is one (whatever the filters)."""
        first: int | None = self.conn.execute(queries.FIRST_POINT_TIME).fetchone()[0]
        return first

    def has_claude_code_data(self) -> bool:
        """Whether anything from Claude Code was stored (whatever the filters)."""
        return bool(self.conn.execute(queries.HAS_CLAUDE_CODE_DATA).fetchone()[0])
