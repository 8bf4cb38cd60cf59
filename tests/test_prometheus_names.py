"""Golden tests: the names the Collector's ``prometheus`` exporter gives Claude Code's metrics; its rules."""

from __future__ import annotations

import pytest

from ccmetrics.prometheus import label_name, metric_name, parse_label_keys

CLAUDE_CODE = [
    ("claude_code.session.count", "", "claude_code_session_count_total"),
    ("claude_code.lines_of_code.count", "", "claude_code_lines_of_code_count_total"),
    ("claude_code.pull_request.count", "", "claude_code_pull_request_count_total"),
    ("claude_code.commit.count", "", "claude_code_commit_count_total"),
    ("claude_code.cost.usage", "USD", "claude_code_cost_usage_USD_total"),
    ("claude_code.token.usage", "tokens", "claude_code_token_usage_tokens_total"),
    ("claude_code.code_edit_tool.decision", "", "claude_code_code_edit_tool_decision_total"),
    ("claude_code.active_time.total", "s", "claude_code_active_time_seconds_total"),
]


@pytest.mark.parametrize(("name", "unit", "expected"), CLAUDE_CODE)
def test_claude_code_metric_names(name, unit, expected):
    assert metric_name(name, unit) == expected


@pytest.mark.parametrize(
    ("name", "unit", "kind", "monotonic", "expected"),
    [
        ("http.server.duration", "ms", "sum", True, "http_server_duration_milliseconds_total"),
        ("requests", "{request}", "sum", True, "requests_total"),  # annotations are dropped
        ("claude_code.session.count", "{session}", "sum", True, "claude_code_session_count_total"),
        ("queue.size", "{item}", "sum", False, "queue_size"),  # up-down counters get no _total
        ("total.bytes", "By", "sum", True, "bytes_total"),  # unit already in the name; _total only once
        ("cpu.time", "s", "sum", True, "cpu_time_seconds_total"),
        ("disk.io", "By/s", "sum", True, "disk_io_bytes_per_second_total"),
        ("load", "1", "gauge", True, "load_ratio"),
        ("errors", "1", "sum", True, "errors_total"),  # unit 1 says nothing on counters
        ("cost", "USD", "gauge", False, "cost_USD"),
        ("temperature", "Cel", "gauge", False, "temperature_celsius"),
        ("5xx.count", "", "sum", True, "_5xx_count_total"),
    ],
)
def test_naming_rules(name, unit, kind, monotonic, expected):
    assert metric_name(name, unit, kind, monotonic) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("user.id", "user_id"),
        ("team.id", "team_id"),
        ("model", "model"),
        ("terminal.type", "terminal_type"),
        ("service.version", "service_version"),
        ("session.id", "session_id"),
        ("2fa", "key_2fa"),
        ("_private", "key_private"),
        ("a-b c", "a_b_c"),
        ("é", "key_"),
    ],
)
def test_label_names(key, expected):
    assert label_name(key) == expected


def test_label_setting_parses_and_deduplicates():
    assert parse_label_keys(" user.id, model,,model ,team.id") == ("user.id", "model", "team.id")
    assert parse_label_keys(["a", "b"]) == ("a", "b")
