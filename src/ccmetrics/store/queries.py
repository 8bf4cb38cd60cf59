"""The SQL of the read side: every statement that answers a question about the stored data.

Each function returns a ``Query``: a statement and its parameters, in order. Times, names and values are
parameters; a time range always has both bounds (an open end is the earliest or latest time there is), so
a statement's text does not depend on them. What varies in text is the shape of a question, never a value
in it: the table a part of the range is read from (``rollup_week``, ``rollup_day``, ``rollup_hour``, or the
raw points and events), the columns a grouping names, a pair of columns per attribute a grouping reads from
families' JSON, and a request's attribute filters, which are conditions joined by AND, one per filter
(``MetricFilter``, ``EventFilter``).

Aliases: ``r`` a rollup, ``f`` a metric family, ``p`` a point, ``s`` its series, ``e`` an event, ``t`` a
session's times (``session_times``) or a session (``sessions``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..metrics import Metric
from .ranges import RangePart
from .schema import EVENT_STRINGS, FAMILY_COLUMNS, NOT_IN_FAMILY, TIERS

EARLIEST_NS = -(2**63)  # an open start
LATEST_NS = 2**63 - 1  # an open end

METRIC_ROLLUPS = {tier: f"rollup_{tier}" for tier in TIERS}
EVENT_ROLLUPS = {tier: f"event_rollup_{tier}" for tier in TIERS}
ROLLUPS_BY_FAMILY = frozenset({"day", "week"})  # the rollups indexed by family too (schema 7)
PERCENTILE_MEASURES = ("duration_ms", "ttft_ms")  # the measures whose percentiles are read from events
SAMPLED_FROM = 3  # events_by_sample holds the events of this sample level and up (a partial index)


@dataclass(frozen=True)
class Query:
    sql: str
    params: tuple[Any, ...] = ()


def bounds(since_ns: int | None, until_ns: int | None) -> tuple[int, int]:
    """A time range's bounds as parameters: ``>= since`` and ``< until``."""
    return (EARLIEST_NS if since_ns is None else since_ns, LATEST_NS if until_ns is None else until_ns)


def json_path(key: str) -> str:
    """The JSON path of an attribute key in an ``attrs`` column."""
    return '$."' + key.replace('"', "") + '"'


# --- attribute filters --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    sql: str
    params: tuple[Any, ...] = ()


def all_of(conditions: Iterable[Condition]) -> Condition:
    """Conditions joined by AND; always true when there are none."""
    parts = list(conditions)
    if not parts:
        return Condition("1")
    return Condition(" AND ".join(c.sql for c in parts), tuple(p for c in parts for p in c.params))


# Where a session ran, as its transcript tells (transcript_sessions' columns): a filter on one is a filter on
# sessions, read from raw points and events as session.id is, so that a telemetry session's usage is found by
# the project its transcript names (only a transcript's own session.count carries the place as attributes).
SESSION_PLACES = {"project": "project", "cwd": "cwd", "git.branch": "git_branch"}


def _in_place(session_id: str, key: str, value: str) -> Condition:
    return Condition(
        f"{session_id} IN (SELECT session_id FROM transcript_sessions WHERE {SESSION_PLACES[key]} = ?)",
        (value,),
    )


# The family id column a metric filter is aimed at: a rollup's, or raw points' series (the unary plus keeps
# SQLite on the time index when only a few minutes of points are wanted), or a plain series row.
MetricFamilyColumn = Literal["r.family_id", "+s.family_id", "s.family_id"]
EventFamilyColumn = Literal["r.family_id", "e.family_id"]


@dataclass(frozen=True)
class MetricFilter:
    """A request's attribute filters on metrics. A family's attributes are looked up in ``family_attrs``;
    ``session.id`` and the other attributes that single out a session are not a family's, so they are read
    from the series ``s`` of raw points (``raw_only``)."""

    attrs: tuple[tuple[str, str], ...] = ()

    @property
    def raw_only(self) -> bool:
        return any(key in NOT_IN_FAMILY or key in SESSION_PLACES for key, _ in self.attrs)

    @property
    def session(self) -> str | None:
        """The session filtered on, if any (its points are found through ``session_times``)."""
        return next((value for key, value in self.attrs if key == "session.id"), None)

    def on(self, family_id: MetricFamilyColumn) -> Condition:
        return all_of(self._condition(family_id, key, value) for key, value in self.attrs)

    @staticmethod
    def _condition(family_id: MetricFamilyColumn, key: str, value: str) -> Condition:
        if key == "session.id":
            return Condition("s.session_id = ?", (value,))
        if key in SESSION_PLACES:
            return _in_place("s.session_id", key, value)
        if key in NOT_IN_FAMILY:
            return Condition("CAST(json_extract(s.attrs, ?) AS TEXT) = ?", (json_path(key), value))
        return Condition(
            f"{family_id} IN (SELECT family_id FROM family_attrs WHERE key = ? AND value = ?)", (key, value)
        )


@dataclass(frozen=True)
class EventFilter:
    """A request's attribute filters on events. ``dimensions``: the filtered keys that are part of an event's
    family (looked up in ``event_family_attrs``); the others are read from the events themselves, from their
    reference to ``strings`` or their ``attrs`` (``raw_only``)."""

    attrs: tuple[tuple[str, str], ...] = ()
    dimensions: frozenset[str] = frozenset()

    @property
    def raw_only(self) -> bool:
        return any(key not in self.dimensions for key, _ in self.attrs)

    def on(self, family_id: EventFamilyColumn) -> Condition:
        return all_of(self._condition(family_id, key, value) for key, value in self.attrs)

    def _condition(self, family_id: EventFamilyColumn, key: str, value: str) -> Condition:
        if key in self.dimensions:
            return Condition(
                f"{family_id} IN (SELECT family_id FROM event_family_attrs WHERE key = ? AND value = ?)",
                (key, value),
            )
        if key in SESSION_PLACES:
            return _in_place("(SELECT value FROM strings WHERE id = e.session)", key, value)
        if key in EVENT_STRINGS:
            return Condition(f"e.{EVENT_STRINGS[key]} = (SELECT id FROM strings WHERE value = ?)", (value,))
        return Condition("CAST(json_extract(e.attrs, ?) AS TEXT) = ?", (json_path(key), value))


IS_EVENT_DIMENSION = "SELECT 1 FROM event_family_attrs WHERE key = ? LIMIT 1"


# --- the store's state --------------------------------------------------------------------------------

DAYS_CLOSED_UNTIL = "SELECT until_ns FROM closed_days"  # days before this have their daily sums
RAW_SINCE = "SELECT raw_ns FROM kept_since"  # raw data before this may have been pruned (retention.py)
SESSION_SPAN = "SELECT first_ns, last_ns FROM sessions WHERE session_id = ?"


def session_spans(
    session_id: str, since_ns: int, until_ns: int, limit: int, email: str | None = None
) -> Query:
    """The first ``limit`` spans of a session that start in a range (its own, from ``SESSION_SPAN``: spans
    are read by time, through spans_by_time), in order; with ``email``, only that user.email's (a member's
    own)."""
    of_email = Condition("json_extract(attrs, '$.\"user.email\"') = ?", (email,))
    if email is None:
        of_email = Condition("1")
    return Query(
        "SELECT trace_id, span_id, parent_span_id, name, start_ns, end_ns, status_code, attrs FROM spans "
        f"WHERE start_ns >= ? AND start_ns < ? AND session_id = ? AND {of_email.sql} "
        "ORDER BY start_ns LIMIT ?",
        (since_ns, until_ns, session_id, *of_email.params, limit),
    )


FIRST_POINT_TIME = "SELECT MIN(time_ns) FROM points"
# The doctor's test export (``status.PROBE_EVENT``) is not Claude Code's data: with it alone, nothing is.
HAS_CLAUDE_CODE_DATA = (
    "SELECT EXISTS (SELECT 1 FROM series WHERE metric LIKE 'claude_code.%')"
    " OR EXISTS (SELECT 1 FROM event_families WHERE name <> 'ccmetrics.doctor_probe')"
)
# Whether a metric's data has families, and whether any of them has an attribute key: a metric none of
# whose families has a filtered key cannot be split by it (Claude Code sends no model with its commits).
METRIC_HAS_FAMILIES = "SELECT 1 FROM families WHERE metric = ? LIMIT 1"
METRIC_HAS_KEY = (
    "SELECT 1 FROM family_attrs a JOIN families f ON f.id = a.family_id"
    " WHERE a.key = ? AND f.metric = ? LIMIT 1"
)
EVENT_HAS_FAMILIES = "SELECT 1 FROM event_families WHERE name = ? LIMIT 1"
EVENT_HAS_KEY = (
    "SELECT 1 FROM event_family_attrs a JOIN event_families f ON f.id = a.family_id"
    " WHERE a.key = ? AND f.name = ? LIMIT 1"
)


def hours_version(since_ns: int | None, until_ns: int | None) -> Query:
    """What the versions of the hours in a range add up to (every transaction that adds to an hour bumps
    its version): an answer about the range stays right while this stays the same."""
    return Query(
        "SELECT COUNT(*), TOTAL(version) FROM hour_versions WHERE start_ns >= ? AND start_ns < ?",
        bounds(since_ns, until_ns),
    )


# --- families -----------------------------------------------------------------------------------------

METRIC_FAMILY_NAMES = "SELECT id, metric FROM families WHERE id IN (SELECT value FROM json_each(?))"
EVENT_FAMILY_NAMES = "SELECT id, name FROM event_families WHERE id IN (SELECT value FROM json_each(?))"
FamilyTable = Literal["families", "event_families"]


def family_names(table: FamilyTable, ids: Sequence[int]) -> Query:
    sql = METRIC_FAMILY_NAMES if table == "families" else EVENT_FAMILY_NAMES
    return Query(sql, (json.dumps(ids),))


def family_values(table: FamilyTable, key: str, ids: Sequence[int]) -> Query:
    """``(family id, value)`` of one attribute, for the families asked for that have it: the text filters
    match, read from ``family_attrs`` or ``event_family_attrs`` (never a family's whole JSON)."""
    attrs_table = {"families": "family_attrs", "event_families": "event_family_attrs"}[table]
    return Query(
        f"SELECT family_id, value FROM {attrs_table} WHERE key = ? "
        "AND family_id IN (SELECT value FROM json_each(?))",
        (key, json.dumps(ids)),
    )


# --- metrics ------------------------------------------------------------------------------------------


def _points(filters: MetricFilter) -> Query:
    """Where raw reads of points (``p``, with their series ``s``) read from. Points are ordered by time: a
    range of time is read straight from them, a session's points through the times it sent them."""
    if filters.session is None:
        return Query("points p CROSS JOIN series s ON s.id = p.series_id")
    return Query(
        "session_times t CROSS JOIN points p ON p.time_ns = t.time_ns "
        "CROSS JOIN series s ON s.id = p.series_id AND t.session_id = ?",
        (filters.session,),
    )


def metric_sums(part: RangePart, filters: MetricFilter) -> Query:
    """Every counter's increments per family in a part of the range: ``(family_id, sum)``."""
    since_until = bounds(part.since_ns, part.until_ns)
    if part.source == "raw":
        points, where = _points(filters), filters.on("+s.family_id")
        return Query(
            f"SELECT s.family_id, SUM(p.value) FROM {points.sql} "
            f"WHERE s.kind = 'sum' AND p.time_ns >= ? AND p.time_ns < ? AND {where.sql} "
            "GROUP BY s.family_id",
            (*points.params, *since_until, *where.params),
        )
    where = filters.on("r.family_id")
    return Query(
        f"SELECT r.family_id, SUM(r.value) FROM {METRIC_ROLLUPS[part.source]} r "
        f"WHERE r.start_ns >= ? AND r.start_ns < ? AND {where.sql} GROUP BY r.family_id",
        (*since_until, *where.params),
    )


def metric_sums_by(
    part: RangePart, filters: MetricFilter, metric: str, columns: Sequence[str], bucket_ns: int | None
) -> Query:
    """One counter's increments in a part of the range, per family or, when ``columns`` names common
    attributes (``FAMILY_COLUMNS``), per their values (grouped in SQL, for big groupings such as timelines);
    and per time bucket when asked: ``(family_id | *values[, bucket start], sum)``."""
    since_until = bounds(part.since_ns, part.until_ns)
    raw = part.source == "raw"
    owner, time = ("s", "p.time_ns") if raw else ("f", "r.start_ns")
    keys = [f"{owner}.{FAMILY_COLUMNS[c]}" for c in columns] or [f"{owner}.{'family_id' if raw else 'id'}"]
    bucket = (bucket_ns,) if bucket_ns else ()
    if bucket_ns:
        keys.append(f"{time} - {time} % ?")
    select, group = ", ".join(keys), ", ".join(str(i + 1) for i in range(len(keys)))
    if raw:
        points, where = _points(filters), filters.on("+s.family_id")
        return Query(
            f"SELECT {select}, SUM(p.value) FROM {points.sql} "
            f"WHERE s.metric = ? AND s.kind = 'sum' AND p.time_ns >= ? AND p.time_ns < ? AND {where.sql} "
            f"GROUP BY {group}",
            (*bucket, *points.params, metric, *since_until, *where.params),
        )
    where = filters.on("r.family_id")
    rollup = METRIC_ROLLUPS[part.source]
    if part.source in ROLLUPS_BY_FAMILY:  # the metric's families first, then each one's run of periods
        tables = f"families f CROSS JOIN {rollup} r INDEXED BY {rollup}_by_family ON r.family_id = f.id"
    else:  # a few hours of every family's sums
        tables = f"{rollup} r CROSS JOIN families f ON f.id = r.family_id"
    return Query(
        f"SELECT {select}, SUM(r.value) FROM {tables} "
        f"WHERE f.metric = ? AND f.kind = 'sum' AND r.start_ns >= ? AND r.start_ns < ? AND {where.sql} "
        f"GROUP BY {group}",
        (*bucket, metric, *since_until, *where.params),
    )


# --- events -------------------------------------------------------------------------------------------


def event_sums(part: RangePart, filters: EventFilter) -> Query:
    """Every event family's count, and sum and count of each measure (prompt_length, duration_ms, ttft_ms),
    in a part of the range: ``(family_id, count, *(sum, count) per measure)``."""
    since_until = bounds(part.since_ns, part.until_ns)
    if part.source == "raw":
        where = filters.on("e.family_id")
        return Query(
            "SELECT e.family_id, COUNT(*), TOTAL(e.prompt_length), COUNT(e.prompt_length), "
            "TOTAL(e.duration_ms), COUNT(e.duration_ms), TOTAL(e.ttft_ms), COUNT(e.ttft_ms) "
            f"FROM events e WHERE e.time_ns >= ? AND e.time_ns < ? AND {where.sql} GROUP BY e.family_id",
            (*since_until, *where.params),
        )
    where = filters.on("r.family_id")
    return Query(
        "SELECT r.family_id, SUM(r.count), SUM(r.prompt_length_sum), SUM(r.prompt_length_count), "
        "SUM(r.duration_ms_sum), SUM(r.duration_ms_count), SUM(r.ttft_ms_sum), SUM(r.ttft_ms_count) "
        f"FROM {EVENT_ROLLUPS[part.source]} r WHERE r.start_ns >= ? AND r.start_ns < ? AND {where.sql} "
        "GROUP BY r.family_id",
        (*since_until, *where.params),
    )


def event_measure_timeline(
    part: RangePart, filters: EventFilter, name: str, measure: str, bucket_ns: int
) -> Query:
    """One event's measure (one of EVENT_MEASURES) per time bucket of a part of the range: ``(bucket start,
    sum, count)``."""
    since_until = bounds(part.since_ns, part.until_ns)
    of_name = "IN (SELECT id FROM event_families WHERE name = ?)"
    if part.source == "raw":
        where = filters.on("e.family_id")
        return Query(
            f"SELECT e.time_ns - e.time_ns % ?, TOTAL(e.{measure}), COUNT(e.{measure}) FROM events e "
            f"WHERE e.time_ns >= ? AND e.time_ns < ? AND e.family_id {of_name} AND {where.sql} GROUP BY 1",
            (bucket_ns, *since_until, name, *where.params),
        )
    where = filters.on("r.family_id")
    return Query(
        f"SELECT r.start_ns - r.start_ns % ?, SUM(r.{measure}_sum), SUM(r.{measure}_count) "
        f"FROM {EVENT_ROLLUPS[part.source]} r WHERE r.start_ns >= ? AND r.start_ns < ? "
        f"AND r.family_id {of_name} AND {where.sql} GROUP BY 1",
        (bucket_ns, *since_until, name, *where.params),
    )


def event_samples(
    name: str, level: int, since_ns: int | None, until_ns: int | None, filters: EventFilter
) -> Query:
    """``(family_id, duration_ms, ttft_ms)`` of the events of one name whose sample level is at least
    ``level``, SAMPLED_FROM or more (a uniform sample of a known fraction), read from the covering index
    ``events_by_sample``."""
    assert level >= SAMPLED_FROM
    where = filters.on("e.family_id")
    # The level first: SQLite starts the index range at the first bound it is given. The constant bound
    # tells it the partial index holds every row asked for.
    return Query(
        "SELECT e.family_id, e.duration_ms, e.ttft_ms FROM events e INDEXED BY events_by_sample "
        f"WHERE e.sample >= ? AND e.sample >= {SAMPLED_FROM} AND e.time_ns >= ? AND e.time_ns < ? "
        f"AND e.family_id IN (SELECT id FROM event_families WHERE name = ?) AND {where.sql}",
        (level, *bounds(since_ns, until_ns), name, *where.params),
    )


def event_samples_of_families(
    family_ids: Sequence[int], level: int, since_ns: int | None, until_ns: int | None, filters: EventFilter
) -> Query:
    """The same, family by family (``events_by_family``): cheaper when a filter or a short range leaves few
    events."""
    where = filters.on("e.family_id")
    return Query(
        "SELECT e.family_id, e.duration_ms, e.ttft_ms FROM events e INDEXED BY events_by_family "
        "WHERE e.family_id IN (SELECT value FROM json_each(?)) AND e.sample >= ? "
        f"AND e.time_ns >= ? AND e.time_ns < ? AND {where.sql}",
        (json.dumps(list(family_ids)), level, *bounds(since_ns, until_ns), *where.params),
    )


# --- sessions -----------------------------------------------------------------------------------------


def _sessions_in_range(since_ns: int | None, until_ns: int | None, filters: MetricFilter) -> Condition:
    """Conditions on ``sessions t``: active in the range, and with series under the filters. A range open at
    its end asks nothing of a session's start, so that the index on ``last_ns`` alone answers."""
    since, until = bounds(since_ns, until_ns)
    active = Condition("t.last_ns >= ?", (since,))
    if until_ns is not None:
        active = Condition("t.last_ns >= ? AND t.first_ns < ?", (since, until))
    if not filters.attrs:
        return active
    where = filters.on("s.family_id")
    return all_of(
        [
            active,
            Condition(f"t.session_id IN (SELECT s.session_id FROM series s WHERE {where.sql})", where.params),
        ]
    )


def session_count(since_ns: int | None, until_ns: int | None, filters: MetricFilter) -> Query:
    where = _sessions_in_range(since_ns, until_ns, filters)
    return Query(f"SELECT COUNT(*) FROM sessions t WHERE {where.sql}", where.params)


def latest_sessions(since_ns: int | None, until_ns: int | None, filters: MetricFilter, limit: int) -> Query:
    where = _sessions_in_range(since_ns, until_ns, filters)
    return Query(
        f"SELECT t.session_id FROM sessions t WHERE {where.sql} ORDER BY t.last_ns DESC LIMIT ?",
        (*where.params, limit),
    )


def session_totals(
    session_ids: Sequence[str],
    since_ns: int | None,
    until_ns: int | None,
    filters: MetricFilter,
    *,
    cost: Metric,
    tokens: Metric,
    lines: Metric,
    commits: Metric,
) -> Query:
    """Each session's first and last point in the range, who, which models, and its cost, tokens, lines
    added and removed, and commits: ``(session_id, start, end, user, email, models, cost, tokens, added,
    removed, commits)``, the latest first."""
    where = filters.on("+s.family_id")  # its parameters follow the numbered ones (?8, ?9...)
    return Query(
        f"""
        SELECT s.session_id, MIN(p.start_ns), MAX(p.time_ns), MAX(s.user_id), MAX(s.user_email),
               GROUP_CONCAT(DISTINCT s.model),
               SUM(CASE WHEN s.metric = ?1 THEN p.value END),
               SUM(CASE WHEN s.metric = ?2 THEN p.value END),
               SUM(CASE WHEN s.metric = ?3 AND s.type = 'added' THEN p.value END),
               SUM(CASE WHEN s.metric = ?3 AND s.type = 'removed' THEN p.value END),
               SUM(CASE WHEN s.metric = ?4 THEN p.value END)
        FROM session_times t CROSS JOIN points p ON p.time_ns = t.time_ns
        CROSS JOIN series s ON s.id = p.series_id AND s.session_id = t.session_id
        WHERE t.session_id IN (SELECT value FROM json_each(?5)) AND s.kind = 'sum'
          AND s.metric LIKE 'claude_code.%' AND t.time_ns >= ?6 AND t.time_ns < ?7 AND {where.sql}
        GROUP BY s.session_id
        ORDER BY MAX(p.time_ns) DESC
        """,
        (
            cost.name,
            tokens.name,
            lines.name,
            commits.name,
            json.dumps(list(session_ids)),
            *bounds(since_ns, until_ns),
            *where.params,
        ),
    )


def prompts_per_session(
    session_ids: Sequence[str], since_ns: int | None, until_ns: int | None, filters: EventFilter
) -> Query:
    """``(session_id, prompts)``. The unary pluses keep SQLite on the session index: a few sessions, not a
    month of prompts."""
    where = filters.on("e.family_id")
    return Query(
        "SELECT t.value, COUNT(*) FROM strings t CROSS JOIN events e ON e.session = t.id "
        "WHERE t.value IN (SELECT value FROM json_each(?)) "
        "AND +e.family_id IN (SELECT id FROM event_families WHERE name = 'user_prompt') "
        f"AND +e.time_ns >= ? AND +e.time_ns < ? AND {where.sql} GROUP BY t.value",
        (json.dumps(list(session_ids)), *bounds(since_ns, until_ns), *where.params),
    )


# --- what there is to filter on, and one session in detail -------------------------------------------

# Each: the most common first (in the most families), at most :limit, only those containing :text (ignoring
# the case of A-Z, as SQLite's lower() does; NULL: all of them), only of the families of :email's data (a
# member's; NULL: everyone's).
_OF_EMAIL = (
    "(:email IS NULL OR {id} IN "
    "(SELECT family_id FROM family_attrs WHERE key = 'user.email' AND value = :email))"
)
USERS_TO_FILTER = f"""
    SELECT user_id, MAX(user_email) FROM families
    WHERE user_id IS NOT NULL AND (:text IS NULL OR instr(lower(user_id), :text) > 0
                                   OR instr(lower(coalesce(user_email, '')), :text) > 0
                                   OR instr(lower(coalesce(attrs ->> '$."user.name"', '')), :text) > 0
                                   OR user_id IN (SELECT value FROM json_each(:aliased)))
      AND {_OF_EMAIL.format(id="id")}
    GROUP BY user_id ORDER BY COUNT(*) DESC, user_id LIMIT :limit
"""
# What the data of some users (a JSON list of user.id) says of them: ``(user_id, user.email, user.name)``,
# from their metrics' and events' families (a few per person).
USERS_SENT = """
    SELECT user_id, MAX(user_email), MAX(CAST(attrs ->> '$."user.name"' AS TEXT)) FROM (
        SELECT user_id, user_email, attrs FROM families WHERE user_id IN (SELECT value FROM json_each(?1))
        UNION ALL
        SELECT user_id, user_email, attrs FROM event_families
        WHERE user_id IN (SELECT value FROM json_each(?1))
    ) GROUP BY user_id
"""
MODELS_TO_FILTER = f"""
    SELECT model FROM families
    WHERE model IS NOT NULL AND (:text IS NULL OR instr(lower(model), :text) > 0)
      AND {_OF_EMAIL.format(id="id")}
    GROUP BY model ORDER BY COUNT(*) DESC, model LIMIT :limit
"""
# Models in the order they were first seen: each keeps its colour on the page as others come.
MODELS_IN_ORDER_SEEN = f"""
    SELECT model FROM families WHERE model IS NOT NULL AND {_OF_EMAIL.format(id="id")}
    GROUP BY model ORDER BY MIN(id) LIMIT 100
"""
KEYS_TO_FILTER = f"""
    SELECT key FROM family_attrs
    WHERE (:text IS NULL OR instr(lower(key), :text) > 0) AND {_OF_EMAIL.format(id="family_id")}
    GROUP BY key ORDER BY COUNT(*) DESC, key LIMIT :limit
"""
VALUES_TO_FILTER = f"""
    SELECT value FROM family_attrs
    WHERE key = :key AND (:text IS NULL OR instr(lower(value), :text) > 0)
      AND {_OF_EMAIL.format(id="family_id")}
    GROUP BY value ORDER BY COUNT(*) DESC, value LIMIT :limit
"""
# The values of a place sessions ran in (SESSION_PLACES), the most common first, as VALUES_TO_FILTER.
PLACE_VALUES_TO_FILTER = """
    SELECT {column} FROM transcript_sessions
    WHERE {column} IS NOT NULL AND (:text IS NULL OR instr(lower({column}), :text) > 0)
      AND (:email IS NULL OR session_id IN (SELECT s.session_id FROM series s WHERE s.family_id IN
           (SELECT family_id FROM family_attrs WHERE key = 'user.email' AND value = :email)))
    GROUP BY 1 ORDER BY COUNT(*) DESC, 1 LIMIT :limit
"""
# Events in order, each with its family's name and attributes, its own, its session and prompt ids, its
# measures and its body: those of one session (through events_by_session), or of a time range.
_EVENTS = """
    SELECT e.time_ns, f.name, f.attrs, e.attrs, t.value, p.value, e.prompt_length, e.duration_ms, e.ttft_ms,
           coalesce(e.body, f.body)
    FROM events e CROSS JOIN event_families f ON f.id = e.family_id
    LEFT JOIN strings t ON t.id = e.session LEFT JOIN strings p ON p.id = e.prompt
    WHERE {where}
    ORDER BY e.time_ns, CAST(json_extract(e.attrs, '$."event.sequence"') AS INTEGER) LIMIT ?
"""


def events(
    session_id: str | None, since_ns: int | None, until_ns: int | None, limit: int, email: str | None = None
) -> Query:
    """With ``email``, only the events of that user.email (a member's own)."""
    of_email = (
        Condition(
            "+e.family_id IN "
            "(SELECT family_id FROM event_family_attrs WHERE key = 'user.email' AND value = ?)",
            (email,),
        )
        if email is not None
        else Condition("1")
    )
    if session_id is not None:
        return Query(
            _EVENTS.format(
                where="e.session = (SELECT id FROM strings WHERE value = ?) AND +e.time_ns >= ? "
                f"AND +e.time_ns < ? AND {of_email.sql}"
            ),
            (session_id, *bounds(since_ns, until_ns), *of_email.params, limit),
        )
    return Query(
        _EVENTS.format(where=f"e.time_ns >= ? AND e.time_ns < ? AND {of_email.sql}"),
        (*bounds(since_ns, until_ns), *of_email.params, limit),
    )


# The values of an attribute key on a session's series (its team.id, say): the session's few series first
# (CROSS JOIN keeps that order), each family's attributes by its id.
SESSION_ATTRIBUTE_VALUES = """
    SELECT DISTINCT CAST(json_extract(f.attrs, ?) AS TEXT) AS value
    FROM series s CROSS JOIN families f ON f.id = s.family_id
    WHERE s.session_id = ? AND value IS NOT NULL ORDER BY value
"""

# --- export: every point and event of a range, a page at a time, in the order of their tables --------------

# After the point (time_ns, series_id, start_ns) given: the table's own order, so a page is one stretch of it.
EXPORT_POINTS = """
    SELECT p.time_ns, p.series_id, p.start_ns, s.metric, s.unit, s.kind, s.temporality, s.attrs, p.value,
           p.cumulative, p.extra
    FROM points p CROSS JOIN series s ON s.id = p.series_id
    WHERE (p.time_ns, p.series_id, p.start_ns) > (?, ?, ?) AND p.time_ns < ?
    ORDER BY p.time_ns, p.series_id, p.start_ns LIMIT ?
"""
# After the event (time_ns, id) given, through events_by_time (which orders equal times by id).
EXPORT_EVENTS = """
    SELECT e.time_ns, e.id, f.name, f.attrs, e.attrs, t.value, p.value, e.prompt_length, e.duration_ms,
           e.ttft_ms, coalesce(e.body, f.body)
    FROM events e CROSS JOIN event_families f ON f.id = e.family_id
    LEFT JOIN strings t ON t.id = e.session LEFT JOIN strings p ON p.id = e.prompt
    WHERE (e.time_ns, e.id) > (?, ?) AND e.time_ns < ?
    ORDER BY e.time_ns, e.id LIMIT ?
"""
