"""One session in detail: what happened in it, in order."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from . import queries

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
)


def session_timeline(conn: sqlite3.Connection, session_id: str, limit: int = 5000) -> list[dict[str, Any]]:
    """What happened in a session, in order. Only whitelisted fields: never conversation text."""
    timeline = []
    for time_ns, name, attrs in conn.execute(queries.SESSION_EVENTS, (session_id, limit)):
        values = json.loads(attrs)
        timeline.append(
            {
                "time_ns": time_ns,
                "name": name,
                "fields": {k: values[k] for k in TIMELINE_FIELDS if k in values},
            }
        )
    return timeline
