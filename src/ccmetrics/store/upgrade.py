"""Moving the events stored before schema 6 into its table, a few thousand at a time.

Migration 6 renames the events table to ``events_before_6`` and creates the new one, in a moment whatever
the store's size. The writer then moves the old events over between its commits, each step a transaction of
its own: the store goes on taking data meanwhile, and a step cut short (kill -9, power loss) is rolled back
and done again. Until the last one is moved the read side answers that the store is being upgraded (see
``pending_events``), since a query would otherwise miss the events not yet moved.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .event_rows import INSERT_EVENT, EventRow, measure, own_attributes
from .identities import Identities, to_json
from .schema import EVENT_MEASURES

LEGACY = "events_before_6"
STEP = 500  # events per step: a few tens of milliseconds, the longest an export waits for one

EXISTS = f"SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{LEGACY}'"
# Events left to move, near enough: ids are consecutive, and counting them would read them all.
LEFT = f"SELECT coalesce(MAX(id) - MIN(id) + 1, 0) FROM {LEGACY}"
_OLDEST = f"""
    SELECT l.id, l.key, l.family_id, l.time_ns, l.session_id, l.prompt_id, l.prompt_length, l.duration_ms,
           l.ttft_ms, l.sample, l.attrs, l.body, coalesce(f.attrs, '{{}}')
    FROM {LEGACY} l LEFT JOIN event_families f ON f.id = l.family_id
    ORDER BY l.id LIMIT ?
"""


def pending_events(conn: sqlite3.Connection) -> int:
    """How many events are still to be moved (0 once the upgrade is done)."""
    if conn.execute(EXISTS).fetchone() is None:
        return 0
    return int(conn.execute(LEFT).fetchone()[0])


class EventsUpgrade:
    """The moving of the old events, on the writer's connection, between its commits."""

    def __init__(self, conn: sqlite3.Connection, identities: Identities) -> None:
        self._conn = conn
        self._identities = identities
        self.pending = conn.execute(EXISTS).fetchone() is not None

    def left(self) -> int:
        """How many events are still to be moved."""
        return pending_events(self._conn) if self.pending else 0

    def holds(self, key: bytes, untimed_key: bytes | None) -> bool:
        """Whether an event not moved yet has this key (or, for one stored before keys began with their time,
        ``untimed_key``)."""
        if not self.pending:
            return False
        found = self._conn.execute(
            f"SELECT 1 FROM {LEGACY} WHERE key = ? OR key = ?", (key, untimed_key or key)
        ).fetchone()
        return found is not None

    def step(self, size: int = STEP) -> None:
        """Move the oldest ``size`` events in a transaction of its own, and drop the old table once they are
        all moved. A step that fails is rolled back whole, to be tried again."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(_OLDEST, (size,)).fetchall()
            families: dict[str, dict[str, Any]] = {}  # a family's attributes, parsed once per step
            moved = [self._row(row, families) for row in rows]
            conn.executemany(INSERT_EVENT, [row.params() for row in moved])
            if rows:
                conn.execute(f"DELETE FROM {LEGACY} WHERE id <= ?", (rows[-1][0],))
            if len(rows) < size:
                conn.execute(f"DROP TABLE {LEGACY}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._identities.rolled_back()
            raise
        self._identities.committed()
        self.pending = len(rows) == size

    def _row(self, row: tuple[Any, ...], families: dict[str, dict[str, Any]]) -> EventRow:
        (_, key, family_id, time_ns, session_id, prompt_id, *measures, sample, attrs, body, family_json) = row
        family_attrs = families.get(family_json)
        if family_attrs is None:
            family_attrs = families[family_json] = _parsed(family_json)
        whole = _parsed(attrs)
        return EventRow(
            key=key,
            family_id=family_id,
            time_ns=time_ns,
            session=None if session_id is None else self._identities.string(session_id),
            prompt=None if prompt_id is None else self._identities.string(prompt_id),
            # As they came (an integer stays one), or as kept when the attributes cannot be read.
            measures=tuple(measure(whole.get(m)) for m in EVENT_MEASURES) if whole else tuple(measures),
            sample=sample,
            attrs=to_json(own_attributes(whole, family_attrs)) if whole else attrs,
            body=body,
        )


def _parsed(attrs: str) -> dict[str, Any]:
    """An ``attrs`` column's object; empty if it holds none (it is then moved as it is)."""
    try:
        value = json.loads(attrs)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
