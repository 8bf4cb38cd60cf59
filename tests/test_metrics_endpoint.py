"""``GET /metrics``: Collector names and bounded labels (in-process), all-time totals surviving restarts and
retries (a real server)."""

from __future__ import annotations

from collections import defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ServerProcess, fixture_exports
from .in_process import InProcessServer

CAPTURES = ("http-protobuf-delta", "http-json-cumulative")
COUNTERS = {
    "claude_code_session_count",
    "claude_code_lines_of_code_count",
    "claude_code_commit_count",
    "claude_code_cost_usage_USD",
    "claude_code_token_usage_tokens",
    "claude_code_code_edit_tool_decision",
    "claude_code_active_time_seconds",
}


def load(server: ServerProcess | InProcessServer) -> None:
    for capture in CAPTURES:
        for export in fixture_exports(capture):
            assert server.send(export).status_code == 200


def scrape(server: ServerProcess | InProcessServer) -> dict[str, list]:
    response = server.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    return {name: [(s.name, s.labels, s.value) for s in f.samples] for name, f in families.items()} | {
        "_types": {name: f.type for name, f in families.items()}
    }


def total(samples, **match) -> float:
    return sum(v for _, labels, v in samples if all(labels.get(k) == want for k, want in match.items()))


def test_names_types_and_totals_match_the_store(in_process):
    server = in_process
    assert scrape(server)["_types"] == {}  # nothing stored, nothing exposed
    load(server)
    got = scrape(server)
    assert COUNTERS <= set(got) and all(got["_types"][name] == "counter" for name in COUNTERS)
    for name in COUNTERS:
        assert all(sample == f"{name}_total" for sample, _, _ in got[name]), name  # no _created samples
    summary = server.summary()
    assert total(got["claude_code_cost_usage_USD"]) == pytest.approx(summary["cost_usd"])
    assert total(got["claude_code_session_count"]) == pytest.approx(summary["sessions"])
    assert total(got["claude_code_commit_count"]) == pytest.approx(summary["commits"])
    for otel, key in (("input", "input"), ("output", "output"), ("cacheRead", "cache_read")):
        assert total(got["claude_code_token_usage_tokens"], type=otel) == pytest.approx(
            summary["tokens"][key]
        )
    assert total(got["claude_code_lines_of_code_count"], type="added") == summary["lines_of_code"]["added"]
    assert total(got["claude_code_active_time_seconds"], type="cli") == pytest.approx(
        summary["active_time_seconds"]["cli"]
    )
    web = server.summary(filter="team.id=web")
    assert total(got["claude_code_cost_usage_USD"], team_id="web") == pytest.approx(web["cost_usd"])


def test_labels_are_bounded_by_default_and_sessions_are_opt_in(in_process, tmp_path):
    load(in_process)
    got = scrape(in_process)
    labels = {k for name in COUNTERS for _, sample_labels, _ in got[name] for k in sample_labels}
    assert {"user_id", "model", "type", "team_id", "terminal_type", "query_source", "effort"} <= labels
    assert not labels & {"session_id", "os_version", "host_arch", "anthropic_custom_base_url"}

    detailed = InProcessServer(
        tmp_path / "detailed", metrics_session_labels=True, metrics_labels="user.id,model"
    )
    try:
        load(detailed)
        got = scrape(detailed)
        labels = {k for name in COUNTERS for _, sample_labels, _ in got[name] for k in sample_labels}
        assert labels == {"user_id", "model", "session_id"}
        per_session: dict[str, float] = defaultdict(float)
        for _, sample_labels, value in got["claude_code_cost_usage_USD"]:
            per_session[sample_labels["session_id"]] += value
        assert len(per_session) >= 2
        for session_id, value in per_session.items():
            assert value == pytest.approx(detailed.summary(filter=f"session.id={session_id}")["cost_usd"])
    finally:
        detailed.close()


def test_counters_survive_a_restart_and_retries(start_server):
    server = start_server()
    load(server)
    before = scrape(server)
    load(server)  # the exporter retries everything: nothing changes
    assert scrape(server) == before
    server.stop()
    again = start_server(server.data_dir)
    assert scrape(again) == before
