"""The budget panels of the panel catalogue: each budget's spend in its current period against its amount,
and the spend projected at the period's end. The budgets are those of the rules ``serve --alerts`` runs
(``use``); without any, the panels are empty."""

from __future__ import annotations

import time
from typing import Any

from ..store.selection import Selection
from .evaluate import Reading
from .rules import NO_RULES, Rules

_rules: Rules = NO_RULES


def use(rules: Rules) -> None:
    """The rules whose budgets the panels show (serve's, once it has read them)."""
    global _rules
    _rules = rules


def rows(selection: Selection, now_ns: int | None = None) -> list[dict[str, Any]]:
    """Each budget group's numbers now, under the attribute filters of ``selection`` (its time range is not
    used: a budget's range is its current period)."""
    from .engine import budget_rows

    now = now_ns if now_ns is not None else time.time_ns()
    reading = Reading(selection.conn, now, selection.family_cache, selection.answers)
    return budget_rows(_rules, reading, selection.filters.attrs)


COLUMNS = [
    {"key": "budget", "label": "Budget", "unit": None},
    {"key": "group", "label": "Group", "unit": None},
    {"key": "period", "label": "Period", "unit": None},
    {"key": "spend_usd", "label": "Spent", "unit": "usd"},
    {"key": "budget_usd", "label": "Budget", "unit": "usd"},
    {"key": "share", "label": "Used", "unit": "percent"},
    {"key": "projected_usd", "label": "Projected", "unit": "usd"},
]


def table(selection: Selection) -> dict[str, Any]:
    return {
        "columns": COLUMNS,
        "rows": [
            {
                "budget": row["rule"],
                "group": row["group"] if row["group"] is not None else "everyone",
                "period": row["period"],
                "spend_usd": row["spend_usd"],
                "budget_usd": row["budget_usd"],
                "share": row["percent"] / 100,
                "projected_usd": row["projected_usd"],
            }
            for row in rows(selection)
        ],
    }


def projection(selection: Selection) -> dict[str, Any]:
    """Projected spend at period end as a share of each budget."""
    return {
        "items": [
            {
                "label": f"{row['rule']} · {row['group'] if row['group'] is not None else 'everyone'}",
                "value": None if row["projected_usd"] is None else row["projected_usd"] / row["budget_usd"],
            }
            for row in rows(selection)
        ]
    }
