"""The rules file: TOML and YAML read alike, every mistake named with its line, and ``ccmetrics alerts
check`` as the way to find them before ``serve --alerts`` refuses the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ccmetrics.alerts.rules import Kind, Period, RulesError, load, parse

GOOD_TOML = """
evaluation_interval = "10s"
repeat_interval = "2h"

[targets]
ops = "json://127.0.0.1:9/hook"
chat = "json://127.0.0.1:9/chat"

[[rules]]
name = "HighCost"
kind = "spend"
window = "1h"
above = 10
group_by = "team"
for = "5m"
labels = { severity = "warning" }
notify = ["ops"]

[[rules]]
name = "MonthlyBudget"
kind = "budget"
period = "month"
amount = 500
group_by = "user"
warn_at = [80, 50, 100]

[[rules]]
name = "Spike"
kind = "spike"
window = "15m"
factor = 3
baseline = "1d"
min_spend = 1

[[rules]]
name = "Quiet"
kind = "silence"
seen_within = "7d"
quiet_for = "90m"
group_by = "host"

[[rules]]
name = "Errors"
kind = "error_rate"
window = "10m"
above = 0.05
min_requests = 20
[rules.filter]
"team.id" = "platform"

[[rules]]
name = "Tokens"
kind = "tokens_per_minute"
window = "5m"
above = 100000
"""

GOOD_YAML = """
evaluation_interval: 10s
repeat_interval: 2h
targets:
  ops: json://127.0.0.1:9/hook
  chat: json://127.0.0.1:9/chat
rules:
  - {name: HighCost, kind: spend, window: 1h, above: 10, group_by: team, for: 5m,
     labels: {severity: warning}, notify: [ops]}
  - {name: MonthlyBudget, kind: budget, period: month, amount: 500, group_by: user, warn_at: [80, 50, 100]}
  - {name: Spike, kind: spike, window: 15m, factor: 3, baseline: 1d, min_spend: 1}
  - {name: Quiet, kind: silence, seen_within: 7d, quiet_for: 90m, group_by: host}
  - name: Errors
    kind: error_rate
    window: 10m
    above: 0.05
    min_requests: 20
    filter: {team.id: platform}
  - {name: Tokens, kind: tokens_per_minute, window: 5m, above: 100000}
"""


def test_toml_and_yaml_give_the_same_rules():
    toml = parse(GOOD_TOML, "a.toml")
    yaml = parse(GOOD_YAML, "a.yaml", yaml_format=True)
    assert toml.rules == yaml.rules
    assert toml.targets == yaml.targets
    assert (toml.evaluation_interval_s, toml.repeat_interval_s) == (10, 7200)
    high, budget, spike, quiet, errors, tokens = toml.rules
    assert (high.kind, high.window_s, high.threshold, high.group_by, high.for_s) == (
        Kind.SPEND, 3600, 10, "team.id", 300
    )  # fmt: skip
    assert dict(high.labels) == {"severity": "warning"}
    assert toml.targets_of(high) == {"ops": "json://127.0.0.1:9/hook"}
    assert set(toml.targets_of(spike)) == {"ops", "chat"}  # no notify: every target
    assert (budget.period, budget.threshold, budget.warn_at, budget.group_by) == (
        Period.MONTH, 500, (50, 80, 100), "user.id"
    )  # fmt: skip
    assert not budget.repeats and not budget.send_resolved
    assert (spike.threshold, spike.window_s, spike.baseline_s, spike.min_spend) == (3, 900, 86400, 1)
    assert (quiet.seen_within_s, quiet.window_s, quiet.group_by) == (7 * 86400, 5400, "host.name")
    assert (errors.threshold, errors.min_requests, errors.filters) == (0.05, 20, (("team.id", "platform"),))
    assert (tokens.kind, tokens.threshold) == (Kind.TOKENS_PER_MINUTE, 100000)


BAD_TOML = """\
evaluation_interval = "soon"
[targets]
ops = "not a url"

[[rules]]
name = "HighCost"
kind = "spend"
window = "1h"

[[rules]]
name = "HighCost"
kind = "budget"
period = "year"
amount = 0
colour = "red"
notify = ["pager"]

[[rules]]
name = "x y"
kind = "pricey"
"""


def test_every_mistake_is_named_with_its_line():
    with pytest.raises(RulesError) as caught:
        parse(BAD_TOML, "bad.toml")
    assert caught.value.problems == [
        "bad.toml:1: evaluation_interval: must be a span of at least 0.1s, such as 30s, 5m, 1h or 7d",
        "bad.toml:3: targets.ops: must be an Apprise URL, such as json://host:port/path",
        "bad.toml:5: rules[0].above: required (a number)",
        "bad.toml:13: rules[1].period: must be day, week or month",
        "bad.toml:14: rules[1].amount: must be a number above 0",
        "bad.toml:15: rules[1].colour: budget rules have no 'colour' (they take amount, filter, for, "
        "group_by, kind, labels, name, notify, period, summary, warn_at)",
        "bad.toml:16: rules[1].notify: no target named 'pager' in [targets]",
        "bad.toml:19: rules[2].name: every rule needs a name of letters, digits and _ (HighCost)",
        "bad.toml:20: rules[2].kind: kind must be one of spend, budget, spike, silence, error_rate, "
        "tokens_per_minute",
    ]


def test_yaml_mistakes_have_their_lines_too():
    text = "targets: {}\nrules:\n  - name: A\n    kind: spend\n    window: 1h\n    above: lots\n"
    with pytest.raises(RulesError) as caught:
        parse(text, "r.yaml", yaml_format=True)
    assert caught.value.problems == ["r.yaml:6: rules[0].above: must be a number"]
    with pytest.raises(RulesError) as caught:
        parse("rules: [\n  {name: A\n", "r.yaml", yaml_format=True)
    assert caught.value.problems[0].startswith("r.yaml:3: not valid YAML")


def test_a_file_that_is_not_toml_names_its_line():
    with pytest.raises(RulesError) as caught:
        parse('[targets]\nops = "json://x"\n[[rules]\n', "t.toml")
    assert caught.value.problems[0].startswith("t.toml:3: not valid TOML")


def test_a_second_rule_of_the_same_name_is_refused():
    rule = '[[rules]]\nname="A"\nkind="spend"\nwindow="1h"\nabove=1\n'
    text = rule + rule
    with pytest.raises(RulesError) as caught:
        parse(text, "t.toml")
    assert caught.value.problems == ["t.toml:7: rules[1].name: a second rule named 'A': names are unique"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccmetrics", *args], capture_output=True, text=True, timeout=60
    )


def test_check_command(tmp_path: Path):
    good = tmp_path / "rules.yaml"
    good.write_text(GOOD_YAML)
    result = run("alerts", "check", str(good))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{good}: 6 rules, 2 targets, evaluated every 10s: OK\n"
    assert load(good).rules == parse(GOOD_TOML).rules
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_TOML)
    result = run("alerts", "check", str(bad))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        f"{bad}:1: evaluation_interval: must be a span of at least 0.1s, such as 30s, 5m, 1h or 7d"
    )
    assert len(result.stderr.splitlines()) == 9
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[targets]\nops = "nosuchservice://x"\n')
    result = run("alerts", "check", str(unknown))
    assert result.returncode == 1 and "targets.ops: Apprise does not know this URL" in result.stderr


def test_serve_refuses_a_bad_rules_file(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_TOML)
    result = run("serve", "--data-dir", str(tmp_path / "d"), "--alerts", str(bad))
    assert result.returncode == 2
    assert f"{bad}:5: rules[0].above: required (a number)" in result.stderr
