"""The numbers that both the summary and the panels show, each worked out here once, from a ``Selection``."""

from __future__ import annotations

import math

from ..metrics import ACTIVE_TIME, COST, INPUT_TOKEN_TYPES, LINES, SESSIONS, TOKENS, USER_PROMPT
from .selection import Selection


def ratio(numerator: float, denominator: float) -> float | None:
    """None for a zero denominator, and where extreme inputs overflow."""
    value = numerator / denominator if denominator else None
    return value if value is None or math.isfinite(value) else None


def sessions(selection: Selection) -> float:
    """Sessions started; under a filter the session counter cannot be split by (a model), the sessions that
    have data under it: the sessions that used that model."""
    if selection.unsplit(SESSIONS):
        return float(selection.session_count())
    return selection.metric_total(SESSIONS)


def events(selection: Selection, name: str) -> int:
    """How many events of a name there were."""
    return sum(selection.event_counts(name).values())


def cache_efficiency(selection: Selection) -> float | None:
    """Cache reads as a share of every input token (input, cache read, cache creation)."""
    tokens = selection.metric_totals(TOKENS, ("type",))
    return ratio(tokens.get(("cacheRead",), 0), sum(tokens.get((kind,), 0) for kind in INPUT_TOKEN_TYPES))


def cost_per_1k_output_tokens(selection: Selection) -> float | None:
    return ratio(selection.metric_total(COST) * 1000, selection.metric_total(TOKENS, type="output"))


def productivity_ratio(selection: Selection) -> float | None:
    """CLI active time per second of user active time."""
    active = selection.metric_total
    return ratio(active(ACTIVE_TIME, type="cli"), active(ACTIVE_TIME, type="user"))


def average_prompt_length(selection: Selection) -> float | None:
    stats = selection.event_stats(USER_PROMPT, "prompt_length").get(())
    return stats.mean if stats else None


def net_lines(selection: Selection) -> float:
    """Lines added less lines removed."""
    return selection.metric_total(LINES, type="added") - selection.metric_total(LINES, type="removed")
