"""What receiving hands to storing: the records of one export, as plain typed values.

``otlp.normalize`` makes them from OTLP messages; ``store`` writes them. Both import this module and nothing
of each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A record's attributes: text, numbers and booleans (arrays and key-value lists arrive as their JSON text).
Attributes = dict[str, Any]


@dataclass(slots=True)
class Point:
    """One data point of a metric, with every attribute of its resource and its own."""

    metric: str
    unit: str
    kind: str  # sum | gauge | histogram | exponential_histogram | summary
    temporality: str | None  # delta | cumulative, for sums and histograms
    monotonic: bool
    scope: str
    attrs: Attributes
    start_ns: int
    time_ns: int
    value: float  # a sum's or gauge's value; a histogram's or summary's sum
    extra: dict[str, Any] | None = None  # a histogram's or summary's counts and buckets

    @property
    def cumulative(self) -> bool:
        """A running total, turned into increments against what is stored."""
        return self.kind == "sum" and self.temporality == "cumulative"


@dataclass(slots=True)
class Event:
    """One log record: ``user_prompt``, ``api_request``... (without Claude Code's ``claude_code.`` prefix)."""

    key: bytes  # identical records (an exporter's retry) share it: see event_key
    name: str
    time_ns: int
    attrs: Attributes  # the resource's attributes, then the record's own
    body: str | None
    resource_keys: frozenset[str] = frozenset()  # which of attrs came from the resource


@dataclass(frozen=True, slots=True)
class Span:
    """One span of a trace."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    end_ns: int
    status_code: int
    attrs: Attributes


@dataclass(frozen=True, slots=True)
class TrustedAttributes:
    """What the server knows of a sender from its credentials, not from what it claims: these attributes
    replace the client's own on every record it sends (``None``: the client's value stands)."""

    user_email: str | None = None
    team_id: str | None = None

    def attributes(self) -> Attributes:
        found = {"user.email": self.user_email, "team.id": self.team_id}
        return {key: value for key, value in found.items() if value is not None}


@dataclass
class TranscriptProgress:
    """How far an import of Claude Code's transcripts has read, stored in the same transaction as the points
    it made of them: an import that stopped halfway is started again from the same place."""

    run: int  # the import's number: its points' times carry it (see transcripts.points)
    time_ns: int
    price_table: str
    files: list[tuple[str, int, int, int]] = field(default_factory=list)  # path, size, mtime_ns, offset
    messages: list[tuple[int, int]] = field(default_factory=list)  # message key, output tokens counted


@dataclass
class Batch:
    """What one export request contributes, and what of it had to be rejected."""

    source: str = ""  # who sent it (the client's address): the limit on new series is per source
    points: list[Point] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    rejected: int = 0
    problems: list[str] = field(default_factory=list)
    transcript: TranscriptProgress | None = None  # set by an import of transcripts (see transcripts/)

    def reject(self, count: int, why: str) -> None:
        self.rejected += count
        self.note(why)

    def note(self, why: str) -> None:
        if why not in self.problems and len(self.problems) < 10:
            self.problems.append(why)

    @property
    def records(self) -> int:
        return len(self.points) + len(self.events) + len(self.spans)

    def parts(self, size: int) -> list[Batch]:
        """The batch in parts of at most ``size`` records each, for an export too large to store at once.
        Storing a record twice changes nothing, so an export stored in parts can be retried whole."""
        if self.records <= size:
            return [self]
        records: list[Point | Event | Span] = [*self.points, *self.events, *self.spans]
        parts = []
        for start in range(0, len(records), size):
            chunk = records[start : start + size]
            parts.append(
                Batch(
                    self.source,
                    points=[r for r in chunk if isinstance(r, Point)],
                    events=[r for r in chunk if isinstance(r, Event)],
                    spans=[r for r in chunk if isinstance(r, Span)],
                )
            )
        parts[0].rejected, parts[0].problems = self.rejected, self.problems
        parts[-1].transcript = self.transcript  # how far an import read: stored with its last points
        return parts


def event_key(time_ns: int, digest: bytes) -> bytes:
    """The record's own time (0 when it has none), then the hash of the record and its resource: identical
    records share it, and a store indexed by it takes new events at the end of the index, not all over it."""
    return time_ns.to_bytes(8, "big") + digest


def split_event_key(key: bytes) -> tuple[int, bytes]:
    """An ``event_key``'s parts: the record's own time (0 when it has none) and the hash."""
    return int.from_bytes(key[:8], "big"), key[8:]
