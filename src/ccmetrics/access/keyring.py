"""The access file as the server holds it in memory: tokens by digest, people by name and email, sign-in
sessions by digest. One copy, shared by the ingest gate and the web gate.

At most once a second a request first asks the file whether another connection changed it (``PRAGMA
data_version``, no read of a table) and reloads everything if so: what the CLI creates, revokes or removes
counts within a second or two, with no restart and no disk read per request. Sessions the server itself
makes or ends are put in (or taken out of) memory at once as well.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

from .people import Person
from .sessions import WebSession
from .store import AccessStore
from .tokens import Principal

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0
RECORD_USE_EVERY_S = 60.0


class Keyring:
    def __init__(
        self,
        access: AccessStore,
        *,
        check_every_s: float = CHECK_EVERY_S,
        record_use_every_s: float = RECORD_USE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.access = access
        self.check_every_s = check_every_s
        self.record_use_every_s = record_use_every_s
        self._clock = clock
        self.tokens: dict[bytes, Principal] = {}
        self.people: dict[str, Person] = {}
        self._people_by_email: dict[str, Person] = {}
        self.sessions: dict[bytes, WebSession] = {}
        self._version = -1
        self._next_check = 0.0
        self._used: dict[bytes, int] = {}  # when valid tokens were last used: at most one entry per token
        self._next_record = clock() + record_use_every_s
        self._reload(access.data_version())

    @property
    def has_credentials(self) -> bool:
        return bool(self.tokens) or bool(self.people)

    def refresh(self) -> bool:
        """Reload if the file changed (asked at most once per ``check_every_s``); whether it was reloaded."""
        now = self._clock()
        if now < self._next_check:
            return False
        self._next_check = now + self.check_every_s
        reloaded = False
        try:
            version = self.access.data_version()
            if version != self._version:
                self._reload(version)
                reloaded = True
            if self._used and now >= self._next_record:
                self._record_use()
        except sqlite3.Error as exc:  # busy or unreadable for a moment: what was last read still holds
            log.warning("could not read the access file %s: %s", self.access.path, exc)
        return reloaded

    def _reload(self, version: int) -> None:
        self.tokens = self.access.principals()
        people = self.access.people()
        self.people = {person.name: person for person in people}
        # A name that is an email counts as one: the proxy may name a person by either.
        by_email = {person.name.lower(): person for person in people if "@" in person.name}
        by_email.update({person.email.lower(): person for person in people if person.email})
        self._people_by_email = by_email
        self.sessions = self.access.sessions()
        self._version = version
        self._used = {d: at for d, at in self._used.items() if d in self.tokens}

    def person_named(self, name: str) -> Person | None:
        """The person a sign-on proxy names, by their name or email (an email's case does not matter)."""
        return self.people.get(name) or self._people_by_email.get(name.lower())

    def used(self, token_digest: bytes, now_ns: int) -> None:
        self._used[token_digest] = now_ns

    def session_made(self, session: WebSession) -> None:
        self.sessions[session.digest] = session

    def session_ended(self, session_digest: bytes) -> None:
        self.sessions.pop(session_digest, None)

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
