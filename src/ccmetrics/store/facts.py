"""The few primitive questions every panel is built from, asked of the store under one set of filters.

Panels never write SQL; they combine these. Each primitive is memoised for the life of a ``Facts``, so a
dashboard that shows the same numbers in several panels computes them once.
"""

from __future__ import annotations

import functools
import math
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .queries import Filters, _json_path, events_where, series_where
from .schema import COMMON_COLUMNS, EVENT_COLUMNS

Key = tuple[Any, ...]


def _series_expr(attr: str) -> str:
    column = COMMON_COLUMNS.get(attr)
    return f"s.{column}" if column else f"json_extract(s.attrs, '{_json_path(attr)}')"


def _event_expr(attr: str) -> str:
    column = EVENT_COLUMNS.get(attr)
    return f"e.{column}" if column else f"json_extract(e.attrs, '{_json_path(attr)}')"


def _check_key(attr: str) -> str:
    if "'" in attr or '"' in attr:
        raise ValueError(f"attribute key {attr!r} may not contain quotes")
    return attr


@dataclass(frozen=True)
class Stats:
    count: int
    total: float
    p50: float | None
    p95: float | None

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least q of the values at or below it."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class Facts:
    def __init__(self, conn: sqlite3.Connection, filters: Filters = Filters()) -> None:
        self.conn = conn
        self.filters = filters

    # --- metrics --------------------------------------------------------------------------------------

    @functools.cache  # noqa: B019 - a Facts lives for one request
    def metric_totals(self, metric: str, by: tuple[str, ...] = ()) -> dict[Key, float]:
        """Sum of a counter's increments, grouped by attributes."""
        return self._metric(metric, by, None)

    @functools.cache  # noqa: B019
    def metric_timeline(self, metric: str, by: tuple[str, ...], bucket_ns: int) -> dict[Key, float]:
        """Like ``metric_totals``, with the start of the time bucket as the key's first element."""
        return self._metric(metric, by, bucket_ns)

    def _metric(self, metric: str, by: tuple[str, ...], bucket_ns: int | None) -> dict[Key, float]:
        where, params = series_where(self.filters)
        groups = [_series_expr(_check_key(attr)) for attr in by]
        if bucket_ns:
            groups.insert(0, f"(p.time_ns / {int(bucket_ns)}) * {int(bucket_ns)}")
        select = ", ".join(groups) or "NULL"
        rows = self.conn.execute(
            f"""
            SELECT {select}, SUM(p.value)
            FROM series s JOIN points p ON p.series_id = s.id
            WHERE s.metric = ? AND s.kind = 'sum' AND {where}
            GROUP BY {", ".join(groups) or "1"}
            """,
            [metric, *params],
        ).fetchall()
        if not groups:
            return {(): rows[0][1] or 0.0} if rows else {}
        return {tuple(row[:-1]): row[-1] for row in rows}

    def metric_total(self, metric: str, **where: str) -> float:
        """One number: the counter's total, optionally only where attributes have the given values."""
        keys = tuple(where)
        totals = self.metric_totals(metric, keys)
        wanted = tuple(where.values())
        return sum(v for k, v in totals.items() if k == wanted) if keys else sum(totals.values())

    # --- events ---------------------------------------------------------------------------------------

    @functools.cache  # noqa: B019
    def event_counts(self, name: str, by: tuple[str, ...] = ()) -> dict[Key, int]:
        where, params = events_where(self.filters)
        groups = [_event_expr(_check_key(attr)) for attr in by]
        select = ", ".join(groups) or "NULL"
        rows = self.conn.execute(
            f"SELECT {select}, COUNT(*) FROM events e WHERE e.name = ? AND {where} "
            f"GROUP BY {', '.join(groups) or '1'}",
            [name, *params],
        ).fetchall()
        if not groups:
            return {(): rows[0][1]} if rows else {}
        return {tuple(row[:-1]): row[-1] for row in rows}

    @functools.cache  # noqa: B019
    def event_timeline(self, name: str, by: tuple[str, ...], bucket_ns: int) -> dict[Key, int]:
        where, params = events_where(self.filters)
        groups = [f"(e.time_ns / {int(bucket_ns)}) * {int(bucket_ns)}"]
        groups += [_event_expr(_check_key(attr)) for attr in by]
        rows = self.conn.execute(
            f"SELECT {', '.join(groups)}, COUNT(*) FROM events e WHERE e.name = ? AND {where} "
            f"GROUP BY {', '.join(groups)}",
            [name, *params],
        ).fetchall()
        return {tuple(row[:-1]): row[-1] for row in rows}

    @functools.cache  # noqa: B019
    def event_stats(self, name: str, value: str, by: tuple[str, ...] = ()) -> dict[Key, Stats]:
        """Count, sum and percentiles of a numeric event attribute (latency, duration, length)."""
        where, params = events_where(self.filters)
        groups = [_event_expr(_check_key(attr)) for attr in by]
        number = f"CAST(json_extract(e.attrs, '{_json_path(_check_key(value))}') AS REAL)"
        rows = self.conn.execute(
            f"SELECT {', '.join(groups) or 'NULL'}, {number} AS v FROM events e "
            f"WHERE e.name = ? AND {where} AND v IS NOT NULL ORDER BY v",
            [name, *params],
        ).fetchall()
        values: dict[Key, list[float]] = defaultdict(list)
        for row in rows:
            values[tuple(row[:-1]) if groups else ()].append(row[-1])
        return {
            key: Stats(len(vs), sum(vs), percentile(vs, 0.5), percentile(vs, 0.95)) for key, vs in values.items()
        }

    # --- sessions -------------------------------------------------------------------------------------

    def sessions(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent sessions with their totals."""
        where, params = series_where(self.filters)
        rows = self.conn.execute(
            f"""
            SELECT s.session_id, MIN(p.start_ns), MAX(p.time_ns), MAX(s.user_id), MAX(s.user_email),
                   GROUP_CONCAT(DISTINCT s.model),
                   SUM(CASE WHEN s.metric = 'claude_code.cost.usage' THEN p.value END),
                   SUM(CASE WHEN s.metric = 'claude_code.token.usage' THEN p.value END),
                   SUM(CASE WHEN s.metric = 'claude_code.lines_of_code.count' AND s.type = 'added' THEN p.value END),
                   SUM(CASE WHEN s.metric = 'claude_code.lines_of_code.count' AND s.type = 'removed' THEN p.value END),
                   SUM(CASE WHEN s.metric = 'claude_code.commit.count' THEN p.value END)
            FROM series s JOIN points p ON p.series_id = s.id
            WHERE s.session_id IS NOT NULL AND s.metric LIKE 'claude_code.%' AND {where}
            GROUP BY s.session_id
            ORDER BY MAX(p.time_ns) DESC
            LIMIT ?
            """,
            [*params, limit],
        ).fetchall()
        prompts = self._prompts_per_session([row[0] for row in rows])
        return [
            {
                "session_id": sid, "start_ns": start or end, "end_ns": end, "user_id": user, "user_email": email,
                "models": sorted(m for m in (models or "").split(",") if m),
                "prompts": prompts.get(sid, 0), "cost_usd": cost or 0.0, "tokens": tokens or 0,
                "lines_added": added or 0, "lines_removed": removed or 0, "commits": commits or 0,
                "duration_s": max(0.0, (end - (start or end)) / 1e9),
            }
            for sid, start, end, user, email, models, cost, tokens, added, removed, commits in rows
        ]  # fmt: skip

    def _prompts_per_session(self, session_ids: list[str]) -> dict[str, int]:
        if not session_ids:
            return {}
        marks = ", ".join("?" * len(session_ids))
        where, params = events_where(self.filters)
        return dict(
            self.conn.execute(
                f"SELECT e.session_id, COUNT(*) FROM events e WHERE e.name = 'user_prompt' "
                f"AND e.session_id IN ({marks}) AND {where} GROUP BY e.session_id",
                [*session_ids, *params],
            ).fetchall()
        )


# --- what there is to filter on, and one session in detail -------------------------------------------

# Attributes that identify one thing (a session, a prompt) or vary with every point: no use as a filter menu.
NOT_DIMENSIONS = frozenset({"session.id", "prompt.id", "user.account_uuid", "event.sequence", "event.timestamp"})


def filter_options(conn: sqlite3.Connection, limit: int = 200) -> dict[str, Any]:
    users = conn.execute(
        "SELECT user_id, MAX(user_email) FROM series WHERE user_id IS NOT NULL GROUP BY user_id ORDER BY 2, 1 LIMIT ?",
        (limit,),
    ).fetchall()
    models = [row[0] for row in conn.execute(
        "SELECT DISTINCT model FROM series WHERE model IS NOT NULL ORDER BY model LIMIT ?", (limit,))]  # fmt: skip
    keys = [row[0] for row in conn.execute(
        "SELECT key FROM (SELECT key, COUNT(DISTINCT value) AS n FROM series_attrs GROUP BY key) "
        "WHERE n BETWEEN 1 AND ? ORDER BY key", (limit,))]  # fmt: skip
    return {
        "users": [{"id": user, "email": email} for user, email in users],
        "models": models,
        "keys": [key for key in keys if key not in NOT_DIMENSIONS],
    }


def attribute_values(conn: sqlite3.Connection, key: str, limit: int = 200) -> list[str]:
    return [row[0] for row in conn.execute(
        "SELECT DISTINCT value FROM series_attrs WHERE key = ? ORDER BY value LIMIT ?", (key, limit))]  # fmt: skip


TIMELINE_EVENTS = ("user_prompt", "api_request", "api_error", "tool_decision", "tool_result", "assistant_response")
TIMELINE_FIELDS = (
    "prompt.id", "prompt_length", "model", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_creation_tokens", "cost_usd", "duration_ms", "ttft_ms", "tool_name", "decision", "source", "success",
    "error", "status_code", "attempt", "response_length", "query_source", "effort",
)  # fmt: skip


def session_timeline(conn: sqlite3.Connection, session_id: str, limit: int = 5000) -> list[dict[str, Any]]:
    """What happened in a session, in order. Only whitelisted fields: never conversation text."""
    import json

    rows = conn.execute(
        "SELECT time_ns, name, attrs FROM events WHERE session_id = ? ORDER BY time_ns, "
        "CAST(json_extract(attrs, '$.\"event.sequence\"') AS INTEGER) LIMIT ?",
        (session_id, limit),
    ).fetchall()
    timeline = []
    for time_ns, name, attrs in rows:
        values = json.loads(attrs)
        fields = {k: values[k] for k in TIMELINE_FIELDS if k in values}
        timeline.append({"time_ns": time_ns, "name": name, "fields": fields})
    return timeline
