"""The summary: the headline numbers, by model and by user.

Tokens and cost come from the metrics only: the ``api_request`` events carry copies of the same numbers,
and adding both would count everything twice.

``by_model`` and ``by_user`` list the TOP models and users by cost; the rest are added up in one more entry,
whose ``model`` or ``user_id`` is null and whose ``others`` says how many it holds.
"""

from __future__ import annotations

import heapq
import math
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from ..metrics import (
    ACTIVE_TIME,
    ACTIVE_TIME_TYPES,
    API_ERROR,
    API_REQUEST,
    COMMITS,
    COST,
    DECISIONS,
    EDIT_DECISIONS,
    LINE_CHANGES,
    LINES,
    PULL_REQUESTS,
    SESSIONS,
    TOKENS,
    USER_PROMPT,
)
from . import numbers
from .caches import AnswerCache, FamilyCache
from .filters import Filters
from .people import NO_ALIASES, People
from .selection import NO_FILTERS, Selection
from .sources import by_place, by_source

TOKEN_TYPES = {  # the values of a token's type, and the summary's names for them
    "input": "input",
    "output": "output",
    "cacheRead": "cache_read",
    "cacheCreation": "cache_creation",
}
TOP = 100  # entries of by_model and by_user; the rest are added up in one more


def _tokens() -> dict[str, float]:
    return dict.fromkeys(TOKEN_TYPES.values(), 0)


def _round(value: float | None, places: int = 9) -> float | None:
    return None if value is None else round(value, places)


def summary(
    conn: sqlite3.Connection,
    filters: Filters = NO_FILTERS,
    cache: FamilyCache | None = None,
    answers: AnswerCache | None = None,
    aliases: Mapping[str, str] = NO_ALIASES,
) -> dict[str, Any]:
    """The headline numbers under ``filters``; each user of ``by_user`` with the name shown for them
    (``user_name``, see people.py), whose ``aliases`` the server holds."""
    sel = Selection(conn, filters, cache, answers)
    # Each number per model and per user, by field ("tokens.input"), filled in first: entries are made only
    # for the models and users listed.
    models = _Columns()
    users = _Columns()
    tokens = _tokens()
    for (kind, model, user), value in sel.metric_totals(TOKENS, ("type", "model", "user.id")).items():
        if kind in TOKEN_TYPES:
            tokens[TOKEN_TYPES[kind]] += value
            models.add(f"tokens.{TOKEN_TYPES[kind]}", model, value)
            users.add(f"tokens.{TOKEN_TYPES[kind]}", user, value)
    for (model, user), value in sel.metric_totals(COST, ("model", "user.id")).items():
        models.add("cost_usd", model, value)
        users.add("cost_usd", user, value)
    for (user,), value in sel.metric_totals(SESSIONS, ("user.id",)).items():
        users.add("sessions", user, value)
    for (kind, user), value in sel.metric_totals(LINES, ("type", "user.id")).items():
        if kind in LINE_CHANGES:
            users.add(f"lines_of_code.{kind}", user, value)
    for (user,), value in sel.metric_totals(COMMITS, ("user.id",)).items():
        users.add("commits", user, value)
    for (user,), value in sel.metric_totals(PULL_REQUESTS, ("user.id",)).items():
        users.add("pull_requests", user, value)
    for (model,), count in sel.event_counts(API_REQUEST, ("model",)).items():
        models.add("api_requests", model, count)
    for (user,), count in sel.event_counts(USER_PROMPT, ("user.id",)).items():
        users.add("prompts", user, count)
    emails: dict[str, str] = {}
    for (user, email), _ in sel.metric_totals(SESSIONS, ("user.id", "user.email")).items():
        users.add("sessions", user, 0)  # listed, as every user seen
        if email:
            emails[_name(user)] = email
    shown_users, _ = users.top()
    names = People(conn, aliases).names(u for u in shown_users if u != UNKNOWN)

    answer: dict[str, Any] = _integral(
        {
            "sessions": numbers.sessions(sel),
            "cost_usd": _round(sel.metric_total(COST)),
            "tokens": tokens,
            "lines_of_code": {kind: sel.metric_total(LINES, type=kind) for kind in LINE_CHANGES},
            "commits": sel.metric_total(COMMITS),
            "pull_requests": sel.metric_total(PULL_REQUESTS),
            "edit_decisions": {d: sel.metric_total(DECISIONS, decision=d) for d in EDIT_DECISIONS},
            "active_time_seconds": {
                kind: sel.metric_total(ACTIVE_TIME, type=kind) for kind in ACTIVE_TIME_TYPES
            },
            "prompts": numbers.events(sel, USER_PROMPT),
            "avg_prompt_length": _round(numbers.average_prompt_length(sel), 3),
            "api_requests": numbers.events(sel, API_REQUEST),
            "api_errors": numbers.events(sel, API_ERROR),
            "cache_efficiency": _round(numbers.cache_efficiency(sel), 6),
            "cost_per_1k_output_tokens": _round(numbers.cost_per_1k_output_tokens(sel), 9),
            "productivity_ratio": _round(numbers.productivity_ratio(sel), 6),
            "sources": by_source(sel, conn),  # telemetry, transcripts, both: see sources.py
            # per project and branch, as transcripts tell where sessions ran
            **by_place(conn, filters.since_ns, filters.until_ns),
            "by_model": models.entries(
                lambda name, get: {
                    "model": name,
                    "cost_usd": _round(get("cost_usd")),
                    "tokens": {kind: get(f"tokens.{kind}") for kind in TOKEN_TYPES.values()},
                    "api_requests": get("api_requests"),
                }
            ),
            "by_user": users.entries(
                lambda name, get: {
                    "user_id": name,
                    "user_email": None if name is None else emails.get(name),
                    "user_name": None if name is None else names.get(name, name),
                    "sessions": get("sessions"),
                    "cost_usd": _round(get("cost_usd")),
                    "tokens": {kind: get(f"tokens.{kind}") for kind in TOKEN_TYPES.values()},
                    "lines_of_code": {kind: get(f"lines_of_code.{kind}") for kind in LINE_CHANGES},
                    "commits": get("commits"),
                    "pull_requests": get("pull_requests"),
                    "prompts": get("prompts"),
                }
            ),
        }
    )
    return answer


UNKNOWN = "unknown"  # a model or user the data does not name


def _name(value: Any) -> str:
    return UNKNOWN if value is None else str(value)


class _Columns:
    """Numbers per field and name (a model, a user), and the entries of the TOP names by cost."""

    def __init__(self) -> None:
        self._fields: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def add(self, field: str, name: Any, value: float) -> None:
        self._fields[field][_name(name)] += value

    def top(self) -> tuple[list[str], list[str]]:
        """The TOP names by cost (then by name), and the rest."""
        names = list(set().union(*self._fields.values()))
        cost = self._fields["cost_usd"]
        order = lambda name: (-round(cost.get(name, 0.0), 9), name)  # noqa: E731
        if len(names) <= TOP + 1:
            return sorted(names, key=order), []
        shown = heapq.nsmallest(TOP, names, key=order)
        kept = set(shown)
        return shown, [name for name in names if name not in kept]

    def entries(self, entry: Callable[[str | None, Callable[[str], float]], dict[str, Any]]) -> list[Any]:
        """``entry(name, get)`` for the TOP names by cost (then by name), and one for the rest, if any, with
        name None, the sums of the rest and ``others``: how many they are."""
        shown, rest = self.top()

        def of(name: str) -> Callable[[str], float]:
            return lambda field: self._fields[field].get(name, 0)

        out = [entry(name, of(name)) for name in shown]
        if rest:
            sums = {field: math.fsum(v.get(n, 0) for n in rest) for field, v in self._fields.items()}
            out.append({**entry(None, lambda field: sums.get(field, 0)), "others": len(rest)})
        return out


def _integral(value: Any) -> Any:
    """Counts are sums of floats in SQL; show whole numbers as ints (1, not 1.0)."""
    if isinstance(value, dict):
        return {k: v if k in _KEEP_FLOAT else _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_KEEP_FLOAT = frozenset(
    {
        "cost_usd",
        "cache_efficiency",
        "cost_per_1k_output_tokens",
        "productivity_ratio",
        "avg_prompt_length",
        "active_time_seconds",
    }
)
