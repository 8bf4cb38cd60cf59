"""The aliases an admin gave users (``ccmetrics user alias``), as a running server holds them.

One copy in memory, read again only when the access file changed: at most once a second a reader asks
``PRAGMA data_version`` (no read of the table), so an alias set from the CLI shows within a second or two,
with no restart and no disk read per request. The file may not exist yet: then there are no aliases, and
whether it appeared is asked as often.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from ..store.people import NO_ALIASES
from .store import AccessStore

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0


class AliasBook:
    """The aliases of one access file, for the server's reader threads."""

    def __init__(
        self,
        path: Path,
        *,
        check_every_s: float = CHECK_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.check_every_s = check_every_s
        self._clock = clock
        self._lock = threading.Lock()  # readers run on several threads; one connection, one refresh at a time
        self._access: AccessStore | None = None
        self._version = -1
        self._next_check = float("-inf")
        self._aliases: Mapping[str, str] = NO_ALIASES

    def current(self) -> Mapping[str, str]:
        """Every alias by user.id, as the file held it at most about ``check_every_s`` ago."""
        with self._lock:
            now = self._clock()
            if now >= self._next_check:
                self._next_check = now + self.check_every_s
                self._refresh()
            return self._aliases

    def _refresh(self) -> None:
        try:
            if self._access is None:
                if not self.path.exists():
                    return
                self._access = AccessStore(self.path, create=False, busy_timeout_ms=100)
            version = self._access.data_version()
            if version != self._version:
                self._aliases = MappingProxyType(self._access.aliases())
                self._version = version
        except (sqlite3.Error, RuntimeError, FileNotFoundError) as exc:  # the aliases last read still hold
            log.warning("could not read the aliases in %s: %s", self.path, exc)

    def close(self) -> None:
        with self._lock:
            if self._access is not None:
                self._access.close()
                self._access = None
