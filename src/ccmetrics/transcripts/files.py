"""Which transcripts there are, and what of them the imports before have not read.

Cheap on purpose: a re-import that finds nothing new (``ccmetrics import`` or ``push`` at the end of every
Claude Code session) needs only this, a ``stat`` per file and one read of the database, and imports none of
the reading, pricing and writing machinery (counting.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple


def default_paths(env: dict[str, str] | None = None, home: Path | None = None) -> list[Path]:
    """Where Claude Code keeps transcripts: ``~/.claude/projects``, ``~/.config/claude/projects`` and the
    ``projects`` of each folder ``CLAUDE_CONFIG_DIR`` names (comma-separated)."""
    env = dict(os.environ) if env is None else env
    home = Path.home() if home is None else home
    found = [home / ".claude" / "projects", home / ".config" / "claude" / "projects"]
    for folder in env.get("CLAUDE_CONFIG_DIR", "").split(","):
        if folder.strip():
            root = Path(folder.strip()).expanduser()
            found.append(root if root.name == "projects" else root / "projects")
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def find_files(paths: list[Path]) -> list[str]:
    """Every ``.jsonl`` under the paths (or the paths themselves, when files), sorted."""
    found: set[str] = set()
    for path in paths:
        if path.is_file():
            found.add(str(path.resolve()))
        elif path.is_dir():
            for folder, _, names in os.walk(path):
                found.update(os.path.join(folder, n) for n in names if n.endswith(".jsonl"))
    return sorted(found)


@contextlib.contextmanager
def import_lock(db_path: Path) -> Iterator[None]:
    """One import at a time per database: two would each count what the other had not stored yet."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with open(db_path.with_name(db_path.name + ".import-lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class FileRead(NamedTuple):
    """How far the imports before read a file, when it had this size and modification time."""

    size: int
    mtime_ns: int
    offset: int  # the end of its last complete line


@dataclass
class ImportState:
    """How far the imports before read."""

    files: dict[str, FileRead] = field(default_factory=dict)
    run: int = 0  # the last import's number
    any_message: bool = False  # whether any message was counted before


def read_state(db_path: Path) -> ImportState:
    """What the database says the imports before read (nothing, for a database without transcripts yet:
    its tables are made when the store opens it)."""
    if not db_path.exists():
        return ImportState()
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        files = {p: FileRead(s, m, o) for p, s, m, o in conn.execute("SELECT * FROM transcript_files")}
        (run,) = conn.execute("SELECT coalesce(max(id), 0) FROM transcript_runs").fetchone()
        any_message = conn.execute("SELECT 1 FROM transcript_messages LIMIT 1").fetchone() is not None
        return ImportState(files, int(run), any_message)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return ImportState()
        raise
    finally:
        conn.close()


class Unread(NamedTuple):
    """What of a file is to be read: from ``offset``, ``length`` bytes."""

    path: str
    offset: int
    length: int


def unread(files: list[str], state: ImportState) -> list[Unread]:
    """What of ``files`` is new since the imports before: a new file whole, a grown one from where the last
    import stopped, a rewritten one again from the start (what was counted stays counted once)."""
    found: list[Unread] = []
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            continue  # gone since it was listed
        before = state.files.get(path, FileRead(-1, -1, 0))
        if before.size == st.st_size and before.mtime_ns == st.st_mtime_ns:
            continue
        offset = before.offset
        if st.st_size < offset or (before.size == st.st_size and before.mtime_ns != st.st_mtime_ns):
            offset = 0
        found.append(Unread(path, offset, st.st_size - offset))
    return found
