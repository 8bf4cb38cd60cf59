"""Questions asked of the store. Tokens and cost come from the metrics only: the ``api_request`` events carry
copies of the same numbers, and adding both would count everything twice."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .schema import COMMON_COLUMNS, EVENT_COLUMNS

TOKEN_TYPES = {"input": "input", "output": "output", "cacheRead": "cache_read", "cacheCreation": "cache_creation"}
SUMMED_METRICS = (
    "claude_code.session.count",
    "claude_code.cost.usage",
    "claude_code.token.usage",
    "claude_code.lines_of_code.count",
    "claude_code.commit.count",
    "claude_code.pull_request.count",
    "claude_code.code_edit_tool.decision",
    "claude_code.active_time.total",
)
COUNTED_EVENTS = ("user_prompt", "api_request", "api_error")


class QueryError(ValueError):
    """A filter or time the user gave cannot be understood."""


@dataclass(frozen=True)
class Filters:
    since_ns: int | None = None
    until_ns: int | None = None
    attrs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, since: str | None = None, until: str | None = None, filters: list[str] | tuple[str, ...] = (),
              now: datetime | None = None) -> Filters:  # fmt: skip
        now = now or datetime.now(UTC)
        return cls(
            since_ns=parse_time(since, now) if since else None,
            until_ns=parse_time(until, now) if until else None,
            attrs=tuple(parse_filter(f) for f in filters),
        )


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime) -> int:
    """``7d``, ``24h``, ``30m`` (that long before now) or an ISO 8601 time (UTC unless it says otherwise)."""
    match = _RELATIVE.match(text)
    if match:
        moment = now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    else:
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise QueryError(f"cannot read time {text!r}: use ISO 8601 (2026-01-31T12:00) or 7d, 24h, 30m") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000) * 1000


def parse_filter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise QueryError(f"cannot read filter {text!r}: use KEY=VALUE, e.g. team.id=platform")
    if '"' in key:
        raise QueryError(f"filter key {key!r} may not contain a double quote")
    return key, value


def _json_path(key: str) -> str:
    return f'$."{key}"'


def series_where(filters: Filters, points: str = "p", series: str = "s") -> tuple[str, list[Any]]:
    """SQL conditions (joined by AND) selecting the points of series that match the filters."""
    clauses, params = [], []
    if filters.since_ns is not None:
        clauses.append(f"{points}.time_ns >= ?")
        params.append(filters.since_ns)
    if filters.until_ns is not None:
        clauses.append(f"{points}.time_ns < ?")
        params.append(filters.until_ns)
    for key, value in filters.attrs:
        if key in COMMON_COLUMNS:
            clauses.append(f"{series}.{COMMON_COLUMNS[key]} = ?")
            params.append(value)
        else:
            clauses.append(f"{series}.id IN (SELECT series_id FROM series_attrs WHERE key = ? AND value = ?)")
            params += [key, value]
    return " AND ".join(clauses) or "1", params


def events_where(filters: Filters, events: str = "e") -> tuple[str, list[Any]]:
    clauses, params = [], []
    if filters.since_ns is not None:
        clauses.append(f"{events}.time_ns >= ?")
        params.append(filters.since_ns)
    if filters.until_ns is not None:
        clauses.append(f"{events}.time_ns < ?")
        params.append(filters.until_ns)
    for key, value in filters.attrs:
        if key in EVENT_COLUMNS:
            clauses.append(f"{events}.{EVENT_COLUMNS[key]} = ?")
            params.append(value)
        else:
            clauses.append(f"CAST(json_extract({events}.attrs, ?) AS TEXT) = ?")
            params += [_json_path(key), value]
    return " AND ".join(clauses) or "1", params


def _tokens() -> dict[str, float]:
    return dict.fromkeys(TOKEN_TYPES.values(), 0)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _round(value: float | None, places: int = 9) -> float | None:
    return None if value is None else round(value, places)


def summary(conn: sqlite3.Connection, filters: Filters = Filters()) -> dict[str, Any]:
    where, params = series_where(filters)
    rows = conn.execute(
        f"""
        SELECT s.metric, s.type, s.model, s.user_id, s.decision, SUM(p.value)
        FROM series s JOIN points p ON p.series_id = s.id
        WHERE s.kind = 'sum' AND s.metric IN ({", ".join("?" * len(SUMMED_METRICS))}) AND {where}
        GROUP BY s.metric, s.type, s.model, s.user_id, s.decision
        """,
        [*SUMMED_METRICS, *params],
    ).fetchall()

    total: dict[str, Any] = {
        "sessions": 0, "cost_usd": 0.0, "tokens": _tokens(), "lines_of_code": {"added": 0, "removed": 0},
        "commits": 0, "pull_requests": 0, "edit_decisions": {"accept": 0, "reject": 0},
        "active_time_seconds": {"user": 0.0, "cli": 0.0},
    }  # fmt: skip
    by_model: dict[str, dict[str, Any]] = {}
    by_user: dict[str, dict[str, Any]] = {}

    def model_row(model: str | None) -> dict[str, Any]:
        key = model or "unknown"
        return by_model.setdefault(key, {"model": key, "cost_usd": 0.0, "tokens": _tokens(), "api_requests": 0})

    def user_row(user: str | None) -> dict[str, Any]:
        key = user or "unknown"
        return by_user.setdefault(
            key,
            {"user_id": key, "user_email": None, "sessions": 0, "cost_usd": 0.0, "tokens": _tokens(),
             "lines_of_code": {"added": 0, "removed": 0}, "commits": 0, "pull_requests": 0, "prompts": 0},
        )  # fmt: skip

    for metric, kind, model, user, decision, value in rows:
        name = metric.removeprefix("claude_code.")
        if name == "session.count":
            total["sessions"] += value
            user_row(user)["sessions"] += value
        elif name == "cost.usage":
            total["cost_usd"] += value
            model_row(model)["cost_usd"] += value
            user_row(user)["cost_usd"] += value
        elif name == "token.usage" and kind in TOKEN_TYPES:
            token_type = TOKEN_TYPES[kind]
            total["tokens"][token_type] += value
            model_row(model)["tokens"][token_type] += value
            user_row(user)["tokens"][token_type] += value
        elif name == "lines_of_code.count" and kind in ("added", "removed"):
            total["lines_of_code"][kind] += value
            user_row(user)["lines_of_code"][kind] += value
        elif name == "commit.count":
            total["commits"] += value
            user_row(user)["commits"] += value
        elif name == "pull_request.count":
            total["pull_requests"] += value
            user_row(user)["pull_requests"] += value
        elif name == "code_edit_tool.decision" and decision in ("accept", "reject"):
            total["edit_decisions"][decision] += value
        elif name == "active_time.total" and kind in ("user", "cli"):
            total["active_time_seconds"][kind] += value

    ev_where, ev_params = events_where(filters)
    events = {name: (0, None) for name in COUNTED_EVENTS}
    for name, count, avg_length in conn.execute(
        f"""
        SELECT e.name, COUNT(*), AVG(CAST(json_extract(e.attrs, '$.prompt_length') AS REAL))
        FROM events e WHERE e.name IN ({", ".join("?" * len(COUNTED_EVENTS))}) AND {ev_where}
        GROUP BY e.name
        """,
        [*COUNTED_EVENTS, *ev_params],
    ):
        events[name] = (count, avg_length)
    for model, count in conn.execute(
        f"SELECT e.model, COUNT(*) FROM events e WHERE e.name = 'api_request' AND {ev_where} GROUP BY e.model",
        ev_params,
    ):
        model_row(model)["api_requests"] += count
    for user, email, count in conn.execute(
        f"""SELECT e.user_id, MAX(e.user_email), SUM(e.name = 'user_prompt') FROM events e
        WHERE e.name IN ({", ".join("?" * len(COUNTED_EVENTS))}) AND {ev_where} GROUP BY e.user_id""",
        [*COUNTED_EVENTS, *ev_params],
    ):
        row = user_row(user)
        row["prompts"] += count
        row["user_email"] = row["user_email"] or email

    tokens = total["tokens"]
    all_input = tokens["input"] + tokens["cache_read"] + tokens["cache_creation"]
    active = total["active_time_seconds"]
    return _integral(
        {
            **total,
            "cost_usd": _round(total["cost_usd"]),
            "prompts": events["user_prompt"][0],
            "avg_prompt_length": _round(events["user_prompt"][1], 3),
            "api_requests": events["api_request"][0],
            "api_errors": events["api_error"][0],
            "cache_efficiency": _round(_ratio(tokens["cache_read"], all_input), 6),
            "cost_per_1k_output_tokens": _round(_ratio(total["cost_usd"] * 1000, tokens["output"]), 9),
            "productivity_ratio": _round(_ratio(active["cli"], active["user"]), 6),
            "by_model": sorted(
                ({**row, "cost_usd": _round(row["cost_usd"])} for row in by_model.values()),
                key=lambda row: (-row["cost_usd"], row["model"]),
            ),
            "by_user": sorted(
                ({**row, "cost_usd": _round(row["cost_usd"])} for row in by_user.values()),
                key=lambda row: (-row["cost_usd"], row["user_id"]),
            ),
        }
    )


def _integral(value: Any) -> Any:
    """Counts are sums of floats in SQL; show whole numbers as ints (1, not 1.0)."""
    if isinstance(value, dict):
        return {k: v if k in _KEEP_FLOAT else _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_KEEP_FLOAT = frozenset({"cost_usd", "cache_efficiency", "cost_per_1k_output_tokens", "productivity_ratio",
                         "avg_prompt_length", "active_time_seconds"})  # fmt: skip
