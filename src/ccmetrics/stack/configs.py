"""The stack's configuration files, as plain data: Compose, Collector, Prometheus (and rules), Loki, Grafana.

Each function returns what one file holds, so tests can check it without Docker. The choices that make the
numbers right (and that published Claude Code stacks get wrong) are commented in the files themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..alerts.rules import Rules

IMAGES = {
    "otel-collector": "otel/opentelemetry-collector-contrib:0.119.0",
    "prometheus": "prom/prometheus:v3.1.0",
    "loki": "grafana/loki:3.3.2",
    "grafana": "grafana/grafana:11.5.1",
}
TOKENS = metrics.TOKENS.prometheus
COST = metrics.COST.prometheus
ACTIVE = metrics.ACTIVE_TIME.prometheus
OUTPUT = '{type="output"}'


@dataclass(frozen=True)
class StackOptions:
    lite: bool = False  # Prometheus scrapes `ccmetrics serve` instead of a Collector; no Loki
    ccmetrics_target: str = "host.docker.internal:3000"
    prometheus_retention: str = "30d"
    loki_retention: str = "30d"
    remote_write_url: str | None = None
    scrape_interval: str = "15s"
    metric_expiration: str = "168h"  # how long the Collector keeps exposing a counter that stopped moving
    grafana_port: int = 3000
    hourly_cost_alert_usd: float = 10.0
    daily_budget_usd: float = 25.0
    no_telemetry_minutes: int = 60
    alerts: Rules | None = (
        None  # a rules file's rules: alert_rules.yml and Alertmanager are rendered from them
    )

    @property
    def services(self) -> tuple[str, ...]:
        base = ("prometheus", "grafana") if self.lite else ("otel-collector", "prometheus", "loki", "grafana")
        return (*base, "alertmanager") if self.alerts is not None else base


def compose(opts: StackOptions) -> dict[str, Any]:
    """docker-compose.yml: pinned images, data in ./data, internal ports on loopback only."""
    user = "${STACK_UID:-1000}:${STACK_GID:-1000}"
    services: dict[str, Any] = {}
    if not opts.lite:
        services["otel-collector"] = {
            "image": IMAGES["otel-collector"],
            "restart": "unless-stopped",
            "command": ["--config=/etc/otelcol-contrib/config.yaml"],
            "volumes": ["./otel-collector/config.yaml:/etc/otelcol-contrib/config.yaml:ro"],
            "ports": ["4317:4317", "4318:4318", "127.0.0.1:8889:8889", "127.0.0.1:13133:13133"],
            "depends_on": ["loki"],
        }
    services["prometheus"] = {
        "image": IMAGES["prometheus"],
        "restart": "unless-stopped",
        "user": user,
        "command": [
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            f"--storage.tsdb.retention.time={opts.prometheus_retention}",
            "--web.enable-lifecycle",
        ],
        "volumes": ["./prometheus:/etc/prometheus:ro", "./data/prometheus:/prometheus"],
        "ports": ["127.0.0.1:9090:9090"],
    }
    if opts.lite:
        services["prometheus"]["extra_hosts"] = ["host.docker.internal:host-gateway"]
    else:
        services["prometheus"]["depends_on"] = ["otel-collector"]
        services["loki"] = {
            "image": IMAGES["loki"],
            "restart": "unless-stopped",
            "user": user,
            "command": ["-config.file=/etc/loki/config.yaml"],
            "volumes": ["./loki/config.yaml:/etc/loki/config.yaml:ro", "./data/loki:/loki"],
            "ports": ["127.0.0.1:3100:3100"],
        }
    services["grafana"] = {
        "image": IMAGES["grafana"],
        "restart": "unless-stopped",
        "user": user,
        "environment": {
            "GF_SECURITY_ADMIN_USER": "${GRAFANA_ADMIN_USER:?set it in .env}",
            "GF_SECURITY_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD:?set it in .env}",
            "GF_USERS_ALLOW_SIGN_UP": "false",
            "GF_AUTH_ANONYMOUS_ENABLED": "false",
            "GF_ANALYTICS_REPORTING_ENABLED": "false",
        },
        "volumes": [
            "./grafana/provisioning:/etc/grafana/provisioning:ro",
            "./grafana/dashboards:/var/lib/grafana/dashboards:ro",
            "./data/grafana:/var/lib/grafana",
        ],
        "ports": [f"{opts.grafana_port}:3000"],
        "depends_on": ["prometheus"] if opts.lite else ["prometheus", "loki"],
    }
    if opts.alerts is not None:
        from ..alerts.prometheus import ALERTMANAGER_IMAGE

        services["alertmanager"] = {
            "image": ALERTMANAGER_IMAGE,
            "restart": "unless-stopped",
            "command": ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"],
            "volumes": ["./alertmanager:/etc/alertmanager:ro", "./data/alertmanager:/alertmanager"],
            "ports": ["127.0.0.1:9093:9093"],
        }
    return {"name": "ccmetrics-stack", "services": services}


def collector(opts: StackOptions) -> dict[str, Any]:
    """The Collector: OTLP in; metrics to the Prometheus exporter, events to Loki's native OTLP endpoint."""
    return {
        "extensions": {"health_check": {"endpoint": "0.0.0.0:13133"}},
        "receivers": {
            "otlp": {
                "protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}, "http": {"endpoint": "0.0.0.0:4318"}}
            }
        },
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20},
            # Claude Code sends delta sums; the prometheus exporter only adds up cumulative ones (it drops
            # or mangles deltas). This turns each delta stream into a running total first.
            "deltatocumulative": {"max_stale": opts.metric_expiration},
            "batch": {},
        },
        "exporters": {
            "prometheus": {
                "endpoint": "0.0.0.0:8889",
                # A session's counters are sent once or twice and then never again: with the default of
                # 5m they would vanish from Prometheus before most dashboards are looked at.
                "metric_expiration": opts.metric_expiration,
                # team.id and everything else from OTEL_RESOURCE_ATTRIBUTES become labels.
                "resource_to_telemetry_conversion": {"enabled": True},
                "add_metric_suffixes": True,
                "send_timestamps": False,
            },
            # Loki 3 takes OTLP itself: event attributes arrive as structured metadata (no Promtail,
            # which is end-of-life, and no JSON files in between).
            "otlphttp/loki": {"endpoint": "http://loki:3100/otlp", "tls": {"insecure": True}},
        },
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "metrics": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "deltatocumulative", "batch"],
                    "exporters": ["prometheus"],
                },
                "logs": {
                    "receivers": ["otlp"],
                    "processors": ["memory_limiter", "batch"],
                    "exporters": ["otlphttp/loki"],
                },
            },
        },
    }


def prometheus(opts: StackOptions) -> dict[str, Any]:
    target = opts.ccmetrics_target if opts.lite else "otel-collector:8889"
    job = "ccmetrics" if opts.lite else "otel-collector"
    config: dict[str, Any] = {
        "global": {"scrape_interval": opts.scrape_interval, "evaluation_interval": opts.scrape_interval},
        "rule_files": ["recording_rules.yml", "alert_rules.yml"],
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": "/metrics",
                "honor_labels": True,
                "static_configs": [{"targets": [target]}],
            },
            {"job_name": "prometheus", "static_configs": [{"targets": ["localhost:9090"]}]},
        ],
    }
    if opts.remote_write_url:
        config["remote_write"] = [{"url": opts.remote_write_url}]
    if opts.alerts is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]}
    return config


def _ratio(numerator: str, denominator: str) -> str:
    return f"sum({numerator}) / sum({denominator})"


def recording_rules() -> dict[str, Any]:
    """Ratios of rates: extrapolation cancels out, so they are exact wherever both sides are sampled alike."""
    rate = lambda metric, sel="": f"rate({metric}{sel}[5m])"  # noqa: E731
    return {
        "groups": [
            {
                "name": "claude_code_recording",
                "interval": "1m",
                "rules": [
                    {
                        "record": "claude_code:cache_efficiency:ratio",
                        "expr": _ratio(
                            rate(TOKENS, '{type="cacheRead"}'),
                            rate(TOKENS, '{type=~"input|cacheRead|cacheCreation"}'),
                        ),
                    },
                    {
                        "record": "claude_code:cost_per_1k_tokens:ratio",
                        "expr": f"{_ratio(rate(COST), rate(TOKENS, OUTPUT))} * 1000",
                    },
                    {
                        "record": "claude_code:productivity:ratio",
                        "expr": _ratio(rate(ACTIVE, '{type="cli"}'), rate(ACTIVE, '{type="user"}')),
                    },
                    {
                        "record": "claude_code:cost_usd:rate5m",
                        "expr": f"sum by (user_id, team_id, model) ({rate(COST)})",
                    },
                    {"record": "claude_code:tokens:rate5m", "expr": f"sum by (type, model) ({rate(TOKENS)})"},
                ],
            }
        ]
    }


def alert_rules(opts: StackOptions) -> dict[str, Any]:
    if opts.alerts is not None:
        from ..alerts.prometheus import alert_rules as rendered

        return rendered(opts.alerts)
    minutes = opts.no_telemetry_minutes
    return {
        "groups": [
            {
                "name": "claude_code_alerts",
                "rules": [
                    {
                        "alert": "ClaudeCodeHighHourlyCost",
                        "expr": f"sum(increase({COST}[1h])) > {opts.hourly_cost_alert_usd:g}",
                        "for": "5m",
                        "labels": {"severity": "warning"},
                        "annotations": {
                            "summary": "Claude Code spent more than ${} in the last hour".format(
                                f"{opts.hourly_cost_alert_usd:g}"
                            ),
                            "description": 'Spent {{ $value | printf "%.2f" }} USD.',
                        },
                    },
                    {
                        "alert": "ClaudeCodeSpendSpike",
                        "expr": f"sum(rate({COST}[15m])) > 3 * sum(rate({COST}[1d])) "
                        f"and sum(increase({COST}[15m])) > 1",
                        "for": "10m",
                        "labels": {"severity": "warning"},
                        "annotations": {
                            "summary": "Claude Code spend is over three times its daily average rate"
                        },
                    },
                    {
                        "alert": "ClaudeCodeUserOverDailyBudget",
                        "expr": f"sum by (user_id) (increase({COST}[1d])) > {opts.daily_budget_usd:g}",
                        "labels": {"severity": "info"},
                        "annotations": {
                            "summary": "{{ $labels.user_id }} spent over $"
                            + f"{opts.daily_budget_usd:g} today"
                        },
                    },
                    {
                        "alert": "ClaudeCodeNoTelemetry",
                        "expr": f"sum(changes({TOKENS}[{minutes}m])) == 0 or absent({TOKENS})",
                        "for": "5m",
                        "labels": {"severity": "info"},
                        "annotations": {
                            "summary": f"No Claude Code telemetry for {minutes} minutes",
                            "description": "Nobody used Claude Code, or its telemetry does not arrive: "
                            "run `ccmetrics doctor --backend stack` on a workstation.",
                        },
                    },
                ],
            }
        ]
    }


def _hours(duration: str) -> str:
    """Loki wants retention in hours: 30d -> 720h."""
    units = {"h": 1, "d": 24, "w": 168, "y": 8760}
    if duration[-1:] in units and duration[:-1].isdigit():
        return f"{int(duration[:-1]) * units[duration[-1]]}h"
    raise ValueError(f"retention must look like 30d, 12w or 720h, not {duration!r}")


def loki(opts: StackOptions) -> dict[str, Any]:
    """Single-binary Loki 3 on the filesystem, with OTLP log attributes kept as structured metadata."""
    return {
        "auth_enabled": False,
        "server": {"http_listen_port": 3100, "grpc_listen_port": 9096, "log_level": "warn"},
        "common": {
            "instance_addr": "127.0.0.1",
            "path_prefix": "/loki",
            "replication_factor": 1,
            "storage": {"filesystem": {"chunks_directory": "/loki/chunks", "rules_directory": "/loki/rules"}},
            "ring": {"kvstore": {"store": "inmemory"}},
        },
        "schema_config": {
            "configs": [
                {
                    "from": "2024-01-01",
                    "store": "tsdb",
                    "object_store": "filesystem",
                    "schema": "v13",
                    "index": {"prefix": "index_", "period": "24h"},
                }
            ]
        },
        "limits_config": {
            "allow_structured_metadata": True,
            "volume_enabled": True,
            "retention_period": _hours(opts.loki_retention),
            "otlp_config": {"log_attributes": [{"action": "structured_metadata", "regex": ".*"}]},
        },
        "compactor": {
            "working_directory": "/loki/compactor",
            "retention_enabled": True,
            "delete_request_store": "filesystem",
        },
        "analytics": {"reporting_enabled": False},
    }


def grafana_datasources(opts: StackOptions) -> dict[str, Any]:
    sources = [
        {
            "name": "Prometheus",
            "uid": "prometheus",
            "type": "prometheus",
            "access": "proxy",
            "url": "http://prometheus:9090",
            "isDefault": True,
            "editable": True,
        }
    ]
    if not opts.lite:
        sources.append(
            {
                "name": "Loki",
                "uid": "loki",
                "type": "loki",
                "access": "proxy",
                "url": "http://loki:3100",
                "editable": True,
            }
        )
    return {"apiVersion": 1, "datasources": sources}


def grafana_dashboards() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "ccmetrics",
                "folder": "Claude Code",
                "type": "file",
                "disableDeletion": False,
                "allowUiUpdates": True,
                "updateIntervalSeconds": 30,
                "options": {"path": "/var/lib/grafana/dashboards", "foldersFromFilesStructure": False},
            }
        ],
    }
