"""How many new series, and new kinds of event, each client may create: the defence against a flood of
attribute sets (a new series per point), which would otherwise grow the store and every answer without end."""

from __future__ import annotations

import math
from collections import OrderedDict

MINUTE_NS = 60_000_000_000
MAX_SOURCES = 100_000  # sources whose use of the limit below is remembered at a time


class NewSeriesLimit:
    """How many new series each source (a client's address) may still create, and, counted apart, how many
    new kinds of event (an event name with new attributes: a new event family).

    Each source has a bucket that holds up to ``per_minute`` and fills up again at that rate: a client may
    create that many at once, and that many a minute after. A bucket that has filled up is the same as none,
    so only the sources that created something in the last minute are remembered (at most MAX_SOURCES; past
    that, the longest unused are forgotten, which only ever gives them more). ``per_minute`` 0 or None: no
    limit."""

    def __init__(self, per_minute: int | None) -> None:
        self.per_minute = per_minute if per_minute and per_minute > 0 else None
        # (what, source): (what is left, as of when), in order of last use
        self._buckets: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()

    @property
    def sources(self) -> int:
        """Buckets remembered: (what, source) pairs that created something in the last minute."""
        return len(self._buckets)

    def allowance(self, what: str, source: str, now_ns: int) -> float:
        """How many ``what`` ("series" or "events") the source may create at ``now_ns``."""
        if self.per_minute is None:
            return math.inf
        left, as_of = self._buckets.get((what, source), (self.per_minute, now_ns))
        return min(self.per_minute, left + max(0, now_ns - as_of) * self.per_minute / MINUTE_NS)

    def spend(self, what: str, source: str, count: int, now_ns: int) -> None:
        if self.per_minute is None or count <= 0:
            return
        key = (what, source)
        self._buckets[key] = (max(0.0, self.allowance(what, source, now_ns) - count), now_ns)
        self._buckets.move_to_end(key)
        while self._buckets:  # forget the buckets that are full again, and the oldest past MAX_SOURCES
            _, as_of = next(iter(self._buckets.values()))
            if now_ns - as_of < MINUTE_NS and len(self._buckets) <= MAX_SOURCES:
                break
            self._buckets.popitem(last=False)


class Allowance:
    """What one transaction's batches may create, per (what, source), from the limit as it stands."""

    def __init__(self, limit: NewSeriesLimit, now_ns: int) -> None:
        self.limit = limit
        self.now_ns = now_ns
        self.used: dict[tuple[str, str], int] = {}

    def take(self, what: str, source: str) -> bool:
        """One more new ``what`` for the source, if it may create it."""
        if self.limit.per_minute is None:
            return True
        used = self.used.get((what, source), 0)
        if used + 1 > self.limit.allowance(what, source, self.now_ns):
            return False
        self.used[(what, source)] = used + 1
        return True

    def spend(self) -> None:
        """The transaction is committed: what it created counts against the limit."""
        for (what, source), count in self.used.items():
            self.limit.spend(what, source, count, self.now_ns)
