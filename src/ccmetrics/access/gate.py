"""The check every export passes, on both transports: which token sent it, and may it send?

The valid tokens' digests are those the keyring holds in memory (``keyring.py``), reloaded when the access
file changes. A token that matches nothing costs one SHA-256 and is remembered nowhere, so no client can grow
what is held.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .keyring import CHECK_EVERY_S, RECORD_USE_EVERY_S, Keyring
from .store import AccessStore
from .tokens import Principal, bearer, digest

log = logging.getLogger(__name__)


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
        self.keyring = Keyring(
            access, check_every_s=check_every_s, record_use_every_s=record_use_every_s, clock=clock
        )
        self.always_required = always_required
        self._wall_clock_ns = wall_clock_ns

    @property
    def required(self) -> bool:
        return self.always_required or bool(self.keyring.tokens)

    def admit(self, authorization: str | None) -> Principal | None:
        """The principal an ``Authorization`` header stands for; ``None`` while ingest is open to all.
        Raises ``Refused`` otherwise."""
        self._refresh()
        if not self.required:
            return None
        now_ns = self._wall_clock_ns()
        principal = self.token(authorization, now_ns)
        if not principal.role.may_ingest:
            raise Refused(
                403, f"the token {principal.name!r} is a {principal.role} token: it may not send data"
            )
        return principal

    def token(self, authorization: str | None, now_ns: int) -> Principal:
        """The valid token an ``Authorization`` header carries, whatever its role, noted as used; raises
        ``Refused`` (401) for none, an unknown or an expired one. The web gate asks this too."""
        token = bearer(authorization)
        if token is None:
            raise Refused(401, "this server needs a token: send the header Authorization: Bearer <token>")
        token_digest = digest(token)
        principal = self.keyring.tokens.get(token_digest)
        if principal is None:
            raise Refused(401, "the token is not valid: it is unknown or was revoked")
        if principal.expired(now_ns):
            raise Refused(401, f"the token {principal.name!r} has expired")
        self.keyring.used(token_digest, now_ns)
        return principal

    def describe(self) -> str:
        """Whether ingest needs a token, for the start-up log."""
        if not self.required:
            return "authentication off: no token exists, anyone who can connect may send data"
        return (
            f"authentication on: {len(self.keyring.tokens)} token(s), ingest and admin tokens may send data"
        )

    def _refresh(self) -> None:
        was_required = self.required
        if self.keyring.refresh() and was_required != self.required:
            log.info("ingest %s", self.describe())

    def close(self) -> None:
        self.keyring.close()
