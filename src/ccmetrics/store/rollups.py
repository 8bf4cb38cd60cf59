"""The hourly, daily and weekly sums a transaction adds to, and the sessions' activity: added up in memory
first, so each (family, hour) is written once per transaction however many points fall in it."""

from __future__ import annotations

import sqlite3
from collections import defaultdict

from .schema import DAY_NS, EVENT_MEASURES, HOUR_NS, WEEK_NS


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
        """Write what was added up. The daily and weekly sums of days from ``closed_until`` on are left to the
        end of those days (see close_days): only late data for days and weeks that have ended adds to them
        here."""
        add_sums(conn, self.metrics, self.events, closed_until)
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


def add_sums(
    conn: sqlite3.Connection,
    metrics: dict[tuple[int, int], float],
    events: dict[tuple[int, int], list[float]],
    closed_until: int,
) -> None:
    """Add sums by (family, hour) to the hourly rollups, and to the daily and weekly ones of the days and
    weeks that have ended (those from ``closed_until`` on get theirs when they end); bump the versions of
    the hours. Negative sums take away (forgetting.py)."""
    _upsert(conn, "hour", metrics, events)  # added up by hour already
    closed = (("day", DAY_NS, closed_until), ("week", WEEK_NS, weeks_closed(closed_until)))
    for tier, size, until in closed:
        late_metrics: dict[tuple[int, int], float] = defaultdict(float)
        for (family_id, hour), value in metrics.items():
            if hour < until:
                late_metrics[(family_id, hour - hour % size)] += value
        late_events: dict[tuple[int, int], list[float]] = {}
        for (family_id, hour), sums in events.items():
            if hour < until:
                mine = late_events.setdefault((family_id, hour - hour % size), [0] * len(sums))
                for i, value in enumerate(sums):
                    mine[i] += value
        _upsert(conn, tier, late_metrics, late_events)
    hours = {hour for _, hour in metrics} | {hour for _, hour in events}
    conn.executemany(
        "INSERT INTO hour_versions (start_ns, version) VALUES (?, 1) "
        "ON CONFLICT (start_ns) DO UPDATE SET version = version + 1",
        [(hour,) for hour in hours],
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


MEASURE_COLUMNS = [f"{m}_{part}" for m in EVENT_MEASURES for part in ("sum", "count")]
_UPSERT_EVENT_ROLLUP = (
    f"INSERT INTO event_rollup_{{tier}} (family_id, start_ns, count, {', '.join(MEASURE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (3 + len(MEASURE_COLUMNS)))}) "
    "ON CONFLICT (start_ns, family_id) DO UPDATE SET "
    f"count = count + excluded.count, " + ", ".join(f"{c} = {c} + excluded.{c}" for c in MEASURE_COLUMNS)
)


def weeks_closed(days_closed_until: int) -> int:
    """Weeks before this have their weekly sums: those whose days all have their daily sums."""
    return days_closed_until // WEEK_NS * WEEK_NS


def close_days(conn: sqlite3.Connection, start_ns: int, end_ns: int) -> None:
    """The daily sums of the days in [start, end), which have ended: their hours added up; and the weekly sums
    of the weeks that ended with them, their days added up. A day's or week's sums are written here, once,
    rather than by every transaction that adds to one of its hours."""
    _sum_up(conn, "day", DAY_NS, "hour", start_ns, end_ns)
    _sum_up(conn, "week", WEEK_NS, "day", weeks_closed(start_ns), weeks_closed(end_ns))
    conn.execute("UPDATE closed_days SET until_ns = ?", (end_ns,))


def _sum_up(conn: sqlite3.Connection, tier: str, size: int, finer: str, start_ns: int, end_ns: int) -> None:
    """A tier's sums for [start, end), from the finer tier's."""
    for prefix, columns in (("rollup", ["value"]), ("event_rollup", ["count", *MEASURE_COLUMNS])):
        sums = ", ".join(f"SUM({c})" for c in columns)
        replace = ", ".join(f"{c} = excluded.{c}" for c in columns)
        conn.execute(
            f"INSERT INTO {prefix}_{tier} (family_id, start_ns, {', '.join(columns)}) "
            f"SELECT family_id, start_ns - start_ns % {size}, {sums} FROM {prefix}_{finer} "
            f"WHERE start_ns >= ? AND start_ns < ? GROUP BY 1, 2 "
            f"ON CONFLICT (start_ns, family_id) DO UPDATE SET {replace}",
            (start_ns, end_ns),
        )
