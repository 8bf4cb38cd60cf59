"""One session in detail: what happened in it, in order."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..records import Attributes
from . import queries
from .event_rows import whole_attributes
from .schema import EVENT_MEASURES, HOUR_NS

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


# What a span's row tells of it: what Claude Code's spans carry (an LLM request's model and tokens, a tool's
# name, a permission's decision...), never conversation text.
SPAN_FIELDS = (
    "model",
    "llm_request.context",
    "query_source",
    "query_source_safe",
    "speed",
    "effort",
    "attempt",
    "status_code",
    "success",
    "stop_reason",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "ttft_ms",
    "tool_name",
    "decision",
    "source",
    "result_tokens",
    "bash_command_class",
    "error",
    "error.type",
    "interaction.sequence",
    "user_prompt_length",
    "agent_type",
    "hook_event",
    "hook_name",
    "mcp_server.name",
)
MAX_SPANS = 5000  # a session's spans /api/sessions answers with at most
# Spans are read by their start, in the session's own time range (from its points and events) widened by
# this much: a span starts a little before the event that tells of it, and the session's first point may come
# later.
SPAN_MARGIN_NS = HOUR_NS
STATUS_ERROR = 2  # OTLP's STATUS_CODE_ERROR


def session_traces(
    conn: sqlite3.Connection, session_id: str, limit: int = MAX_SPANS, *, email: str | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """A session's spans (with ``email``, only that user.email's), trace by trace in order of their start: in
    each, every span after its parent, its children in order of their start, with its depth under the trace's
    root. A span whose parent is not stored is a root itself. Then whether there were more than ``limit``."""
    active = conn.execute(queries.SESSION_SPAN, (session_id,)).fetchone()
    if active is None:
        return [], False
    first, last = active
    query = queries.session_spans(session_id, first - SPAN_MARGIN_NS, last + SPAN_MARGIN_NS, limit + 1, email)
    rows = conn.execute(query.sql, query.params).fetchall()
    traces: dict[str, list[dict[str, Any]]] = {}
    for trace_id, span_id, parent, name, start_ns, end_ns, status, attrs in rows[:limit]:
        found = json.loads(attrs)
        traces.setdefault(trace_id, []).append(
            {
                "span_id": span_id,
                "parent_span_id": parent,
                "name": name,
                "start_ns": start_ns,
                "end_ns": max(end_ns, start_ns),  # 0 when it had none
                "error": status == STATUS_ERROR,
                "fields": {k: found[k] for k in SPAN_FIELDS if k in found},
            }
        )
    found_traces = [
        {
            "trace_id": trace_id,
            "start_ns": min(s["start_ns"] for s in spans),
            "end_ns": max(s["end_ns"] for s in spans),
            "spans": _as_tree(spans),
        }
        for trace_id, spans in traces.items()  # in order of their first span's start, as read
    ]
    return found_traces, len(rows) > limit


def _as_tree(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans (in order of their start) depth first, each with its ``depth``."""
    ids = {s["span_id"] for s in spans}
    children: dict[str, list[dict[str, Any]]] = {}
    roots: list[dict[str, Any]] = []
    for s in spans:
        if s["parent_span_id"] in ids and s["parent_span_id"] != s["span_id"]:
            children.setdefault(s["parent_span_id"], []).append(s)
        else:
            roots.append(s)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    # Roots first, then any span a loop of parents kept from being reached (a client's ids can be anything).
    for root in [*roots, *spans]:
        stack = [(root, 0)]
        while stack:
            s, depth = stack.pop()
            if s["span_id"] in seen:
                continue
            seen.add(s["span_id"])
            out.append({**s, "depth": depth})
            stack.extend((child, depth + 1) for child in reversed(children.get(s["span_id"], [])))
    return out
