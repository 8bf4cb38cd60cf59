"""Whether a server is using a data directory.

``ccmetrics serve`` holds a shared lock on ``serve.lock`` in its data directory for as long as it runs; the
commands that replace or rewrite the database (``restore``, ``vacuum``) take the same lock exclusively, and
so refuse while a server runs. The kernel lets go of the lock when the process ends, however it ends: a
server killed with SIGKILL leaves nothing to clean up.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "serve.lock"


class ServerRunning(RuntimeError):
    pass


def hold_while_serving(data_dir: Path) -> int:
    """Take the shared lock a server holds for its life; returns its file descriptor (kept open)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


@contextmanager
def no_server(data_dir: Path) -> Iterator[None]:
    """While no server uses ``data_dir``: raises ServerRunning if one does, and keeps one from starting."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServerRunning(f"a ccmetrics serve is using {data_dir}: stop it first") from None
        yield
    finally:
        os.close(fd)


def server_running(data_dir: Path) -> bool:
    """Whether a server uses ``data_dir`` now."""
    try:
        with no_server(data_dir):
            return False
    except ServerRunning:
        return True
