"""A database as an older ccmetrics left it: built by the first migrations only, holding the data of a
database at the current schema as those versions kept it (events whole, with their family's columns)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ccmetrics.store.schema import MIGRATIONS, statements
from ccmetrics.store.upgrade import pending_events

# Schema 5 and earlier kept an event's attributes whole on its row, with its name and its family's columns.
_EVENTS_AS_KEPT_BEFORE_6 = """
    INSERT INTO main.events (
        id, key, family_id, name, time_ns, session_id, user_id, user_email, account_uuid, organization_id,
        model, type, terminal_type, service_version, decision, prompt_id, prompt_length, duration_ms, ttft_ms,
        sample, attrs, body)
    SELECT e.id, e.key, e.family_id, f.name, e.time_ns, t.value, f.user_id, f.user_email, f.account_uuid,
           f.organization_id, f.model, f.type, f.terminal_type, f.service_version, f.decision, p.value,
           e.prompt_length, e.duration_ms, e.ttft_ms, e.sample,
           json_patch(json_patch(f.attrs, e.attrs), json_object(
               'session.id', t.value, 'prompt.id', p.value, 'prompt_length', e.prompt_length,
               'duration_ms', e.duration_ms, 'ttft_ms', e.ttft_ms)),
           coalesce(e.body, f.body)
    FROM current.events e JOIN current.event_families f ON f.id = e.family_id
    LEFT JOIN current.strings t ON t.id = e.session LEFT JOIN current.strings p ON p.id = e.prompt
"""


def database_at(version: int, current: Path, old: Path) -> None:
    """Write at ``old`` a database at schema ``version`` (5 or earlier) with the data of ``current``."""
    assert version <= 5
    old.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(old, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for migration in MIGRATIONS[:version]:
            for statement in statements(migration):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
        conn.execute(f"ATTACH DATABASE '{current}' AS current")
        conn.execute("BEGIN")
        tables = [
            name for (name,) in conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")
        ]
        for table in tables:
            if table == "events":
                conn.execute(_EVENTS_AS_KEPT_BEFORE_6)
                continue
            conn.execute(
                f"DELETE FROM main.{table}"
            )  # what the migrations put there: the current one's instead
            columns = ", ".join(row[1] for row in conn.execute(f"PRAGMA main.table_info({table})"))
            conn.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM current.{table}")
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE current")
    finally:
        conn.close()


def wait_until_upgraded(path: Path, timeout: float = 120) -> None:
    """Until the writer of a server or store on ``path`` has moved the events of schema 5 and earlier."""
    deadline = time.monotonic() + timeout
    while True:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            if pending_events(conn) == 0:
                return
        finally:
            conn.close()
        assert time.monotonic() < deadline, "the upgrade did not finish"
        time.sleep(0.05)
