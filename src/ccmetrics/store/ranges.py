"""The range planner: which parts of a time range are read from which table.

A range is cut into parts: whole weeks are read from the weekly rollups, whole days from the daily ones,
whole hours from the hourly ones, and only the partial hours at either end from the raw points and events.
The planner reads nothing itself:
it is told until when days have their daily sums and what time it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .schema import HOUR_NS, TIERS


class RangePart(NamedTuple):
    """A part of a time range, ``[since_ns, until_ns)``, and where it is read from: ``"week"``, ``"day"`` or
    ``"hour"`` (the rollups of that size) or ``"raw"`` (the points and events themselves). ``None`` is an
    open end."""

    source: str
    since_ns: int | None
    until_ns: int | None


Rollup = tuple[str, int]  # ("week" | "day" | "hour", its length in ns)
ROLLUPS: tuple[Rollup, ...] = tuple(sorted(TIERS.items(), key=lambda rollup: -rollup[1]))  # largest first


def split(since_ns: int | None, until_ns: int | None, rollups: Sequence[Rollup] = ROLLUPS) -> list[RangePart]:
    """Cut ``[since_ns, until_ns)`` into the largest whole periods of the first rollup, the rest at either end
    into whole periods of the next ones, and what is left into raw parts."""
    if since_ns is not None and until_ns is not None and since_ns >= until_ns:
        return []
    if not rollups:
        return [RangePart("raw", since_ns, until_ns)]
    (source, size), finer = rollups[0], rollups[1:]
    first = -(-since_ns // size) * size if since_ns is not None else None  # the first whole period's start
    last = until_ns // size * size if until_ns is not None else None  # the end of the last whole period
    if first is not None and last is not None and first >= last:
        return split(since_ns, until_ns, finer)
    head = split(since_ns, first, finer) if since_ns is not None else []
    tail = split(last, until_ns, finer) if until_ns is not None else []
    return [*head, RangePart(source, first, last), *tail]


def plan(
    since_ns: int | None,
    until_ns: int | None,
    *,
    days_closed_until: int,
    now_ns: int,
    bucket_ns: int | None = None,
    raw_only: bool = False,
) -> list[RangePart]:
    """The parts of a range to read, each from its table.

    - ``raw_only`` (a filter the rollups cannot answer, such as a session): the range is one raw part.
    - Days before ``days_closed_until`` have their daily sums, and the weeks that ended by then their weekly
      sums; later days (today, and any after) are read by the hour.
    - A chart's buckets must be whole periods of the rollups it reads: a chart by the hour reads no days.
    - A range that runs up to now is cut at the start of the current hour: the part before it no longer
      receives data, so its answer can be kept; only the current hour's part is read every time.
    """
    if raw_only:
        return [RangePart("raw", since_ns, until_ns)]
    rollups = tuple((source, size) for source, size in ROLLUPS if not bucket_ns or bucket_ns % size == 0)
    this_hour = now_ns // HOUR_NS * HOUR_NS
    if until_ns is None and (since_ns is None or since_ns < this_hour):
        return [
            *_parts(since_ns, this_hour, rollups, days_closed_until),
            *_parts(this_hour, None, rollups, days_closed_until),
        ]
    return _parts(since_ns, until_ns, rollups, days_closed_until)


def _parts(
    since_ns: int | None, until_ns: int | None, rollups: tuple[Rollup, ...], days_closed_until: int
) -> list[RangePart]:
    """``split``, with each tier read only where it has its sums: weeks up to the last that ended by
    ``days_closed_until``, days up to it, hours always."""
    if not rollups or rollups[0][0] == "hour":
        return split(since_ns, until_ns, rollups)
    (source, size), finer = rollups[0], rollups[1:]
    complete_until = days_closed_until // size * size
    if until_ns is not None and until_ns <= complete_until:
        return split(since_ns, until_ns, rollups)
    head = split(since_ns, complete_until, rollups) if since_ns is None or since_ns < complete_until else []
    if not any(part.source == source for part in head):  # no whole period of this tier: the next one
        return _parts(since_ns, until_ns, finer, days_closed_until)
    return [*head, *_parts(complete_until, until_ns, finer, days_closed_until)]
