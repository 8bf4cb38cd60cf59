"""What the server has seen, for ``ccmetrics doctor``: who sent data last and when, which Claude Code versions,
and sessions that sent only one of the two signals (the mark of a half-configured exporter).

Doctor probes (resource attribute ``ccmetrics.test``) are left out of everything but :func:`probe`.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

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


def _metric_rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """Per series: (session, user, email, host, version, last time, points); MAX per series uses the key."""
    return conn.execute(
        f"""
        SELECT s.session_id, s.user_id, s.user_email, {_HOST.format(t="s")}, s.service_version,
               MAX(p.time_ns), COUNT(*)
        FROM series s JOIN points p ON p.series_id = s.id
        WHERE {_NOT_TEST.format(t="s")}
        GROUP BY s.id
        """
    ).fetchall()


def _event_rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"""
        SELECT e.session_id, e.user_id, MAX(e.user_email), {_HOST.format(t="e")} AS host, e.service_version,
               MAX(e.time_ns), COUNT(*)
        FROM events e
        WHERE {_NOT_TEST.format(t="e")}
        GROUP BY e.session_id, e.user_id, host, e.service_version
        """
    ).fetchall()


def _fold(rows: list[tuple[Any, ...]], signal: str, into: dict[Any, dict[str, Any]], key_of: Any,
          make: Any) -> None:  # fmt: skip
    for session, user, email, host, version, last_ns, count in rows:
        row = into.setdefault(key_of(session, user, host, version), make(session, user, host, version))
        row[f"last_{signal}_ns"] = max(row[f"last_{signal}_ns"] or 0, last_ns or 0) or None
        row[signal] += count
        if email and not row.get("user_email"):
            row["user_email"] = email


def _new(**fields: Any) -> dict[str, Any]:
    return {**fields, "user_email": None, "last_metric_ns": None, "last_event_ns": None, "metric": 0, "event": 0}


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    last = max(row["last_metric_ns"] or 0, row["last_event_ns"] or 0) or None
    return {
        **{k: v for k, v in row.items() if k not in ("metric", "event")},
        "points": row["metric"],
        "events": row["event"],
        "last_ns": last,
        "last_seen": iso(last),
        "last_metric": iso(row["last_metric_ns"]),
        "last_event": iso(row["last_event_ns"]),
    }


def status(conn: sqlite3.Connection, limit: int = 50) -> dict[str, Any]:
    """Last data per user/host and per session, versions seen, and one-signal sessions (newest first)."""
    metric_rows, event_rows = _metric_rows(conn), _event_rows(conn)
    users: dict[Any, dict[str, Any]] = {}
    sessions: dict[Any, dict[str, Any]] = {}
    versions: dict[Any, dict[str, Any]] = {}
    for signal, rows in (("metric", metric_rows), ("event", event_rows)):
        _fold(rows, signal, users, lambda s, u, h, v: (u, h), lambda s, u, h, v: _new(user_id=u, host=h))
        _fold([r for r in rows if r[0]], signal, sessions, lambda s, u, h, v: s,
              lambda s, u, h, v: _new(session_id=s, user_id=u, host=h, version=v))  # fmt: skip
        _fold(rows, signal, versions, lambda s, u, h, v: v, lambda s, u, h, v: _new(version=v))
    session_rows = sorted((_finish(r) for r in sessions.values()), key=lambda r: -(r["last_ns"] or 0))
    for row in session_rows:
        row["signals"] = "both" if row["points"] and row["events"] else ("metrics" if row["points"] else "events")
    return {
        "users": sorted((_finish(r) for r in users.values()), key=lambda r: -(r["last_ns"] or 0)),
        "sessions": session_rows[:limit],
        "session_count": len(session_rows),
        "versions": sorted(({"version": r["version"], "last_seen": r["last_seen"], "last_ns": r["last_ns"]}
                            for r in map(_finish, versions.values())), key=lambda r: -(r["last_ns"] or 0)),  # fmt: skip
        "sessions_events_only": [r["session_id"] for r in session_rows if r["signals"] == "events"][:limit],
        "sessions_metrics_only": [r["session_id"] for r in session_rows if r["signals"] == "metrics"][:limit],
        "last_ns": max((r["last_ns"] or 0 for r in session_rows), default=0) or None,
    }


def probe(conn: sqlite3.Connection, probe_id: str) -> dict[str, Any]:
    """Whether the doctor's test export with ``probe_id`` was stored: its metric point and its event."""
    (metric_ns,) = conn.execute(
        """
        SELECT MAX(p.time_ns) FROM family_attrs a JOIN series s ON s.family_id = a.family_id
        JOIN points p ON p.series_id = s.id
        WHERE a.key = ? AND a.value = ? AND s.metric = ?
        """,
        (PROBE_ID_KEY, probe_id, PROBE_METRIC),
    ).fetchone()
    (event_ns,) = conn.execute(
        "SELECT MAX(time_ns) FROM events WHERE name = ? AND json_extract(attrs, ?) = ?",
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
