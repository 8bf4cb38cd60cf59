"""How an event is kept: its family holds what describes its kind, its row what is its own, and its session
and prompt ids are stored once in ``strings``. ``whole_attributes`` puts an event's attributes back together.

An event's family is its name, the attributes that describe a kind of event rather than one event (the
resource's among them) and, when the body is a name (Claude Code's ``claude_code.api_request``), its body.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..records import Attributes, Event
from .schema import EVENT_DIMENSIONS, EVENT_MEASURES, EVENT_STRINGS, NOT_IN_FAMILY

_NAME = re.compile(r"[\w.\-]{1,128}")  # a body that names the event rather than telling something


@dataclass(frozen=True, slots=True)
class EventKind:
    """What an event's family holds."""

    name: str
    attrs: Attributes
    body: str | None  # the body of every event of the kind, when it is a name


def event_kind(event: Event) -> EventKind:
    attrs = {
        k: v
        for k, v in event.attrs.items()
        if (k in event.resource_keys or k in EVENT_DIMENSIONS) and k not in NOT_IN_FAMILY
    }
    body = event.body if event.body is not None and _NAME.fullmatch(event.body) else None
    return EventKind(event.name, attrs, body)


def own_attributes(attrs: Attributes, family_attrs: Mapping[str, Any]) -> Attributes:
    """The attributes an event's row keeps as JSON: those its family does not hold, but for the strings its
    row refers to (``EVENT_STRINGS``) when text, and its measures when numbers (they have columns)."""
    return {
        k: v
        for k, v in attrs.items()
        if not (k in family_attrs and _same(family_attrs[k], v))
        and not (k in EVENT_STRINGS and type(v) is str)
        and not (k in EVENT_MEASURES and measure(v) is not None)
    }


def measure(value: Any) -> int | float | None:
    """A measure as its column keeps it: a finite number, integer or real as it came."""
    if type(value) in (int, float) and math.isfinite(value):
        return value  # type: ignore[no-any-return]
    return None


def whole_attributes(
    family_attrs: Attributes,
    own: Attributes,
    columns: Mapping[str, str | int | float | None],
) -> Attributes:
    """An event's attributes as they arrived, from its family's, its row's JSON and its columns (by
    attribute: the strings it refers to, ``session.id`` and ``prompt.id``, and its measures)."""
    whole = {**family_attrs, **own}
    for key, value in columns.items():
        if value is not None and key not in own:
            whole[key] = value
    return whole


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event as its row in ``events`` holds it."""

    key: bytes
    family_id: int
    time_ns: int
    session: int | None  # strings.id
    prompt: int | None
    measures: tuple[int | float | None, ...]  # EVENT_MEASURES (see ``measure``)
    sample: int
    attrs: str  # JSON: own_attributes
    body: str | None  # when its family does not hold it

    def params(self) -> tuple[Any, ...]:
        """The row as ``INSERT_EVENT`` takes it."""
        return (
            self.key,
            self.family_id,
            self.time_ns,
            self.session,
            self.prompt,
            *self.measures,
            self.sample,
            self.attrs,
            self.body,
        )


INSERT_EVENT = (
    f"INSERT OR IGNORE INTO events (key, family_id, time_ns, {', '.join(EVENT_STRINGS.values())}, "
    f"{', '.join(EVENT_MEASURES)}, sample, attrs, body) "
    f"VALUES ({', '.join('?' * (3 + len(EVENT_STRINGS) + len(EVENT_MEASURES) + 3))})"
)
