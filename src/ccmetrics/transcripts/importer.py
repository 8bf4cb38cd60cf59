"""``ccmetrics import``: Claude Code's transcripts into the store, as points marked as coming from them.

Each file is read from where the last import stopped (its size, mtime and offset are stored in the same
transaction as the points made of it), so importing unchanged history again reads nothing, and a file that
grew is read from its last complete line. What is new is found by files.py; it is read, counted once and
written by counting.py, imported only when there is something to read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .files import default_paths, find_files, import_lock, read_state, unread

TYPES = ("input", "output", "cacheRead", "cacheCreation")
BATCHES = 8  # a large import is written in about this many transactions, each as its files are read

Progress = Callable[[int, int], None]  # bytes read so far, bytes to read


@dataclass
class ImportResult:
    files: int = 0  # transcripts found
    files_read: int = 0  # of which new or changed
    bytes_read: int = 0
    messages: int = 0  # newly counted
    updated: int = 0  # counted before, with more output now
    skipped: int = 0  # synthetic and error messages
    bad_lines: int = 0
    sessions: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TYPES, 0))
    cost_usd: float = 0.0
    unpriced: dict[str, int] = field(default_factory=dict)  # model: messages without a price
    price_table: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "files": self.files,
            "files_read": self.files_read,
            "bytes_read": self.bytes_read,
            "messages": self.messages,
            "updated": self.updated,
            "skipped": self.skipped,
            "bad_lines": self.bad_lines,
            "sessions": self.sessions,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6),
            "unpriced_models": self.unpriced,
            "price_table": self.price_table,
            "seconds": round(self.seconds, 3),
        }


def import_transcripts(
    db_path: Path,
    paths: list[Path] | None = None,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import what is new in the transcripts under ``paths`` (default: ``default_paths()``)."""
    started = time.perf_counter()
    files = find_files(default_paths() if paths is None else paths)
    result = ImportResult(files=len(files))
    with import_lock(db_path):
        state = read_state(db_path)
        plan = unread(files, state)
        if plan:
            from .counting import Counting, Writing, read_summaries

            counting = Counting(db_path, state.any_message, state.run + 1, result)
            # Files are counted and written in groups as the workers finish them: the writer stores one group
            # while the workers read the next, and an import cut short keeps the groups it wrote.
            per_batch = max(sum(u.length for u in plan) // BATCHES, 1)
            with Writing(db_path) as writing:
                group = []
                size = 0
                for summary in read_summaries(plan, workers, progress):
                    group.append(summary)
                    size += summary.size - summary.start
                    if size >= per_batch:
                        writing.write(counting.batch(group))
                        group, size = [], 0
                if group:
                    writing.write(counting.batch(group))
    result.seconds = time.perf_counter() - started
    return result


def watch(
    db_path: Path,
    paths: list[Path] | None = None,
    on_import: Callable[[ImportResult], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Import, then import again each time a transcript under ``paths`` changes, until ``stop`` is set."""
    import watchfiles

    roots = [p for p in (default_paths() if paths is None else paths) if p.exists()]
    result = import_transcripts(db_path, paths, workers=1 if stop is not None else None)
    if on_import:
        on_import(result)
    if not roots:
        raise FileNotFoundError("no transcripts to watch: none of " + ", ".join(map(str, paths or [])))

    def jsonl(_: object, path: str) -> bool:
        return path.endswith(".jsonl")

    # Every 2 s without a change too: a change made before the watch began, or one a file system does not
    # report, is found by the next look (which, with nothing new, only compares sizes and mtimes).
    for _ in watchfiles.watch(
        *roots,
        watch_filter=jsonl,
        debounce=200,
        rust_timeout=2000,
        yield_on_timeout=True,
        stop_event=stop,
        raise_interrupt=False,
    ):
        result = import_transcripts(db_path, paths, workers=1)  # a few lines: no worker processes
        if on_import and result.files_read:
            on_import(result)
