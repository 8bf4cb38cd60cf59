"""The metric catalogue: its names and units are those the real CLI sends, its Prometheus names those the
Collector gives them, and every counter the panels, the stack's rules and /metrics' defaults name is in it."""

from __future__ import annotations

import re

from ccmetrics import config
from ccmetrics.metrics import CATALOGUE, DEFAULT_LABELS
from ccmetrics.panels import PANELS
from ccmetrics.prometheus import exposition
from ccmetrics.stack import configs

from .conftest import CAPTURES, captured_exports
from .e2e.ground_truth import decode
from .test_prometheus_names import CLAUDE_CODE


def test_names_and_units_are_what_the_real_cli_sends():
    sent: dict[str, str] = {}
    for capture in CAPTURES:
        for export in captured_exports(capture):
            if export.path.endswith("/v1/metrics"):
                request = decode("metrics", export.body, export.content_type, export.content_encoding)
                for resource in request.resource_metrics:
                    for scope in resource.scope_metrics:
                        sent.update((metric.name, metric.unit) for metric in scope.metrics)
    assert sent, "the captures hold metrics"
    known = {metric.name: metric.unit for metric in CATALOGUE}
    for name, unit in sent.items():
        if name.startswith("claude_code."):
            assert known.get(name) == unit, name


def test_prometheus_names_are_the_collectors():
    assert {(m.name, m.unit, m.prometheus) for m in CATALOGUE} == set(CLAUDE_CODE)


def test_every_counter_the_panels_and_the_stack_name_is_in_the_catalogue():
    known = {metric.prometheus for metric in CATALOGUE}
    queries = [expr for panel in PANELS for expr, _ in panel.promql]
    rules = [str(configs.recording_rules()), str(configs.alert_rules(configs.StackOptions()))]
    named = {name for text in [*queries, *rules] for name in re.findall(r"claude_code_\w+_total", text)}
    assert named and named <= known


def test_the_labels_on_metrics_by_default_are_declared_once():
    assert config.Config().metrics_labels == DEFAULT_LABELS
    assert exposition.__defaults__ is not None and DEFAULT_LABELS in exposition.__defaults__
