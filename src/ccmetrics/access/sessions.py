"""Sign-in sessions: a random cookie value, of which only the SHA-256 is kept, and the CSRF token that every
state-changing request of the session must repeat in ``X-CSRF-Token``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .tokens import digest

COOKIE = "ccmetrics_session"
# Under TLS: the browser then takes the cookie only over HTTPS, for this host alone, with Path=/.
SECURE_COOKIE = "__Host-ccmetrics_session"
MAX_COOKIE_CHARS = 128  # a longer cookie value is not looked up at all


@dataclass(frozen=True, slots=True)
class WebSession:
    """A signed-in session as the access file holds it."""

    digest: bytes
    user: str
    csrf_token: str
    created_ns: int
    expires_ns: int

    def expired(self, now_ns: int) -> bool:
        return now_ns >= self.expires_ns


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just made: the cookie's value, seen only by the browser it is sent to."""

    cookie_value: str
    session: WebSession


def new_session(user: str, now_ns: int, lifetime_ns: int) -> NewSession:
    value = secrets.token_urlsafe(32)
    return NewSession(
        value, WebSession(digest(value), user, secrets.token_urlsafe(32), now_ns, now_ns + lifetime_ns)
    )


def cookie_name(tls: bool) -> str:
    return SECURE_COOKIE if tls else COOKIE
