"""The panel catalogue: every panel of the dashboard, defined once.

The built-in dashboard renders from this list, ``/api/panels/<id>`` answers from it, and the Grafana
generator renders the same panels to PromQL/LogQL: titles, units and layout cannot drift apart.
A panel's ``compute`` asks the store (through a ``Selection``) and returns plain data in the shape of its
kind:

- ``stat``, ``gauge``: ``{"value": number | None}``
- ``pie``, ``bar``: ``{"items": [{"label", "value"}]}``
- ``timeseries``, ``stacked_bars``: ``{"times": [ns], "series": [{"label", "values"}], "bucket_ns"}``
- ``table``: ``{"columns": [{"key", "label", "unit"}], "rows": [{...}]}``

Breakdowns show their TOP largest rows, slices or lines: the rest are added up in one more, labelled
``others (N)`` and marked with ``"others": N`` (how many it holds), so that they still add up to the total.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .alerts import budgets
from .metrics import (
    ACTIVE_TIME,
    API_ERROR,
    API_REQUEST,
    COMMITS,
    COST,
    DECISIONS,
    DEFAULT_GROUP_KEY,
    LINES,
    PULL_REQUESTS,
    SESSIONS,
    TOKENS,
    TOOL_DECISION,
    TOOL_RESULT,
    USER_PROMPT,
    Metric,
    label_name,
)
from .store import numbers
from .store.filters import Filters
from .store.people import NO_ALIASES, People
from .store.selection import Selection, memoized

SECOND = 1_000_000_000
BUCKETS_S = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
MAX_BUCKETS = 120
DAY_S = 86400
TOP = 20  # rows of a table or leaderboard, slices of a pie, bars and lines a panel shows; the rest: "others"

TOKEN_LABELS = {
    "input": "input",
    "output": "output",
    "cacheRead": "cache read",
    "cacheCreation": "cache creation",
}


@dataclass(frozen=True)
class PanelRequest:
    """What a request asks the panels: the data it selects, the time window to chart, the attribute the
    "by team" panels group by, and the aliases of users (by user.id) the server holds."""

    selection: Selection
    start_ns: int
    end_ns: int
    group_key: str = DEFAULT_GROUP_KEY
    aliases: Mapping[str, str] = field(default_factory=lambda: NO_ALIASES, compare=False)

    @functools.cached_property
    def people(self) -> People:
        """Users' names, read once for every panel of the request."""
        return People(self.selection.conn, self.aliases)

    @functools.cached_property
    def chart_start_ns(self) -> int:
        """Where charts over time start: at the range's start, or at the first data stored when that came
        later: a few hours of data in a 7-day view are charted over those hours, not as a spike at its end."""
        first = self.selection.first_point_ns()
        if first is None or first <= self.start_ns:
            return self.start_ns
        return min(first, self.end_ns - 15 * 60 * SECOND)

    @property
    def bucket_ns(self) -> int:
        """Up to MAX_BUCKETS per chart; two weeks and more are charted by the day (from the daily rollups)."""
        span_s = max(1, (self.end_ns - self.chart_start_ns) // SECOND)
        choices = [b for b in BUCKETS_S if b >= DAY_S] if span_s >= 14 * DAY_S else BUCKETS_S
        for bucket in choices:
            if span_s / bucket <= MAX_BUCKETS:
                return bucket * SECOND
        return BUCKETS_S[-1] * SECOND

    def times(self) -> list[int]:
        bucket = self.bucket_ns
        first = (max(self.start_ns, self.chart_start_ns) // bucket) * bucket
        return list(range(first, self.end_ns + 1, bucket)) or [first]


@dataclass(frozen=True)
class Panel:
    id: str
    title: str
    description: str
    row: str
    kind: str  # stat | gauge | pie | bar | table | timeseries | stacked_bars
    unit: str  # count | usd | tokens | seconds | percent | ratio | chars | ms | lines
    compute: Callable[[PanelRequest], dict[str, Any]]
    width: int = 4  # of 24 columns
    height: int = 4
    options: dict[str, Any] = field(default_factory=dict)
    # The same panel for Grafana: (query, legend format) pairs, over Prometheus or over Loki's events.
    promql: tuple[tuple[str, str], ...] = ()
    logql: tuple[tuple[str, str], ...] = ()
    # What the panel shows when there is nothing to show, and whether it is then left out altogether (the
    # panels of dimensions only newer versions of Claude Code send).
    empty: str = "Nothing in this range"
    hide_empty: bool = False
    # Whether the data is worth a panel (else ``"hidden": true``): cost by source, once there are transcripts.
    shown_when: Callable[[dict[str, Any]], bool] | None = None
    # The metrics and events all of the panel's numbers come from: under a filter one of them cannot be split
    # by, the panel says so instead of showing 0 ("unsplit": the keys).
    metrics: tuple[Metric, ...] = ()
    events: tuple[str, ...] = ()
    # A headline stat: its values over the range for a sparkline, and its value in the previous period.
    spark: Callable[[PanelRequest], Sequence[float | None]] | None = None
    compare: bool = False

    def data(self, view: PanelRequest, spark: bool = True) -> dict[str, Any]:
        out = self.compute(view)
        sel = view.selection
        keys = {k for m in self.metrics for k in sel.unsplit(m)} | {
            k for e in self.events for k in sel.unsplit_event(e)
        }
        if keys:
            out = {**out, "unsplit": sorted(keys)}
            if "value" in out:
                out["value"] = None
        elif spark and self.spark is not None:
            out["spark"] = self.spark(view)
        if self.shown_when is not None and not self.shown_when(out):
            out = {**out, "hidden": True}
        return out


def previous_period(view: PanelRequest) -> PanelRequest | None:
    """The same view over the period of the same length just before it (none for all the data)."""
    filters = view.selection.filters
    if filters.since_ns is None:
        return None
    span = view.end_ns - view.start_ns
    before = Filters(view.start_ns - span, view.start_ns, filters.attrs)
    sel = view.selection
    selection = Selection(sel.conn, before, sel.family_cache, sel.answers)
    return PanelRequest(selection, view.start_ns - span, view.start_ns, view.group_key, view.aliases)


def dashboard_data(view: PanelRequest, compare: bool = False) -> dict[str, dict[str, Any]]:
    """Every panel's data; with ``compare``, each headline stat's value in the previous period too."""
    out = {panel.id: panel.data(view) for panel in PANELS}
    before = previous_period(view) if compare else None
    if before is not None:
        for panel in PANELS:
            if panel.compare:
                out[panel.id]["previous"] = panel.data(before, spark=False).get("value")
    return out


# --- building blocks ----------------------------------------------------------------------------------


def _stat(value: float | None) -> dict[str, Any]:
    return {"value": value}


def others_label(count: int) -> str:
    return f"others ({count})"


def top(keys: Iterable[Any], order: Callable[[Any], Any], n: int = TOP) -> list[Any] | None:
    """The first ``n`` keys in ``order``, or None when all of them fit (``n + 1`` do: a row of "others"
    holding one would take as much room as that one)."""
    keys = keys if isinstance(keys, list) else list(keys)
    if len(keys) <= n + 1:
        return None
    return heapq.nsmallest(n, keys, key=order)  # the same as sorted(...)[:n], ties in the same order


def _rest(total: float, shown: float) -> float:
    """What is left of a total once the rows shown are taken out; 0 rather than a rounding error."""
    rest = total - shown
    return 0.0 if abs(rest) <= 1e-9 * max(1.0, abs(total)) else rest


def _items(
    totals: Mapping[tuple, float], label: Callable[[tuple], str] = lambda k: str(k[0])
) -> dict[str, Any]:
    merged: dict[str, float] = defaultdict(float)
    for key, value in totals.items():
        merged[label(key) if key and key[0] is not None else "unknown"] += value
    labels = [k for k, v in merged.items() if v]
    order = lambda k: (-merged[k], k)  # noqa: E731
    shown = top(labels, order)
    if shown is None:
        return {"items": [{"label": k, "value": merged[k]} for k in sorted(labels, key=order)]}
    kept = set(shown)
    rest = [merged[k] for k in labels if k not in kept]
    others = {"label": others_label(len(rest)), "value": math.fsum(rest), "others": len(rest)}
    return {"items": [*({"label": k, "value": merged[k]} for k in shown), others]}


def _timeline(view: PanelRequest, rows: dict[tuple, float], label: Callable[[tuple], str]) -> dict[str, Any]:
    times = view.times()
    index = {t: i for i, t in enumerate(times)}

    def name_of(rest: list[Any]) -> str:
        return label(tuple(rest)) if rest and rest[0] is not None else ("unknown" if rest else "total")

    totals: dict[str, float] = {}
    for (bucket, *rest), value in rows.items():
        if bucket in index:
            name = name_of(rest)
            totals[name] = totals.get(name, 0.0) + value
    order = lambda name: -totals[name]  # noqa: E731
    shown = top(totals, order)
    names = sorted(totals, key=order) if shown is None else shown
    series = {name: [0.0] * len(times) for name in names}
    others = [0.0] * len(times)
    for (bucket, *rest), value in rows.items():
        if bucket in index:
            series.get(name_of(rest), others)[index[bucket]] += value
    lines = [{"label": name, "values": values} for name, values in series.items()]
    if shown is not None:
        count = len(totals) - len(shown)
        lines.append({"label": others_label(count), "values": others, "others": count})
    return {"times": times, "bucket_ns": view.bucket_ns, "series": lines}


def _series(v: PanelRequest, metric: Metric, by: str = "type", **where: str) -> list[float]:
    """A counter's increments per time bucket of the view (where ``type`` has the given value). Read grouped
    by a common attribute, which SQL groups (per family, a month of them would be read), and the same
    grouping as the charts over time ask for (``type``, the cost's ``model``), whose answer is reused."""
    times = v.times()
    index = {t: i for i, t in enumerate(times)}
    out = [0.0] * len(times)
    for (bucket, value_of_by), value in v.selection.metric_timeline(metric, (by,), v.bucket_ns).items():
        if bucket in index and all(value_of_by == wanted for wanted in where.values()):
            out[index[bucket]] += value
    return out


def _prompt_length_series(v: PanelRequest) -> list[float | None]:
    """The average prompt length per time bucket; none in a bucket without prompts."""
    means = v.selection.event_means(USER_PROMPT, "prompt_length", v.bucket_ns)
    return [means.get(t) for t in v.times()]


def _net_lines_series(v: PanelRequest) -> list[float]:
    added, removed = _series(v, LINES, type="added"), _series(v, LINES, type="removed")
    return [a - r for a, r in zip(added, removed, strict=True)]


def _dimension(v: PanelRequest, metric: Metric, by: tuple[str, ...]) -> dict[str, Any]:
    """A counter by a dimension only some versions of Claude Code send (agent.name, skill.name...): only what
    carries it, so that a store without it has nothing to show (and the panel is left out)."""
    totals = v.selection.metric_totals(metric, by)
    return _items({k: value for k, value in totals.items() if _carries(k)}, _joined)


def _carries(key: tuple) -> bool:
    """Whether a key names a value of its first attribute (an empty one is none, as in Prometheus)."""
    return bool(key) and key[0] not in (None, "")


def _joined(key: tuple) -> str:
    return " · ".join(str(part) for part in key if part not in (None, ""))


def _cost_and_tokens(v: PanelRequest, by: tuple[str, ...], label: str) -> dict[str, Any]:
    """Cost and tokens (all types) per value of a dimension only some versions of Claude Code send: only what
    carries it, as in ``_dimension``. The TOP by cost, then by tokens; the rest in a row of others."""
    columns = {"cost_usd": COST, "tokens": TOKENS}
    sums: dict[str, dict[str, float]] = {c: defaultdict(float) for c in columns}
    for column, metric in columns.items():
        for key, value in v.selection.metric_totals(metric, by).items():
            if _carries(key):
                sums[column][_joined(key)] += value
    cost, tokens = sums["cost_usd"], sums["tokens"]
    names = [k for k in set(cost) | set(tokens) if cost.get(k) or tokens.get(k)]
    order = lambda k: (-cost.get(k, 0.0), -tokens.get(k, 0.0), k)  # noqa: E731
    shown = top(names, order)
    rows: list[dict[str, Any]] = [
        {"name": k, "cost_usd": cost.get(k, 0.0), "tokens": tokens.get(k, 0.0)}
        for k in (sorted(names, key=order) if shown is None else shown)
    ]
    if shown is not None:
        rest = len(names) - len(shown)
        rows.append(
            {
                "name": others_label(rest),
                **{c: _rest(math.fsum(sums[c].values()), math.fsum(row[c] for row in rows)) for c in columns},
                "others": rest,
            }
        )
    return {
        "columns": [
            {"key": "name", "label": label, "unit": "text"},
            {"key": "cost_usd", "label": "Cost", "unit": "usd"},
            {"key": "tokens", "label": "Tokens", "unit": "tokens"},
        ],
        "rows": rows,
    }


def _cost_and_tokens_promql(by: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The same per label set, from series that carry the dimension (a label Prometheus has empty is none)."""
    labels = ", ".join(label_name(key) for key in by)
    carries = "{" + label_name(by[0]) + '!=""}'
    return tuple(
        (f"sum by ({labels}) (increase({metric.prometheus}{carries}[$__range]))", column)
        for column, metric in (("cost_usd", COST), ("tokens", TOKENS))
    )


# The dimensions Claude Code 2.1 tags its cost and tokens with, beside model and type: (panel id, what the
# title calls it, the name column's title, the attributes of one value).
DIMENSIONS = (
    ("query_source", "query source", "Query source", ("query_source",)),
    ("effort", "effort", "Effort", ("effort",)),
    ("speed", "speed", "Speed", ("speed",)),
    ("agent", "agent", "Agent", ("agent.name",)),
    ("skill", "skill", "Skill", ("skill.name",)),
    ("plugin", "plugin", "Plugin", ("plugin.name",)),
    ("mcp", "MCP server and tool", "MCP server · tool", ("mcp_server.name", "mcp_tool.name")),
)
DESCRIBED = {
    "query_source": "what made the request: the main loop, a subagent, or an auxiliary query",
    "effort": "the reasoning effort asked for",
}


def _accept_rates(v: PanelRequest, by: str) -> dict[str, Any]:
    """The share of edit decisions that accepted, per value of ``by`` (language, or who decided)."""
    decided: dict[tuple, float] = defaultdict(float)
    accepted: dict[tuple, float] = defaultdict(float)
    for (key, decision), value in v.selection.metric_totals(DECISIONS, (by, "decision")).items():
        decided[(key,)] += value
        if decision == "accept":
            accepted[(key,)] += value
    return _items({k: numbers.ratio(accepted[k], total) or 0.0 for k, total in decided.items()})


def _per(v: PanelRequest, numerator: float, denominator: float) -> dict[str, Any]:
    return _stat(numbers.ratio(numerator, denominator))


def _per_bucket(numerators: list[float], denominators: list[float]) -> list[float | None]:
    """A ratio per time bucket (cost per commit...); none in a bucket without a denominator."""
    return [numbers.ratio(n, d) for n, d in zip(numerators, denominators, strict=True)]


OUTCOME_COLUMNS = (
    ("cost_per_commit", "Cost per commit", "usd"),
    ("cost_per_pull_request", "Cost per pull request", "usd"),
    ("cost_per_line", "Cost per accepted line", "usd"),
    ("accept_rate", "Accept rate", "percent"),
)


def _per_value(
    totals: Mapping[tuple, float], only: Callable[[tuple], bool] = lambda k: True
) -> dict[str, float]:
    """Totals keyed by an attribute first (and others after it) added up per value of that attribute, as a
    row's key ("unknown" where data has none); only the keys ``only`` keeps."""
    out: dict[str, float] = defaultdict(float)
    for k, value in totals.items():
        if only(k):
            out["unknown" if k[0] is None else str(k[0])] += value
    return out


def _outcomes_by(v: PanelRequest, key: str, label: str) -> dict[str, Any]:
    """What each value of ``key`` (a person, a team) got for its spend: cost per commit, per pull request and
    per accepted line, and the share of its edits accepted; none where it had nothing to divide by. The TOP
    by cost, only those with an outcome."""
    sel = v.selection
    cost = _per_value(sel.metric_totals(COST, (key,)))
    commits = _per_value(sel.metric_totals(COMMITS, (key,)))
    pulls = _per_value(sel.metric_totals(PULL_REQUESTS, (key,)))
    lines = _per_value(sel.metric_totals(LINES, (key, "type")), lambda k: k[1] == "added")
    decisions = sel.metric_totals(DECISIONS, (key, "decision"))
    decided, accepted = _per_value(decisions), _per_value(decisions, lambda k: k[1] == "accept")
    rows = {
        k: {
            "cost_per_commit": numbers.ratio(cost.get(k, 0.0), commits.get(k, 0.0)),
            "cost_per_pull_request": numbers.ratio(cost.get(k, 0.0), pulls.get(k, 0.0)),
            "cost_per_line": numbers.ratio(cost.get(k, 0.0), lines.get(k, 0.0)),
            "accept_rate": numbers.ratio(accepted.get(k, 0.0), decided.get(k, 0.0)),
        }
        for k in set(cost) | set(decided)
    }
    keys = [k for k, row in rows.items() if any(value is not None for value in row.values())]
    names = v.people.names(k for k in keys if k != "unknown") if key == "user.id" else {}
    order = lambda k: (-cost.get(k, 0.0), names.get(k, k))  # noqa: E731
    shown = top(keys, order)
    return {
        "columns": [
            {"key": "name", "label": label, "unit": "text"},
            *({"key": column, "label": title, "unit": unit} for column, title, unit in OUTCOME_COLUMNS),
        ],
        "rows": [
            {"key": k, "name": names.get(k, k), **rows[k]}
            for k in (sorted(keys, key=order) if shown is None else shown)
        ],
    }


def _outcomes_promql(label: str, named: Callable[[str], str] = lambda q: q) -> tuple[tuple[str, str], ...]:
    """The same per ``label``: a column only where its denominator is not 0 (as the built-in table's none)."""

    def per(numerator: str, denominator: str) -> str:
        return named(
            f"sum by ({label}) (increase({numerator}[$__range])) / "
            f"(sum by ({label}) (increase({denominator}[$__range])) > 0)"
        )

    accepted = f'sum by ({label}) (increase({DECISIONS.prometheus}{{decision="accept"}}[$__range]))'
    decided = f"sum by ({label}) (increase({DECISIONS.prometheus}[$__range]))"
    return (
        (per(COST.prometheus, COMMITS.prometheus), "cost_per_commit"),
        (per(COST.prometheus, PULL_REQUESTS.prometheus), "cost_per_pull_request"),
        (per(COST.prometheus, f'{LINES.prometheus}{{type="added"}}'), "cost_per_line"),
        # no accepted edit is a rate of 0, not none
        (named(f"({accepted} or {decided} * 0) / ({decided} > 0)"), "accept_rate"),
    )


def _rate_promql(by: str) -> tuple[tuple[str, str], ...]:
    label = label_name(by)
    return (
        (
            f'sum by ({label}) (increase({DECISIONS.prometheus}{{decision="accept"}}[$__range])) / '
            f"sum by ({label}) (increase({DECISIONS.prometheus}[$__range]))",
            "{{" + label + "}}",
        ),
    )


def _token_label(key: tuple) -> str:
    return TOKEN_LABELS.get(key[0], str(key[0]))


def _sessions(v: PanelRequest) -> dict[str, Any]:
    out = _stat(numbers.sessions(v.selection))
    keys = v.selection.unsplit(SESSIONS)
    if keys:  # counted as the sessions with data under the filter (numbers.sessions)
        out["note"] = "the sessions with data for this " + ", ".join(keys)
    return out


def _net_lines(v: PanelRequest) -> dict[str, Any]:
    return _stat(numbers.net_lines(v.selection))


def _active_time(v: PanelRequest) -> dict[str, Any]:
    return _stat(v.selection.metric_total(ACTIVE_TIME))


def _avg_prompt_length(v: PanelRequest) -> dict[str, Any]:
    return _stat(numbers.average_prompt_length(v.selection))


def _cache_efficiency(v: PanelRequest) -> dict[str, Any]:
    return _stat(numbers.cache_efficiency(v.selection))


def _productivity(v: PanelRequest) -> dict[str, Any]:
    return _stat(numbers.productivity_ratio(v.selection))


def _cost_per_1k_output(v: PanelRequest) -> dict[str, Any]:
    return _stat(numbers.cost_per_1k_output_tokens(v.selection))


def _recent_sessions(v: PanelRequest) -> dict[str, Any]:
    sel = v.selection
    sessions = sel.sessions(limit=TOP)
    names = v.people.names(s["user_id"] for s in sessions)
    rows = [
        {
            **s,
            "user": names.get(s["user_id"]) or s["user_email"],
            "models": ", ".join(s["models"]),
            "lines": f"+{s['lines_added']:g} / -{s['lines_removed']:g}",
            "link": s["session_id"],
        }
        for s in sessions
    ]
    # Columns the filters cannot split (a session's prompts and commits carry no model): none, not 0.
    unsplit = [
        column
        for column, cannot in (("prompts", sel.unsplit_event(USER_PROMPT)), ("commits", sel.unsplit(COMMITS)))
        if cannot
    ]
    for row in rows:
        row.update({column: None for column in unsplit})
    more = sel.session_count() - len(sessions)
    if more > 0:  # the rest of the range, sessions and data that names none, in one row

        def rest(total: float, key: str) -> float:
            return _rest(total, math.fsum(s[key] for s in sessions))

        added = rest(sel.metric_total(LINES, type="added"), "lines_added")
        removed = rest(sel.metric_total(LINES, type="removed"), "lines_removed")
        rows.append(
            {
                "start_ns": None,
                "user": others_label(more),
                "models": "",
                "prompts": rest(numbers.events(sel, USER_PROMPT), "prompts"),
                "cost_usd": rest(sel.metric_total(COST), "cost_usd"),
                "tokens": rest(sel.metric_total(TOKENS), "tokens"),
                "lines": f"+{added:g} / -{removed:g}",
                "commits": rest(sel.metric_total(COMMITS), "commits"),
                "duration_s": None,
                "others": more,
                **{column: None for column in unsplit},
            }
        )
    return {
        "columns": [
            {"key": "start_ns", "label": "Start", "unit": "time"},
            {"key": "user", "label": "User", "unit": "text"},
            {"key": "models", "label": "Model(s)", "unit": "text"},
            {"key": "prompts", "label": "Prompts", "unit": "count"},
            {"key": "cost_usd", "label": "Cost", "unit": "usd"},
            {"key": "tokens", "label": "Tokens", "unit": "tokens"},
            {"key": "lines", "label": "Lines +/-", "unit": "text"},
            {"key": "commits", "label": "Commits", "unit": "count"},
            {"key": "duration_s", "label": "Duration", "unit": "seconds"},
        ],
        "rows": rows,
        **({"unsplit_columns": unsplit} if unsplit else {}),
    }


def _edit_decisions(v: PanelRequest) -> dict[str, Any]:
    rows = v.selection.metric_totals(DECISIONS, ("decision", "tool_name", "language"))
    return _items(rows, lambda k: " · ".join(str(part) for part in k if part is not None))


def _api_errors_by_status(v: PanelRequest) -> dict[str, Any]:
    return _items(v.selection.event_counts(API_ERROR, ("status_code",)), lambda k: f"HTTP {k[0]}")


def _latency_by_model(v: PanelRequest) -> dict[str, Any]:
    latency = v.selection.event_stats(API_REQUEST, "duration_ms", ("model",))
    ttft = v.selection.event_stats(API_REQUEST, "ttft_ms", ("model",))
    errors = v.selection.event_counts(API_ERROR, ("model",))

    def requests(key: tuple) -> int:
        lat = latency.get(key)
        return lat.count if lat else 0

    keys = list(set(latency) | set(errors))
    order = lambda k: (-requests(k), -errors.get(k, 0), str(k[0]))  # noqa: E731
    shown = top(keys, order)
    rows = []
    for key in sorted(keys, key=order) if shown is None else shown:
        lat, first = latency.get(key), ttft.get(key)
        rows.append(
            {
                "model": key[0] or "unknown",
                "requests": requests(key),
                "errors": errors.get(key, 0),
                "p50_ms": lat and lat.p50,
                "p95_ms": lat and lat.p95,
                "ttft_p50_ms": first and first.p50,
                "ttft_p95_ms": first and first.p95,
            }
        )
    if shown is not None:  # percentiles of the rest together are not worked out: only their counts
        kept = set(shown)
        rest = [k for k in keys if k not in kept]
        rows.append(
            {
                "model": others_label(len(rest)),
                "requests": sum(requests(k) for k in rest),
                "errors": sum(errors.get(k, 0) for k in rest),
                "p50_ms": None,
                "p95_ms": None,
                "ttft_p50_ms": None,
                "ttft_p95_ms": None,
                "others": len(rest),
            }
        )
    return {
        "columns": [
            {"key": "model", "label": "Model", "unit": "text"},
            {"key": "requests", "label": "Requests", "unit": "count"},
            {"key": "errors", "label": "Errors", "unit": "count"},
            {"key": "p50_ms", "label": "Latency p50", "unit": "ms"},
            {"key": "p95_ms", "label": "Latency p95", "unit": "ms"},
            {"key": "ttft_p50_ms", "label": "TTFT p50", "unit": "ms"},
            {"key": "ttft_p95_ms", "label": "TTFT p95", "unit": "ms"},
        ],
        "rows": rows,
        "sampled": any(s.sampled for s in (*latency.values(), *ttft.values())),
    }


def _tools(v: PanelRequest) -> dict[str, Any]:
    results = v.selection.event_counts(TOOL_RESULT, ("tool_name", "success"))
    durations = v.selection.event_stats(TOOL_RESULT, "duration_ms", ("tool_name",))
    per_tool: dict[str, dict[str, Any]] = {}
    for (tool, success), count in results.items():
        row = per_tool.setdefault(tool or "unknown", {"tool": tool or "unknown", "calls": 0, "succeeded": 0})
        row["calls"] += count
        if str(success).lower() == "true":
            row["succeeded"] += count
    order = lambda tool: -per_tool[tool]["calls"]  # noqa: E731
    shown = top(per_tool, order)
    rows = []
    for tool in sorted(per_tool, key=order) if shown is None else shown:
        row, stats = per_tool[tool], durations.get((tool,))
        rows.append(
            {
                **row,
                "success_rate": numbers.ratio(row["succeeded"], row["calls"]),
                "p50_ms": stats and stats.p50,
                "p95_ms": stats and stats.p95,
            }
        )
    if shown is not None:
        kept = set(shown)
        rest = [row for tool, row in per_tool.items() if tool not in kept]
        calls, succeeded = sum(r["calls"] for r in rest), sum(r["succeeded"] for r in rest)
        rows.append(
            {
                "tool": others_label(len(rest)),
                "calls": calls,
                "succeeded": succeeded,
                "success_rate": numbers.ratio(succeeded, calls),
                "p50_ms": None,
                "p95_ms": None,
                "others": len(rest),
            }
        )
    return {
        "columns": [
            {"key": "tool", "label": "Tool", "unit": "text"},
            {"key": "calls", "label": "Calls", "unit": "count"},
            {"key": "success_rate", "label": "Success", "unit": "percent"},
            {"key": "p50_ms", "label": "Duration p50", "unit": "ms"},
            {"key": "p95_ms", "label": "Duration p95", "unit": "ms"},
        ],
        "rows": rows,
        "sampled": any(s.sampled for s in durations.values()),
    }


LEADERBOARD_COLUMNS = ("cost_usd", "tokens", "sessions", "lines", "commits")
LEADERBOARD_METRICS = {
    "cost_usd": COST,
    "tokens": TOKENS,
    "sessions": SESSIONS,
    "lines": LINES,
    "commits": COMMITS,
}


def _leaderboard(v: PanelRequest, key: str, label: str) -> dict[str, Any]:
    """Cost, tokens, sessions, lines added and commits per value of ``key``: the TOP by cost, the rest in a
    row of others. Each column is added up per value first; rows are made only for the ones shown."""
    sel = v.selection
    columns = {
        "cost_usd": _per_value(sel.metric_totals(COST, (key,))),
        "tokens": _per_value(sel.metric_totals(TOKENS, (key,))),
        "sessions": _per_value(sel.metric_totals(SESSIONS, (key,))),
        "lines": _per_value(sel.metric_totals(LINES, (key, "type")), lambda k: k[1] == "added"),
        "commits": _per_value(sel.metric_totals(COMMITS, (key,))),
    }
    unsplit = {c for c, m in LEADERBOARD_METRICS.items() if sel.unsplit(m)}
    keys = list(set().union(*columns.values()))
    # A user is shown by name (people.py); the row's key stays the id, which filters take.
    names = v.people.names(k for k in keys if k != "unknown") if key == "user.id" else {}
    cost = columns["cost_usd"]
    order = lambda k: (-cost.get(k, 0.0), names.get(k, k))  # noqa: E731
    shown = top(keys, order)
    rows: list[dict[str, Any]] = [
        {
            "key": k,
            "name": names.get(k, k),
            **{c: None if c in unsplit else columns[c].get(k, 0.0) for c in LEADERBOARD_COLUMNS},
        }
        for k in (sorted(keys, key=order) if shown is None else shown)
    ]
    if shown is not None:  # each column's total less the rows shown
        sums = {
            c: None
            if c in unsplit
            else _rest(math.fsum(columns[c].values()), math.fsum(row[c] for row in rows))
            for c in LEADERBOARD_COLUMNS
        }
        rest = len(keys) - len(shown)
        rows.append({"key": None, "name": others_label(rest), **sums, "others": rest})
    return {
        "columns": [
            {"key": "name", "label": label, "unit": "text"},
            {"key": "cost_usd", "label": "Cost", "unit": "usd"},
            {"key": "tokens", "label": "Tokens", "unit": "tokens"},
            {"key": "sessions", "label": "Sessions", "unit": "count"},
            {"key": "lines", "label": "Lines added", "unit": "lines"},
            {"key": "commits", "label": "Commits", "unit": "count"},
        ],
        "rows": rows,
        **({"unsplit_columns": sorted(unsplit)} if unsplit else {}),
    }


def _active_users(v: PanelRequest) -> dict[str, Any]:
    users = {k for k, value in v.selection.metric_totals(SESSIONS, ("user.id",)).items() if value}
    users |= {k for k in v.selection.metric_totals(TOKENS, ("user.id",))}
    return _stat(len({u for u in users if u[0] is not None}))


def _named(by_user: str) -> str:
    """A PromQL answer per user_id with each user's name beside it, from ``ccmetrics_user_info`` (which
    ``ccmetrics serve``'s /metrics has; a Collector's Prometheus has not): users without one keep the id."""
    return f"({by_user} * on(user_id) group_left(user_name) ccmetrics_user_info) or on(user_id) {by_user}"


P = Panel
PANELS: tuple[Panel, ...] = (
    # Row 1: key numbers
    P(
        "sessions",
        "Total sessions",
        "Claude Code sessions started.",
        "Overview",
        "stat",
        "count",
        _sessions,
        promql=((f"sum(increase({SESSIONS.prometheus}[$__range]))", "Sessions"),),
        compare=True,
        spark=lambda v: _series(v, SESSIONS),
    ),
    P(
        "commits",
        "Total commits",
        "Git commits Claude Code made.",
        "Overview",
        "stat",
        "count",
        lambda v: _stat(v.selection.metric_total(COMMITS)),
        promql=((f"sum(increase({COMMITS.prometheus}[$__range]))", "Commits"),),
        metrics=(COMMITS,),
        compare=True,
        spark=lambda v: _series(v, COMMITS),
    ),
    P(
        "lines_net",
        "Lines of code changed (net)",
        "Lines added minus lines removed.",
        "Overview",
        "stat",
        "lines",
        _net_lines,
        promql=(
            (
                f'sum(increase({LINES.prometheus}{{type="added"}}[$__range])) - '
                f'(sum(increase({LINES.prometheus}{{type="removed"}}[$__range])) or '
                "vector(0))",
                "Net lines",
            ),
        ),
        compare=True,
        spark=_net_lines_series,
    ),
    P(
        "cost",
        "Total cost",
        "Estimated cost in USD, as Claude Code reports it.",
        "Overview",
        "stat",
        "usd",
        lambda v: _stat(v.selection.metric_total(COST)),
        promql=((f"sum(increase({COST.prometheus}[$__range]))", "Cost"),),
        compare=True,
        spark=lambda v: _series(v, COST, "model"),
    ),
    P(
        "active_time",
        "Active time",
        "Time users and the CLI were active.",
        "Overview",
        "stat",
        "seconds",
        _active_time,
        promql=((f"sum(increase({ACTIVE_TIME.prometheus}[$__range]))", "Active time"),),
        metrics=(ACTIVE_TIME,),
        compare=True,
        spark=lambda v: _series(v, ACTIVE_TIME),
    ),
    P(
        "avg_prompt_length",
        "Average prompt length",
        "Characters per prompt.",
        "Overview",
        "stat",
        "chars",
        _avg_prompt_length,
        logql=(
            (
                'sum(sum_over_time({service_name=~"claude-code|claude_code"} | event_name="user_prompt" '
                "| unwrap prompt_length [$__range])) / "
                'sum(count_over_time({service_name=~"claude-code|claude_code"} | event_name="user_prompt" '
                "[$__range]))",
                "Average prompt length",
            ),
        ),
        compare=True,
        spark=_prompt_length_series,
    ),
    # Row 2: efficiency
    P(
        "cache_efficiency",
        "Cache efficiency",
        "Cache reads as a share of all input tokens.",
        "Efficiency",
        "gauge",
        "percent",
        _cache_efficiency,
        width=8,
        options={"min": 0, "max": 1},
        promql=(
            (
                f'sum(increase({TOKENS.prometheus}{{type="cacheRead"}}[$__range]))'
                f" / sum(increase({TOKENS.prometheus}"
                '{type=~"input|cacheRead|cacheCreation"}[$__range]))',
                "Cache efficiency",
            ),
        ),
    ),
    P(
        "productivity_ratio",
        "Productivity ratio",
        "CLI active time per second of user active time.",
        "Efficiency",
        "gauge",
        "ratio",
        _productivity,
        width=8,
        options={"min": 0, "max": 10},
        promql=(
            (
                f'sum(increase({ACTIVE_TIME.prometheus}{{type="cli"}}[$__range])) / '
                f'sum(increase({ACTIVE_TIME.prometheus}{{type="user"}}[$__range]))',
                "Productivity ratio",
            ),
        ),
        metrics=(ACTIVE_TIME,),
    ),
    P(
        "cost_per_1k_output",
        "Cost per 1K output tokens",
        "Total cost per thousand output tokens.",
        "Efficiency",
        "gauge",
        "usd",
        _cost_per_1k_output,
        width=8,
        options={"min": 0, "max": 1},
        promql=(
            (
                f"sum(increase({COST.prometheus}[$__range])) * 1000 / "
                f'sum(increase({TOKENS.prometheus}{{type="output"}}[$__range]))',
                "Cost per 1K output tokens",
            ),
        ),
    ),
    # Row 3: distributions
    P(
        "tokens_by_type",
        "Tokens by type",
        "Input, output, cache read and cache creation tokens.",
        "Distribution",
        "pie",
        "tokens",
        lambda v: _items(v.selection.metric_totals(TOKENS, ("type",)), _token_label),
        width=8,
        height=8,
        promql=((f"sum by (type) (increase({TOKENS.prometheus}[$__range]))", "{{type}}"),),
        empty="No tokens in this range",
    ),
    P(
        "tokens_by_model",
        "Tokens by model",
        "All tokens, by model.",
        "Distribution",
        "pie",
        "tokens",
        lambda v: _items(v.selection.metric_totals(TOKENS, ("model",))),
        width=8,
        height=8,
        promql=((f"sum by (model) (increase({TOKENS.prometheus}[$__range]))", "{{model}}"),),
        empty="No tokens in this range",
    ),
    P(
        "active_time_split",
        "Active time: user vs CLI",
        "Where the active time went.",
        "Distribution",
        "pie",
        "seconds",
        lambda v: _items(v.selection.metric_totals(ACTIVE_TIME, ("type",))),
        width=8,
        height=8,
        promql=((f"sum by (type) (increase({ACTIVE_TIME.prometheus}[$__range]))", "{{type}}"),),
        metrics=(ACTIVE_TIME,),
        empty="No active time in this range",
    ),
    # Row 4: cost
    P(
        "cost_by_model",
        "Cost by model",
        "USD by model.",
        "Cost",
        "bar",
        "usd",
        lambda v: _items(v.selection.metric_totals(COST, ("model",))),
        width=8,
        height=8,
        promql=((f"sum by (model) (increase({COST.prometheus}[$__range]))", "{{model}}"),),
        empty="No cost in this range",
    ),
    P(
        "recent_sessions",
        "Recent sessions",
        "The latest sessions; click one for its timeline.",
        "Cost",
        "table",
        "count",
        _recent_sessions,
        width=16,
        height=8,
        empty="No sessions in this range",
    ),
    # Row 5: trends
    P(
        "tokens_over_time",
        "Token usage over time",
        "Tokens per interval, stacked by type.",
        "Trends",
        "timeseries",
        "tokens",
        lambda v: _timeline(v, v.selection.metric_timeline(TOKENS, ("type",), v.bucket_ns), _token_label),
        width=8,
        height=8,
        options={"stacked": True},
        promql=((f"sum by (type) (increase({TOKENS.prometheus}[$__interval]))", "{{type}}"),),
        empty="No tokens in this range",
    ),
    P(
        "cost_over_time",
        "Cost over time",
        "USD per interval, by model.",
        "Trends",
        "timeseries",
        "usd",
        lambda v: _timeline(
            v, v.selection.metric_timeline(COST, ("model",), v.bucket_ns), lambda k: str(k[0])
        ),
        width=8,
        height=8,
        promql=((f"sum by (model) (increase({COST.prometheus}[$__interval]))", "{{model}}"),),
        empty="No cost in this range",
    ),
    P(
        "active_time_over_time",
        "Active time patterns",
        "User and CLI active time per interval.",
        "Trends",
        "stacked_bars",
        "seconds",
        lambda v: _timeline(
            v, v.selection.metric_timeline(ACTIVE_TIME, ("type",), v.bucket_ns), lambda k: str(k[0])
        ),
        width=8,
        height=8,
        promql=((f"sum by (type) (increase({ACTIVE_TIME.prometheus}[$__interval]))", "{{type}}"),),
        metrics=(ACTIVE_TIME,),
        empty="No active time in this range",
    ),
    # Row 6: code
    P(
        "pull_requests",
        "Pull requests",
        "Pull requests Claude Code created.",
        "Code",
        "stat",
        "count",
        lambda v: _stat(v.selection.metric_total(PULL_REQUESTS)),
        width=4,
        height=4,
        promql=((f"sum(increase({PULL_REQUESTS.prometheus}[$__range]))", "Pull requests"),),
        metrics=(PULL_REQUESTS,),
    ),
    P(
        "lines_added",
        "Lines added",
        "Lines of code added.",
        "Code",
        "stat",
        "lines",
        lambda v: _stat(v.selection.metric_total(LINES, type="added")),
        width=4,
        height=4,
        promql=((f'sum(increase({LINES.prometheus}{{type="added"}}[$__range]))', "Lines added"),),
    ),
    P(
        "lines_removed",
        "Lines removed",
        "Lines of code removed.",
        "Code",
        "stat",
        "lines",
        lambda v: _stat(v.selection.metric_total(LINES, type="removed")),
        width=4,
        height=4,
        promql=(
            (
                f'sum(increase({LINES.prometheus}{{type="removed"}}[$__range]))',
                "Lines removed",
            ),
        ),
    ),
    P(
        "edit_decisions",
        "Code edit decisions",
        "Accepted and rejected edits, by tool and language.",
        "Code",
        "bar",
        "count",
        _edit_decisions,
        width=12,
        height=5,
        promql=(
            (
                f"sum by (decision, tool_name, language) (increase({DECISIONS.prometheus}[$__range]))",
                "{{decision}} · {{tool_name}} · {{language}}",
            ),
        ),
        metrics=(DECISIONS,),
        empty="No edit decisions in this range",
    ),
    # Row 7: API
    P(
        "api_requests",
        "API requests",
        "Requests to the model API.",
        "API",
        "stat",
        "count",
        lambda v: _stat(numbers.events(v.selection, API_REQUEST)),
        logql=(
            (
                'sum(count_over_time({service_name=~"claude-code|claude_code"} | event_name="api_request" '
                "[$__range]))",
                "API requests",
            ),
        ),
    ),
    P(
        "api_errors",
        "API errors",
        "Failed requests to the model API.",
        "API",
        "stat",
        "count",
        lambda v: _stat(numbers.events(v.selection, API_ERROR)),
        logql=(
            (
                'sum(count_over_time({service_name=~"claude-code|claude_code"} | event_name="api_error" '
                "[$__range]))",
                "API errors",
            ),
        ),
    ),
    P(
        "api_errors_by_status",
        "API errors by status",
        "Failed requests by HTTP status.",
        "API",
        "bar",
        "count",
        _api_errors_by_status,
        width=6,
        height=8,
        logql=(
            (
                'sum by (status_code) (count_over_time({service_name=~"claude-code|claude_code"} | '
                'event_name="api_error" [$__range]))',
                "HTTP {{status_code}}",
            ),
        ),
        empty="No API errors in this range",
    ),
    P(
        "api_latency",
        "API latency by model",
        "Requests, errors, latency and time to first token.",
        "API",
        "table",
        "ms",
        _latency_by_model,
        width=10,
        height=8,
        logql=(
            (
                'sum by (model) (count_over_time({service_name=~"claude-code|claude_code"} | '
                'event_name="api_request" [$__range]))',
                "requests",
            ),
            (
                'sum by (model) (count_over_time({service_name=~"claude-code|claude_code"} | '
                'event_name="api_error" [$__range]))',
                "errors",
            ),
            (
                'quantile_over_time(0.5, {service_name=~"claude-code|claude_code"} | '
                'event_name="api_request" | unwrap duration_ms [$__range]) by (model)',
                "p50_ms",
            ),
            (
                'quantile_over_time(0.95, {service_name=~"claude-code|claude_code"} | '
                'event_name="api_request" | unwrap duration_ms [$__range]) by (model)',
                "p95_ms",
            ),
            (
                'quantile_over_time(0.5, {service_name=~"claude-code|claude_code"} | '
                'event_name="api_request" | unwrap ttft_ms [$__range]) by (model)',
                "ttft_p50_ms",
            ),
            (
                'quantile_over_time(0.95, {service_name=~"claude-code|claude_code"} | '
                'event_name="api_request" | unwrap ttft_ms [$__range]) by (model)',
                "ttft_p95_ms",
            ),
        ),
        empty="No API requests in this range",
    ),
    # Row 8: tools
    P(
        "tools",
        "Tools",
        "Calls, success rate and duration by tool.",
        "Tools",
        "table",
        "count",
        _tools,
        width=12,
        height=8,
        logql=(
            (
                'sum by (tool_name) (count_over_time({service_name=~"claude-code|claude_code"} | '
                'event_name="tool_result" [$__range]))',
                "calls",
            ),
            (
                'sum by (tool_name) (count_over_time({service_name=~"claude-code|claude_code"} | '
                'event_name="tool_result" | success="true" [$__range])) / sum by (tool_name) '
                '(count_over_time({service_name=~"claude-code|claude_code"} | event_name="tool_result" '
                "[$__range]))",
                "success_rate",
            ),
            (
                'quantile_over_time(0.5, {service_name=~"claude-code|claude_code"} | '
                'event_name="tool_result" | unwrap duration_ms [$__range]) by (tool_name)',
                "p50_ms",
            ),
            (
                'quantile_over_time(0.95, {service_name=~"claude-code|claude_code"} | '
                'event_name="tool_result" | unwrap duration_ms [$__range]) by (tool_name)',
                "p95_ms",
            ),
        ),
        events=(TOOL_RESULT,),
        empty="No tool calls in this range",
    ),
    P(
        "tool_decisions_by_source",
        "Tool decisions by source",
        "Who decided: config, user, hook...",
        "Tools",
        "bar",
        "count",
        lambda v: _items(
            v.selection.event_counts(TOOL_DECISION, ("decision", "source")),
            lambda k: " · ".join(str(p) for p in k if p is not None),
        ),
        width=12,
        height=8,
        logql=(
            (
                'sum by (decision, source) (count_over_time({service_name=~"claude-code|claude_code"} | '
                'event_name="tool_decision" [$__range]))',
                "{{decision}} · {{source}}",
            ),
        ),
        events=(TOOL_DECISION,),
        empty="No tool decisions in this range",
    ),
    # Row 9: people
    P(
        "active_users",
        "Active users",
        "People who used Claude Code.",
        "People",
        "stat",
        "count",
        _active_users,
        promql=(
            (
                "count("
                f'sum by (user_id) (increase({SESSIONS.prometheus}{{user_id!=""}}[$__range])) > 0'
                f' or sum by (user_id) (increase({TOKENS.prometheus}{{user_id!=""}}[$__range]))'
                ")",
                "Active users",
            ),
        ),
    ),
    P(
        "leaderboard_users",
        "Leaderboard: users",
        "Cost, tokens, sessions, lines and commits per user.",
        "People",
        "table",
        "usd",
        lambda v: _leaderboard(v, "user.id", "User"),
        width=10,
        height=8,
        promql=(
            (_named(f"sum by (user_id) (increase({COST.prometheus}[$__range]))"), "cost_usd"),
            (_named(f"sum by (user_id) (increase({TOKENS.prometheus}[$__range]))"), "tokens"),
            (_named(f"sum by (user_id) (increase({SESSIONS.prometheus}[$__range]))"), "sessions"),
            (
                _named(f'sum by (user_id) (increase({LINES.prometheus}{{type="added"}}[$__range]))'),
                "lines",
            ),
            (_named(f"sum by (user_id) (increase({COMMITS.prometheus}[$__range]))"), "commits"),
        ),
        empty="Nobody in this range",
    ),
    P(
        "leaderboard_groups",
        "Leaderboard: teams",
        "The same per team (or any attribute you choose).",
        "People",
        "table",
        "usd",
        lambda v: _leaderboard(v, v.group_key, v.group_key),
        width=10,
        height=8,
        promql=(
            (f"sum by (team_id) (increase({COST.prometheus}[$__range]))", "cost_usd"),
            (f"sum by (team_id) (increase({TOKENS.prometheus}[$__range]))", "tokens"),
            (f"sum by (team_id) (increase({SESSIONS.prometheus}[$__range]))", "sessions"),
            (
                f'sum by (team_id) (increase({LINES.prometheus}{{type="added"}}[$__range]))',
                "lines",
            ),
            (f"sum by (team_id) (increase({COMMITS.prometheus}[$__range]))", "commits"),
        ),
        empty="Nothing in this range",
    ),
    # Row 10: cost breakdowns
    # Each panel only when the data has its dimension (older versions of Claude Code send none of them).
    # Grafana's Prometheus has them as labels: the Collector keeps every attribute, and ccmetrics' /metrics
    # exports them by default (metrics.DEFAULT_LABELS).
    *(
        P(
            f"cost_by_{name}",
            f"Cost and tokens by {title}",
            f"USD and tokens (all types) by {DESCRIBED.get(name, title)}, where Claude Code names one.",
            "Cost breakdown",
            "table",
            "usd",
            functools.partial(_cost_and_tokens, by=by, label=column),
            width=8,
            height=6,
            promql=_cost_and_tokens_promql(by),
            hide_empty=True,
            empty=f"No {title} in this range",
        )
        for name, title, column, by in DIMENSIONS
    ),
    P(
        "sessions_by_start_type",
        "Sessions by how they started",
        "New, resumed or continued sessions.",
        "Cost breakdown",
        "pie",
        "count",
        functools.partial(_dimension, metric=SESSIONS, by=("start_type",)),
        width=8,
        height=6,
        promql=(
            (
                f'sum by (start_type) (increase({SESSIONS.prometheus}{{start_type!=""}}[$__range]))',
                "{{start_type}}",
            ),
        ),
        hide_empty=True,
        empty="No session starts in this range",
        metrics=(SESSIONS,),
    ),
    # Outcomes: what the spend bought
    P(
        "cost_per_commit",
        "Cost per commit",
        "Total cost per commit Claude Code made.",
        "Outcomes",
        "stat",
        "usd",
        lambda v: _per(v, v.selection.metric_total(COST), v.selection.metric_total(COMMITS)),
        metrics=(COMMITS,),
        compare=True,
        spark=lambda v: _per_bucket(_series(v, COST, "model"), _series(v, COMMITS)),
        promql=(
            (
                f"sum(increase({COST.prometheus}[$__range])) / sum(increase({COMMITS.prometheus}[$__range]))",
                "Cost per commit",
            ),
        ),
    ),
    P(
        "cost_per_pull_request",
        "Cost per pull request",
        "Total cost per pull request Claude Code created.",
        "Outcomes",
        "stat",
        "usd",
        lambda v: _per(v, v.selection.metric_total(COST), v.selection.metric_total(PULL_REQUESTS)),
        metrics=(PULL_REQUESTS,),
        compare=True,
        spark=lambda v: _per_bucket(_series(v, COST, "model"), _series(v, PULL_REQUESTS)),
        promql=(
            (
                f"sum(increase({COST.prometheus}[$__range])) / "
                f"sum(increase({PULL_REQUESTS.prometheus}[$__range]))",
                "Cost per pull request",
            ),
        ),
    ),
    P(
        "cost_per_line",
        "Cost per accepted line",
        "Total cost per line of code added (accepted edits).",
        "Outcomes",
        "stat",
        "usd",
        lambda v: _per(v, v.selection.metric_total(COST), v.selection.metric_total(LINES, type="added")),
        compare=True,
        spark=lambda v: _per_bucket(_series(v, COST, "model"), _series(v, LINES, type="added")),
        promql=(
            (
                f"sum(increase({COST.prometheus}[$__range])) / "
                f'sum(increase({LINES.prometheus}{{type="added"}}[$__range]))',
                "Cost per accepted line",
            ),
        ),
    ),
    P(
        "accept_rate_by_language",
        "Accept rate by language",
        "Share of code edits accepted, by language.",
        "Outcomes",
        "bar",
        "percent",
        lambda v: _accept_rates(v, "language"),
        width=6,
        height=6,
        metrics=(DECISIONS,),
        empty="No edit decisions in this range",
        promql=_rate_promql("language"),
    ),
    P(
        "accept_rate_by_source",
        "Accept rate by who decided",
        "Share of code edits accepted, by the source of the decision (config, user, hook...).",
        "Outcomes",
        "bar",
        "percent",
        lambda v: _accept_rates(v, "source"),
        width=6,
        height=6,
        metrics=(DECISIONS,),
        empty="No edit decisions in this range",
    ),
    P(
        "outcomes_users",
        "Outcomes by person",
        "Cost per commit, per pull request and per accepted line, and the share of edits accepted, per user.",
        "Outcomes",
        "table",
        "usd",
        lambda v: _outcomes_by(v, "user.id", "User"),
        width=12,
        height=8,
        metrics=(COMMITS, PULL_REQUESTS, DECISIONS),
        promql=_outcomes_promql("user_id", _named),
        empty="No commits, pull requests, lines or edits in this range",
    ),
    P(
        "outcomes_groups",
        "Outcomes by team",
        "The same per team (or the attribute the team leaderboard is grouped by).",
        "Outcomes",
        "table",
        "usd",
        lambda v: _outcomes_by(v, v.group_key, v.group_key),
        width=12,
        height=8,
        metrics=(COMMITS, PULL_REQUESTS, DECISIONS),
        promql=_outcomes_promql("team_id"),
        empty="No commits, pull requests, lines or edits in this range",
    ),
    # Row 11: the budgets of `serve --alerts` (empty without them): their current period, whatever the range
    P(
        "budgets",
        "Spend vs budget",
        "Each budget's spend so far in its current day, week or month, against its amount, and the spend "
        "projected at the period's end at the rate so far. The page's filters apply; its range does not.",
        "Budgets",
        "table",
        "usd",
        lambda v: budgets.table(v.selection),
        width=16,
        height=8,
        hide_empty=True,
        empty="No budgets (serve --alerts sets them)",
    ),
    P(
        "budget_projection",
        "Projected share of budget",
        "The spend projected at the end of each budget's period, as a share of the budget.",
        "Budgets",
        "bar",
        "percent",
        lambda v: budgets.projection(v.selection),
        width=8,
        height=8,
        hide_empty=True,
        empty="No budgets (serve --alerts sets them)",
    ),
    # Row 12: Claude Code's transcripts (ccmetrics import / push): where the numbers come from, and where
    # sessions ran. Not in Grafana: its Prometheus has neither the source nor the project of a session.
    P(
        "cost_by_source",
        "Cost by source",
        "USD counted from telemetry and from transcripts (ccmetrics import or push); a session that sent "
        "both is counted from its telemetry.",
        "Transcripts",
        "pie",
        "usd",
        lambda v: _items(_by_source(v.selection)),
        width=8,
        height=8,
        shown_when=lambda data: any(item["label"] == "transcript" for item in data["items"]),
    ),
    P(
        "cost_by_project",
        "Cost by project",
        "USD by the git repository (else the folder) each session ran in, as its transcript tells: sessions "
        "without an imported transcript are not shown. The time range applies, other filters do not.",
        "Transcripts",
        "bar",
        "usd",
        lambda v: _items(_by_place(v, "by_project")),
        width=8,
        height=8,
        hide_empty=True,
        empty="No imported transcripts in this range",
    ),
    P(
        "cost_by_branch",
        "Cost by branch",
        "USD by project and git branch, as transcripts tell. The time range applies, other filters do not.",
        "Transcripts",
        "bar",
        "usd",
        lambda v: _items(_by_place(v, "by_branch")),
        width=8,
        height=8,
        hide_empty=True,
        empty="No imported transcripts in this range",
    ),
)


def _by_source(selection: Selection) -> dict[tuple[str], float]:
    from .store.sources import SOURCE, TRANSCRIPT

    out: dict[tuple[str], float] = defaultdict(float)
    for (source,), value in selection.metric_totals(COST, (SOURCE,)).items():
        out[("transcript" if source == TRANSCRIPT else "telemetry",)] += value
    return dict(out)


def _by_place(view: PanelRequest, key: str) -> dict[tuple[str], float]:
    out: dict[tuple[str], float] = defaultdict(float)
    for row in _places(view.selection)[key]:
        label = row["name"] if key == "by_project" else f"{row['name']}: {row['git_branch'] or '-'}"
        out[(label,)] += row["cost_usd"]
    return dict(out)


@memoized  # read once for both panels of a request
def _places(selection: Selection) -> dict[str, list[Any]]:
    from .store.sources import by_place

    return by_place(selection.conn, selection.filters.since_ns, selection.filters.until_ns)


PANELS_BY_ID = {panel.id: panel for panel in PANELS}
assert len(PANELS_BY_ID) == len(PANELS), "panel ids must be unique"
