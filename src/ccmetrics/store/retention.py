"""Retention: raw points, events and spans are kept for ``--retention``, the hourly, daily and weekly sums and
the sessions' activity for ``--rollup-retention``; the writer prunes what is older, a chunk at a time between
its commits, and gives the freed pages back to the file system.

A run starts when the cuts (``now`` less each retention, to the hour for raw data and to the week for the
rollups) have moved on. It first records them in ``kept_since``, so that readers know from when the raw data
covers a range and the committer refuses records older than that (a retry of a pruned export could not be
recognised, and would be counted twice). It then deletes, table by table, the oldest rows before the cut, a
chunk per transaction: a kill in the middle loses nothing kept and the next start carries on. The rollups are
never touched before their own cut, so every total they answer stays exact after the raw data is gone; only
the partial hours at the ends of a range and a session's own numbers read raw data.

Each chunk is one range of a time-ordered index, ``[from, to)``: ``Prunable`` holds the two statements, one
finding where a chunk of about ``rows`` rows ends, one deleting it. How many rows a step takes is fitted to
a few milliseconds (``Pace``), and the writer rests as long after each: ingest keeps most of its time.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .schema import HOUR_NS, WEEK_NS

log = logging.getLogger("ccmetrics")

CHECK_EVERY_S = 60  # how often the writer asks whether the cuts moved on (they move by the hour)
VACUUM_PAGES = 256  # pages (1 MiB) given back per step, at most
VACUUM_FROM_PAGES = 1024  # free pages (4 MiB) are given back once there are this many
# A step aims at this long: an export arriving meanwhile waits no longer. Chunks grow and shrink to fit it,
# as what a row costs to delete varies with the table, its indexes, the cache and the disk.
STEP_S = 0.005
# After a step the writer leaves pruning alone for as long as the step took: commits, and the checkpoints
# that copy their pages into the database file, get at least half of the writer's time and of the disk's.
REST = 1.0
BACK_OFF_S = 10  # after a step that failed (disk full, the file locked by another process)


@dataclass(frozen=True)
class Retention:
    """How long raw data and the rollups are kept, in ns; None: for ever."""

    raw_ns: int | None
    rollups_ns: int | None

    def cuts(self, now_ns: int) -> tuple[int, int]:
        """``(raw, rollups)``: data before these goes. Raw data is cut at an hour, so that the hourly sums
        answer exactly whatever it no longer does; the rollups at a week (weeks are sums of days), and never
        after the raw data: a range reads raw data only where its rollups are."""
        raw = 0 if self.raw_ns is None else max(0, (now_ns - self.raw_ns) // HOUR_NS * HOUR_NS)
        rollups = 0 if self.rollups_ns is None else max(0, (now_ns - self.rollups_ns) // WEEK_NS * WEEK_NS)
        return raw, min(raw, rollups)


@dataclass(frozen=True)
class Prunable:
    """Rows of one table to prune by time, a chunk at a time. ``chunk_end`` finds where about ``rows`` rows
    after ``?1`` end, before ``?2`` (``?3`` is the offset); ``delete``, in order, delete those in ``[?1, ?2)``
    and what goes with them. ``forgets_ids``: it deletes series, whose ids the writer may know."""

    name: str
    kept: str  # "raw" or "rollups": which cut applies
    chunk_end: str
    delete: tuple[str, ...]
    rows: int = 2000
    forgets_ids: bool = False


def _by_time(table: str, column: str, kept: str) -> Prunable:
    return Prunable(
        table,
        kept,
        f"SELECT {column} FROM {table} WHERE {column} >= ?1 AND {column} < ?2 "
        f"ORDER BY {column} LIMIT 1 OFFSET ?3",
        (f"DELETE FROM {table} WHERE {column} >= ?1 AND {column} < ?2",),
    )


_ENDED = "SELECT session_id FROM sessions WHERE last_ns >= ?1 AND last_ns < ?2"


# In order: raw data first, the rollups after it (a reader never finds sums gone before the raw rows).
PRUNABLE: tuple[Prunable, ...] = (
    Prunable(
        "points",
        "raw",
        "SELECT time_ns FROM points WHERE time_ns >= ?1 AND time_ns < ?2 ORDER BY time_ns LIMIT 1 OFFSET ?3",
        # A running total's latest point stays: the increment of the stream's next point is reckoned from it.
        (
            "DELETE FROM points WHERE time_ns >= ?1 AND time_ns < ?2 AND (cumulative IS NULL OR EXISTS ("
            "SELECT 1 FROM points later WHERE later.series_id = points.series_id "
            "AND later.start_ns = points.start_ns AND later.time_ns > points.time_ns "
            "AND later.cumulative IS NOT NULL))",
        ),
    ),
    Prunable(
        "events",
        "raw",
        "SELECT time_ns FROM events WHERE time_ns >= ?1 AND time_ns < ?2 ORDER BY time_ns LIMIT 1 OFFSET ?3",
        (
            # Their prompt ids are noted first, to go with their session once it has ended (a prompt id names
            # one prompt of one session, and finding the events of a prompt would need an index of its own).
            "INSERT OR IGNORE INTO pruned_prompts SELECT DISTINCT session, prompt FROM events "
            "WHERE time_ns >= ?1 AND time_ns < ?2 AND prompt IS NOT NULL AND session IS NOT NULL",
            "DELETE FROM events WHERE time_ns >= ?1 AND time_ns < ?2",
        ),
    ),
    _by_time("spans", "start_ns", "raw"),
    # What a session leaves once it has ended before the cut (found by its last time): its times, its series
    # (but one with a running total's latest point, kept above), and, once no event names it any more, the
    # ids of its prompts and its own.
    Prunable(
        "ended sessions",
        "raw",
        "SELECT last_ns FROM sessions WHERE last_ns >= ?1 AND last_ns < ?2 "
        "ORDER BY last_ns LIMIT 1 OFFSET ?3",
        (
            f"DELETE FROM session_times WHERE session_id IN ({_ENDED})",
            f"DELETE FROM series WHERE session_id IN ({_ENDED}) AND NOT EXISTS (SELECT 1 FROM points p "
            "WHERE p.series_id = series.id AND p.cumulative IS NOT NULL)",
            f"DELETE FROM strings WHERE id IN (SELECT p.prompt FROM pruned_prompts p JOIN strings s "
            f"ON s.id = p.session WHERE s.value IN ({_ENDED}) AND NOT EXISTS (SELECT 1 FROM events e "
            "WHERE e.session = p.session))",
            f"DELETE FROM pruned_prompts WHERE session IN (SELECT id FROM strings WHERE value IN ({_ENDED})) "
            "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.session = pruned_prompts.session)",
            f"DELETE FROM strings WHERE value IN ({_ENDED}) AND NOT EXISTS (SELECT 1 FROM events e "
            "WHERE e.session = strings.id)",
        ),
        rows=20,  # sessions, of some hundred times and tens of series each
        forgets_ids=True,
    ),
    Prunable(
        "session_times ''",
        "raw",
        "SELECT time_ns FROM session_times WHERE session_id = '' AND time_ns >= ?1 AND time_ns < ?2 "
        "ORDER BY time_ns LIMIT 1 OFFSET ?3",
        ("DELETE FROM session_times WHERE session_id = '' AND time_ns >= ?1 AND time_ns < ?2",),
    ),
    *(
        _by_time(f"{prefix}_{tier}", "start_ns", "rollups")
        for prefix in ("rollup", "event_rollup")
        for tier in ("hour", "day", "week")
    ),
    _by_time("hour_versions", "start_ns", "rollups"),
    _by_time("sessions", "last_ns", "rollups"),  # counted by the summary while its rollups are kept
)


def kept_since(conn: sqlite3.Connection) -> tuple[int, int]:
    """``(raw_ns, rollups_ns)``: raw data before the first may be gone, the rollups before the second."""
    raw, rollups = conn.execute("SELECT raw_ns, rollups_ns FROM kept_since").fetchone()
    return int(raw), int(rollups)


class Pace:
    """How much one step does (rows, pages), fitted to STEP_S, and when the next may start. The work is what
    is fitted; the commit after it counts only towards the rest."""

    def __init__(self, size: int, most: int) -> None:
        self.size, self._most = size, most
        self.resume_at = 0.0

    def took(self, work_s: float, step_s: float) -> None:
        if work_s > STEP_S:
            self.size = max(1, int(self.size * max(0.25, STEP_S / work_s)))
        elif work_s < STEP_S / 2:
            self.size = min(self._most, self.size * 3 // 2 + 1)
        self.resume_at = time.monotonic() + step_s * REST


def delete_chunk(
    conn: sqlite3.Connection, prunable: Prunable, since_ns: int, until_ns: int, rows: int
) -> int:
    """Delete about ``rows`` of the oldest rows in ``[since_ns, until_ns)``; returns where the next chunk
    starts (``until_ns`` once none are left)."""
    row = conn.execute(prunable.chunk_end, (since_ns, until_ns, rows)).fetchone()
    end = until_ns if row is None else max(int(row[0]), since_ns + 1)  # a run of equal times goes together
    for statement in prunable.delete:
        conn.execute(statement, (since_ns, end))
    return end


class Pruning:
    """The pruning runs, on the writer's connection, between its commits (see writer.py)."""

    def __init__(self, conn: sqlite3.Connection, retention: Retention | None) -> None:
        self._conn = conn
        self._retention = retention
        self.raw_since_ns, self._rollups_since_ns = kept_since(conn)
        # Where each table's next chunk starts: what the last run reached in this process (0: the start).
        self._from = [0] * len(PRUNABLE)
        self._next = 0  # the first table not done in this run; len(PRUNABLE): no run under way
        self._running = False
        self._announce: tuple[int, int] | None = None
        self._checked_at = float("-inf")
        self._resumed = False
        self._vacuum = conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
        self._vacuuming = False
        self._paces = [Pace(max(1, p.rows // 10), p.rows * 2) for p in PRUNABLE]
        self._vacuum_pace = Pace(VACUUM_PAGES // 8, VACUUM_PAGES)
        self._resume_at = 0.0
        if retention is not None and not self._vacuum:
            log.info(
                "this database keeps the pages pruning frees for new data rather than giving them back: "
                "`ccmetrics vacuum`, once, with the server stopped, makes it give them back from then on"
            )

    def wait_s(self) -> float:
        """How long the writer may wait for data before asking ``pending`` again."""
        if self._running or self._vacuuming:
            return max(0.0, self._resume_at - time.monotonic())
        return CHECK_EVERY_S

    def pending(self, now_ns: int | None = None) -> bool:
        """Whether a step of pruning or vacuuming is due now; starts a run when the cuts have moved on."""
        if self._running or self._vacuuming:
            return time.monotonic() >= self._resume_at
        if self._retention is None or time.monotonic() - self._checked_at < CHECK_EVERY_S:
            return False
        self._checked_at = time.monotonic()
        raw, rollups = self._retention.cuts(now_ns or time.time_ns())
        # The first check of a process runs whatever the cuts: the last process may have been killed in the
        # middle of a run, with the cuts announced and rows before them left.
        resume, self._resumed = not self._resumed and max(raw, self.raw_since_ns) > 0, True
        if resume or raw > self.raw_since_ns or rollups > self._rollups_since_ns:
            self._start(max(raw, self.raw_since_ns), max(rollups, self._rollups_since_ns))
        elif self._vacuum:
            self._vacuuming = self._free_pages() >= VACUUM_FROM_PAGES
        return self._running or self._vacuuming

    def _start(self, raw: int, rollups: int) -> None:
        self._announce = (raw, rollups)
        self._running, self._next = True, 0
        self._started = time.monotonic()
        self._deleted = 0

    def step(self) -> bool:
        """One chunk of the run under way, in a transaction of its own; or, after the run, a few free pages
        given back. Returns whether it deleted series (whose ids the writer must then forget)."""
        if not self._running:
            self._vacuum_step()
            return False
        if self._announce is not None:  # first the cuts: readers and the committer go by them from now on
            self._conn.execute("UPDATE kept_since SET raw_ns = ?, rollups_ns = ?", self._announce)
            self.raw_since_ns, self._rollups_since_ns = self._announce
            self._announce = None
            return False
        prunable, pace = PRUNABLE[self._next], self._paces[self._next]
        cut = self.raw_since_ns if prunable.kept == "raw" else self._rollups_since_ns
        conn, since = self._conn, self._from[self._next]
        before, started = conn.total_changes, time.monotonic()
        with _unsynced(conn):
            end = delete_chunk(conn, prunable, since, cut, pace.size) if since < cut else cut
            worked = time.monotonic()
        pace.took(worked - started, time.monotonic() - started)
        self._resume_at = pace.resume_at
        self._deleted += conn.total_changes - before
        self._from[self._next] = end
        if end >= cut:
            self._next += 1
        if self._next == len(PRUNABLE):
            self._running = False
            self._vacuuming = self._vacuum and self._free_pages() >= VACUUM_FROM_PAGES
            log.info(
                "pruned %s rows in %.1f s: raw data kept from %s, rollups from %s",
                f"{self._deleted:,}",
                time.monotonic() - self._started,
                _iso(self.raw_since_ns),
                _iso(self._rollups_since_ns),
            )
        return prunable.forgets_ids

    def back_off(self) -> None:
        """A step failed: the next waits a while (BACK_OFF_S), as whatever stopped it may last."""
        self._resume_at = time.monotonic() + BACK_OFF_S

    def _vacuum_step(self) -> None:
        conn, started = self._conn, time.monotonic()
        with _unsynced(conn):
            conn.execute(f"PRAGMA incremental_vacuum({self._vacuum_pace.size})").fetchall()
            worked = time.monotonic()
        self._vacuum_pace.took(worked - started, time.monotonic() - started)
        self._resume_at = self._vacuum_pace.resume_at
        self._vacuuming = self._free_pages() > 0

    def _free_pages(self) -> int:
        return int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])


@contextmanager
def _unsynced(conn: sqlite3.Connection) -> Iterator[None]:
    """A transaction whose commit does not wait for the disk (synchronous = NORMAL): losing it to a power
    cut loses nothing (the pruning is done again), and the next commit of data syncs the log up to and
    including it. Without a sync per step, a step costs its work alone."""
    conn.execute("PRAGMA synchronous = NORMAL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("PRAGMA synchronous = FULL")  # as connect() sets it: acknowledged means on disk


def vacuum(path: Path) -> None:
    """Rewrite the whole file without its free pages, and make it give back the pages pruning frees from then
    on (a database made before retention existed keeps them). Takes as long as copying the file, and needs
    as much free space: for a stopped server only (see running.no_server)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect with the VACUUM
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(ns / 1e9)) if ns else "the start"
