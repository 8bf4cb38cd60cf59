"""What a question to the store is restricted to: a time range and attribute filters, parsed from what
users type (``7d``, ``2026-11-01T09:00``, ``team.id=platform``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


class QueryError(ValueError):
    """A filter or time the user gave cannot be understood."""


@dataclass(frozen=True)
class Filters:
    since_ns: int | None = None
    until_ns: int | None = None
    attrs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(
        cls,
        since: str | None = None,
        until: str | None = None,
        filters: list[str] | tuple[str, ...] = (),
        now: datetime | None = None,
    ) -> Filters:
        now = now or datetime.now(UTC)
        return cls(
            since_ns=parse_time(since, now) if since else None,
            until_ns=parse_time(until, now) if until else None,
            attrs=tuple(parse_filter(f) for f in filters),
        )


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# What the store can hold: nanoseconds since 1970 in SQLite's 64-bit integers, up to 2262.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 1, 1, tzinfo=UTC)  # leaves room for a range's last bucket


def parse_span(text: str) -> timedelta | None:
    """``90d``, ``24h``, ``30m``, ``2w``, ``10s`` as a length of time; ``None`` for text that is not one."""
    match = _RELATIVE.match(text)
    if match is None:
        return None
    try:
        return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    except OverflowError:
        return timedelta.max


def parse_iso(text: str) -> datetime | None:
    """An ISO 8601 time, UTC unless it says otherwise; ``None`` for text that is not one."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_time(text: str, now: datetime) -> int:
    """``7d``, ``24h``, ``30m`` (that long before now) or an ISO 8601 time (UTC unless it says otherwise),
    between 1970 and 2262."""
    span = parse_span(text)
    if span is not None:
        try:
            moment = now - span
        except OverflowError:
            moment = datetime.min.replace(tzinfo=UTC)  # reported as out of range below
    else:
        parsed = parse_iso(text)
        if parsed is None:
            raise QueryError(f"cannot read time {text!r}: use ISO 8601 (2026-01-31T12:00) or 7d, 24h, 30m")
        moment = parsed
    if not EARLIEST <= moment <= LATEST:
        raise QueryError(f"time {text!r} is out of range: use a time between 1970 and 2262")
    return int(moment.timestamp() * 1_000_000) * 1000


def parse_filter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise QueryError(f"cannot read filter {text!r}: use KEY=VALUE, e.g. team.id=platform")
    if '"' in key:
        raise QueryError(f"filter key {key!r} may not contain a double quote")
    return key, value
