"""Tokens: made at random, shown once, kept only as their SHA-256. What one grants is a ``Principal``."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from ..records import TrustedAttributes
from ..store.filters import parse_iso, parse_span

PREFIX = "ccm_"  # a token is recognisable in a config file or a secret scanner's findings
MAX_TOKEN_CHARS = 256  # a longer Authorization header is refused before it is hashed
MAX_NAME_CHARS = 64
MAX_LABEL_CHARS = 256  # a token's user and team
MAX_TIME_NS = 2**63 - 1  # what SQLite's INTEGER holds


class Role(StrEnum):
    INGEST = "ingest"  # sends telemetry
    VIEWER = "viewer"  # reads the dashboard and API
    ADMIN = "admin"  # everything

    @property
    def may_ingest(self) -> bool:
        return self in (Role.INGEST, Role.ADMIN)


@dataclass(frozen=True, slots=True)
class Principal:
    """What a valid token stands for."""

    name: str
    role: Role
    user: str | None = None
    team: str | None = None
    expires_ns: int | None = None

    def expired(self, now_ns: int) -> bool:
        return self.expires_ns is not None and now_ns >= self.expires_ns

    @property
    def trusted(self) -> TrustedAttributes:
        return TrustedAttributes(user_email=self.user, team_id=self.team)


class TokenError(ValueError):
    """A token's name, role, user, team or expiry cannot be used."""


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    """What is stored and looked up: tokens are random, so a plain SHA-256 is enough (no salt, no stretch)."""
    return hashlib.sha256(token.encode()).digest()


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; ``None`` when there is none."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS:
        return None
    return token


def expiry_ns(text: str | None, now_ns: int | None = None) -> int | None:
    """``--expires``: a span from now (``90d``, ``12h``, ``2w``) or an ISO 8601 time; ``None``: never."""
    if text is None or text.strip().lower() in ("", "never"):
        return None
    now = now_ns if now_ns is not None else time.time_ns()
    span = parse_span(text)
    if span is not None:
        if span.total_seconds() <= 0:
            raise TokenError(f"--expires {text!r}: the token would expire at once")
        at = now + int(span.total_seconds() * 1e9)
    else:
        moment = parse_iso(text)
        if moment is None:
            raise TokenError(
                f"cannot read --expires {text!r}: use a span from now (90d, 12h, 2w) or an ISO 8601 time"
            )
        at = int(moment.timestamp() * 1e6) * 1000
        if at <= now:
            raise TokenError(f"--expires {text!r} is in the past")
    if at > MAX_TIME_NS:
        raise TokenError(
            f"--expires {text!r} is beyond the year 2262: leave it out for a token that never does"
        )
    return at


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise TokenError(f"a token's name is 1 to {MAX_NAME_CHARS} printable characters")
    return name


def check_label(what: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_LABEL_CHARS or not value.isprintable():
        raise TokenError(f"--{what} is 1 to {MAX_LABEL_CHARS} printable characters")
    return value
