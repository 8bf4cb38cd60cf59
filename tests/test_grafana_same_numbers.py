"""The Grafana dashboard shows the built-in dashboard's numbers: a real Prometheus scrapes a real server.

Every PromQL query of the generated dashboard is evaluated through Prometheus' HTTP API, with Grafana's
variables substituted, and compared with the same panel of ``GET /api/dashboard``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from ccmetrics.panels import PANELS_BY_ID
from ccmetrics.stack.grafana import RENAMES, dashboard

from .conftest import IN_CI, Export, fixture_exports, free_port, send
from .otlp_builders import SECOND, sum_request

CAPTURES = ("http-protobuf-delta", "http-json-cumulative")  # delta and cumulative, mixed in one store
STEP_S = 2


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} is not installed (Debian: apt-get install -y prometheus)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


class Prometheus:
    """``prometheus`` on a free loopback port with its own storage, scraping one target every second."""

    def __init__(
        self, tmp: Path, target: str, metrics_path: str = "/metrics", credentials_file: Path | None = None
    ) -> None:
        self.port = free_port()
        tmp.mkdir(parents=True, exist_ok=True)
        config = tmp / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: ccmetrics\n    metrics_path: {metrics_path}\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
            + (f"    authorization: {{credentials_file: '{credentials_file}'}}\n" if credentials_file else "")
        )
        self.log = (tmp / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                need("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.wait(lambda: httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200, "ready")

    def wait(self, condition, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "prometheus exited"
            try:
                if condition():
                    return
            except (httpx.HTTPError, KeyError, IndexError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus never became {what}")

    def query(self, expr: str, at: float) -> list[dict]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr, "time": at}, timeout=30)
        assert response.status_code == 200, (expr, response.text)
        return response.json()["data"]["result"]

    def query_range(self, expr: str, start: float, end: float, step: int) -> list[dict]:
        response = httpx.get(
            f"{self.url}/api/v1/query_range",
            params={"query": expr, "start": start, "end": end, "step": step},
            timeout=30,
        )
        assert response.status_code == 200, (expr, response.text)
        return response.json()["data"]["result"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        self.log.close()


def substitute(expr: str, variables: dict[str, str]) -> str:
    """What Grafana does to a query before sending it: ``$name`` and ``${name}`` by value."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    assert "$" not in expr, expr
    return expr


def legend(fmt: str, labels: dict[str, str], renames: dict[str, str]) -> str:
    """Grafana's legend, with the dashboard's renames; parts of missing labels left out."""
    parts = [
        re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), part) for part in fmt.split(" · ")
    ]
    text = " · ".join(p for p in parts if p.strip()) or "unknown"
    return renames.get(text, text)


def approx(value):
    return pytest.approx(value, rel=1e-9, abs=1e-9)


def check(prom: Prometheus, builtin: dict, variables: dict[str, str], t0: float, now: float) -> set[str]:
    range_s = int(now - t0) + 2
    checked = set()
    for gpanel in dashboard()["panels"]:
        prom_targets = [t for t in gpanel.get("targets", []) if t["datasource"]["type"] == "prometheus"]
        if not prom_targets:
            continue
        pid = next(p.id for p in PANELS_BY_ID.values() if p.title == gpanel["title"])
        kind, data = PANELS_BY_ID[pid].kind, builtin["panels"][pid]
        renames = {
            t["options"]["regex"][1:-1]: t["options"]["renamePattern"]
            for t in gpanel["transformations"]
            if t["id"] == "renameByRegex"
        }
        assert renames in ({}, RENAMES)
        values = {**variables, "__range": f"{range_s}s", "__interval": f"{STEP_S}s"}
        if kind in ("timeseries", "stacked_bars"):
            (target,) = prom_targets
            got: dict[str, float] = defaultdict(float)
            for series in prom.query_range(substitute(target["expr"], values), t0 - STEP_S, now, STEP_S):
                got[legend(target["legendFormat"], series["metric"], renames)] += sum(
                    float(v) for _, v in series["values"]
                )
            want = {s["label"]: sum(s["values"]) for s in data["series"]}
            assert {k: v for k, v in got.items() if v} == {k: approx(v) for k, v in want.items() if v}, pid
        elif kind in ("stat", "gauge"):
            (target,) = prom_targets
            result = prom.query(substitute(target["expr"], values), now)
            got_value = float(result[0]["value"][1]) if result else None
            if data["value"] in (None, 0) and got_value is None:
                pass  # Grafana shows "No data" where the built-in dashboard shows 0 or nothing
            else:
                assert got_value == (None if data["value"] is None else approx(data["value"])), pid
        elif kind in ("pie", "bar"):
            (target,) = prom_targets
            result = prom.query(substitute(target["expr"], values), now)
            got = defaultdict(float)
            for series in result:
                got[legend(target["legendFormat"], series["metric"], renames)] += float(series["value"][1])
            want = {i["label"]: i["value"] for i in data["items"]}
            assert {k: v for k, v in got.items() if v} == {k: approx(v) for k, v in want.items()}, pid
        else:  # tables: one query per column, merged on the labels it groups by (a user, a team, a dimension)
            by = re.search(r"sum by \(([^)]*)\)", prom_targets[0]["expr"])[1].split(", ")
            rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
            names: dict[str, set[str | None]] = defaultdict(set)
            for target in prom_targets:
                for series in prom.query(substitute(target["expr"], values), now):
                    labels = series["metric"]
                    key = " · ".join(labels[k] for k in by if labels.get(k)) or "unknown"
                    rows[key][target["legendFormat"]] += float(series["value"][1])
                    names[key].add(labels.get("user_name"))
            # a leaderboard's row is keyed by its label's value, a dimension's by its values joined
            want = {r["key"] if "key" in r else r["name"]: r for r in data["rows"]}
            assert set(rows) == set(want), pid
            if pid == "leaderboard_users":  # each user by the name the built-in board shows (/metrics' info)
                assert {key: names[key] for key in rows} == {key: {want[key]["name"]} for key in rows}
            for key, row in rows.items():
                for column, value in row.items():
                    assert value == approx(want[key][column]), (pid, key, column)
        checked.add(pid)
    return checked


# Cost and tokens with the dimensions Claude Code 2.1 tags them with (the captures have only query_source and
# effort), and a session started by resuming one: each dimension panel has rows to compare.
DIMENSIONS = (
    {"query_source": "subagent", "agent.name": "reviewer", "effort": "high", "speed": "fast"},
    {"query_source": "subagent", "agent.name": "custom", "effort": "high"},
    {"query_source": "main", "skill.name": "pdf", "plugin.name": "docs-kit", "marketplace.name": "acme"},
    {"query_source": "main", "skill.name": "third-party", "plugin.name": "third-party"},
    {"query_source": "main", "mcp_server.name": "github", "mcp_tool.name": "create_issue"},
    {"query_source": "main", "mcp_server.name": "github", "mcp_tool.name": "list_issues"},
    {"query_source": "main", "mcp_server.name": "custom"},
)


def dimension_exports() -> list[ExportMetricsServiceRequest]:
    now = time.time_ns()
    who = {"user.id": "u-dimensions", "session.id": "s-dimensions", "model": "claude-opus-4-5"}
    resource = {"service.name": "claude-code", "team.id": "web"}
    cost = [(now - SECOND, now, 0.01 * (i + 1), {**who, **d}) for i, d in enumerate(DIMENSIONS)]
    tokens = [
        (now - SECOND, now, 100 * (i + 1) + j, {**who, **d, "type": kind})
        for i, d in enumerate(DIMENSIONS)
        for j, kind in enumerate(("input", "output", "cacheRead"))
    ]
    return [
        sum_request("claude_code.cost.usage", cost, unit="USD", resource=resource),
        sum_request("claude_code.token.usage", tokens, unit="tokens", resource=resource),
        sum_request(
            "claude_code.session.count",
            [(now - SECOND, now, 1, {**who, "start_type": "resume"})],
            resource=resource,
        ),
    ]


@pytest.fixture
def scraped(start_server, tmp_path):
    need("prometheus")
    server = start_server()
    prom = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{server.port}")
    try:
        prom.wait(lambda: prom.query("up", time.time())[0]["value"][1] == "1", "up")
        t0 = time.time()
        for capture in CAPTURES:
            for export in fixture_exports(capture):
                assert send(server.otlp_http, export).status_code == 200
        for request in dimension_exports():
            answer = server.send(Export.of(request))
            assert answer.status_code == 200, answer.text
        sent = time.time()
        prom.wait(lambda: float(prom.query("timestamp(up)", time.time())[0]["value"][1]) > sent + 1, "fresh")
        time.sleep(1)
        yield server, prom, t0
    finally:
        prom.stop()


def test_every_promql_panel_equals_the_builtin_panel(scraped):
    server, prom, t0 = scraped
    now = time.time()
    builtin = httpx.get(f"{server.url}/api/dashboard", params={"until": _iso(now)}, timeout=30).json()
    everything = {"user": ".*", "team": ".*", "model": ".*", "datasource": "", "loki": ""}
    checked = check(prom, builtin, everything, t0, now)
    promql_panels = {p.id for p in PANELS_BY_ID.values() if p.promql}
    assert checked == promql_panels, promql_panels - checked
    assert len(checked) >= 24
    # the dimension panels were compared on rows, not on nothing
    for pid in ("cost_by_agent", "cost_by_skill", "cost_by_plugin", "cost_by_mcp", "cost_by_speed"):
        assert builtin["panels"][pid]["rows"], pid
    assert {r["name"] for r in builtin["panels"]["cost_by_mcp"]["rows"]} == {
        "github · create_issue",
        "github · list_issues",
        "custom",
    }
    assert builtin["panels"]["sessions_by_start_type"]["items"]


def test_variables_filter_like_the_builtin_filters(scraped):
    server, prom, t0 = scraped
    now = time.time()
    web = httpx.get(
        f"{server.url}/api/dashboard", params={"until": _iso(now), "filter": "team.id=web"}, timeout=30
    ).json()
    assert web["panels"]["cost"]["value"]
    check(prom, web, {"user": ".*", "team": "web", "model": ".*"}, t0, now)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t + 1))


def test_prometheus_scrapes_a_protected_server_with_a_viewer_token(start_server, tmp_path):
    """Prometheus's ``authorization`` scrape setting with a viewer token reads /metrics of a server that
    checks readers; with an ingest token it is refused (``up`` 0)."""
    need("prometheus")
    server = start_server()

    def token(name: str, role: str) -> str:
        made = subprocess.run(
            [sys.executable, "-m", "ccmetrics", "token", "create", name, "--role", role]
            + ["--data-dir", str(server.data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    viewer, ingest = token("prometheus", "viewer"), token("laptop", "ingest")
    time.sleep(1.5)  # a running server sees new tokens within a second
    for export in fixture_exports(CAPTURES[0]):
        headers = {**export.headers, "authorization": f"Bearer {ingest}"}
        sent = httpx.post(server.otlp_http + export.path, content=export.body, headers=headers, timeout=10)
        assert sent.status_code == 200, sent.text
    for secret, up in ((viewer, "1"), (ingest, "0")):
        credentials = tmp_path / f"token-{up}"
        credentials.write_text(secret + "\n")
        prom = Prometheus(
            tmp_path / f"prometheus-{up}", f"127.0.0.1:{server.port}", credentials_file=credentials
        )
        try:
            prom.wait(lambda: prom.query("up", time.time())[0]["value"][1] == up, f"up {up}")  # noqa: B023
            if up == "1":
                prom.wait(lambda: prom.query("claude_code_session_count_total", time.time()), "scraped")  # noqa: B023
        finally:
            prom.stop()
