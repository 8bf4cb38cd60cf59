"""The check every export passes, on both transports: which token sent it, and may it send?

The valid tokens' digests are held in memory. At most once a second an export first asks the access file
whether anything changed (``PRAGMA data_version``, no read of the table) and reloads it if so: a token the
CLI creates or revokes counts within a second or two, with no restart and no disk read per request. A token
that matches nothing costs one SHA-256 and is remembered nowhere, so no client can grow what is held.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from .store import AccessStore
from .tokens import Principal, bearer, digest

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0
RECORD_USE_EVERY_S = 60.0


@dataclass
class Refused(Exception):
    """An export the sender may not make: 401 (no valid token) or 403 (a token that may not ingest)."""

    status: int
    message: str

    def __str__(self) -> str:
        return self.message


class Gate:
    def __init__(
        self,
        access: AccessStore,
        *,
        always_required: bool = False,
        check_every_s: float = CHECK_EVERY_S,
        record_use_every_s: float = RECORD_USE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """``always_required``: a token is needed even while none exists (a server reachable from other
        machines must not fall open when the last token is revoked)."""
        self.access = access
        self.always_required = always_required
        self.check_every_s = check_every_s
        self.record_use_every_s = record_use_every_s
        self._clock = clock
        self._wall_clock_ns = wall_clock_ns
        self._principals: dict[bytes, Principal] = {}
        self._version = -1
        self._next_check = 0.0
        self._used: dict[bytes, int] = {}  # at most one entry per valid token
        self._next_record = clock() + record_use_every_s
        self._reload(access.data_version())

    @property
    def required(self) -> bool:
        return self.always_required or bool(self._principals)

    def admit(self, authorization: str | None) -> Principal | None:
        """The principal an ``Authorization`` header stands for; ``None`` while ingest is open to all.
        Raises ``Refused`` otherwise."""
        self._refresh()
        if not self.required:
            return None
        token = bearer(authorization)
        if token is None:
            raise Refused(401, "this server needs a token: send the header Authorization: Bearer <token>")
        token_digest = digest(token)
        principal = self._principals.get(token_digest)
        now_ns = self._wall_clock_ns()
        if principal is None:
            raise Refused(401, "the token is not valid: it is unknown or was revoked")
        if principal.expired(now_ns):
            raise Refused(401, f"the token {principal.name!r} has expired")
        if not principal.role.may_ingest:
            raise Refused(
                403, f"the token {principal.name!r} is a {principal.role} token: it may not send data"
            )
        self._used[token_digest] = now_ns
        return principal

    def describe(self) -> str:
        """Whether ingest needs a token, for the start-up log."""
        if not self.required:
            return "authentication off: no token exists, anyone who can connect may send data"
        return f"authentication on: {len(self._principals)} token(s), ingest and admin tokens may send data"

    def _refresh(self) -> None:
        now = self._clock()
        if now < self._next_check:
            return
        self._next_check = now + self.check_every_s
        try:
            version = self.access.data_version()
            if version != self._version:
                self._reload(version)
            if self._used and now >= self._next_record:
                self._record_use()
        except sqlite3.Error as exc:  # busy or unreadable for a moment: the tokens last read still hold
            log.warning("could not read the access file %s: %s", self.access.path, exc)

    def _reload(self, version: int) -> None:
        was_required = self.required if self._version >= 0 else None
        self._principals = self.access.principals()
        self._version = version
        self._used = {d: at for d, at in self._used.items() if d in self._principals}
        if was_required is not None and was_required != self.required:
            log.info("ingest %s", self.describe())

    def _record_use(self) -> None:
        self._next_record = self._clock() + self.record_use_every_s
        used, self._used = self._used, {}
        self.access.record_use(used)

    def close(self) -> None:
        try:
            if self._used:
                self._record_use()
        except sqlite3.Error as exc:
            log.warning("could not record when tokens were last used: %s", exc)
        finally:
            self.access.close()
