"""Read transactions: every statement of one request reads the same snapshot of the store."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator


@contextlib.contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A read transaction on a connection in autocommit mode. Its first statement fixes the snapshot (WAL
    mode); every statement after it until the end of the block reads the same one, whatever is committed
    meanwhile. Inside another, it is part of that one."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")  # reads only: it ends the transaction, so checkpoints can go past its snapshot
