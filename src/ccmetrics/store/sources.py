"""Where usage comes from: telemetry, a transcript, or both; each session counted from one of them only.

A session's usage can reach the store twice: as telemetry while it runs, and from its transcript when that is
imported (or pushed by another machine). Telemetry wins: it is what the CLI measured, and it carries what a
transcript lacks (user, team, lines, decisions). So, in the transaction that stores them:
- the points a transcript gives for a session that has sent telemetry are not stored, only what the transcript
  adds (project, branch, times);
- telemetry arriving for a session counted from its transcript takes its place: the transcript's points are
  deleted and taken back out of the rollups.
``transcript_sessions`` says which sessions a transcript told about and whether their usage counts from it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from ..metrics import COST, SESSIONS, TOKENS
from ..records import Point, TranscriptProgress
from .identities import text
from .rollups import Rollups
from .selection import Selection

SOURCE = "ccmetrics.source"  # the attribute that marks what an import made of a transcript
TRANSCRIPT = "transcript"
_MARKED = f'%"{SOURCE}":"{TRANSCRIPT}"%'  # how the marker reads in a series' attrs JSON
TOKEN_KINDS = {
    "input": "input",
    "output": "output",
    "cacheRead": "cache_read",
    "cacheCreation": "cache_creation",
}


def from_transcript(point: Point) -> bool:
    return point.attrs.get(SOURCE) == TRANSCRIPT


def reconcile(
    conn: sqlite3.Connection, points: list[Point], rollups: Rollups, unseen: set[str] | None = None
) -> list[Point]:
    """The points to store: those of transcripts whose session sent no telemetry, and every other. Sessions
    told about by a transcript are noted; transcript points already stored for a session that now sends
    telemetry are taken out. Transcript sessions of which the store has no series at all are added to
    ``unseen``."""
    transcript: dict[str, list[Point]] = {}
    telemetry: set[str] = set()
    for point in points:
        session = text(point.attrs.get("session.id"))
        if session is None:
            continue
        if from_transcript(point):
            transcript.setdefault(session, []).append(point)
        else:
            telemetry.add(session)
    if not transcript and not telemetry:
        return points
    for session in telemetry:
        row = conn.execute(
            "SELECT counted FROM transcript_sessions WHERE session_id = ?", (session,)
        ).fetchone()
        if row is not None and row[0]:
            _take_back(conn, session, rollups)
    dropped: set[str] = set()
    for session, found in transcript.items():
        if unseen is not None and session not in telemetry and not _has_series(conn, session):
            unseen.add(session)
            counted = True
        else:
            counted = session not in telemetry and not _has_telemetry(conn, session)
        _note_session(conn, session, found, counted)
        if not counted:
            dropped.add(session)
    if not dropped:
        return points
    return [p for p in points if not (from_transcript(p) and text(p.attrs.get("session.id")) in dropped)]


def _has_series(conn: sqlite3.Connection, session: str) -> bool:
    return (
        conn.execute("SELECT 1 FROM series WHERE session_id = ? LIMIT 1", (session,)).fetchone() is not None
    )


def _has_telemetry(conn: sqlite3.Connection, session: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM series WHERE session_id = ? AND attrs NOT LIKE ? LIMIT 1", (session, _MARKED)
    ).fetchone()
    return row is not None


def _note_session(conn: sqlite3.Connection, session: str, points: Iterable[Point], counted: bool) -> None:
    first = last = None
    attrs: dict[str, Any] = {}
    for point in points:
        first = point.time_ns if first is None else min(first, point.time_ns)
        last = point.time_ns if last is None else max(last, point.time_ns)
        if "cwd" in point.attrs or "git.branch" in point.attrs or not attrs:
            attrs = point.attrs  # where the session ran: on its session.count point
    conn.execute(
        "INSERT INTO transcript_sessions (session_id, project, cwd, git_branch, first_ns, last_ns, counted) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET "
        "project = coalesce(excluded.project, project), cwd = coalesce(excluded.cwd, cwd), "
        "git_branch = coalesce(excluded.git_branch, git_branch), "
        "first_ns = min(first_ns, excluded.first_ns), "
        "last_ns = max(last_ns, excluded.last_ns), counted = min(counted, excluded.counted)",
        (
            session,
            text(attrs.get("project")),
            text(attrs.get("cwd")),
            text(attrs.get("git.branch")),
            first,
            last,
            int(counted),
        ),
    )


def _take_back(conn: sqlite3.Connection, session: str, rollups: Rollups) -> None:
    """Delete the session's transcript points and subtract them from the rollups."""
    series = conn.execute(
        "SELECT id, family_id FROM series WHERE session_id = ? AND attrs LIKE ?", (session, _MARKED)
    ).fetchall()
    for series_id, family_id in series:
        rows = conn.execute(
            "SELECT p.time_ns, p.start_ns, p.value FROM session_times t JOIN points p "
            "ON p.time_ns = t.time_ns AND p.series_id = ? WHERE t.session_id = ?",
            (series_id, session),
        ).fetchall()
        for time_ns, start_ns, value in rows:
            conn.execute(
                "DELETE FROM points WHERE time_ns = ? AND series_id = ? AND start_ns = ?",
                (time_ns, series_id, start_ns),
            )
            rollups.point(family_id, session, time_ns, -value)
    conn.execute("UPDATE transcript_sessions SET counted = 0 WHERE session_id = ?", (session,))


def store_progress(conn: sqlite3.Connection, progress: TranscriptProgress) -> None:
    """How far the import read, in the transaction that stores what it read."""
    conn.executemany(
        "INSERT OR REPLACE INTO transcript_files (path, size, mtime_ns, offset) VALUES (?, ?, ?, ?)",
        progress.files,
    )
    conn.executemany(
        "INSERT OR REPLACE INTO transcript_messages (key, output) VALUES (?, ?)", progress.messages
    )
    conn.execute(
        "INSERT OR REPLACE INTO transcript_runs (id, time_ns, price_table, files, messages) "
        "VALUES (?, ?, ?, ?, ?)",
        (progress.run, progress.time_ns, progress.price_table, len(progress.files), len(progress.messages)),
    )


def by_source(sel: Selection, conn: sqlite3.Connection) -> dict[str, Any]:
    """Where the summary's numbers come from: sessions, cost and tokens counted from telemetry and from
    transcripts (a session is counted from one of them only), and the sessions told about by both, whose
    telemetry is counted and whose transcript gave their project and branch."""
    out: dict[str, Any] = {}
    for name in ("telemetry", TRANSCRIPT):
        out[name] = {"sessions": 0.0, "cost_usd": 0.0, "tokens": {k: 0.0 for k in TOKEN_KINDS.values()}}
    for (source,), value in sel.metric_totals(SESSIONS, (SOURCE,)).items():
        out[_name(source)]["sessions"] += value
    for (source,), value in sel.metric_totals(COST, (SOURCE,)).items():
        out[_name(source)]["cost_usd"] += value
    for (source, kind), value in sel.metric_totals(TOKENS, (SOURCE, "type")).items():
        if kind in TOKEN_KINDS:
            out[_name(source)]["tokens"][TOKEN_KINDS[kind]] += value
    for part in out.values():
        part["sessions"] = int(part["sessions"])
        part["cost_usd"] = round(part["cost_usd"], 9)
        part["tokens"] = {k: int(v) for k, v in part["tokens"].items()}
    since = sel.filters.since_ns if sel.filters.since_ns is not None else 0
    until = sel.filters.until_ns if sel.filters.until_ns is not None else 2**63 - 1
    try:
        (both,) = conn.execute(
            "SELECT count(*) FROM transcript_sessions WHERE counted = 0 AND last_ns >= ? AND first_ns < ?",
            (since, until),
        ).fetchone()
    except sqlite3.OperationalError:  # a database from before transcripts
        both = 0
    out["both"] = {"sessions": int(both)}
    # Models a transcript used that no price was found for: their tokens are counted, their cost is not
    priced = {model for (source, model) in sel.metric_totals(COST, (SOURCE, "model")) if source == TRANSCRIPT}
    unpriced: dict[str, float] = {}
    for (source, model), value in sel.metric_totals(TOKENS, (SOURCE, "model")).items():
        if source == TRANSCRIPT and model not in priced:
            unpriced[str(model)] = unpriced.get(str(model), 0) + value
    out[TRANSCRIPT]["unpriced_models"] = {model: int(tokens) for model, tokens in sorted(unpriced.items())}
    try:
        row = conn.execute("SELECT price_table FROM transcript_runs ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.OperationalError:
        row = None
    out[TRANSCRIPT]["price_table"] = row[0] if row else None
    return out


def _name(source: Any) -> str:
    return TRANSCRIPT if source == TRANSCRIPT else "telemetry"


def by_place(conn: sqlite3.Connection, since_ns: int | None, until_ns: int | None) -> dict[str, list[Any]]:
    """Cost, tokens and sessions per project (the git repository a session ran in, else its folder) and per
    project and branch, for the sessions a transcript told about, whichever source counts them: a session
    that sent telemetry is counted from it, and its transcript says where it ran. Within the time range only.
    """
    since = 0 if since_ns is None else since_ns
    until = 2**63 - 1 if until_ns is None else until_ns
    try:
        rows = conn.execute(
            "SELECT ts.project, ts.git_branch, ts.session_id, s.metric, s.type, SUM(p.value) "
            # The transcripts' few sessions first (CROSS JOIN keeps the order): started from the points or
            # the series instead, SQLite reads a month of them when no transcript was imported.
            "FROM transcript_sessions ts "
            "CROSS JOIN series s ON s.session_id = ts.session_id AND s.metric IN (?, ?) "
            "CROSS JOIN session_times t ON t.session_id = ts.session_id AND t.time_ns >= ? AND t.time_ns < ? "
            "CROSS JOIN points p ON p.time_ns = t.time_ns AND p.series_id = s.id "
            "WHERE ts.last_ns >= ? AND ts.first_ns < ? GROUP BY 1, 2, 3, 4, 5",
            (COST.name, TOKENS.name, since, until, since, until),
        ).fetchall()
    except sqlite3.OperationalError:  # a database from before transcripts
        return {"by_project": [], "by_branch": []}
    places: dict[tuple[str, ...], dict[str, Any]] = {}
    for project, branch, session, metric, kind, value in rows:
        keys: tuple[tuple[str, ...], ...] = ((project or "",), (project or "", branch or ""))
        for key in keys:
            place = places.setdefault(
                key, {"sessions": set(), "cost_usd": 0.0, "tokens": {k: 0 for k in TOKEN_KINDS.values()}}
            )
            place["sessions"].add(session)
            if metric == COST.name:
                place["cost_usd"] += value
            elif kind in TOKEN_KINDS:
                place["tokens"][TOKEN_KINDS[kind]] += int(value)
    out: dict[str, list[Any]] = {"by_project": [], "by_branch": []}
    for key, place in sorted(places.items(), key=lambda item: (-item[1]["cost_usd"], item[0])):
        entry = {
            "project": key[0] or None,
            "name": short_name(key[0]),
            "sessions": len(place["sessions"]),
            "cost_usd": round(place["cost_usd"], 9),
            "tokens": place["tokens"],
        }
        if len(key) == 1:
            out["by_project"].append(entry)
        else:
            out["by_branch"].append({**entry, "git_branch": key[1] or None})
    return out


def short_name(project: str) -> str:
    """A project as the page shows it: its folder's name, with the one above it (``src/hello``)."""
    parts = [part for part in project.replace("\\", "/").split("/") if part]
    return "/".join(parts[-2:]) if parts else "unknown"
