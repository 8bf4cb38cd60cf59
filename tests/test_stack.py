"""``ccmetrics stack init`` and ``ccmetrics health``: what can be proved without a Docker engine.

The generated Prometheus files go through ``promtool`` (config, rules and rule unit tests); the Compose,
Collector and Loki files are parsed and checked for what makes the numbers right; the dashboard is checked
against Grafana's JSON model.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ccmetrics.cli import main
from ccmetrics.panels import PANELS
from ccmetrics.stack.grafana import dashboard, exact_increase, layout, with_filters

from .conftest import IN_CI, free_port

MAKE_TARGETS = ("setup", "start", "stop", "restart", "logs", "health", "status", "setup-telemetry", "clean")


def init(directory: Path, *args: str) -> Path:
    result = CliRunner().invoke(main, ["stack", "init", str(directory), *args])
    assert result.exit_code == 0, result.output
    return directory


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is not installed (Debian: apt-get install -y prometheus)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def full(tmp_path) -> Path:
    return init(tmp_path / "stack")


@pytest.fixture
def lite(tmp_path) -> Path:
    return init(tmp_path / "lite", "--lite", "--ccmetrics-target", "ccmetrics.internal:3000")


# --- the files --------------------------------------------------------------------------------------


def test_writes_a_ready_directory(full):
    expected = {
        "docker-compose.yml",
        ".env",
        ".env.example",
        "Makefile",
        "README.md",
        "otel-collector/config.yaml",
        "prometheus/prometheus.yml",
        "prometheus/recording_rules.yml",
        "prometheus/alert_rules.yml",
        "loki/config.yaml",
        "grafana/provisioning/datasources/datasources.yml",
        "grafana/provisioning/dashboards/dashboards.yml",
        "grafana/dashboards/claude-code.json",
    }
    assert expected <= {str(p.relative_to(full)) for p in full.rglob("*") if p.is_file()}
    assert all((full / "data" / s).is_dir() for s in ("prometheus", "loki", "grafana"))
    configs = [p for p in full.rglob("*") if p.is_file() and p.suffix in (".yml", ".yaml")]
    assert "promtail" not in "".join(p.read_text() for p in configs).lower()


def test_compose_pins_images_and_mounts_files_that_exist(full):
    compose = load(full / "docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"otel-collector", "prometheus", "loki", "grafana"}
    for name, service in services.items():
        image, _, tag = service["image"].rpartition(":")
        assert image and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), (name, service["image"])
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("./") and (full / source).exists(), (name, volume)
        for dependency in service.get("depends_on", []):
            assert dependency in services
    ports = {name: [str(p) for p in s.get("ports", [])] for name, s in services.items()}
    assert {"4317:4317", "4318:4318", "127.0.0.1:13133:13133"} <= set(ports["otel-collector"])
    assert ports["prometheus"] == ["127.0.0.1:9090:9090"] and ports["loki"] == ["127.0.0.1:3100:3100"]
    assert ports["grafana"] == ["3000:3000"]
    assert "--storage.tsdb.retention.time=30d" in services["prometheus"]["command"]
    env = services["grafana"]["environment"]
    assert (
        "admin" not in env["GF_SECURITY_ADMIN_PASSWORD"]
        and "GRAFANA_ADMIN_PASSWORD" in env["GF_SECURITY_ADMIN_PASSWORD"]
    )
    assert (full / "loki/config.yaml").exists() and "-config.file=/etc/loki/config.yaml" in services["loki"][
        "command"
    ]


def test_collector_accumulates_deltas_keeps_counters_and_sends_events_to_loki(full):
    config = load(full / "otel-collector/config.yaml")
    pipelines = config["service"]["pipelines"]
    for pipeline in pipelines.values():  # every component used is defined
        assert set(pipeline["receivers"]) <= set(config["receivers"])
        assert set(pipeline["processors"]) <= set(config["processors"])
        assert set(pipeline["exporters"]) <= set(config["exporters"])
    metrics = pipelines["metrics"]
    assert "deltatocumulative" in metrics["processors"] and metrics["exporters"] == ["prometheus"]
    assert metrics["processors"].index("deltatocumulative") < metrics["processors"].index("batch")
    exporter = config["exporters"]["prometheus"]
    assert exporter["endpoint"].endswith(":8889")
    assert exporter["resource_to_telemetry_conversion"] == {"enabled": True}
    assert _hours(exporter["metric_expiration"]) >= 24  # not the 5m default
    assert config["processors"]["deltatocumulative"]["max_stale"] == exporter["metric_expiration"]
    assert pipelines["logs"]["exporters"] == ["otlphttp/loki"]
    assert config["exporters"]["otlphttp/loki"]["endpoint"] == "http://loki:3100/otlp"
    assert config["extensions"]["health_check"]["endpoint"] == "0.0.0.0:13133"
    assert config["service"]["extensions"] == ["health_check"]
    grpc = config["receivers"]["otlp"]["protocols"]
    assert grpc["grpc"]["endpoint"] == "0.0.0.0:4317" and grpc["http"]["endpoint"] == "0.0.0.0:4318"


def _hours(duration: str) -> float:
    value, unit = float(duration[:-1]), duration[-1]
    return value * {"m": 1 / 60, "h": 1, "d": 24}[unit]


def test_loki_takes_otlp_with_structured_metadata_and_retention(full):
    config = load(full / "loki/config.yaml")
    limits = config["limits_config"]
    assert limits["allow_structured_metadata"] is True
    assert limits["otlp_config"]["log_attributes"] == [{"action": "structured_metadata", "regex": ".*"}]
    assert limits["retention_period"] == "720h" and config["compactor"]["retention_enabled"] is True
    assert config["server"]["http_listen_port"] == 3100
    assert config["schema_config"]["configs"][0]["store"] == "tsdb"


def test_grafana_provisioning_points_at_the_services(full):
    sources = {
        s["type"]: s for s in load(full / "grafana/provisioning/datasources/datasources.yml")["datasources"]
    }
    assert (
        sources["prometheus"]["url"] == "http://prometheus:9090"
        and sources["loki"]["url"] == "http://loki:3100"
    )
    provider = load(full / "grafana/provisioning/dashboards/dashboards.yml")["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards" and provider["allowUiUpdates"] is True
    grafana = load(full / "docker-compose.yml")["services"]["grafana"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]


def test_env_has_a_random_private_password_that_init_never_overwrites(tmp_path):
    one, two = init(tmp_path / "one"), init(tmp_path / "two")
    password = lambda d: re.search(r"^GRAFANA_ADMIN_PASSWORD=(.+)$", (d / ".env").read_text(), re.M)[1]  # noqa: E731
    assert password(one) != password(two) and len(password(one)) >= 24 and password(one) != "admin"
    assert stat.S_IMODE((one / ".env").stat().st_mode) == 0o600
    again = CliRunner().invoke(main, ["stack", "init", str(one)])
    assert again.exit_code != 0 and "--force" in again.output
    before = password(one)
    init(one, "--force")
    assert password(one) == before
    assert "GRAFANA_ADMIN_PASSWORD=" in (one / ".env.example").read_text()


def test_makefile_has_the_original_targets(full):
    makefile = (full / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))
    assert set(MAKE_TARGETS) <= targets
    assert {"logs-otel", "logs-prometheus", "logs-loki", "logs-grafana"} <= targets
    health = makefile.split("health:")[1].splitlines()[1]
    assert "$(CCMETRICS) health" in health and "--collector" in health and "--loki" in health
    readme = (full / "README.md").read_text()
    assert "deltatocumulative" in readme and "metric_expiration" in readme and ".env" in readme


def test_options_retention_remote_write_and_the_light_variant(tmp_path, lite):
    custom = init(
        tmp_path / "custom",
        "--retention",
        "90d",
        "--loki-retention",
        "2w",
        "--remote-write",
        "https://mimir.example/api/v1/push",
    )
    prometheus = load(custom / "prometheus/prometheus.yml")
    assert prometheus["remote_write"] == [{"url": "https://mimir.example/api/v1/push"}]
    assert (
        "--storage.tsdb.retention.time=90d"
        in load(custom / "docker-compose.yml")["services"]["prometheus"]["command"]
    )
    assert load(custom / "loki/config.yaml")["limits_config"]["retention_period"] == "336h"
    assert "remote_write" not in load(tmp_path / "lite/prometheus/prometheus.yml")

    services = load(lite / "docker-compose.yml")["services"]
    assert set(services) == {"prometheus", "grafana"} and services["grafana"]["ports"] == ["3001:3000"]
    assert not (lite / "otel-collector").exists() and not (lite / "loki").exists()
    job = load(lite / "prometheus/prometheus.yml")["scrape_configs"][0]
    assert (
        job["static_configs"][0]["targets"] == ["ccmetrics.internal:3000"]
        and job["metrics_path"] == "/metrics"
    )
    board = json.loads((lite / "grafana/dashboards/claude-code.json").read_text())
    assert all(t["datasource"]["type"] == "prometheus" for p in board["panels"] for t in p.get("targets", []))
    assert [
        s["type"] for s in load(lite / "grafana/provisioning/datasources/datasources.yml")["datasources"]
    ] == ["prometheus"]
    bad = CliRunner().invoke(main, ["stack", "init", str(tmp_path / "bad"), "--loki-retention", "soon"])
    assert bad.exit_code != 0 and "retention" in bad.output


# --- promtool ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["full", "lite"])
def test_promtool_accepts_config_and_rules(variant, request):
    directory = request.getfixturevalue(variant) / "prometheus"
    tool = promtool()
    checked = subprocess.run(
        [tool, "check", "config", "prometheus.yml"], cwd=directory, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = subprocess.run(
        [tool, "check", "rules", "recording_rules.yml", "alert_rules.yml"],
        cwd=directory,
        capture_output=True,
        text=True,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    names = [r.get("record") for g in load(directory / "recording_rules.yml")["groups"] for r in g["rules"]]
    assert {
        "claude_code:cache_efficiency:ratio",
        "claude_code:cost_per_1k_tokens:ratio",
        "claude_code:productivity:ratio",
    } <= set(names)
    alerts = [r.get("alert") for g in load(directory / "alert_rules.yml")["groups"] for r in g["rules"]]
    assert {
        "ClaudeCodeHighHourlyCost",
        "ClaudeCodeSpendSpike",
        "ClaudeCodeUserOverDailyBudget",
        "ClaudeCodeNoTelemetry",
    } <= set(alerts)


RULE_TESTS = """
rule_files: [recording_rules.yml, alert_rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - {series: 'claude_code_token_usage_tokens_total{type="input", model="m", user_id="u1"}',
         values: '0+60x30'}
      - {series: 'claude_code_token_usage_tokens_total{type="cacheRead", model="m", user_id="u1"}',
         values: '0+180x30'}
      - {series: 'claude_code_token_usage_tokens_total{type="cacheCreation", model="m", user_id="u1"}',
         values: '0+60x30'}
      - {series: 'claude_code_token_usage_tokens_total{type="output", model="m", user_id="u1"}',
         values: '0+120x30'}
      - {series: 'claude_code_cost_usage_USD_total{model="m", user_id="u1"}', values: '0+60x30'}
      - {series: 'claude_code_active_time_seconds_total{type="cli", user_id="u1"}', values: '0+2x30'}
      - {series: 'claude_code_active_time_seconds_total{type="user", user_id="u1"}', values: '0+1x30'}
    promql_expr_test:
      - {expr: 'claude_code:cache_efficiency:ratio', eval_time: 10m,
         exp_samples: [{labels: 'claude_code:cache_efficiency:ratio', value: 0.6}]}
      - {expr: 'claude_code:cost_per_1k_tokens:ratio', eval_time: 10m,
         exp_samples: [{labels: 'claude_code:cost_per_1k_tokens:ratio', value: 500}]}
      - {expr: 'claude_code:productivity:ratio', eval_time: 10m,
         exp_samples: [{labels: 'claude_code:productivity:ratio', value: 2}]}
  - interval: 1m
    input_series:
      - {series: 'claude_code_cost_usage_USD_total{user_id="u1", model="m"}', values: '0+1x40'}
      - {series: 'claude_code_token_usage_tokens_total{type="input", user_id="u1"}',
         values: '0+10x10 100x100'}
    alert_rule_test:
      - eval_time: 35m
        alertname: ClaudeCodeUserOverDailyBudget
        exp_alerts:
          - exp_labels: {severity: info, user_id: u1}
            exp_annotations: {summary: u1 spent over $25 today}
      - {eval_time: 30m, alertname: ClaudeCodeNoTelemetry, exp_alerts: []}
      - eval_time: 85m
        alertname: ClaudeCodeNoTelemetry
        exp_alerts:
          - exp_labels: {severity: info}
            exp_annotations:
              summary: No Claude Code telemetry for 60 minutes
              description: 'Nobody used Claude Code, or its telemetry does not arrive: run
                `ccmetrics doctor --backend stack` on a workstation.'
"""


def test_promtool_unit_tests_of_the_rules(full):
    directory = full / "prometheus"
    (directory / "rules_test.yml").write_text(RULE_TESTS)
    result = subprocess.run(
        [promtool(), "test", "rules", "rules_test.yml"], cwd=directory, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_the_dimension_panels_over_a_collectors_labels(full):
    """Each "cost and tokens by" panel's queries, as Grafana sends them, over series shaped as the Collector
    exposes them (every attribute a label): only what carries the dimension, summed by its values."""
    collector = 'job="otel-collector", service_name="claude-code", user_id="u1", team_id="t", model="m"'
    carried = {
        "Cost and tokens by agent": (
            'query_source="subagent", agent_name="reviewer"',
            {"agent_name": "reviewer"},
        ),
        "Cost and tokens by skill": ('query_source="main", skill_name="pdf"', {"skill_name": "pdf"}),
        "Cost and tokens by MCP server and tool": (
            'query_source="main", mcp_server_name="dims", mcp_tool_name="lookup"',
            {"mcp_server_name": "dims", "mcp_tool_name": "lookup"},
        ),
    }
    series = []
    for labels in [*(extra for extra, _ in carried.values()), 'query_source="main"']:
        series.append(
            {"series": f"claude_code_cost_usage_USD_total{{{collector}, {labels}}}", "values": "0+1x30"}
        )
        for kind in ("input", "cacheRead"):
            name = f'claude_code_token_usage_tokens_total{{{collector}, {labels}, type="{kind}"}}'
            series.append({"series": name, "values": "0+2x30"})
    variables = {"$user": ".*", "$team": ".*", "$model": ".*", "$__range": "10m"}
    tests = []
    panels = {p["title"]: p for p in dashboard()["panels"]}
    for title, (_, labels) in carried.items():
        for target, value in zip(panels[title]["targets"], (10, 40), strict=True):
            expr = target["expr"]
            for name, text in variables.items():
                expr = expr.replace(name, text)
            each = ", ".join(f'{k}="{v}"' for k, v in labels.items())
            tests.append(
                {"expr": expr, "eval_time": "20m", "exp_samples": [{"labels": f"{{{each}}}", "value": value}]}
            )
    unit = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    }
    directory = full / "prometheus"
    (directory / "dimensions_test.yml").write_text(yaml.safe_dump(unit, sort_keys=False))
    result = subprocess.run(
        [promtool(), "test", "rules", "dimensions_test.yml"], cwd=directory, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the dashboard ----------------------------------------------------------------------------------


def test_dashboard_follows_grafanas_model(full):
    board = json.loads((full / "grafana/dashboards/claude-code.json").read_text())
    assert board == dashboard()
    assert board["uid"] and board["schemaVersion"] >= 39 and board["editable"] is True
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "loki", "user", "team", "model"}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], int] = {}
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = panel["id"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in ("${datasource}", "${loki}") and panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in ("${datasource}", "${loki}") and target["expr"]
            assert "$user" in target["expr"] and "$team" in target["expr"] and "$model" in target["expr"]


NOT_EXPORTED = ("accept_rate_by_source",)


def test_dashboard_has_every_expressible_panel_with_the_same_title_unit_and_place(full):
    board = json.loads((full / "grafana/dashboards/claude-code.json").read_text())
    by_title = {p["title"]: p for p in board["panels"] if p["type"] != "row"}
    grid = layout()
    units = {"usd": "currencyUSD", "seconds": "s", "percent": "percentunit", "ms": "ms"}
    for panel in PANELS:
        if not (panel.promql or panel.logql):
            # per-session rows (see README); the budgets of `serve --alerts` (the stack's are Alertmanager's)
            # and the panel of an attribute ccmetrics' /metrics does not export as a label (DEFAULT_LABELS);
            # the source and project of a session are not in Prometheus
            assert panel.id in (
                "recent_sessions",
                "budgets",
                "budget_projection",
                "cost_by_source",
                "cost_by_project",
                "cost_by_branch",
                *NOT_EXPORTED,
            ), panel.id
            continue
        got = by_title[panel.title]
        assert got["gridPos"] == grid[panel.id], panel.id
        assert got["fieldConfig"]["defaults"]["unit"] == units.get(
            panel.unit, got["fieldConfig"]["defaults"]["unit"]
        )
        kinds = {t["datasource"]["type"] for t in got["targets"]}
        assert kinds == ({"prometheus"} if panel.promql else {"loki"}), panel.id
        if panel.kind == "gauge":
            assert got["fieldConfig"]["defaults"]["max"] == panel.options["max"]
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == list(dict.fromkeys(p.row for p in PANELS))


def test_queries_are_exact_increases_under_the_filters():
    expr = with_filters(
        'sum by (type) (increase(claude_code_token_usage_tokens_total{type="input"}[$__range]))'
    )
    assert expr == (
        'sum by (type) (increase(claude_code_token_usage_tokens_total{type="input", user_id=~"$user", '
        'team_id=~"$team", model=~"$model"}[$__range]))'
    )
    exact = exact_increase('sum(increase(m{a="b"}[$__range]))')
    assert exact == (
        'sum(((m{a="b"} - m{a="b"} offset $__range >= 0) or (m{a="b"} unless m{a="b"} offset $__range) '
        'or increase(m{a="b"}[$__range])))'
    )


# --- ccmetrics health -------------------------------------------------------------------------------


def test_health_is_zero_when_up_and_one_when_down(server):
    up = CliRunner().invoke(main, ["health", "--ccmetrics", server.url, "--json"])
    assert up.exit_code == 0, up.output
    assert json.loads(up.output)[0]["ok"] is True
    dead = f"http://127.0.0.1:{free_port()}"
    down = CliRunner().invoke(main, ["health", "--ccmetrics", server.url, "--prometheus", dead, "--json"])
    assert down.exit_code == 1
    checks = {c["service"]: c for c in json.loads(down.output)}
    assert (
        checks["ccmetrics"]["ok"]
        and not checks["prometheus"]["ok"]
        and checks["prometheus"]["url"].endswith("/-/ready")
    )
    table = CliRunner().invoke(main, ["health", "--stack", "--loki", dead, "--timeout", "0.5"])
    assert table.exit_code == 1
    for service in ("collector", "prometheus", "loki", "grafana"):
        assert service in table.output
