"""The database layout, versioned: each migration runs once, in order, recorded in ``PRAGMA user_version``."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

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
# Attributes of events that are long and shared by many of them: each value is stored once, in ``strings``,
# and an event row refers to it from this column.
EVENT_STRINGS = {"session.id": "session", "prompt.id": "prompt"}

# Attributes that single out one session or prompt: a family (what dashboards group by) leaves them out.
NOT_IN_FAMILY = frozenset(
    {"session.id", "prompt.id", "event.sequence", "event.timestamp", "message.uuid", "tool_use_id"}
)
# Event attributes that describe a kind of event rather than one event: with the resource's, they make
# an event's family. Everything else about an event (ids, measurements, messages) stays on its row.
EVENT_DIMENSIONS = frozenset(
    {
        "user.id",
        "user.email",
        "user.account_uuid",
        "organization.id",
        "terminal.type",
        "service.version",
        "app.version",
        "model",
        "tool_name",
        "success",
        "decision",
        "source",
        "status_code",
        "query_source",
        "effort",
        "speed",
        "tool_source",
        "permission_mode",
        "event.name",
        "anthropic.provider",
    }
)
FAMILY_COLUMNS = {k: v for k, v in COMMON_COLUMNS.items() if k != "session.id"}
# Event attributes that are measurements: kept as columns so rollups can add them up.
EVENT_MEASURES = ("prompt_length", "duration_ms", "ttft_ms")
HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
WEEK_NS = 7 * DAY_NS  # weeks start on Thursdays, as 1970-01-01 did: a week is only ever a sum of days

# rollup tables: rollup_hour, rollup_day, rollup_week, event_rollup_hour, ...
TIERS = {"hour": HOUR_NS, "day": DAY_NS, "week": WEEK_NS}

# The migrations, in order, each the literal SQL it ran: none is built from a constant. A migration, once
# released, never changes (databases out there ran it as it was): a schema change, a new entry in
# COMMON_COLUMNS or EVENT_MEASURES included, is a new migration appended at the end. tests/test_schema.py
# holds the checksum of each; migrate checks that the constants name only columns the tables have.
MIGRATIONS: tuple[str, ...] = (
    # 1: metrics as families, series and points; events; spans; hourly and daily rollups (one table per tier,
    # the same columns: sums per family and period).
    """
    -- A family is a series without its session: what dashboards group and filter by, a few per person.
    CREATE TABLE families (
        id INTEGER PRIMARY KEY,
        key BLOB NOT NULL UNIQUE,
        metric TEXT NOT NULL,
        kind TEXT NOT NULL,                -- sum | gauge | histogram | exponential_histogram | summary
        user_id TEXT, user_email TEXT, account_uuid TEXT, organization_id TEXT, model TEXT, type TEXT, terminal_type TEXT, service_version TEXT, decision TEXT,
        attrs TEXT NOT NULL                -- JSON: every attribute but session.id
    );
    CREATE INDEX families_metric ON families (metric);

    -- Every attribute of every family, for filters on keys nobody could predict (team.id, cost_center...).
    CREATE TABLE family_attrs (
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        family_id INTEGER NOT NULL,
        PRIMARY KEY (key, value, family_id)
    ) WITHOUT ROWID;

    CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        key BLOB NOT NULL UNIQUE,          -- hash of name, unit, kind, temporality, scope, attributes
        family_id INTEGER NOT NULL,
        metric TEXT NOT NULL,
        unit TEXT NOT NULL,
        kind TEXT NOT NULL,
        temporality TEXT,                  -- delta | cumulative
        monotonic INTEGER NOT NULL,
        scope TEXT NOT NULL,
        session_id TEXT, user_id TEXT, user_email TEXT, account_uuid TEXT, organization_id TEXT, model TEXT, type TEXT, terminal_type TEXT, service_version TEXT, decision TEXT,
        attrs TEXT NOT NULL                -- JSON: resource attributes, overridden by point attributes
    );
    CREATE INDEX series_family ON series (family_id);
    CREATE INDEX series_session ON series (session_id);

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

    -- Sums per family and hour, and per family and day, kept exact by the writer in the same transaction as
    -- the points (late points and corrections included): long ranges read days, their edges hours, and
    -- only partial hours read points.
    CREATE TABLE rollup_hour (
        family_id INTEGER NOT NULL,
        start_ns INTEGER NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (family_id, start_ns)
    ) WITHOUT ROWID;
    CREATE TABLE rollup_day (
        family_id INTEGER NOT NULL,
        start_ns INTEGER NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (family_id, start_ns)
    ) WITHOUT ROWID;
    -- When each session was active, to find recent sessions without scanning points.
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        first_ns INTEGER NOT NULL,
        last_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_last ON sessions (last_ns);

    CREATE TABLE event_families (
        id INTEGER PRIMARY KEY,
        key BLOB NOT NULL UNIQUE,
        name TEXT NOT NULL,
        user_id TEXT, user_email TEXT, account_uuid TEXT, organization_id TEXT, model TEXT, type TEXT, terminal_type TEXT, service_version TEXT, decision TEXT,
        attrs TEXT NOT NULL                -- JSON: resource attributes and the record's dimensions
    );
    CREATE TABLE event_family_attrs (
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        family_id INTEGER NOT NULL,
        PRIMARY KEY (key, value, family_id)
    ) WITHOUT ROWID;

    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        key BLOB NOT NULL UNIQUE,          -- hash of the whole record and its resource
        family_id INTEGER NOT NULL,
        name TEXT NOT NULL,                -- user_prompt, api_request, ... (without the claude_code. prefix)
        time_ns INTEGER NOT NULL,
        session_id TEXT, user_id TEXT, user_email TEXT, account_uuid TEXT, organization_id TEXT, model TEXT, type TEXT, terminal_type TEXT, service_version TEXT, decision TEXT, prompt_id TEXT,
        prompt_length REAL, duration_ms REAL, ttft_ms REAL,
        sample INTEGER NOT NULL,           -- 0, 1, 2... with odds 1/2, 1/4, 1/8...: sampling for percentiles
        attrs TEXT NOT NULL,
        body TEXT
    );
    CREATE INDEX events_name_time ON events (name, time_ns);
    CREATE INDEX events_time ON events (time_ns);
    CREATE INDEX events_session ON events (session_id, time_ns);
    -- Covers the percentile queries: an even sample of one event's measures, read from the index alone.
    CREATE INDEX events_sample ON events (name, sample, time_ns, family_id, duration_ms, ttft_ms);

    CREATE TABLE event_rollup_hour (
        family_id INTEGER NOT NULL,
        start_ns INTEGER NOT NULL,
        count INTEGER NOT NULL, prompt_length_sum REAL NOT NULL DEFAULT 0, prompt_length_count INTEGER NOT NULL DEFAULT 0, duration_ms_sum REAL NOT NULL DEFAULT 0, duration_ms_count INTEGER NOT NULL DEFAULT 0, ttft_ms_sum REAL NOT NULL DEFAULT 0, ttft_ms_count INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (family_id, start_ns)
    ) WITHOUT ROWID;
    CREATE TABLE event_rollup_day (
        family_id INTEGER NOT NULL,
        start_ns INTEGER NOT NULL,
        count INTEGER NOT NULL, prompt_length_sum REAL NOT NULL DEFAULT 0, prompt_length_count INTEGER NOT NULL DEFAULT 0, duration_ms_sum REAL NOT NULL DEFAULT 0, duration_ms_count INTEGER NOT NULL DEFAULT 0, ttft_ms_sum REAL NOT NULL DEFAULT 0, ttft_ms_count INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (family_id, start_ns)
    ) WITHOUT ROWID;
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
    """,  # noqa: E501
    # 2: rollups ordered by time; a version per hour of data, so answers about hours that did not change can
    # be reused. The rollup tables are rebuilt ordered by time first: a range of time is one stretch of the
    # table to read, and the hour being written is a few adjacent pages rather than one page per family.
    """
    CREATE TABLE rollup_hour_by_time (
        family_id INTEGER NOT NULL,
        start_ns INTEGER NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (start_ns, family_id)
    ) WITHOUT ROWID;
    CREATE TABLE rollup_day_by_time (
        family_id INTEGER NOT NULL,
        start_ns INTEGER NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (start_ns, family_id)
    ) WITHOUT ROWID;
    INSERT INTO rollup_hour_by_time SELECT * FROM rollup_hour;
    DROP TABLE rollup_hour;
    ALTER TABLE rollup_hour_by_time RENAME TO rollup_hour;
    INSERT INTO rollup_day_by_time SELECT * FROM rollup_day;
    DROP TABLE rollup_day;
    ALTER TABLE rollup_day_by_time RENAME TO rollup_day;
    CREATE TABLE event_rollup_hour_by_time (
        family_id INTEGER NOT NULL,
        start_ns INTEGER NOT NULL,
        count INTEGER NOT NULL, prompt_length_sum REAL NOT NULL DEFAULT 0, prompt_length_count INTEGER NOT NULL DEFAULT 0, duration_ms_sum REAL NOT NULL DEFAULT 0, duration_ms_count INTEGER NOT NULL DEFAULT 0, ttft_ms_sum REAL NOT NULL DEFAULT 0, ttft_ms_count INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (start_ns, family_id)
    ) WITHOUT ROWID;
    CREATE TABLE event_rollup_day_by_time (
        family_id INTEGER NOT NULL,
        start_ns INTEGER NOT NULL,
        count INTEGER NOT NULL, prompt_length_sum REAL NOT NULL DEFAULT 0, prompt_length_count INTEGER NOT NULL DEFAULT 0, duration_ms_sum REAL NOT NULL DEFAULT 0, duration_ms_count INTEGER NOT NULL DEFAULT 0, ttft_ms_sum REAL NOT NULL DEFAULT 0, ttft_ms_count INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (start_ns, family_id)
    ) WITHOUT ROWID;
    INSERT INTO event_rollup_hour_by_time SELECT * FROM event_rollup_hour;
    DROP TABLE event_rollup_hour;
    ALTER TABLE event_rollup_hour_by_time RENAME TO event_rollup_hour;
    INSERT INTO event_rollup_day_by_time SELECT * FROM event_rollup_day;
    DROP TABLE event_rollup_day;
    ALTER TABLE event_rollup_day_by_time RENAME TO event_rollup_day;
    -- Percentiles under a filter that leaves few families: their events, read from this index alone.
    DROP INDEX events_name_time;
    CREATE INDEX events_family ON events (family_id, time_ns, sample, duration_ms, ttft_ms);

    -- Bumped by every transaction that adds to an hour (points or events timed in it): an answer read from
    -- rollups stays right for as long as the versions of its hours stay the same.
    CREATE TABLE hour_versions (
        start_ns INTEGER PRIMARY KEY,
        version INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,  # noqa: E501
    # 3: points ordered by time. An export's points go to the end of the table instead of one place per
    # series, so a commit writes far fewer pages, and a range of time is one stretch of the table. A session's
    # points are found through the times it sent them.
    """
    CREATE TABLE points_by_time (
        series_id INTEGER NOT NULL,
        start_ns INTEGER NOT NULL,
        time_ns INTEGER NOT NULL,
        value REAL NOT NULL,
        cumulative REAL,
        extra TEXT,
        PRIMARY KEY (time_ns, series_id, start_ns)  -- an exporter's retry of the same point is a no-op
    ) WITHOUT ROWID;
    INSERT INTO points_by_time SELECT * FROM points ORDER BY time_ns, series_id, start_ns;
    DROP TABLE points;
    ALTER TABLE points_by_time RENAME TO points;
    -- A cumulative stream's points in order, to turn each running total into an increment.
    CREATE INDEX points_cumulative ON points (series_id, start_ns, time_ns) WHERE cumulative IS NOT NULL;

    -- The times at which each session sent points ('' for points without a session): with them, a session's
    -- points are a few lookups in the time-ordered table. Claude Code sends one export per session at a time.
    CREATE TABLE session_times (
        session_id TEXT NOT NULL,
        time_ns INTEGER NOT NULL,
        PRIMARY KEY (session_id, time_ns)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO session_times
        SELECT DISTINCT coalesce(s.session_id, ''), p.time_ns
        FROM points p JOIN series s ON s.id = p.series_id ORDER BY 1, 2;
    """,
    # 4: an event's key begins with its record's time (see normalize.event_key), so new events go to the end
    # of the key index instead of all over it. Events stored before keep the hash alone as their key; a retry
    # of one is looked for under it, up to the last of their times.
    """
    CREATE TABLE untimed_event_keys (until_ns INTEGER NOT NULL);
    INSERT INTO untimed_event_keys SELECT coalesce(MAX(time_ns), 0) FROM events;
    """,
    # 5: a day's daily sums are written once, when the day has ended, from its hours; only late data for a day
    # that has ended adds to them directly. Readers read days from until_ns on by the hour.
    """
    CREATE TABLE closed_days (until_ns INTEGER NOT NULL);
    INSERT INTO closed_days SELECT CAST(strftime('%s', 'now') AS INTEGER) / 86400 * 86400000000000;
    """,
    # 6: each fact stored once, and weekly sums.
    # An event's family holds its name, the attributes that describe its kind (the resource's among them)
    # and, when its body is a name (Claude Code's "claude_code.api_request"), its body: an event row keeps
    # only what is its own. Session and prompt ids, long and shared by many events, are stored once, in
    # strings. The events stored before are moved into the new table a few thousand at a time by the writer
    # (see store/upgrade.py), so that a large store goes on taking data while it is upgraded; their table is
    # dropped once it is empty. Its indexes go with it then, emptied row by row: dropping them whole now
    # would read every page of them, seconds for a large store, before the server could take any data.
    """
    ALTER TABLE event_families ADD COLUMN body TEXT;  -- the body of every event of the family, when a name
    CREATE TABLE strings (
        id INTEGER PRIMARY KEY,
        value TEXT NOT NULL UNIQUE
    );
    ALTER TABLE events RENAME TO events_before_6;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        key BLOB NOT NULL UNIQUE,          -- see normalize.event_key: an exporter's retry is a no-op
        family_id INTEGER NOT NULL,        -- its name, body and the attributes of its kind
        time_ns INTEGER NOT NULL,
        session INTEGER,                   -- strings.id of its session.id, as text
        prompt INTEGER,                    -- strings.id of its prompt.id, as text
        prompt_length, duration_ms, ttft_ms,  -- numbers as they came, integer or real: not in attrs
        sample INTEGER NOT NULL,           -- 0, 1, 2... with odds 1/2, 1/4, 1/8...: sampling for percentiles
        attrs TEXT NOT NULL,               -- JSON: the attributes its family does not hold
        body TEXT                          -- when its family does not hold it
    );
    -- The raw sums of the partial hours at a range's ends (queries.event_sums).
    CREATE INDEX events_by_time ON events (time_ns);
    -- A session's events, and the prompts of a few sessions (queries.session_events, prompts_per_session).
    CREATE INDEX events_by_session ON events (session, time_ns);
    -- Percentiles over a long range: an even sample of the measures, from the index alone (event_samples).
    -- Only the events of level 3 and up (one in eight): fewer are read by family.
    CREATE INDEX events_by_sample ON events (sample, time_ns, family_id, duration_ms, ttft_ms) WHERE sample >= 3;
    -- Percentiles when a filter or a short range leaves few events: family by family
    -- (event_samples_of_families).
    CREATE INDEX events_by_family ON events (family_id, time_ns, sample, duration_ms, ttft_ms);

    -- Sums per family and week, for the weeks that have ended: a month is four of them and a few days.
    CREATE TABLE rollup_week (
        family_id INTEGER NOT NULL,
        start_ns INTEGER NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (start_ns, family_id)
    ) WITHOUT ROWID;
    CREATE TABLE event_rollup_week (
        family_id INTEGER NOT NULL,
        start_ns INTEGER NOT NULL,
        count INTEGER NOT NULL, prompt_length_sum REAL NOT NULL DEFAULT 0, prompt_length_count INTEGER NOT NULL DEFAULT 0, duration_ms_sum REAL NOT NULL DEFAULT 0, duration_ms_count INTEGER NOT NULL DEFAULT 0, ttft_ms_sum REAL NOT NULL DEFAULT 0, ttft_ms_count INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (start_ns, family_id)
    ) WITHOUT ROWID;
    INSERT INTO rollup_week
        SELECT family_id, start_ns - start_ns % 604800000000000, SUM(value) FROM rollup_day
        WHERE start_ns < (SELECT until_ns FROM closed_days) / 604800000000000 * 604800000000000
        GROUP BY 2, 1;
    INSERT INTO event_rollup_week
        SELECT family_id, start_ns - start_ns % 604800000000000, SUM(count), SUM(prompt_length_sum), SUM(prompt_length_count), SUM(duration_ms_sum), SUM(duration_ms_count), SUM(ttft_ms_sum), SUM(ttft_ms_count)
        FROM event_rollup_day
        WHERE start_ns < (SELECT until_ns FROM closed_days) / 604800000000000 * 604800000000000
        GROUP BY 2, 1;

    -- No query reads families by metric, or spans by session.
    DROP INDEX families_metric;
    DROP INDEX spans_session;
    """,  # noqa: E501
    # 7: a chart over days or weeks reads the sums of one metric's families, each over a run of periods,
    # rather than every family's sums in the range. Not the hourly sums: every commit adds to those.
    """
    CREATE INDEX rollup_day_by_family ON rollup_day (family_id, start_ns, value);
    CREATE INDEX rollup_week_by_family ON rollup_week (family_id, start_ns, value);
    """,
    # 8: Claude Code's transcripts, imported (see transcripts/): how far each file was read, the messages
    # counted (their final output, as a later record of one may carry more), each import, and the sessions
    # a transcript told about, with whether their usage counts from it (none sent telemetry) or not.
    """
    CREATE TABLE transcript_files (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        offset INTEGER NOT NULL            -- the next read starts here, after the last complete line
    ) WITHOUT ROWID;
    CREATE TABLE transcript_messages (
        key INTEGER PRIMARY KEY,           -- message.id and requestId hashed (transcripts/scan.message_key)
        output INTEGER NOT NULL
    );
    CREATE TABLE transcript_runs (
        id INTEGER PRIMARY KEY,
        time_ns INTEGER NOT NULL,
        price_table TEXT NOT NULL,
        files INTEGER NOT NULL,
        messages INTEGER NOT NULL
    );
    CREATE TABLE transcript_sessions (
        session_id TEXT PRIMARY KEY,
        project TEXT,                      -- the git repository holding cwd, else cwd
        cwd TEXT,
        git_branch TEXT,
        first_ns INTEGER NOT NULL,
        last_ns INTEGER NOT NULL,
        counted INTEGER NOT NULL           -- 1: its usage counts from the transcript; 0: from telemetry
    ) WITHOUT ROWID;
    """,
    # 9: retention. What is kept from when: raw points, events and spans from raw_ns on, the rollups and the
    # sessions' activity from rollups_ns on (0: everything). Each is moved forward before the pruning it
    # announces (see store/retention.py), so readers know which of their ranges the raw data still covers.
    # Spans are pruned by time, which needs their times in order. The prompt ids of pruned events wait in
    # pruned_prompts (strings.id of their session and their own) until their session has ended.
    """
    CREATE TABLE kept_since (raw_ns INTEGER NOT NULL, rollups_ns INTEGER NOT NULL);
    INSERT INTO kept_since VALUES (0, 0);
    CREATE INDEX spans_by_time ON spans (start_ns);
    CREATE TABLE pruned_prompts (
        session INTEGER NOT NULL,
        prompt INTEGER NOT NULL,
        PRIMARY KEY (session, prompt)
    ) WITHOUT ROWID;
    """,
    # 10: forgetting a person or a session (see store/forgetting.py). A request waits here until the writer
    # has carried it out; its value (an id, an email, a name) is erased then, what was removed kept (counts).
    """
    CREATE TABLE forget_requests (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,                -- user | session
        value TEXT,                        -- who or which session; NULL once done
        requested_ns INTEGER NOT NULL,
        done_ns INTEGER,
        removed TEXT NOT NULL DEFAULT '{}'  -- JSON: rows removed, by table
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database up to ``SCHEMA_VERSION``, then check its columns against the constants (see
    ``check_columns``); returns the version it started from."""
    (current,) = conn.execute("PRAGMA user_version").fetchone()
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"the database is at schema version {current}, newer than this ccmetrics understands "
            f"({SCHEMA_VERSION}); upgrade ccmetrics"
        )
    if current == 0 and conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
        # A new database gives back the pages pruning frees, a few at a time (see store/retention.py); an
        # existing one needs a whole VACUUM for that, once, with the server stopped (`ccmetrics vacuum`).
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute(
            "VACUUM"
        )  # instant on an empty file; needed as journal_mode = WAL has written its header
    apply_migrations(conn, MIGRATIONS, current)
    check_columns(conn)
    return int(current)


def expected_columns() -> dict[str, list[str]]:
    """The columns the code reads and writes by the constants above, table by table."""
    measure_sums = [f"{m}_{part}" for m in EVENT_MEASURES for part in ("sum", "count")]
    return {
        "families": list(FAMILY_COLUMNS.values()),
        "series": list(COMMON_COLUMNS.values()),
        "event_families": [*FAMILY_COLUMNS.values(), "body"],
        "events": [*EVENT_STRINGS.values(), *EVENT_MEASURES],
        **{f"rollup_{tier}": ["value"] for tier in TIERS},
        **{f"event_rollup_{tier}": ["count", *measure_sums] for tier in TIERS},
    }


def missing_columns(conn: sqlite3.Connection) -> list[str]:
    """``table.column`` for each column the constants name that the database lacks."""
    missing = []
    for table, columns in expected_columns().items():
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        missing += [f"{table}.{column}" for column in columns if column not in present]
    return missing


def check_columns(conn: sqlite3.Connection) -> None:
    """Raises unless the tables have every column the constants name: an entry added to COMMON_COLUMNS,
    EVENT_MEASURES... needs a new migration that adds its column."""
    missing = missing_columns(conn)
    if missing:
        raise RuntimeError(
            f"the schema lacks {', '.join(missing)}: a column named in store/schema.py's constants needs a "
            "migration of its own, appended to MIGRATIONS"
        )


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[str], current: int) -> None:
    """Run the migrations after ``current`` (the file's user_version), each in a transaction of its own with
    the version it brings the file to: a migration is applied whole or not at all."""
    for version in range(current, len(migrations)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements(migrations[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def statements(script: str) -> list[str]:
    found, pending = [], ""
    for line in script.splitlines(keepends=True):
        if not pending and line.strip().startswith("--"):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            found.append(pending.strip())
            pending = ""
    return [s for s in found if s]
