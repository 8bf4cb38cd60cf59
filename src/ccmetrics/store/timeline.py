"""One session in detail: what happened in it, in order."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..records import Attributes
from . import queries
from .event_rows import whole_attributes
from .schema import EVENT_MEASURES

TIMELINE_FIELDS = (
    "prompt.id",
    "prompt_length",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cost_usd",
    "duration_ms",
    "ttft_ms",
    "tool_name",
    "decision",
    "source",
    "success",
    "error",
    "status_code",
    "attempt",
    "response_length",
    "query_source",
    "effort",
    "speed",
    "plugin.name",
    "marketplace.name",
    "agent.name",
    "agent_type",
    "skill.name",
    "mcp_server.name",
    "mcp_tool.name",
    "hook_event",
    "hook_name",
    "start_type",
    "trigger",
    "pre_tokens",
    "post_tokens",
    "reason",
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    time_ns: int
    name: str
    attributes: Attributes  # all of them, as they arrived (conversation text redacted unless kept)
    body: str | None


def stored_events(
    conn: sqlite3.Connection,
    session_id: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    limit: int = 5000,
    *,
    email: str | None = None,
) -> list[StoredEvent]:
    """Events in order, whole: those of a session, or of a time range (the first ``limit``); with ``email``,
    only that user.email's."""
    query = queries.events(session_id, since_ns, until_ns, limit, email)
    found = []
    for time_ns, name, family_attrs, own, session, prompt_id, *measures, body in conn.execute(
        query.sql, query.params
    ):
        columns = {
            "session.id": session,
            "prompt.id": prompt_id,
            **dict(zip(EVENT_MEASURES, measures, strict=True)),
        }
        attributes = whole_attributes(json.loads(family_attrs), json.loads(own), columns)
        found.append(StoredEvent(time_ns, name, attributes, body))
    return found


def session_timeline(
    conn: sqlite3.Connection, session_id: str, limit: int = 5000, *, email: str | None = None
) -> list[dict[str, Any]]:
    """What happened in a session, in order (with ``email``, only that user.email's events). Only
    whitelisted fields: never conversation text."""
    return [
        {
            "time_ns": event.time_ns,
            "name": event.name,
            "fields": {k: event.attributes[k] for k in TIMELINE_FIELDS if k in event.attributes},
        }
        for event in stored_events(conn, session_id, limit=limit, email=email)
    ]
