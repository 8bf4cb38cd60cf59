"""The embedded database: one writer process, a few reader connections (SQLite in WAL mode)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ..otlp.normalize import Batch
from .caches import AnswerCache, FamilyCache
from .schema import SCHEMA_VERSION, migrate
from .transactions import read_transaction
from .writer import StoreUnavailable, Writer, WriteResult, connect

__all__ = ["Store", "StoreOutdated", "StoreUnavailable", "WriteResult", "open_reader", "read_transaction"]

T = TypeVar("T")
READERS = 2  # queries run on this many threads, each with its own connection: bounded memory


class StoreOutdated(Exception):
    """The database was written by an older ccmetrics: the server upgrades it when it starts."""


def open_reader(path: Path) -> sqlite3.Connection:
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
    return conn


class Store:
    """``new_series_per_minute``: the limit on new series per client and minute (see
    committer.NewSeriesLimit); None, the default for callers other than the server, sets none."""

    def __init__(self, path: Path, new_series_per_minute: int | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        setup = connect(path)
        try:
            migrate(setup)
        finally:
            setup.close()
        self.path = path
        self._writer = Writer(path, new_series_per_minute)
        self._readers = threading.local()
        self._read_pool = ThreadPoolExecutor(READERS, thread_name_prefix="ccmetrics-reader")
        self.family_cache = FamilyCache()
        self.answers = AnswerCache()

    async def write(self, batch: Batch) -> WriteResult:
        """Resolves once the batch is committed to disk; raises StoreUnavailable when it cannot be."""
        return await self._writer.write(batch)

    @property
    def version(self) -> int:
        """Changes whenever new data has been committed."""
        return self._writer.commits

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

    def reader(self) -> sqlite3.Connection:
        """A read-only connection for the calling thread, reused across calls."""
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = self._readers.conn = open_reader(self.path)
        return conn

    def close(self) -> None:
        self._read_pool.shutdown(wait=True)
        self._writer.close()
