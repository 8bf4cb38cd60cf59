"""The rules of a rules file for the stack: Prometheus alerting rules and an Alertmanager configuration.

A spend is the exact change of the cost counter over the window (the same pattern as the Grafana panels:
the difference with the sample a window ago, a new series' whole value, and ``increase`` only across a
reset), so the rendered rules fire at the same moments as ``serve``'s evaluator on the same series. Two
kinds differ by what Prometheus holds: a budget's period is a rolling day, week (7d) or month (30d), not a
calendar one; ``error_rate`` reads events, which the stack keeps in Loki, and is left out (``skipped``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .. import metrics
from .rules import Kind, Period, Rule, Rules

COST = metrics.COST.prometheus
TOKENS = metrics.TOKENS.prometheus
PERIOD_SPAN = {Period.DAY: "1d", Period.WEEK: "7d", Period.MONTH: "30d"}
ALERTMANAGER_IMAGE = "prom/alertmanager:v0.28.0"


def duration(seconds: float) -> str:
    """Seconds as a Prometheus duration: whole milliseconds, in the largest unit that divides them."""
    ms = round(seconds * 1000)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _selector(metric: str, rule: Rule) -> str:
    matchers = ", ".join(f'{metrics.label_name(k)}="{_quoted(v)}"' for k, v in rule.filters)
    return f"{metric}{{{matchers}}}" if matchers else metric


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exact(selector: str, window: str, offset: str | None = None) -> str:
    """The counter's exact change over ``window`` (ending ``offset`` ago): see the module's docstring."""
    end = f"{selector} offset {offset}" if offset else selector
    start = f"{selector} offset {_sum_spans(offset, window) if offset else window}"
    at = f" offset {offset}" if offset else ""
    return f"(({end} - {start} >= 0) or ({end} unless {start}) or increase({selector}[{window}]{at}))"


def _sum_spans(a: str, b: str) -> str:
    from ..store.filters import parse_span

    left, right = parse_span(a), parse_span(b)
    assert left is not None and right is not None
    return duration((left + right).total_seconds())


def _by(rule: Rule) -> str:
    return f"sum by ({metrics.label_name(rule.group_by)}) " if rule.group_by else "sum "


def expressions(rule: Rule) -> list[tuple[str, dict[str, str]]]:
    """The PromQL of a rule, with the labels of each alerting rule it becomes (a budget: one per share)."""
    by = _by(rule)
    window = duration(rule.window_s)
    cost = _selector(COST, rule)
    if rule.kind is Kind.SPEND:
        return [(f"{by}({exact(cost, window)}) > {rule.threshold:g}", {})]
    if rule.kind is Kind.TOKENS_PER_MINUTE:
        tokens = _selector(TOKENS, rule)
        return [(f"{by}({exact(tokens, window)}) / {rule.window_s / 60:g} > {rule.threshold:g}", {})]
    if rule.kind is Kind.SPIKE:
        baseline = duration(rule.baseline_s)
        current = f"{by}({exact(cost, window)})"
        before = f"{by}({exact(cost, baseline, offset=window)})"
        share = rule.window_s / rule.baseline_s
        return [
            (
                f"{current} > {rule.threshold:g} * {share:g} * ({before} or {current} * 0) "
                f"and {current} >= {rule.min_spend:g}",
                {},
            )
        ]
    if rule.kind is Kind.SILENCE:
        tokens = _selector(TOKENS, rule)
        seen = f"{by}(count_over_time({tokens}[{duration(rule.seen_within_s)}]))"
        recent = f"{by}({exact(tokens, window)}) > 0"
        return [(f"{seen} unless {recent}", {})]
    if rule.kind is Kind.BUDGET:
        assert rule.period is not None
        spend = f"{by}({exact(cost, PERIOD_SPAN[rule.period])})"
        return [
            (f"{spend} >= {rule.threshold * percent / 100:g}", {"threshold": f"{percent:g}"})
            for percent in rule.warn_at
        ]
    return []  # error_rate: events are Loki's


def skipped(rules: Rules) -> list[str]:
    return [rule.name for rule in rules.rules if not expressions(rule)]


def alert_rules(rules: Rules) -> dict[str, Any]:
    """alert_rules.yml: one alerting rule per rule (per share of a budget), evaluated at the file's
    evaluation interval."""
    out = []
    for rule in rules.rules:
        for expr, extra in expressions(rule):
            entry: dict[str, Any] = {"alert": rule.name, "expr": expr}
            if rule.for_s:
                entry["for"] = duration(rule.for_s)
            labels = {**rule.labels, **extra}
            if labels:
                entry["labels"] = labels
            summary = rule.summary or f"{rule.kind.value} rule {rule.name}"
            entry["annotations"] = {"summary": summary}
            out.append(entry)
    return {
        "groups": [
            {
                "name": "ccmetrics_alerts",
                "interval": duration(rules.evaluation_interval_s),
                "rules": out,
            }
        ]
    }


def webhook_url(apprise_url: str) -> str | None:
    """An Apprise ``json://`` or ``jsons://`` URL as the webhook Alertmanager posts to; None for others."""
    parts = urlsplit(apprise_url)
    scheme = {"json": "http", "jsons": "https"}.get(parts.scheme)
    if scheme is None:
        return None
    return urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))


def alertmanager(rules: Rules) -> dict[str, Any]:
    """alertmanager.yml: a receiver per target (the webhook of a json:// target), alerts grouped by rule,
    repeated at the file's repeat interval, each rule to its own targets."""
    receivers = []
    for name, url in rules.targets.items():
        hook = webhook_url(url)
        receiver: dict[str, Any] = {"name": name}
        if hook:
            receiver["webhook_configs"] = [{"url": hook, "send_resolved": True}]
        receivers.append(receiver)
    everyone: dict[str, Any] = {"name": "all"}
    hooks = [h for h in (webhook_url(u) for u in rules.targets.values()) if h]
    if hooks:
        everyone["webhook_configs"] = [{"url": h, "send_resolved": True} for h in hooks]
    routes = []
    for rule in rules.rules:
        targets = list(rule.targets)
        for i, target in enumerate(targets):
            routes.append(
                {
                    "matchers": [f'alertname="{rule.name}"'],
                    "receiver": target,
                    "continue": i < len(targets) - 1,
                }
            )
    return {
        "route": {
            "receiver": "all",
            "group_by": ["alertname"],
            "group_wait": "0s",
            "group_interval": duration(rules.evaluation_interval_s),
            "repeat_interval": duration(rules.repeat_interval_s),
            "routes": routes,
        },
        "receivers": [everyone, *receivers],
    }
