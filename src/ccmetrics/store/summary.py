"""The summary: the headline numbers, by model and by user.

Tokens and cost come from the metrics only: the ``api_request`` events carry copies of the same numbers,
and adding both would count everything twice.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .facts import NO_FILTERS, AnswerCache, Facts, FamilyCache
from .filters import Filters

TOKEN_TYPES = {
    "input": "input",
    "output": "output",
    "cacheRead": "cache_read",
    "cacheCreation": "cache_creation",
}
COST = "claude_code.cost.usage"
TOKENS = "claude_code.token.usage"
SESSIONS = "claude_code.session.count"
LINES = "claude_code.lines_of_code.count"
COMMITS = "claude_code.commit.count"
PULL_REQUESTS = "claude_code.pull_request.count"
DECISIONS = "claude_code.code_edit_tool.decision"
ACTIVE = "claude_code.active_time.total"


def _tokens() -> dict[str, float]:
    return dict.fromkeys(TOKEN_TYPES.values(), 0)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _round(value: float | None, places: int = 9) -> float | None:
    return None if value is None else round(value, places)


def summary(
    conn: sqlite3.Connection,
    filters: Filters = NO_FILTERS,
    cache: FamilyCache | None = None,
    answers: AnswerCache | None = None,
) -> dict[str, Any]:
    f = Facts(conn, filters, cache, answers)
    by_model: dict[str, dict[str, Any]] = {}
    by_user: dict[str, dict[str, Any]] = {}

    def model_row(model: Any) -> dict[str, Any]:
        key = "unknown" if model is None else str(model)
        return by_model.setdefault(
            key, {"model": key, "cost_usd": 0.0, "tokens": _tokens(), "api_requests": 0}
        )

    def user_row(user: Any) -> dict[str, Any]:
        key = "unknown" if user is None else str(user)
        return by_user.setdefault(
            key,
            {
                "user_id": key,
                "user_email": None,
                "sessions": 0,
                "cost_usd": 0.0,
                "tokens": _tokens(),
                "lines_of_code": {"added": 0, "removed": 0},
                "commits": 0,
                "pull_requests": 0,
                "prompts": 0,
            },
        )

    tokens = _tokens()
    for (kind, model, user), value in f.metric_totals(TOKENS, ("type", "model", "user.id")).items():
        if kind in TOKEN_TYPES:
            tokens[TOKEN_TYPES[kind]] += value
            model_row(model)["tokens"][TOKEN_TYPES[kind]] += value
            user_row(user)["tokens"][TOKEN_TYPES[kind]] += value
    for (model, user), value in f.metric_totals(COST, ("model", "user.id")).items():
        model_row(model)["cost_usd"] += value
        user_row(user)["cost_usd"] += value
    for (user,), value in f.metric_totals(SESSIONS, ("user.id",)).items():
        user_row(user)["sessions"] += value
    for (kind, user), value in f.metric_totals(LINES, ("type", "user.id")).items():
        if kind in ("added", "removed"):
            user_row(user)["lines_of_code"][kind] += value
    for (user,), value in f.metric_totals(COMMITS, ("user.id",)).items():
        user_row(user)["commits"] += value
    for (user,), value in f.metric_totals(PULL_REQUESTS, ("user.id",)).items():
        user_row(user)["pull_requests"] += value
    for (model,), count in f.event_counts("api_request", ("model",)).items():
        model_row(model)["api_requests"] += count
    for (user,), count in f.event_counts("user_prompt", ("user.id",)).items():
        user_row(user)["prompts"] += count
    for (user, email), _ in f.metric_totals(SESSIONS, ("user.id", "user.email")).items():
        if email:
            user_row(user)["user_email"] = email

    cost = f.metric_total(COST)
    all_input = tokens["input"] + tokens["cache_read"] + tokens["cache_creation"]
    active = {kind: f.metric_total(ACTIVE, type=kind) for kind in ("user", "cli")}
    prompt = f.event_stats("user_prompt", "prompt_length").get(())
    return _integral(
        {
            "sessions": f.metric_total(SESSIONS),
            "cost_usd": _round(cost),
            "tokens": tokens,
            "lines_of_code": {kind: f.metric_total(LINES, type=kind) for kind in ("added", "removed")},
            "commits": f.metric_total(COMMITS),
            "pull_requests": f.metric_total(PULL_REQUESTS),
            "edit_decisions": {d: f.metric_total(DECISIONS, decision=d) for d in ("accept", "reject")},
            "active_time_seconds": active,
            "prompts": sum(f.event_counts("user_prompt").values()),
            "avg_prompt_length": _round(prompt.mean if prompt else None, 3),
            "api_requests": sum(f.event_counts("api_request").values()),
            "api_errors": sum(f.event_counts("api_error").values()),
            "cache_efficiency": _round(_ratio(tokens["cache_read"], all_input), 6),
            "cost_per_1k_output_tokens": _round(_ratio(cost * 1000, tokens["output"]), 9),
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
