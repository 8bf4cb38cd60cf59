"""The embedded database: one writer thread, a few reader connections (SQLite in WAL mode)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ..records import Batch
from .caches import AnswerCache, FamilyCache
from .retention import Retention
from .schema import SCHEMA_VERSION, migrate
from .transactions import read_transaction
from .upgrade import pending_events
from .writer import StoreUnavailable, Writer, WriteResult, connect

__all__ = [
    "Retention",
    "Store",
    "StoreOutdated",
    "StoreUnavailable",
    "StoreUpgrading",
    "WriteResult",
    "open_reader",
    "read_transaction",
]

T = TypeVar("T")
READERS = 2  # queries run on this many threads, each with its own connection: bounded memory


class StoreOutdated(Exception):
    """The database was written by an older ccmetrics: the server upgrades it when it starts."""


class StoreUpgrading(StoreOutdated):
    """The server is upgrading the database (see upgrade.py): its answers would miss the events not yet
    moved, so there are none until it is done, a minute or so for a month of a large team."""

    def __init__(self, events_left: int) -> None:
        super().__init__(
            f"ccmetrics is upgrading its database: {events_left:,} events left to move; it answers again "
            "when that is done, in a minute or two"
        )
        self.events_left = events_left


def open_reader(path: Path, *, while_upgrading: bool = False) -> sqlite3.Connection:
    """A read-only connection; raises StoreOutdated for a database not upgraded yet, and StoreUpgrading for
    one being upgraded unless ``while_upgrading`` (a caller that checks, or reads no events)."""
    if not path.exists():
        raise FileNotFoundError(f"no ccmetrics database at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA cache_size = -4000")  # KiB
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version < SCHEMA_VERSION:  # read-only: never upgraded here, under a server that may still be running
        conn.close()
        raise StoreOutdated(
            f"the database at {path} was written by an older ccmetrics (schema {version}, this one reads "
            f"{SCHEMA_VERSION}): start `ccmetrics serve` once to upgrade it"
        )
    if not while_upgrading and (left := pending_events(conn)):
        conn.close()
        raise StoreUpgrading(left)
    return conn


class Store:
    """``new_series_per_minute``: the limit on new series per client and minute (see
    committer.NewSeriesLimit); ``retention``: how long data is kept (see retention.py). None, the default for
    callers other than the server, sets no limit and keeps everything."""

    def __init__(
        self, path: Path, new_series_per_minute: int | None = None, retention: Retention | None = None
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        setup = connect(path)
        try:
            migrate(setup)
        finally:
            setup.close()
        self.path = path
        self.family_cache = FamilyCache()  # before the writer, which may clear them from its start
        self.answers = AnswerCache()
        self._writer = Writer(path, new_series_per_minute, retention, self._forgotten)
        self._readers = threading.local()
        self._read_pool = ThreadPoolExecutor(READERS, thread_name_prefix="ccmetrics-reader")
        self._version = 0
        # Set, and replaced by a new one, when the version changes: whoever waits on it wakes up.
        self._changed = asyncio.Event()
        self._upgraded = False

    def _forgotten(self) -> None:
        """Someone has been forgotten: nothing learnt about families or read from the sums is kept (the
        versions of the hours they were in have been bumped too, for answers being read meanwhile)."""
        self.family_cache.clear()
        self.answers.clear()

    async def write(self, batch: Batch) -> WriteResult:
        """Resolves once the batch is committed to disk; raises StoreUnavailable when it cannot be.

        Every committed batch passes here: one that stored something bumps ``version`` and wakes those
        waiting in ``changed``. (A batch whose caller is cancelled before its commit, as by a gRPC deadline,
        is stored all the same but bumps nothing: it shows with the next commit.)"""
        result = await self._writer.write(batch)
        if result.stored_anything:
            self._version += 1
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()
        return result

    @property
    def version(self) -> int:
        """Changes whenever new data has been committed."""
        return self._version

    async def changed(self, seen: int, timeout: float) -> int:
        """Wait until ``version`` is no longer ``seen`` and return it, or return ``seen`` after ``timeout``
        seconds without a commit. Waiters cost nothing while they wait: a
        commit wakes them all at once."""
        if self._version == seen:
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                pass
        return self._version

    async def read(self, query: Callable[[], T]) -> T:
        """Run a query (which calls ``reader()``) on one of the reader threads, in one read transaction: all
        of its statements see the same snapshot of the store, whatever is committed meanwhile."""

        def in_snapshot() -> T:
            with self.snapshot():
                return query()

        return await asyncio.get_running_loop().run_in_executor(self._read_pool, in_snapshot)

    def snapshot(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """The calling thread's reader connection in one read transaction (see ``read_transaction``)."""
        return read_transaction(self.reader())

    def check_upgraded(self) -> None:
        """Raises StoreUpgrading while the writer is still moving the events of an older database."""
        if self._upgraded:
            return
        left = pending_events(self.reader())
        if left:
            raise StoreUpgrading(left)
        self._upgraded = True

    def reader(self) -> sqlite3.Connection:
        """A read-only connection for the calling thread, reused across calls."""
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = self._readers.conn = open_reader(self.path, while_upgrading=True)
        return conn

    def close(self) -> None:
        self._read_pool.shutdown(wait=True)
        self._writer.close()
