"""What the server has seen, for ``ccmetrics doctor``: who sent data last and when, which Claude Code
versions, and sessions that sent only one of the two signals (the mark of a half-configured exporter).
All of it is told per session, as Claude Code marks every metric and event with its session; data that names
no session (``OTEL_METRICS_INCLUDE_SESSION_ID=false``) is told only by when it last arrived.

Doctor probes (resource attribute ``ccmetrics.test``) are left out of everything but :func:`probe`.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from .transactions import read_transaction

PROBE_METRIC = "ccmetrics.doctor.probe"
PROBE_EVENT = "ccmetrics.doctor_probe"
PROBE_ID_KEY = "ccmetrics.probe_id"
TEST_KEY = "ccmetrics.test"

_HOST = """COALESCE(json_extract({t}.attrs, '$."host.name"'),
    NULLIF(TRIM(COALESCE(json_extract({t}.attrs, '$."host.arch"'), '') || ' ' ||
                COALESCE(json_extract({t}.attrs, '$."os.type"'), '')), ''))"""
_NOT_TEST = "json_extract({t}.attrs, '$.\"ccmetrics.test\"') IS NULL"


def iso(ns: int | None) -> str | None:
    if not ns:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# Sessions that sent metrics, from the sessions table, each with one of its series for who and where.
_METRIC_SESSIONS = f"""
    SELECT t.session_id, t.last_ns, s.user_id, s.user_email, {_HOST.format(t="s")}, s.service_version
    FROM sessions t JOIN series s ON s.id = (SELECT id FROM series WHERE session_id = t.session_id LIMIT 1)
    WHERE {_NOT_TEST.format(t="s")}
"""
# Sessions that sent events: the session index read one session at a time (a loose index scan), each with its
# last event and the family of one of its events for who and where (the resource's attributes are a family's).
_EVENT_SESSIONS = f"""
    WITH RECURSIVE ids(session) AS (
        SELECT (SELECT MIN(session) FROM events)
        UNION ALL
        SELECT (SELECT MIN(session) FROM events WHERE session > ids.session) FROM ids
        WHERE ids.session IS NOT NULL
    )
    SELECT t.value, (SELECT MAX(time_ns) FROM events WHERE session = ids.session),
           f.user_id, f.user_email, {_HOST.format(t="f")}, f.service_version
    FROM ids JOIN strings t ON t.id = ids.session
    JOIN events e ON e.id = (SELECT id FROM events WHERE session = ids.session LIMIT 1)
    JOIN event_families f ON f.id = e.family_id
    WHERE ids.session IS NOT NULL AND {_NOT_TEST.format(t="f")}
"""


# Data that names no session (as with OTEL_METRICS_INCLUDE_SESSION_ID=false): its last point and last event.
# Doctor's probes name none either: the times of points without a session are read from the last one back
# until one is not a probe's.
_WITHOUT_SESSION = f"""
    SELECT (SELECT t.time_ns FROM session_times t WHERE t.session_id = '' AND EXISTS (
                SELECT 1 FROM points p CROSS JOIN series s ON s.id = p.series_id
                WHERE p.time_ns = t.time_ns AND s.session_id IS NULL AND {_NOT_TEST.format(t="s")})
            ORDER BY t.time_ns DESC LIMIT 1),
           (SELECT e.time_ns FROM events e INDEXED BY events_by_session
            JOIN event_families f ON f.id = e.family_id
            WHERE e.session IS NULL AND {_NOT_TEST.format(t="f")} ORDER BY e.time_ns DESC LIMIT 1)
"""


def _sessions(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """Every session: who and where it ran, and when it last sent metrics and events. Read through indexes,
    a few rows per session, however much data the sessions sent."""
    sessions: dict[str, dict[str, Any]] = {}
    for signal, sql in (("metric", _METRIC_SESSIONS), ("event", _EVENT_SESSIONS)):
        for session_id, last_ns, user, email, host, version in conn.execute(sql):
            row = sessions.setdefault(
                session_id, _new(session_id=session_id, user_id=user, host=host, version=version)
            )
            row[f"last_{signal}_ns"] = last_ns
            row["user_email"] = row["user_email"] or email
    return sessions


def _new(**fields: Any) -> dict[str, Any]:
    return {**fields, "user_email": None, "last_metric_ns": None, "last_event_ns": None}


def _latest(sessions: list[dict[str, Any]], key: Any, **fields: Any) -> list[dict[str, Any]]:
    """Sessions folded by ``key``: the last metric and event time of each group, newest group first."""
    groups: dict[Any, dict[str, Any]] = {}
    for row in sessions:
        group = groups.get(group_key := key(row))
        if group is None:
            group = groups[group_key] = _new(**{name: row[column] for name, column in fields.items()})
        for last in ("last_metric_ns", "last_event_ns"):
            group[last] = max(group[last] or 0, row[last] or 0) or None
        group["user_email"] = group["user_email"] or row["user_email"]
    return [_times(group) for group in sorted(groups.values(), key=_last_ns, reverse=True)]


def _last_ns(row: dict[str, Any]) -> int:
    """When the row last sent anything (0: never)."""
    return max(row["last_metric_ns"] or 0, row["last_event_ns"] or 0)


def _times(row: dict[str, Any]) -> dict[str, Any]:
    last = _last_ns(row) or None
    return {
        **row,
        "last_ns": last,
        "last_seen": iso(last),
        "last_metric": iso(row["last_metric_ns"]),
        "last_event": iso(row["last_event_ns"]),
    }


def _signals(row: dict[str, Any]) -> str:
    return (
        "both"
        if row["last_metric_ns"] and row["last_event_ns"]
        else ("metrics" if row["last_metric_ns"] else "events")
    )


def status(conn: sqlite3.Connection, limit: int = 50) -> dict[str, Any]:
    """Last data per user/host and per session, versions seen, and one-signal sessions (newest first)."""
    with read_transaction(conn):  # every query from one snapshot (the request's, under Store.read)
        sessions = sorted(_sessions(conn).values(), key=_last_ns, reverse=True)
        last_metric_ns, last_event_ns = conn.execute(_WITHOUT_SESSION).fetchone()
    without_session = _times({"last_metric_ns": last_metric_ns, "last_event_ns": last_event_ns})
    versions = _latest(sessions, lambda r: r["version"], version="version")
    return {
        "users": _latest(sessions, lambda r: (r["user_id"], r["host"]), user_id="user_id", host="host"),
        "sessions": [{**_times(row), "signals": _signals(row)} for row in sessions[:limit]],
        "session_count": len(sessions),
        "versions": [
            {"version": r["version"], "last_seen": r["last_seen"], "last_ns": r["last_ns"]} for r in versions
        ],
        "sessions_events_only": [r["session_id"] for r in sessions if _signals(r) == "events"][:limit],
        "sessions_metrics_only": [r["session_id"] for r in sessions if _signals(r) == "metrics"][:limit],
        "without_session": {
            k: without_session[k] for k in ("last_seen", "last_metric", "last_event", "last_ns")
        },
        "last_ns": max(_last_ns(sessions[0]) if sessions else 0, without_session["last_ns"] or 0) or None,
    }


def probe(conn: sqlite3.Connection, probe_id: str) -> dict[str, Any]:
    """Whether the doctor's test export with ``probe_id`` was stored: its metric point and its event. A probe
    names no session, and is among the last points without one."""
    (metric_ns,) = conn.execute(
        """
        SELECT (SELECT t.time_ns FROM session_times t CROSS JOIN points p ON p.time_ns = t.time_ns
                WHERE t.session_id = '' AND p.series_id IN (
                    SELECT s.id FROM family_attrs a JOIN series s ON s.family_id = a.family_id
                    WHERE a.key = ? AND a.value = ? AND s.metric = ?)
                ORDER BY t.time_ns DESC LIMIT 1)
        """,
        (PROBE_ID_KEY, probe_id, PROBE_METRIC),
    ).fetchone()
    (event_ns,) = conn.execute(
        "SELECT MAX(e.time_ns) FROM events e WHERE e.family_id IN "
        "(SELECT id FROM event_families WHERE name = ?) AND json_extract(e.attrs, ?) = ?",
        (PROBE_EVENT, f'$."{PROBE_ID_KEY}"', probe_id),
    ).fetchone()
    return {
        "probe_id": probe_id,
        "metric": metric_ns is not None,
        "event": event_ns is not None,
        "stored": metric_ns is not None and event_ns is not None,
        "metric_time": iso(metric_ns),
        "event_time": iso(event_ns),
    }
