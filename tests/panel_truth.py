"""What every dashboard panel must show, computed independently from raw OTLP exports.

Built on ``ground_truth`` (which decodes with opentelemetry-proto alone); nothing here imports ccmetrics'
store or queries. ``check_panels`` compares a ``/api/dashboard`` answer with these expectations for every
panel in the catalogue, so a panel without an expectation fails the test.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pytest

from .e2e.ground_truth import Event, Point, sum_points

TOKEN_LABELS = {
    "input": "input",
    "output": "output",
    "cacheRead": "cache read",
    "cacheCreation": "cache creation",
}


def _metric(points: list[Point], name: str, **match: Any) -> float:
    return sum_points(
        p for p in points if p.metric == name and all(p.attrs.get(k) == v for k, v in match.items())
    )


def _by(points: list[Point], name: str, *keys: str) -> dict[tuple, float]:
    groups: dict[tuple, list[Point]] = defaultdict(list)
    for p in points:
        if p.metric == name:
            groups[tuple(p.attrs.get(k) for k in keys)].append(p)
    return {k: sum_points(v) for k, v in groups.items()}


def _items(
    groups: dict[tuple, float], label=lambda k: str(k[0]) if k[0] is not None else "unknown"
) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for k, v in groups.items():
        out[label(k)] += v
    return {k: v for k, v in out.items() if v}


def _nearest_rank(values: list[float], q: float) -> float | None:
    values = sorted(values)
    return values[max(1, math.ceil(q * len(values))) - 1] if values else None


def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def expected_panels(points: list[Point], events: list[Event], group_key: str = "team.id") -> dict[str, Any]:
    m = lambda name, **kw: _metric(points, name, **kw)  # noqa: E731
    cost, tokens = "claude_code.cost.usage", "claude_code.token.usage"
    active, lines = "claude_code.active_time.total", "claude_code.lines_of_code.count"
    all_input = sum(m(tokens, type=t) for t in ("input", "cacheRead", "cacheCreation"))
    output = m(tokens, type="output")
    ev = lambda name: [e for e in events if e.name == name]  # noqa: E731
    prompt_lengths = [_num(e.attrs.get("prompt_length")) for e in ev("user_prompt")]
    prompt_lengths = [x for x in prompt_lengths if x is not None]

    latency: dict[str, dict[str, Any]] = {}
    for model in {e.attrs.get("model") for e in ev("api_request") + ev("api_error")}:
        reqs = [e for e in ev("api_request") if e.attrs.get("model") == model]
        durations = [d for d in (_num(e.attrs.get("duration_ms")) for e in reqs) if d is not None]
        ttfts = [d for d in (_num(e.attrs.get("ttft_ms")) for e in reqs) if d is not None]
        latency[model or "unknown"] = {
            "requests": len(reqs),
            "errors": sum(1 for e in ev("api_error") if e.attrs.get("model") == model),
            "p50_ms": _nearest_rank(durations, 0.5),
            "p95_ms": _nearest_rank(durations, 0.95),
            "ttft_p50_ms": _nearest_rank(ttfts, 0.5),
            "ttft_p95_ms": _nearest_rank(ttfts, 0.95),
        }

    tools: dict[str, dict[str, Any]] = {}
    for tool in {e.attrs.get("tool_name") for e in ev("tool_result")}:
        results = [e for e in ev("tool_result") if e.attrs.get("tool_name") == tool]
        durations = [d for d in (_num(e.attrs.get("duration_ms")) for e in results) if d is not None]
        ok = sum(1 for e in results if str(e.attrs.get("success")).lower() == "true")
        tools[tool or "unknown"] = {
            "calls": len(results),
            "success_rate": ok / len(results),
            "p50_ms": _nearest_rank(durations, 0.5),
            "p95_ms": _nearest_rank(durations, 0.95),
        }

    def board(key: str) -> dict[str, dict[str, float]]:
        names = {p.attrs.get(key) for p in points if p.metric.startswith("claude_code.")}
        out = {}
        for name in names:
            sel = [p for p in points if p.attrs.get(key) == name]
            row = {
                "cost_usd": _metric(sel, cost),
                "tokens": _metric(sel, tokens),
                "sessions": _metric(sel, "claude_code.session.count"),
                "lines": _metric(sel, lines, type="added"),
                "commits": _metric(sel, "claude_code.commit.count"),
            }
            if any(row.values()):
                out["unknown" if name is None else str(name)] = row
        return out

    sessions: dict[str, dict[str, float]] = {}
    for sid in {p.attrs.get("session.id") for p in points if p.attrs.get("session.id")}:
        sel = [p for p in points if p.attrs.get("session.id") == sid]
        sessions[sid] = {
            "cost_usd": _metric(sel, cost),
            "tokens": _metric(sel, tokens),
            "lines_added": _metric(sel, lines, type="added"),
            "lines_removed": _metric(sel, lines, type="removed"),
            "commits": _metric(sel, "claude_code.commit.count"),
            "prompts": sum(1 for e in ev("user_prompt") if e.attrs.get("session.id") == sid),
        }

    join = lambda k: " · ".join(str(x) for x in k if x is not None)  # noqa: E731

    def accept_rates(key: str) -> dict[str, float]:
        decisions = _by(points, "claude_code.code_edit_tool.decision", key, "decision")
        rates = {}
        for value in {k[0] for k in decisions}:
            total = sum(v for k, v in decisions.items() if k[0] == value)
            accepted = sum(v for k, v in decisions.items() if k[0] == value and k[1] == "accept")
            if total and accepted:
                rates["unknown" if value is None else str(value)] = accepted / total
        return rates

    ratio = lambda a, b: a / b if b else None  # noqa: E731

    def outcomes(key: str) -> dict[str, dict[str, float | None]]:
        out = {}
        for name in {p.attrs.get(key) for p in points if p.metric.startswith("claude_code.")}:
            sel = [p for p in points if p.attrs.get(key) == name]
            spent = _metric(sel, cost)
            decided = _metric(sel, "claude_code.code_edit_tool.decision")
            row = {
                "cost_per_commit": ratio(spent, _metric(sel, "claude_code.commit.count")),
                "cost_per_pull_request": ratio(spent, _metric(sel, "claude_code.pull_request.count")),
                "cost_per_line": ratio(spent, _metric(sel, lines, type="added")),
                "accept_rate": ratio(
                    _metric(sel, "claude_code.code_edit_tool.decision", decision="accept"), decided
                ),
            }
            if any(value is not None for value in row.values()):
                out["unknown" if name is None else str(name)] = row
        return out

    return {
        "sessions": m("claude_code.session.count"),
        "commits": m("claude_code.commit.count"),
        "lines_net": m(lines, type="added") - m(lines, type="removed"),
        "cost": m(cost),
        "active_time": m(active),
        "avg_prompt_length": sum(prompt_lengths) / len(prompt_lengths) if prompt_lengths else None,
        "cache_efficiency": ratio(m(tokens, type="cacheRead"), all_input),
        "productivity_ratio": ratio(m(active, type="cli"), m(active, type="user")),
        "cost_per_1k_output": ratio(m(cost) * 1000, output),
        "tokens_by_type": _items(_by(points, tokens, "type"), lambda k: TOKEN_LABELS.get(k[0], str(k[0]))),
        "tokens_by_model": _items(_by(points, tokens, "model")),
        "active_time_split": _items(_by(points, active, "type")),
        "cost_by_model": _items(_by(points, cost, "model")),
        "recent_sessions": sessions,
        "tokens_over_time": _items(_by(points, tokens, "type"), lambda k: TOKEN_LABELS.get(k[0], str(k[0]))),
        "cost_over_time": _items(_by(points, cost, "model")),
        "active_time_over_time": _items(_by(points, active, "type")),
        "pull_requests": m("claude_code.pull_request.count"),
        "edit_decisions": _items(
            _by(points, "claude_code.code_edit_tool.decision", "decision", "tool_name", "language"), join
        ),
        "lines_added": m(lines, type="added"),
        "lines_removed": m(lines, type="removed"),
        "api_requests": len(ev("api_request")),
        "api_errors": len(ev("api_error")),
        "api_errors_by_status": dict(_count(ev("api_error"), lambda e: f"HTTP {e.attrs.get('status_code')}")),
        "api_latency": latency,
        "tools": tools,
        "tool_decisions_by_source": dict(
            _count(ev("tool_decision"), lambda e: join((e.attrs.get("decision"), e.attrs.get("source"))))
        ),
        "active_users": len(
            {
                p.attrs.get("user.id")
                for p in points
                if p.metric in ("claude_code.session.count", tokens) and p.attrs.get("user.id")
            }
        ),
        "leaderboard_users": board("user.id"),
        "leaderboard_groups": board(group_key),
        **{
            f"cost_by_{name}": cost_and_tokens(points, keys)
            for name, keys in (
                ("query_source", ("query_source",)),
                ("effort", ("effort",)),
                ("speed", ("speed",)),
                ("agent", ("agent.name",)),
                ("skill", ("skill.name",)),
                ("plugin", ("plugin.name",)),
                ("mcp", ("mcp_server.name", "mcp_tool.name")),
            )
        },
        "sessions_by_start_type": _items(
            {
                k: v
                for k, v in _by(points, "claude_code.session.count", "start_type").items()
                if k[0] not in (None, "")
            }
        ),
        "cost_per_commit": ratio(m(cost), m("claude_code.commit.count")),
        "cost_per_pull_request": ratio(m(cost), m("claude_code.pull_request.count")),
        "cost_per_line": ratio(m(cost), m(lines, type="added")),
        "accept_rate_by_language": accept_rates("language"),
        "accept_rate_by_source": accept_rates("source"),
        "outcomes_users": outcomes("user.id"),
        "outcomes_groups": outcomes(group_key),
        # transcripts: what is not marked as theirs is telemetry; none of this traffic is theirs
        "cost_by_source": _items(
            _by(points, cost, "ccmetrics.source"),
            lambda k: "transcript" if k[0] == "transcript" else "telemetry",
        ),
        "cost_by_project": {},
        "cost_by_branch": {},
        # the budgets of `serve --alerts`: none here (tests/test_alerts_budgets.py has them)
        "budgets": [],
        "budget_projection": {},
    }


def cost_and_tokens(points: list[Point], keys: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Cost and tokens (all types) per value of a dimension, from the points that carry it."""
    join = lambda k: " · ".join(str(x) for x in k if x not in (None, ""))  # noqa: E731
    cost = _by(points, "claude_code.cost.usage", *keys)
    tokens = _by(points, "claude_code.token.usage", *keys)
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"cost_usd": 0.0, "tokens": 0.0})
    for column, sums in (("cost_usd", cost), ("tokens", tokens)):
        for key, value in sums.items():
            if key[0] not in (None, ""):
                out[join(key)][column] += value
    return {name: row for name, row in out.items() if any(row.values())}


def _count(events: list[Event], label) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for e in events:
        out[label(e)] += 1
    return out


def _approx(value: Any, field: str = "") -> Any:
    return pytest.approx(value, rel=1e-9, abs=1e-9) if isinstance(value, float | int) else value


def check_panels(dashboard: dict[str, Any], expected: dict[str, Any], panels: list[dict[str, Any]]) -> None:
    """Every panel's data in ``dashboard`` equals ``expected``; every catalogue panel is checked."""
    assert {p["id"] for p in panels} == set(expected), "every panel needs an independent expectation"
    for panel in panels:
        pid, data, want = panel["id"], dashboard["panels"][panel["id"]], expected[panel["id"]]
        kind = panel["kind"]
        if kind in ("stat", "gauge"):
            assert data["value"] == (None if want is None else _approx(want)), pid
        elif kind in ("pie", "bar"):
            got = {i["label"]: i["value"] for i in data["items"]}
            assert got == {k: _approx(v) for k, v in want.items()}, pid
        elif kind in ("timeseries", "stacked_bars"):
            got = {s["label"]: sum(s["values"]) for s in data["series"]}
            assert got == {k: _approx(v) for k, v in want.items()}, pid
            assert all(len(s["values"]) == len(data["times"]) for s in data["series"]), pid
        elif pid == "recent_sessions":
            got = {r["session_id"]: {k: r[k] for k in next(iter(want.values()), {})} for r in data["rows"]}
            assert got == {sid: {k: _approx(v) for k, v in row.items()} for sid, row in want.items()}, pid
        elif pid in ("api_latency", "tools"):
            first = "model" if pid == "api_latency" else "tool"
            got = {
                r[first]: {k: v for k, v in r.items() if k != first and k != "succeeded"}
                for r in data["rows"]
            }
            assert got == {k: {f: _approx(v, f) for f, v in row.items()} for k, row in want.items()}, pid
        elif pid == "budgets":
            assert data["rows"] == want, pid
        elif pid.startswith("cost_by_"):  # cost and tokens by a dimension
            got = {r["name"]: {k: v for k, v in r.items() if k != "name"} for r in data["rows"]}
            assert got == {k: {f: _approx(v) for f, v in row.items()} for k, row in want.items()}, pid
        elif pid.startswith("outcomes"):
            got = {r["key"]: {k: v for k, v in r.items() if k not in ("key", "name")} for r in data["rows"]}
            assert got == {
                k: {f: None if v is None else _approx(v) for f, v in row.items()} for k, row in want.items()
            }, pid
        elif pid.startswith("leaderboard"):
            got = {r["key"]: {k: v for k, v in r.items() if k not in ("key", "name")} for r in data["rows"]}
            assert got == {k: {f: _approx(v) for f, v in row.items()} for k, row in want.items()}, pid
        else:
            raise AssertionError(f"no check for panel kind {kind} ({pid})")
