"""Who is reading the dashboard or the API, and what of the data they may see.

A reader is a person signed in with a password, a person the single sign-on proxy names, a viewer or admin
token, or anyone at all while the server checks nothing. A member reads only the data of their own
``user.email``: it is added to every filter they send, so a filter of theirs on someone else's email matches
nothing, never someone else's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..store.filters import Filters
from .people import WebRole

EMAIL_KEY = "user.email"


class Via(StrEnum):
    OPEN = "open"  # the server checks nothing: no token and no person exists, on loopback
    SESSION = "session"  # signed in with a password: a session cookie
    PROXY = "proxy"  # named by the single sign-on proxy's header
    TOKEN = "token"  # Authorization: Bearer


@dataclass(frozen=True, slots=True)
class Reader:
    name: str
    role: WebRole
    via: Via
    email: str | None = None  # the user.email whose data is theirs
    # What a state-changing request must repeat in X-CSRF-Token (a session's, or the proxy person's).
    csrf_token: str | None = None
    session_digest: bytes | None = None  # the session to end on sign-out

    def __post_init__(self) -> None:
        if self.role is WebRole.MEMBER and self.email is None:
            raise ValueError("a member reads only the data of their own user.email, and has none")

    @property
    def only_email(self) -> str | None:
        """The one user.email whose data this reader sees; ``None``: everyone's."""
        return None if self.role.reads_everyone else self.email

    def scoped(self, filters: Filters) -> Filters:
        """``filters`` narrowed to what this reader may see."""
        email = self.only_email
        if email is None:
            return filters
        return Filters(filters.since_ns, filters.until_ns, (*filters.attrs, (EMAIL_KEY, email)))

    def as_dict(self) -> dict[str, Any]:
        """What ``GET /api/me`` answers."""
        return {
            "name": self.name if self.via is not Via.OPEN else None,
            "role": self.role.value,
            "email": self.email,
            "via": self.via.value,
            "csrf_token": self.csrf_token,
            "sees": "own" if self.only_email is not None else "all",
        }


# Whoever reaches a server that checks nothing (loopback, no token, no person): as before sign-in existed.
ANYONE = Reader("anyone", WebRole.ADMIN, Via.OPEN)
