"""The database layout, versioned: each migration runs once, in order, recorded in ``PRAGMA user_version``."""

from __future__ import annotations

import sqlite3

# Attributes common enough to deserve their own column (fast filters and breakdowns). Every attribute,
# these included, is also kept whole in the ``attrs`` JSON of its row.
COMMON_COLUMNS = {
    "session.id": "session_id",
    "user.id": "user_id",
    "user.email": "user_email",
    "user.account_uuid": "account_uuid",
    "organization.id": "organization_id",
    "model": "model",
    "type": "type",
    "terminal.type": "terminal_type",
    "service.version": "service_version",
    "decision": "decision",
}
EVENT_COLUMNS = {**COMMON_COLUMNS, "prompt.id": "prompt_id"}

_common = ", ".join(f"{column} TEXT" for column in COMMON_COLUMNS.values())
_event_common = ", ".join(f"{column} TEXT" for column in EVENT_COLUMNS.values())

MIGRATIONS: tuple[str, ...] = (
    # 1: metrics as series + points, events, spans.
    f"""
    CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        key BLOB NOT NULL UNIQUE,          -- hash of name, unit, kind, temporality, scope, attributes
        metric TEXT NOT NULL,
        unit TEXT NOT NULL,
        kind TEXT NOT NULL,                -- sum | gauge | histogram | exponential_histogram | summary
        temporality TEXT,                  -- delta | cumulative
        monotonic INTEGER NOT NULL,
        scope TEXT NOT NULL,
        {_common},
        attrs TEXT NOT NULL                -- JSON: resource attributes, overridden by point attributes
    );
    CREATE INDEX series_metric ON series (metric);
    CREATE INDEX series_session ON series (session_id);

    -- Every attribute of every series, for filters on keys nobody could predict (team.id, cost_center...).
    CREATE TABLE series_attrs (
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        series_id INTEGER NOT NULL,
        PRIMARY KEY (key, value, series_id)
    ) WITHOUT ROWID;

    CREATE TABLE points (
        series_id INTEGER NOT NULL,
        start_ns INTEGER NOT NULL,
        time_ns INTEGER NOT NULL,
        value REAL NOT NULL,               -- sums: the increment over (start, time]; gauges: the value
        cumulative REAL,                   -- cumulative sums: the running total as sent
        extra TEXT,                        -- histograms and summaries: counts and buckets as JSON
        PRIMARY KEY (series_id, start_ns, time_ns)  -- an exporter's retry of the same point is a no-op
    ) WITHOUT ROWID;
    CREATE INDEX points_time ON points (time_ns);

    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        key BLOB NOT NULL UNIQUE,          -- hash of the whole record and its resource
        name TEXT NOT NULL,                -- user_prompt, api_request, ... (without the claude_code. prefix)
        time_ns INTEGER NOT NULL,
        {_event_common},
        attrs TEXT NOT NULL,
        body TEXT
    );
    CREATE INDEX events_name_time ON events (name, time_ns);
    CREATE INDEX events_time ON events (time_ns);
    CREATE INDEX events_session ON events (session_id, time_ns);

    CREATE TABLE spans (
        trace_id TEXT NOT NULL,
        span_id TEXT NOT NULL,
        parent_span_id TEXT NOT NULL,
        name TEXT NOT NULL,
        start_ns INTEGER NOT NULL,
        end_ns INTEGER NOT NULL,
        status_code INTEGER NOT NULL,
        session_id TEXT,
        attrs TEXT NOT NULL,
        PRIMARY KEY (trace_id, span_id)
    ) WITHOUT ROWID;
    CREATE INDEX spans_session ON spans (session_id, start_ns);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database up to ``SCHEMA_VERSION``; returns the version it started from."""
    (current,) = conn.execute("PRAGMA user_version").fetchone()
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"the database is at schema version {current}, newer than this ccmetrics understands "
            f"({SCHEMA_VERSION}); upgrade ccmetrics"
        )
    for version in range(current, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return current


def _statements(script: str) -> list[str]:
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    return [s for s in statements if s]
