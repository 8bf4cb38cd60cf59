"""Forgetting a person or a session: every row about them removed, their part of every sum taken away.

``ccmetrics forget`` files a request in ``forget_requests``; the writer carries it out between its commits
(or the command itself, when no server runs), a chunk per transaction, so ingest goes on meanwhile. A
process killed in the middle starts the request again from the top at its next start: each step finds what
is left and removes it, and takes away from the sums exactly what it removes, in the same transaction, so
nothing is taken away twice.

A person is found by any of their user attributes (id, email, account, name) on a family, and then by every
other value of those attributes on their families: forgetting an email forgets the id sent with it too.
Their families hold their data alone (a family is a series without its session), so their sums are
deleted whole. Their sessions are then forgotten one by one, like a single session: its points and events
whatever their family (one of another family, say without a user, is taken away from that family's sums),
its spans, its times, its series and its strings. What a session sent before the raw data kept
(--retention) can no longer be taken away from its family's sums: those rows are gone, and the sums name
no session.

Deleted rows are overwritten with zeros (``secure_delete``), so that the values do not linger in free
space; the write-ahead log keeps old pages until its next checkpoint.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from .rollups import add_sums
from .schema import DAY_NS, EVENT_MEASURES, HOUR_NS, WEEK_NS

log = logging.getLogger("ccmetrics")
T = TypeVar("T")

USER_KEYS = ("user.id", "user.email", "user.account_uuid", "user.name")
KINDS = ("user", "session")
CHECK_EVERY_S = 1.0  # how often the writer asks whether a request waits
BACK_OFF_S = 10.0  # after a step that failed
TIMES_PER_STEP = 200  # a session's export times whose points go in one transaction
EVENTS_PER_STEP = 1000


def file_request(conn: sqlite3.Connection, kind: str, value: str) -> int:
    """File a request; returns its id. The caller's connection is in autocommit mode."""
    if kind not in KINDS:
        raise ValueError(f"forget a user or a session, not a {kind!r}")
    cursor = conn.execute(
        "INSERT INTO forget_requests (kind, value, requested_ns) VALUES (?, ?, ?)",
        (kind, value, time.time_ns()),
    )
    return int(cursor.lastrowid or 0)


def outcome(conn: sqlite3.Connection, request_id: int) -> dict[str, int] | None:
    """What a request removed, by table, once it is done; None while it waits."""
    row = conn.execute("SELECT done_ns, removed FROM forget_requests WHERE id = ?", (request_id,)).fetchone()
    if row is None or row[0] is None:
        return None
    removed: dict[str, int] = json.loads(row[1])
    return removed


@dataclass
class Target:
    """What a request is about: a person's families and sessions, or one session."""

    families: list[int] = field(default_factory=list)
    event_families: list[int] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    aliases: set[str] = field(default_factory=set)  # the person's user attribute values


def find(conn: sqlite3.Connection, kind: str, value: str) -> Target:
    """The families and sessions a request is about (none: nothing left of them)."""
    if kind == "session":
        return Target(sessions=[value])
    target = Target(aliases={value})
    for _ in range(2):  # the values found with the one given, and those found with them
        target.families = _ids(conn, "family_attrs", target.aliases)
        target.event_families = _ids(conn, "event_family_attrs", target.aliases)
        found = set(target.aliases)
        for table, ids in (("family_attrs", target.families), ("event_family_attrs", target.event_families)):
            found |= {
                row[0]
                for row in conn.execute(
                    f"SELECT value FROM {table} WHERE family_id IN (SELECT value FROM json_each(?)) "
                    f"AND key IN ({', '.join('?' * len(USER_KEYS))})",
                    (json.dumps(ids), *USER_KEYS),
                )
            }
        if found == target.aliases:
            break
        target.aliases = found
    sessions = {
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT session_id FROM series WHERE family_id IN (SELECT value FROM json_each(?)) "
            "AND session_id IS NOT NULL",
            (json.dumps(target.families),),
        )
    }
    sessions |= {
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT s.value FROM events e CROSS JOIN strings s ON s.id = e.session "
            "WHERE e.family_id IN (SELECT value FROM json_each(?))",
            (json.dumps(target.event_families),),
        )
    }
    target.sessions = sorted(sessions)
    return target


def _ids(conn: sqlite3.Connection, table: str, values: set[str]) -> list[int]:
    return sorted(
        row[0]
        for row in conn.execute(
            f"SELECT DISTINCT family_id FROM {table} WHERE key IN ({', '.join('?' * len(USER_KEYS))}) "
            "AND value IN (SELECT value FROM json_each(?))",
            (*USER_KEYS, json.dumps(sorted(values))),
        )
    )


def preview(conn: sqlite3.Connection, kind: str, value: str) -> dict[str, int]:
    """About how much a request would remove: for the question the command asks first."""
    target = find(conn, kind, value)
    sessions = json.dumps(target.sessions)
    points = 0
    for (session,) in conn.execute("SELECT value FROM json_each(?)", (sessions,)).fetchall():
        points += conn.execute(
            "SELECT COUNT(*) FROM points "
            "WHERE time_ns IN (SELECT time_ns FROM session_times WHERE session_id = ?) "
            "AND series_id IN (SELECT id FROM series WHERE session_id = ?)",
            (session, session),
        ).fetchone()[0]
    events = conn.execute(
        "SELECT COUNT(*) FROM events WHERE session IN (SELECT id FROM strings WHERE value IN "
        "(SELECT value FROM json_each(?)))",
        (sessions,),
    ).fetchone()[0]
    known = conn.execute(
        "SELECT COUNT(*) FROM json_each(?1) WHERE value IN (SELECT session_id FROM sessions) "
        "OR value IN (SELECT session_id FROM series) OR value IN (SELECT value FROM strings)",
        (sessions,),
    ).fetchone()[0]
    return {
        "families": len(target.families) + len(target.event_families),
        "sessions": int(known),
        "points": int(points),
        "events": int(events),
    }


class Forgetting:
    """The requests waiting, carried out a step (a transaction) at a time on the writer's connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._run: Iterator[None] | None = None
        self._checked_at = float("-inf")
        self.forgotten = 0  # requests done by this process: the server's caches are cleared when it moves

    def pending(self) -> bool:
        if self._run is not None:
            return True
        if time.monotonic() - self._checked_at < CHECK_EVERY_S:
            return False
        self._checked_at = time.monotonic()
        row = self._conn.execute(
            "SELECT id, kind, value FROM forget_requests WHERE done_ns IS NULL ORDER BY id LIMIT 1"
        ).fetchone()
        if row is None:
            return False
        self._run = _Run(self._conn, *row).steps()
        return True

    def back_off(self) -> None:
        """A step failed: the request is started again from the top, in a while."""
        self._run = None
        self._checked_at = time.monotonic() + BACK_OFF_S

    def step(self) -> None:
        assert self._run is not None
        self._conn.execute("PRAGMA secure_delete = ON")
        try:
            next(self._run)
        except StopIteration:
            self._run = None
            self.forgotten += 1
        except BaseException:
            self._run = None  # started again from the top: each step finds what is left
            raise
        finally:
            self._conn.execute("PRAGMA secure_delete = OFF")

    def run_all(self) -> None:
        """Carry out every request waiting (the command, when no server runs)."""
        self._checked_at = float("-inf")
        while self.pending():
            self.step()
            self._checked_at = float("-inf")


class _Run:
    def __init__(self, conn: sqlite3.Connection, request_id: int, kind: str, value: str) -> None:
        self._conn = conn
        self._id = request_id
        self._kind = kind
        self._value = value
        self._removed: dict[str, int] = json.loads(
            conn.execute("SELECT removed FROM forget_requests WHERE id = ?", (request_id,)).fetchone()[0]
        )

    def steps(self) -> Iterator[None]:
        started = time.monotonic()
        target = self._in_transaction(lambda: find(self._conn, self._kind, self._value))
        whole = set(target.families), set(target.event_families)
        for session in target.sessions:
            yield from self._session(session, *whole)
        if self._kind == "user":
            yield from self._without_session(target)
            yield from self._spans(target.aliases)
            yield from self._sums(target)
        self._in_transaction(lambda: self._finish(target))
        log.info(
            "forgot a %s: %s in %.1f s",
            self._kind,
            ", ".join(f"{n:,} {table}" for table, n in sorted(self._removed.items()) if n) or "nothing",
            time.monotonic() - started,
        )

    # --- one session -------------------------------------------------------------------------------------

    def _session(self, session: str, whole: set[int], whole_events: set[int]) -> Iterator[None]:
        conn = self._conn
        series = {
            row[0]: (row[1], row[2] == "sum")
            for row in conn.execute("SELECT id, family_id, kind FROM series WHERE session_id = ?", (session,))
        }
        ids = json.dumps(sorted(series))
        times = [
            row[0]
            for row in conn.execute("SELECT time_ns FROM session_times WHERE session_id = ?", (session,))
        ]
        for i in range(0, len(times), TIMES_PER_STEP):
            chunk = json.dumps(times[i : i + TIMES_PER_STEP])

            def points(chunk: str = chunk) -> None:
                rows = conn.execute(
                    "SELECT series_id, time_ns, value FROM points "
                    "WHERE time_ns IN (SELECT value FROM json_each(?)) "
                    "AND series_id IN (SELECT value FROM json_each(?))",
                    (chunk, ids),
                ).fetchall()
                sums: dict[tuple[int, int], float] = defaultdict(float)
                for series_id, time_ns, value in rows:
                    family_id, adds_up = series[series_id]
                    if adds_up and family_id not in whole:
                        sums[(family_id, time_ns - time_ns % HOUR_NS)] -= value
                add_sums(conn, sums, {}, self._days_closed())
                self._delete(
                    "points",
                    "DELETE FROM points WHERE time_ns IN (SELECT value FROM json_each(?)) "
                    "AND series_id IN (SELECT value FROM json_each(?))",
                    (chunk, ids),
                )

            self._in_transaction(points)
            yield
        string = conn.execute("SELECT id FROM strings WHERE value = ?", (session,)).fetchone()
        while string is not None:
            rows = conn.execute(
                f"SELECT id, family_id, time_ns, prompt, {', '.join(EVENT_MEASURES)} FROM events "
                "WHERE session = ? LIMIT ?",
                (string[0], EVENTS_PER_STEP),
            ).fetchall()
            if not rows:
                break

            def events(rows: list[tuple[int, ...]] = rows) -> None:
                sums: dict[tuple[int, int], list[float]] = {}
                for _, family_id, time_ns, _, *measures in rows:
                    if family_id in whole_events:
                        continue
                    mine = sums.setdefault(
                        (family_id, time_ns - time_ns % HOUR_NS), [0] * (1 + 2 * len(measures))
                    )
                    mine[0] -= 1
                    for j, measure in enumerate(measures):
                        if measure is not None:
                            mine[1 + 2 * j] -= measure
                            mine[2 + 2 * j] -= 1
                add_sums(conn, {}, sums, self._days_closed())
                self._delete(
                    "events",
                    "DELETE FROM events WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps([r[0] for r in rows]),),
                )
                # A prompt id names one prompt of one session: its events are this session's.
                prompts = sorted({r[3] for r in rows if r[3] is not None})
                self._delete(
                    "strings",
                    "DELETE FROM strings WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(prompts),),
                )

            self._in_transaction(events)
            yield

        def rest() -> None:
            span = conn.execute(
                "SELECT first_ns, last_ns FROM sessions WHERE session_id = ?", (session,)
            ).fetchone()
            if span is not None:  # its spans are near its points and events in time
                self._delete(
                    "spans",
                    "DELETE FROM spans WHERE start_ns >= ? AND start_ns < ? AND session_id = ?",
                    (span[0] - DAY_NS, span[1] + DAY_NS, session),
                )
            else:
                self._delete("spans", "DELETE FROM spans WHERE session_id = ?", (session,))
            conn.execute("DELETE FROM session_times WHERE session_id = ?", (session,))
            self._delete("sessions", "DELETE FROM sessions WHERE session_id = ?", (session,))
            # What an imported transcript told of it: its folder, repository and branch.
            self._delete(
                "transcript_sessions", "DELETE FROM transcript_sessions WHERE session_id = ?", (session,)
            )
            self._delete("series", "DELETE FROM series WHERE session_id = ?", (session,))
            if string is not None:  # the ids of its prompts whose events were pruned (retention.py)
                self._delete(
                    "strings",
                    "DELETE FROM strings WHERE id IN (SELECT prompt FROM pruned_prompts WHERE session = ?)",
                    (string[0],),
                )
                conn.execute("DELETE FROM pruned_prompts WHERE session = ?", (string[0],))
            self._delete("strings", "DELETE FROM strings WHERE value = ?", (session,))

        self._in_transaction(rest)
        yield

    # --- the rest of a person ----------------------------------------------------------------------------

    def _without_session(self, target: Target) -> Iterator[None]:
        """Their points and events that name no session: points through the times of points without one."""
        conn = self._conn
        families = json.dumps(target.families)
        series = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM series WHERE family_id IN (SELECT value FROM json_each(?)) "
                "AND session_id IS NULL",
                (families,),
            )
        ]
        if series:
            ids = json.dumps(series)
            times = [
                row[0] for row in conn.execute("SELECT time_ns FROM session_times WHERE session_id = ''")
            ]
            for i in range(0, len(times), TIMES_PER_STEP * 10):
                chunk = json.dumps(times[i : i + TIMES_PER_STEP * 10])
                self._delete_alone(
                    "points",
                    "DELETE FROM points WHERE time_ns IN (SELECT value FROM json_each(?)) "
                    "AND series_id IN (SELECT value FROM json_each(?))",
                    (chunk, ids),
                )
                yield
        while True:
            rows = conn.execute(
                "SELECT id FROM events WHERE family_id IN (SELECT value FROM json_each(?)) LIMIT ?",
                (json.dumps(target.event_families), EVENTS_PER_STEP),
            ).fetchall()
            if not rows:
                break
            self._delete_alone(
                "events",
                "DELETE FROM events WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps([r[0] for r in rows]),),
            )
            yield

    def _spans(self, aliases: set[str]) -> Iterator[None]:
        """Spans that name them, whatever their session: a day of spans at a time."""
        first, last = self._conn.execute("SELECT MIN(start_ns), MAX(start_ns) FROM spans").fetchone()
        if first is None:
            return
        named = " OR ".join(
            f"json_extract(attrs, '$.\"{key}\"') IN (SELECT value FROM json_each(?1))" for key in USER_KEYS
        )
        for start in range(first - first % DAY_NS, last + 1, DAY_NS):
            self._delete_alone(
                "spans",
                f"DELETE FROM spans WHERE start_ns >= ?2 AND start_ns < ?3 AND ({named})",
                (json.dumps(sorted(aliases)), start, start + DAY_NS),
            )
            yield

    def _sums(self, target: Target) -> Iterator[None]:
        """Their families' sums, deleted whole, a stretch of time at a time; the versions of those hours
        bumped, so that no answer kept from them is reused."""
        for prefix, families in (("rollup", target.families), ("event_rollup", target.event_families)):
            if not families:
                continue
            ids = json.dumps(families)
            for tier, stretch in (("hour", DAY_NS), ("day", 4 * WEEK_NS), ("week", 52 * WEEK_NS)):
                table = f"{prefix}_{tier}"
                first, last = self._conn.execute(
                    f"SELECT MIN(start_ns), MAX(start_ns) FROM {table}"
                ).fetchone()
                if first is None:
                    continue
                for start in range(first - first % stretch, last + 1, stretch):

                    def delete(
                        start: int = start, table: str = table, stretch: int = stretch, ids: str = ids
                    ) -> None:
                        bounds = (start, start + stretch)
                        if self._delete(
                            table,
                            f"DELETE FROM {table} WHERE start_ns >= ? AND start_ns < ? "
                            "AND family_id IN (SELECT value FROM json_each(?))",
                            (*bounds, ids),
                        ):
                            self._conn.execute(
                                "UPDATE hour_versions SET version = version + 1 "
                                "WHERE start_ns >= ? AND start_ns < ?",
                                bounds,
                            )

                    self._in_transaction(delete)
                    yield

    def _finish(self, target: Target) -> None:
        """Their series, families and attributes, and the request done, in one transaction."""
        conn = self._conn
        for table, attrs, ids in (
            ("families", "family_attrs", target.families),
            ("event_families", "event_family_attrs", target.event_families),
        ):
            listed = json.dumps(ids)
            if table == "families":
                self._delete(
                    "series",
                    "DELETE FROM series WHERE family_id IN (SELECT value FROM json_each(?))",
                    (listed,),
                )
            conn.execute(
                f"DELETE FROM {attrs} WHERE family_id IN (SELECT value FROM json_each(?))", (listed,)
            )
            self._delete(
                table, f"DELETE FROM {table} WHERE id IN (SELECT value FROM json_each(?))", (listed,)
            )
        conn.execute(
            "UPDATE forget_requests SET value = NULL, done_ns = ?, removed = ? WHERE id = ?",
            (time.time_ns(), json.dumps(self._removed, sort_keys=True), self._id),
        )

    # --- helpers -----------------------------------------------------------------------------------------

    def _delete(self, table: str, sql: str, params: tuple[object, ...]) -> int:
        count = self._conn.execute(sql, params).rowcount
        self._removed[table] = self._removed.get(table, 0) + count
        return count

    def _days_closed(self) -> int:
        """Days before this have their daily sums, now: read in the transaction that subtracts, as the writer
        closes days between this one's steps."""
        return int(self._conn.execute("SELECT until_ns FROM closed_days").fetchone()[0])

    def _delete_alone(self, table: str, sql: str, params: tuple[object, ...]) -> None:
        """A delete in a transaction of its own."""
        self._in_transaction(lambda: self._delete(table, sql, params))

    def _in_transaction(self, work: Callable[[], T]) -> T:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work()
            conn.execute(
                "UPDATE forget_requests SET removed = ? WHERE id = ?", (json.dumps(self._removed), self._id)
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result
