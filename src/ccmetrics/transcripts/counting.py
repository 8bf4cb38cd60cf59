"""Reading, counting and writing what an import found new (see importer.py): the files are read by worker
processes (see scan.py), each returning what its files' messages add up to per session, model, project, branch
and hour; this process counts each message once across files and imports (by message.id and requestId, with
its largest output), prices what Claude Code did not, and writes points through the store's one writer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ..records import Batch, Point, TranscriptProgress
from ..store.sources import SOURCE, TRANSCRIPT
from ..store.writer import WriteResult
from . import prices
from .files import Unread
from .importer import TYPES, ImportResult, Progress
from .scan import FileSummary, GroupKey, Message, Sums, add_up, scan_file, summarize

if TYPE_CHECKING:
    from ..store import Store

SCOPE = "ccmetrics.transcripts"
PARALLEL_BYTES = 32 << 20  # below this, reading in worker processes costs more than it saves
TASKS_PER_WORKER = 16  # the files are handed to the workers in about this many tasks each
RUN_TAG = 1_000_000  # an import's number goes in the sub-millisecond digits of its points' times


def read_summaries(
    plan: list[Unread], workers: int | None, progress: Progress | None
) -> Iterator[FileSummary]:
    """Each file's summary, as soon as it is read."""
    total = sum(u.length for u in plan)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    done = 0
    if workers <= 1 or total < PARALLEL_BYTES or len(plan) < 2:
        prices.preload()
        for u in plan:
            yield summarize(u.path, u.offset, _session_of(u.path))
            done += u.length
            if progress:
                progress(done, total)
        return
    # Largest first, so the workers finish together; handed out some dozens of files at a time, as a task's
    # round trip costs this process more than reading a small file costs a worker. The price table loads
    # meanwhile, once the workers are started: forked, as this process runs no other thread yet (they would
    # not want its copy).
    plan = sorted(plan, key=lambda u: -u.length)
    with _pool(workers) as pool:
        summaries = pool.map(_summarize, plan, chunksize=max(1, len(plan) // (workers * TASKS_PER_WORKER)))
        prices.preload()
        for summary in summaries:
            yield summary
            done += summary.size - summary.start
            if progress:
                progress(done, total)


def _summarize(unread: Unread) -> FileSummary:
    return summarize(unread.path, unread.offset, _session_of(unread.path))


def _pool(workers: int) -> Executor:
    method = "fork" if threading.active_count() == 1 else "forkserver"
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))


def _session_of(path: str) -> str:
    """A transcript's session, for records that do not name theirs: the file's, or its parent session's
    for a subagent's file (``<session>/subagents/agent-*.jsonl``)."""
    p = Path(path)
    if p.parent.name == "subagents":
        return p.parent.parent.name
    return p.stem


class Counting:
    """Each message counted once: across files, and against the imports before (their message keys)."""

    def __init__(self, db_path: Path, any_known: bool, run: int, result: ImportResult) -> None:
        self.db_path = db_path
        self.any_known = any_known
        self.run = run
        self.result = result
        self.seen: dict[int, int] = {}  # key: largest output counted, in this import
        self.changed: dict[int, int] = {}  # the same, for the messages of the batch being made
        self.sessions_counted: set[str] = set()  # sessions this import gave a session.count
        self.sessions_seen: set[str] = set()  # sessions with messages in this import

    def batch(self, summaries: list[FileSummary]) -> Batch:
        """The points and progress of these files: one transaction, with a number of its own."""
        groups: dict[GroupKey, Sums] = {}
        known = self._known(summaries)
        self.changed = {}
        files: list[tuple[str, int, int, int]] = []
        for summary in summaries:
            self.result.files_read += 1
            self.result.bytes_read += summary.size - summary.start
            self.result.skipped += summary.skipped
            self.result.bad_lines += summary.bad_lines
            files.append((summary.path, summary.size, summary.mtime_ns, summary.offset))
            keys = summary.keys
            if not (known.keys().isdisjoint(keys) and self.seen.keys().isdisjoint(keys)):
                found = self._recount(summary, known)
            else:
                found = summary.groups
                counted = dict(zip(keys, summary.outputs, strict=True))
                self.seen.update(counted)
                self.changed.update(counted)
                self.result.messages += len(keys)
            for key, sums in found.items():
                mine = groups.get(key)
                if mine is None:
                    groups[key] = list(sums)
                else:
                    _add(mine, sums)
        progress = TranscriptProgress(
            self.run,
            time.time_ns(),
            prices.table_version(),
            files,
            sorted(self.changed.items()),  # in key order: fast to insert
        )
        self.result.price_table = progress.price_table
        batch = Batch("transcripts", points=self._points(groups), transcript=progress)
        self.run += 1
        return batch

    def _known(self, summaries: list[FileSummary]) -> dict[int, int]:
        """The output counted for each of these messages by imports before, for those counted before."""
        if not self.any_known:
            return {}
        keys = [k for s in summaries for k in s.keys]
        found: dict[int, int] = {}
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                found.update(
                    conn.execute(
                        "SELECT key, output FROM transcript_messages WHERE key IN "
                        f"({','.join('?' * len(chunk))})",
                        chunk,
                    ).fetchall()
                )
        finally:
            conn.close()
        return found

    def _recount(self, summary: FileSummary, known: dict[int, int]) -> dict[GroupKey, Sums]:
        """The file read again here, message by message: some of its messages were counted already."""
        scan = scan_file(summary.path, summary.start, _session_of(summary.path))
        fresh: list[Message] = []
        for m in scan.messages:
            counted = self.seen.get(m.key, known.get(m.key))
            if counted is None:
                fresh.append(m)
                self.result.messages += 1
                self.seen[m.key] = self.changed[m.key] = m.output
            elif m.output > counted:  # a later record of a message counted before: only the output it adds
                self.result.updated += 1
                self.seen[m.key] = self.changed[m.key] = m.output
                extra = _cost(m.model, m.input, m.output, m.cache_read, m.cache_write_5m, m.cache_write_1h)
                before = _cost(m.model, m.input, counted, m.cache_read, m.cache_write_5m, m.cache_write_1h)
                cost = None if extra is None or before is None else extra - before
                fresh.append(
                    m._replace(
                        input=0,
                        output=m.output - counted,
                        cache_read=0,
                        cache_write_5m=0,
                        cache_write_1h=0,
                        cost_usd=cost,
                    )
                )
        return add_up(fresh)

    def _points(self, groups: dict[GroupKey, Sums]) -> list[Point]:
        """Per session, model, project, branch and hour: a point of each token type and one of cost."""
        merged: dict[tuple[str, str, str, str, int], Sums] = {}
        costs: dict[tuple[str, str, str, str, int], float | None] = {}
        for (session, model, cwd, branch, hour, long, claude_priced), sums in groups.items():
            key = (session, model, cwd, branch, hour)
            mine = merged.get(key)
            if mine is None:
                merged[key] = list(sums)
            else:
                _add(mine, sums)
            if claude_priced:
                cost: float | None = sums[5]
            else:
                rates = prices.rates(model)
                if rates is None:
                    self.result.unpriced[model] = self.result.unpriced.get(model, 0) + sums[6]
                    cost = None
                else:
                    cost = rates.cost_of(long, *sums[:5])  # each message's own side of the threshold
            if cost is not None:
                costs[key] = (costs.get(key) or 0.0) + cost
            else:
                costs.setdefault(key, None)
        points: list[Point] = []
        tag = self.run % RUN_TAG
        sessions: dict[str, tuple[int, dict[str, str]]] = {}  # each one's first point, and where it ran
        for key, sums in merged.items():
            session, model, cwd, branch, _ = key
            # Where a session ran is said once, on its session.count point (see sources.py): on every point,
            # each project and branch would make families of their own, for a breakdown by session anyway.
            attrs = {"session.id": session, "model": model, SOURCE: TRANSCRIPT}
            start, end = sums[7], sums[8] + tag
            if session not in sessions or start < sessions[session][0]:
                place = {"session.id": session, SOURCE: TRANSCRIPT}
                if cwd:
                    place["project"] = project_of(cwd)
                    place["cwd"] = cwd
                if branch:
                    place["git.branch"] = branch
                sessions[session] = (start, place)
            counts = (sums[0], sums[1], sums[2], sums[3] + sums[4])
            for kind, count in zip(TYPES, counts, strict=True):
                self.result.tokens[kind] += count
                if count:
                    points.append(
                        _point(
                            "claude_code.token.usage", "tokens", {**attrs, "type": kind}, start, end, count
                        )
                    )
            cost = costs.get(key)
            if cost is not None:
                self.result.cost_usd += cost
                points.append(_point("claude_code.cost.usage", "USD", attrs, start, end, cost))
        # Counted once, at its first message found: not if an import before told of it, nor a batch before
        # of this one (which may not be committed yet)
        new = self._new_sessions(set(sessions) - self.sessions_counted)
        self.sessions_counted |= new
        for session in new:
            at, place = sessions[session]
            points.append(_point("claude_code.session.count", "", place, at, at + tag, 1))
        self.sessions_seen |= sessions.keys()
        self.result.sessions = len(self.sessions_seen)
        return points

    def _new_sessions(self, sessions: set[str]) -> set[str]:
        """The sessions no import told about before."""
        known: set[str] = set()
        if self.db_path.exists():
            conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
            try:
                for session in sessions:
                    row = conn.execute(
                        "SELECT 1 FROM transcript_sessions WHERE session_id = ?", (session,)
                    ).fetchone()
                    if row:
                        known.add(session)
            except sqlite3.OperationalError:
                pass  # a database from before transcripts: none known
            finally:
                conn.close()
        return sessions - known


def _point(metric: str, unit: str, attrs: dict[str, str], start: int, end: int, value: float) -> Point:
    return Point(metric, unit, "sum", "delta", True, SCOPE, attrs, start, end, float(value))


def _add(mine: Sums, sums: Sums) -> None:
    for i in range(7):
        mine[i] += sums[i]
    mine[7] = min(mine[7], sums[7])
    mine[8] = max(mine[8], sums[8])


def _cost(model: str, *counts: int) -> float | None:
    rates = prices.rates(model)
    return None if rates is None else rates.cost(*counts)


_projects: dict[str, str] = {}


def project_of(cwd: str) -> str:
    """The git repository holding ``cwd`` (its top folder), else ``cwd`` itself."""
    found = _projects.get(cwd)
    if found is None:
        found = cwd
        folder = Path(cwd)
        for candidate in (folder, *folder.parents):
            if (candidate / ".git").exists():
                found = str(candidate)
                break
        _projects[cwd] = found
    return found


class Writing:
    """Batches handed to the store's writer as they are made, written while the next is read: the store and
    an event loop on a thread of their own, opened with the first batch."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.store: Store | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.pending: list[concurrent.futures.Future[WriteResult]] = []

    def write(self, batch: Batch) -> None:
        if not batch.points and not (batch.transcript and batch.transcript.files):
            return
        if self.loop is None:
            from ..store import Store

            self.loop = asyncio.new_event_loop()
            self.thread = threading.Thread(target=self.loop.run_forever, name="ccmetrics-import", daemon=True)
            self.thread.start()
            self.store = Store(self.db_path)
        assert self.store is not None
        self.pending.append(asyncio.run_coroutine_threadsafe(self.store.write(batch), self.loop))

    def __enter__(self) -> Writing:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            problems = [p for future in self.pending for p in future.result().problems]
        finally:
            if self.store is not None:
                self.store.close()
            if self.loop is not None and self.thread is not None:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join()
                self.loop.close()
        if problems:
            raise RuntimeError("; ".join(problems))
