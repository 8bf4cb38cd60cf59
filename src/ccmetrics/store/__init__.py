"""The embedded database: one writer thread, any number of reader connections (SQLite in WAL mode)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from ..otlp.normalize import Batch
from .facts import FamilyCache
from .schema import migrate
from .writer import StoreUnavailable, WriteResult, Writer, connect

__all__ = ["Store", "StoreUnavailable", "WriteResult", "open_reader"]


def open_reader(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise FileNotFoundError(f"no ccmetrics database at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        setup = connect(path)
        try:
            migrate(setup)
        finally:
            setup.close()
        self.path = path
        self._writer = Writer(path)
        self._readers = threading.local()
        self.family_cache = FamilyCache()

    async def write(self, batch: Batch) -> WriteResult:
        """Resolves once the batch is committed to disk; raises StoreUnavailable when it cannot be."""
        return await asyncio.wrap_future(self._writer.submit(batch))

    @property
    def version(self) -> int:
        """Changes whenever new data has been committed."""
        return self._writer.commits

    def reader(self) -> sqlite3.Connection:
        """A read-only connection for the calling thread, reused across calls."""
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = self._readers.conn = open_reader(self.path)
        return conn

    def close(self) -> None:
        self._writer.close()
