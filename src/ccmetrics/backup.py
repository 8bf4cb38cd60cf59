"""Backups of a data directory, taken while the server runs, and putting one back.

A backup is one tar file holding a consistent copy of ``ccmetrics.db`` and, when there are, of ``access.db``
(tokens, people) and ``alerts.db`` (the alerts' state). Each copy is made with SQLite's backup API in a single step, inside one read
transaction: in WAL mode that never blocks the writer, and the copy is the database as of one commit, every
export acknowledged before the backup began included. Copying the live files instead could catch the
database between two writes, or leave out what is still in its write-ahead log.

Restoring checks the backup first (its names, ``PRAGMA integrity_check``, a schema this version knows),
then puts each file in place with a rename, having removed the old file's write-ahead log: a log left
beside a database it does not belong to would be replayed into it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .store.schema import SCHEMA_VERSION

# What a backup may hold, the first always: the data, its tokens and people, and the alerts' state (so a
# restored server does not notify again of what it had notified).
DATABASES = ("ccmetrics.db", "access.db", "alerts.db")


class BackupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Copied:
    name: str
    size: int


def backup(data_dir: Path, target: Path) -> list[Copied]:
    """Write a backup of ``data_dir`` to ``target`` (written under another name, then renamed: a backup
    interrupted leaves no partial file under its name)."""
    if not (data_dir / DATABASES[0]).exists():
        raise BackupError(f"no database at {data_dir / DATABASES[0]}")
    target = target.resolve()
    copied = []
    with _scratch(target.parent) as scratch:
        for name in DATABASES:
            if (data_dir / name).exists():
                _snapshot(data_dir / name, scratch / name)
                copied.append(Copied(name, (scratch / name).stat().st_size))
        partial = scratch / "backup.tar"
        with tarfile.open(partial, "w") as tar:
            for c in copied:
                tar.add(scratch / c.name, arcname=c.name)
        os.chmod(partial, 0o600)  # it holds who did what, and the tokens' hashes
        os.replace(partial, target)
    return copied


def restore(source: Path, data_dir: Path) -> list[Copied]:
    """Put the databases of the backup ``source`` in ``data_dir``, replacing those there. The caller makes
    sure no server uses ``data_dir`` (running.no_server), or accepts that one goes on with what it had."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with _scratch(data_dir) as scratch:
        restored = _unpack(source, scratch)
        for c in restored:
            _check(scratch / c.name, c.name)
        for c in restored:
            live = data_dir / c.name
            for suffix in ("-wal", "-shm", "-journal"):
                Path(f"{live}{suffix}").unlink(missing_ok=True)
            os.replace(scratch / c.name, live)
    return restored


def _snapshot(source: Path, copy: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(copy)
    try:
        src.backup(dst, pages=-1)  # one step: one read transaction, one commit's state
    finally:
        dst.close()
        src.close()


def _unpack(source: Path, scratch: Path) -> list[Copied]:
    try:
        tar = tarfile.open(source, "r")
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"{source} is not a ccmetrics backup: {exc}") from None
    found = []
    with tar:
        for member in tar:
            if member.name not in DATABASES or not member.isfile():
                raise BackupError(f"{source} is not a ccmetrics backup: it holds {member.name!r}")
            stream = tar.extractfile(member)
            assert stream is not None  # a regular file
            with stream, (scratch / member.name).open("wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
            found.append(Copied(member.name, member.size))
    if DATABASES[0] not in {c.name for c in found}:
        raise BackupError(f"{source} is not a ccmetrics backup: it holds no {DATABASES[0]}")
    return found


def _check(path: Path, name: str) -> None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the backup's {name} is damaged: {exc}") from None
    finally:
        conn.close()
    if problems != ["ok"]:
        raise BackupError(f"the backup's {name} is damaged: {'; '.join(problems[:3])}")
    if name == DATABASES[0] and version > SCHEMA_VERSION:
        raise BackupError(
            f"the backup's {name} is at schema version {version}, newer than this ccmetrics understands "
            f"({SCHEMA_VERSION}); upgrade ccmetrics"
        )


@contextmanager
def _scratch(beside: Path) -> Iterator[Path]:
    """A private directory beside the destination: on its file system, so that the final rename is one."""
    beside.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".ccmetrics-", dir=beside))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
