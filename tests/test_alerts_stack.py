"""The same rules for the stack: ``stack init --alerts FILE`` renders them into Prometheus alerting rules
and an Alertmanager configuration, and ``promtool test rules`` shows the rendered rules fire on the same
synthetic series at the same moments as ``serve``'s evaluator (fed the same counters, moved on by the same
state machine, minute by minute): spend, tokens per minute, spikes against their baseline, and budgets'
shares (from the start of a day, where a calendar day and Prometheus's rolling one agree)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from ccmetrics.alerts.evaluate import Reading, measure
from ccmetrics.alerts.rules import parse
from ccmetrics.alerts.state import AlertState
from ccmetrics.metrics import label_name

from .alert_traffic import PROTOBUF, resource
from .otlp_builders import CUMULATIVE, sum_request
from .test_stack import promtool

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
RULES = """
evaluation_interval = "1m"
repeat_interval = "1h"
[targets]
ops = "json://127.0.0.1:9/hook"
chat = "slack://token-a/token-b/token-c"

[[rules]]
name = "HighCost"
kind = "spend"
window = "10m"
above = 3
group_by = "email"
for = "2m"
labels = { severity = "warning" }
summary = "spend above $3 in 10 minutes"
notify = ["ops"]

[[rules]]
name = "TeamCost"
kind = "spend"
window = "5m"
above = 0.6

[[rules]]
name = "Tokens"
kind = "tokens_per_minute"
window = "5m"
above = 150
group_by = "email"
summary = "a fast burn"

[[rules]]
name = "Errors"
kind = "error_rate"
window = "5m"
above = 0.1

[[rules]]
name = "Spike"
kind = "spike"
window = "5m"
baseline = "20m"
factor = 2.2
min_spend = 0.45
group_by = "email"

[[rules]]
name = "Budget"
kind = "budget"
period = "day"
amount = 9.5
group_by = "email"
warn_at = [25, 50]
"""
# Cumulative counters, one value a minute from minute 0: promtool's expanding notation and the same list.
SERIES = {
    ("cost", "ana@x.io"): ("0+0.5x12 6+0x30", [0.5 * min(i, 12) for i in range(43)]),
    ("cost", "bo@x.io"): ("0+0.1x42", [0.1 * i for i in range(43)]),
    # steady, then five times the rate for five minutes: a spike once the baseline has filled
    ("cost", "cy@x.io"): (
        "0+0.1x25 3.5+1x4 7.5+0x11",
        [0.1 * i if i <= 25 else 2.5 + (i - 25) if i <= 30 else 7.5 for i in range(43)],
    ),
    ("tokens", "ana@x.io"): (
        "0+200x8 1700+100x33",
        [200 * min(i, 8) + 100 * max(0, i - 8) for i in range(43)],
    ),
}
METRICS = {"cost": ("claude_code.cost.usage", "USD"), "tokens": ("claude_code.token.usage", "tokens")}
MINUTES = 42
# Thresholds fall between the series' steps, never on one: promtool adds its steps up, Python multiplies.
# The series start at the epoch, a calendar day's start: there the budget's day and Prometheus's rolling 1d
# hold the same spend.
RENDERED = ("HighCost", "TeamCost", "Tokens", "Spike", "Budget")


def test_stack_init_renders_the_rules(tmp_path: Path):
    rules_path = tmp_path / "alerts.toml"
    rules_path.write_text(RULES)
    out = tmp_path / "stack"
    result = subprocess.run(
        [sys.executable, "-m", "ccmetrics", "stack", "init", str(out), "--alerts", str(rules_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "rule 'Errors' reads events, which the stack keeps in Loki: not rendered" in result.stderr
    rendered = yaml.safe_load((out / "prometheus" / "alert_rules.yml").read_text())
    [group] = rendered["groups"]
    assert [r["alert"] for r in group["rules"]] == [*RENDERED, "Budget"]  # a budget: one per share
    assert group["interval"] == "1m"
    check = subprocess.run(
        [promtool(), "check", "rules", "alert_rules.yml"],
        cwd=out / "prometheus",
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load((out / "prometheus" / "prometheus.yml").read_text())
    assert config["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]}
    manager = yaml.safe_load((out / "alertmanager" / "alertmanager.yml").read_text())
    assert manager["route"]["repeat_interval"] == "1h"
    assert manager["route"]["routes"] == [
        {"matchers": ['alertname="HighCost"'], "receiver": "ops", "continue": False}
    ]
    receivers = {r["name"]: r for r in manager["receivers"]}
    assert receivers["ops"]["webhook_configs"] == [{"url": "http://127.0.0.1:9/hook", "send_resolved": True}]
    compose = yaml.safe_load((out / "docker-compose.yml").read_text())
    assert "alertmanager" in compose["services"]
    assert (out / "data" / "alertmanager").is_dir()


def builtin_firing(in_process, tmp_path: Path) -> dict[int, set[tuple[str, tuple[tuple[str, str], ...]]]]:
    """Feed the series to a store, run serve's evaluator every minute; what fires at each minute."""
    for (kind, user), (_, values) in SERIES.items():
        name, unit = METRICS[kind]
        attrs = {"model": "m", "session.id": f"s-{user}"} | ({"type": "output"} if kind == "tokens" else {})
        points = [(1, i * MINUTE, float(v), attrs) for i, v in enumerate(values) if i]
        request = sum_request(name, points, temporality=CUMULATIVE, unit=unit, resource=resource(user=user))
        response = in_process.otlp.post("/v1/metrics", content=request.SerializeToString(), headers=PROTOBUF)
        assert response.status_code == 200, response.text
    rules = parse(RULES)
    state = AlertState(tmp_path / "alerts.db")
    firing = {}
    try:
        for minute in range(MINUTES + 1):
            now = minute * MINUTE
            with in_process.store.snapshot() as conn:
                observed = measure(Reading(conn, now), rules.rules)
            state.step(rules, observed, now)
            firing[minute] = {
                (a["rule"], tuple(sorted(a["labels"].items())))
                for a in state.overview(now)["alerts"]
                if a["state"] == "firing"
            }
    finally:
        state.close()
    return firing


def test_promtool_fires_at_the_same_moments_as_the_builtin_evaluator(in_process, tmp_path: Path):
    firing = builtin_firing(in_process, tmp_path)
    assert any(firing.values()) and not all(firing.values())  # the test has moments of both
    rules = parse(RULES)
    summaries = {rule.name: rule.summary or f"{rule.kind.value} rule {rule.name}" for rule in rules.rules}
    from ccmetrics.alerts.prometheus import alert_rules

    (tmp_path / "alert_rules.yml").write_text(yaml.safe_dump(alert_rules(rules)))
    series = []
    for (kind, user), (notation, _) in SERIES.items():
        metric = {
            "cost": "claude_code_cost_usage_USD_total",
            "tokens": "claude_code_token_usage_tokens_total",
        }
        extra = ', type="output"' if kind == "tokens" else ""
        series.append(
            {"series": f'{metric[kind]}{{user_email="{user}", model="m"{extra}}}', "values": notation}
        )
    tests = []
    for minute, alerts in firing.items():
        for name in RENDERED:
            expected = [
                {
                    "exp_labels": {label_name(k): v for k, v in labels},
                    "exp_annotations": {"summary": summaries[name]},
                }
                for rule, labels in sorted(alerts)
                if rule == name
            ]
            tests.append({"eval_time": f"{minute}m", "alertname": name, "exp_alerts": expected})
    test_file = {
        "rule_files": ["alert_rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": tests}],
    }
    (tmp_path / "rules_test.yml").write_text(yaml.safe_dump(test_file))
    result = subprocess.run(
        [promtool(), "test", "rules", "rules_test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
