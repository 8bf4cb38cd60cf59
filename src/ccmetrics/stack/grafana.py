"""The Grafana dashboard, rendered from the panel catalogue: same titles, units, layout and numbers.

Every query counts what happened inside the dashboard's time range. ``increase(m[$__range])`` alone would
not: Prometheus takes a series' first sample as its baseline, so a counter that is born inside the range
(every new session through a Collector, every label set ccmetrics' ``/metrics`` shows for the first time)
loses its first value, and the result is extrapolated. Each ``increase`` of the catalogue is therefore
rendered as the exact difference of the counter across the range, the whole value for a series born in
it, and ``increase`` itself only for a series that was reset (a restarted Collector).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..metrics import TOKENS
from ..panels import PANELS, TOKEN_LABELS, Panel

UID = "ccmetrics-claude-code"
TITLE = "Claude Code (ccmetrics)"
COLUMNS = 24
PROM = {"type": "prometheus", "uid": "${datasource}"}
LOKI = {"type": "loki", "uid": "${loki}"}
FILTERS = (("user_id", "user"), ("team_id", "team"), ("model", "model"))
UNITS = {
    "count": "short",
    "usd": "currencyUSD",
    "tokens": "short",
    "seconds": "s",
    "percent": "percentunit",
    "ratio": "none",
    "chars": "short",
    "ms": "ms",
    "lines": "short",
}
KINDS = {
    "stat": "stat",
    "gauge": "gauge",
    "pie": "piechart",
    "bar": "bargauge",
    "table": "table",
    "timeseries": "timeseries",
    "stacked_bars": "timeseries",
}
RENAMES = {
    value: label for value, label in TOKEN_LABELS.items() if value != label
}  # the built-in dashboard's
COLUMN_TITLES = {
    "cost_usd": "Cost",
    "tokens": "Tokens",
    "sessions": "Sessions",
    "lines": "Lines added",
    "commits": "Commits",
    "requests": "Requests",
    "errors": "Errors",
    "p50_ms": "Latency p50",
    "p95_ms": "Latency p95",
    "ttft_p50_ms": "TTFT p50",
    "ttft_p95_ms": "TTFT p95",
    "calls": "Calls",
    "success_rate": "Success",
}
METRIC = re.compile(r"\b(claude_code_[A-Za-z0-9_]+_total)(\{[^}]*\})?")
INCREASE = re.compile(r"increase\(([A-Za-z_:][A-Za-z0-9_:]*\{[^}]*\})\[(\$__\w+)\]\)")
EVENT = re.compile(r'(\| event_name="[^"]+")')


def with_filters(promql: str) -> str:
    """Every counter selector also matches the dashboard's user, team and model variables."""
    matchers = ", ".join(f'{label}=~"${var}"' for label, var in FILTERS)

    def add(match: re.Match[str]) -> str:
        inner = (match.group(2) or "{}")[1:-1].strip()
        return f"{match.group(1)}{{{inner + ', ' if inner else ''}{matchers}}}"

    return METRIC.sub(add, promql)


def exact_increase(promql: str) -> str:
    """``increase(s[w])`` as the exact change of the counter over w, new series included (see above)."""
    return INCREASE.sub(
        lambda m: (
            f"(({m[1]} - {m[1]} offset {m[2]} >= 0) or ({m[1]} unless {m[1]} offset {m[2]}) "
            f"or increase({m[1]}[{m[2]}]))"
        ),
        promql,
    )


def promql_for(expr: str) -> str:
    return exact_increase(with_filters(expr))


def logql_for(expr: str) -> str:
    """Event queries filtered by the same variables (attributes arrive in Loki as structured metadata)."""
    filters = " ".join(f'| {label}=~"${var}"' for label, var in FILTERS)
    return EVENT.sub(lambda m: f"{m[1]} {filters}", expr)


def layout(panels: tuple[Panel, ...] = PANELS) -> dict[str, dict[str, int]]:
    """Grid positions: the built-in dashboard's flow, row by row, 24 columns wide; rows get a header."""
    positions, y, row, x, line_height = {}, 0, None, 0, 0
    for panel in panels:
        if panel.row != row:
            y += line_height
            positions[f"row:{panel.row}"] = {"x": 0, "y": y, "w": COLUMNS, "h": 1}
            y, row, x, line_height = y + 1, panel.row, 0, 0
        if x + panel.width > COLUMNS:
            y, x, line_height = y + line_height, 0, 0
        positions[panel.id] = {"x": x, "y": y, "w": panel.width, "h": panel.height}
        x += panel.width
        line_height = max(line_height, panel.height)
    return positions


def in_grafana(panel: Panel) -> bool:
    return bool(panel.promql or panel.logql)


def _targets(panel: Panel) -> list[dict[str, Any]]:
    table = panel.kind == "table"
    ranged = panel.kind in ("timeseries", "stacked_bars")
    targets = []
    for i, (expr, legend) in enumerate(panel.promql):
        targets.append(
            {
                "refId": chr(65 + i),
                "datasource": PROM,
                "expr": promql_for(expr),
                "legendFormat": legend,
                "instant": not ranged,
                "range": ranged,
                "format": "table" if table else "time_series",
                "editorMode": "code",
            }
        )
    for i, (expr, legend) in enumerate(panel.logql, start=len(targets)):
        targets.append(
            {
                "refId": chr(65 + i),
                "datasource": LOKI,
                "expr": logql_for(expr),
                "legendFormat": legend,
                "queryType": "range" if ranged else "instant",
                "editorMode": "code",
            }
        )
    return targets


def _transformations(panel: Panel, targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if panel.kind == "table":
        rename = {
            f"Value #{t['refId']}": COLUMN_TITLES.get(t["legendFormat"], t["legendFormat"]) for t in targets
        }
        return [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": rename}},
        ]
    return [
        {"id": "renameByRegex", "options": {"regex": f"^{old}$", "renamePattern": new}}
        for old, new in RENAMES.items()
        if any("{{type}}" in t["legendFormat"] for t in targets)
    ]


def _options(panel: Panel) -> dict[str, Any]:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if panel.kind in ("stat", "gauge"):
        return {
            "reduceOptions": reduce,
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "auto",
            "showThresholdLabels": False,
            "showThresholdMarkers": True,
        }
    if panel.kind == "pie":
        return {
            "reduceOptions": reduce,
            "pieType": "donut",
            "legend": {"displayMode": "table", "placement": "right", "values": ["value", "percent"]},
        }
    if panel.kind == "bar":
        return {
            "reduceOptions": reduce,
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
        }
    if panel.kind == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    return {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": UNITS.get(panel.unit, "short")}
    if panel.kind == "gauge":
        defaults.update(min=panel.options.get("min", 0), max=panel.options.get("max", 1))
    if panel.kind in ("timeseries", "stacked_bars"):
        bars = panel.kind == "stacked_bars"
        stacked = bars or panel.options.get("stacked", False)
        defaults["custom"] = {
            "drawStyle": "bars" if bars else "line",
            "fillOpacity": 60 if bars else 20,
            "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
            "lineWidth": 1,
            "showPoints": "never",
        }
    return {"defaults": defaults, "overrides": []}


def grafana_panel(panel: Panel, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
    targets = _targets(panel)
    datasource = LOKI if panel.logql and not panel.promql else PROM
    return {
        "id": panel_id,
        "type": KINDS[panel.kind],
        "title": panel.title,
        "description": panel.description,
        "gridPos": grid,
        "datasource": datasource,
        "targets": targets,
        "options": _options(panel),
        "fieldConfig": _field_config(panel),
        "transformations": _transformations(panel, targets),
        "interval": "1m" if panel.kind in ("timeseries", "stacked_bars") else None,
    }


def _variables(loki: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Prometheus",
            "query": "prometheus",
            "hide": 0,
            "current": {},
            "options": [],
            "refresh": 1,
            "regex": "",
        },
    ]
    if loki:
        out.append(
            {
                "type": "datasource",
                "name": "loki",
                "label": "Loki",
                "query": "loki",
                "hide": 0,
                "current": {},
                "options": [],
                "refresh": 1,
                "regex": "",
            }
        )
    for label, var in FILTERS:
        query = f"label_values({TOKENS.prometheus}, {label})"
        out.append(
            {
                "type": "query",
                "name": var,
                "label": var.capitalize(),
                "datasource": PROM,
                "query": {"query": query, "refId": f"{var}-values"},
                "definition": query,
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "refresh": 2,
                "sort": 1,
                "hide": 0,
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "options": [],
                "regex": "",
            }
        )
    return out


def dashboard(panels: tuple[Panel, ...] = PANELS, loki: bool = True) -> dict[str, Any]:
    """The dashboard JSON model (Grafana 11+): provisioned from a file, or imported by hand.

    Without Loki (the light stack), the panels that need events are left out and the rest close ranks.
    """
    if not loki:
        panels = tuple(p for p in panels if p.promql)
    grid = layout(panels)
    out, next_id, row = [], 1, None
    for panel in panels:
        if panel.row != row:
            row = panel.row
            out.append(
                {
                    "id": next_id,
                    "type": "row",
                    "title": row,
                    "collapsed": False,
                    "panels": [],
                    "gridPos": grid[f"row:{row}"],
                }
            )
            next_id += 1
        if in_grafana(panel):
            out.append(grafana_panel(panel, next_id, grid[panel.id]))
            next_id += 1
    for item in out:
        if item.get("interval") is None:
            item.pop("interval", None)
    return {
        "uid": UID,
        "title": TITLE,
        "tags": ["claude-code", "ccmetrics"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "time": {"from": "now-7d", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": _variables(loki)},
        "panels": out,
        "links": [],
    }


def dashboard_json(panels: tuple[Panel, ...] = PANELS, loki: bool = True) -> str:
    return json.dumps(dashboard(panels, loki), indent=2, ensure_ascii=False) + "\n"
