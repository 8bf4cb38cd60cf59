"""What each rule measures now, read from the store through the same ``Selection`` as the dashboard: exact
sums from the rollups and raw points, never a sample.

``measure`` runs on one of the store's reader threads, in one read transaction (``Store.read``); it returns,
per rule, the alerts whose condition holds (by their labels), each with the value that made it hold.
"""

from __future__ import annotations

import calendar
import math
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..metrics import API_ERROR, API_REQUEST, COST, TOKENS
from ..store.caches import AnswerCache, FamilyCache
from ..store.filters import Filters
from ..store.selection import Selection
from .rules import Kind, Period, Rule

SECOND = 1_000_000_000
Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs: an alert's identity within its rule


@dataclass(frozen=True)
class Observation:
    """An alert whose condition holds now: its value, and what a notification says about it."""

    value: float
    annotations: Mapping[str, str] = field(default_factory=dict)


Observations = dict[str, dict[Labels, Observation]]  # rule name -> labels -> observation


@dataclass(frozen=True)
class BudgetStatus:
    """One group's spend in a budget's current period."""

    rule: str
    group: str | None
    period: Period
    period_start_ns: int
    period_end_ns: int
    spend: float
    amount: float
    projected: float | None

    @property
    def percent(self) -> float:
        return 100 * self.spend / self.amount


def period_bounds(period: Period, now_ns: int) -> tuple[int, int]:
    """The current day, week (from Monday) or month, in UTC, around ``now_ns``."""
    now = datetime.fromtimestamp(now_ns / SECOND, UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.DAY:
        start, end = day, day + timedelta(days=1)
    elif period is Period.WEEK:
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = start + timedelta(days=calendar.monthrange(start.year, start.month)[1])
    return _ns(start), _ns(end)


def _ns(moment: datetime) -> int:
    return calendar.timegm(moment.utctimetuple()) * SECOND


def projection(spend: float, start_ns: int, end_ns: int, now_ns: int) -> float | None:
    """The spend at the period's end if it goes on at the period's rate so far."""
    elapsed = now_ns - start_ns
    if elapsed <= 0:
        return None
    return spend * (end_ns - start_ns) / elapsed


class Reading:
    """The selections of one evaluation round, shared by the rules that ask for the same range."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        now_ns: int,
        family_cache: FamilyCache | None = None,
        answers: AnswerCache | None = None,
    ) -> None:
        self.conn = conn
        self.now_ns = now_ns
        self.family_cache = family_cache or FamilyCache()
        self.answers = answers
        self._selections: dict[Filters, Selection] = {}

    def selection(self, since_ns: int, until_ns: int, attrs: tuple[tuple[str, str], ...]) -> Selection:
        """The data dated in ``[since_ns, until_ns)``."""
        filters = Filters(since_ns, until_ns, attrs)
        found = self._selections.get(filters)
        if found is None:
            found = self._selections[filters] = Selection(self.conn, filters, self.family_cache, self.answers)
        return found

    def recent(self, rule: Rule, span_s: float, ago_s: float = 0.0) -> Selection:
        """The data of the ``span_s`` seconds that end ``ago_s`` before now, as Prometheus reads a window:
        after its start, up to and including its end (the sample at the evaluation's moment counts)."""
        end = self.now_ns - int(ago_s * SECOND)
        return self.selection(end - int(span_s * SECOND) + 1, end + 1, rule.filters)


def _by(rule: Rule) -> tuple[str, ...]:
    return (rule.group_by,) if rule.group_by else ()


def _labels(rule: Rule, key: tuple[object, ...], **extra: str) -> Labels:
    labels = dict(rule.labels)
    if rule.group_by:
        labels[rule.group_by] = "" if key[0] is None else str(key[0])
    labels.update(extra)
    return tuple(sorted(labels.items()))


def _money(value: float) -> str:
    return f"${value:,.2f}"


def measure(reading: Reading, rules: Iterable[Rule]) -> Observations:
    return {rule.name: _measure(reading, rule) for rule in rules}


def _measure(r: Reading, rule: Rule) -> dict[Labels, Observation]:
    out: dict[Labels, Observation] = {}
    by = _by(rule)
    if rule.kind is Kind.SPEND:
        for key, value in r.recent(rule, rule.window_s).metric_totals(COST, by).items():
            if value > rule.threshold:
                out[_labels(rule, key)] = Observation(value, {"value": _money(value)})
    elif rule.kind is Kind.TOKENS_PER_MINUTE:
        minutes = rule.window_s / 60
        for key, value in r.recent(rule, rule.window_s).metric_totals(TOKENS, by).items():
            if value / minutes > rule.threshold:
                out[_labels(rule, key)] = Observation(
                    value / minutes, {"value": f"{value / minutes:,.0f}/min"}
                )
    elif rule.kind is Kind.ERROR_RATE:
        sel = r.recent(rule, rule.window_s)
        errors = sel.event_counts(API_ERROR, by)
        requests = sel.event_counts(API_REQUEST, by)
        for key in set(errors) | set(requests):
            failed = errors.get(key, 0)
            total = failed + requests.get(key, 0)
            if total >= rule.min_requests and failed / total > rule.threshold:
                out[_labels(rule, key)] = Observation(
                    failed / total, {"value": f"{100 * failed / total:.1f}% of {total} requests"}
                )
    elif rule.kind is Kind.SPIKE:
        current = r.recent(rule, rule.window_s).metric_totals(COST, by)
        before = r.recent(rule, rule.baseline_s, ago_s=rule.window_s).metric_totals(COST, by)
        share = rule.window_s / rule.baseline_s
        for key, value in current.items():
            average = before.get(key, 0.0) * share
            if value >= rule.min_spend and value > rule.threshold * average:
                factor = value / average if average else math.inf
                out[_labels(rule, key)] = Observation(
                    value,
                    {
                        "value": _money(value),
                        "average": _money(average),
                        "factor": "new spend" if math.isinf(factor) else f"{factor:.1f}x",
                    },
                )
    elif rule.kind is Kind.SILENCE:
        seen = r.recent(rule, rule.seen_within_s).seen(by)
        active = r.recent(rule, rule.window_s).seen(by)
        for key in seen - active:
            if key and key[0] is None:
                continue  # data that names no such attribute is nobody's to miss
            out[_labels(rule, key)] = Observation(rule.window_s, {"quiet_for": f"{rule.window_s / 60:g} min"})
    elif rule.kind is Kind.BUDGET:
        for status in budget_statuses(r, rule):
            for percent in rule.warn_at:
                if status.spend >= status.amount * percent / 100:
                    out[_labels(rule, (status.group,), threshold=f"{percent:g}")] = Observation(
                        status.spend,
                        {
                            "value": _money(status.spend),
                            "budget": _money(status.amount),
                            "percent": f"{status.percent:.0f}%",
                            "projected": "" if status.projected is None else _money(status.projected),
                            "period": status.period.value,
                        },
                    )
    return out


def budget_statuses(r: Reading, rule: Rule) -> list[BudgetStatus]:
    """Each group's spend in the budget's current period, and its projection to the period's end."""
    assert rule.period is not None
    start, end = period_bounds(rule.period, r.now_ns)
    totals = r.selection(start, r.now_ns + 1, rule.filters).metric_totals(COST, _by(rule))
    statuses = []
    for key, spend in sorted(totals.items(), key=lambda item: -item[1]):
        group = None if not key else ("" if key[0] is None else str(key[0]))
        statuses.append(
            BudgetStatus(
                rule.name,
                group,
                rule.period,
                start,
                end,
                spend,
                rule.threshold,
                projection(spend, start, end, r.now_ns),
            )
        )
    return statuses
