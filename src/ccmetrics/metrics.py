"""The metric catalogue: the metrics Claude Code sends that ccmetrics shows, each declared once.

Each has its name as Claude Code sends it, its unit, its kind, the attributes Claude Code sets on its points
(besides the standard ones every point carries: ``session.id``, ``user.id``, ``terminal.type``...), and the
name the OpenTelemetry Collector's ``prometheus`` exporter gives it. The summary, the panels, the SQL of the
sessions list, ``/metrics`` and the stack generator all take them from here. ``/metrics`` exposes every
counter stored, known here or not, under the same naming rules.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# --- the Collector's Prometheus names -----------------------------------------------------------------

# The Collector's unit words (pkg/translator/prometheus, "unitMap" and "perUnitMap").
UNIT_WORDS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
PER_UNIT_WORDS = {
    "s": "second",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}


def _words(text: str) -> list[str]:
    """Split on anything that is not a letter or digit, as the Collector does."""
    out, word = [], ""
    for char in text:
        if char.isalnum():
            word += char
        elif word:
            out.append(word)
            word = ""
    return [*out, word] if word else out


def _unit_word(unit: str, table: dict[str, str]) -> str:
    unit = unit.strip()
    if not unit or "{" in unit or "}" in unit:
        return ""  # annotations such as {session} are not units
    return "_".join(_words(table.get(unit, unit)))


def metric_name(name: str, unit: str, kind: str = "sum", monotonic: bool = True) -> str:
    """The Collector's normalised name: unit words appended once, ``_total`` once for monotonic sums."""
    words = _words(name)
    main, _, per = unit.partition("/")
    main_word = _unit_word(main, UNIT_WORDS)
    if main_word and main_word not in words:
        words.append(main_word)
    per_word = _unit_word(per, PER_UNIT_WORDS) if per else ""
    if per_word and per_word not in words:
        words += ["per", per_word]
    if kind == "sum" and monotonic:
        words = [w for w in words if w != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        words = [w for w in words if w != "ratio"] + ["ratio"]
    result = "_".join(words)
    return "_" + result if result[:1].isdigit() else result


def label_name(key: str) -> str:
    """An attribute key as a Prometheus label: ``user.id`` -> ``user_id``, never starting with a digit."""
    name = "".join(
        c if (c.isascii() and c.isalnum()) or c == "_" else "_" for c in unicodedata.normalize("NFC", key)
    )
    if name[:1].isdigit():
        return "key_" + name
    if name.startswith("_") and not name.startswith("__"):
        return "key" + name
    return name


# --- the catalogue ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    name: str  # as Claude Code sends it
    unit: str  # as Claude Code 2.1 sends it ("" for counts)
    attributes: tuple[str, ...] = ()  # set on its points besides the standard ones
    kind: str = "sum"
    monotonic: bool = True

    @property
    def prometheus(self) -> str:
        """Its name in Prometheus, through the Collector or on ``/metrics``."""
        return metric_name(self.name, self.unit, self.kind, self.monotonic)


SESSIONS = Metric("claude_code.session.count", "", ("start_type",))
LINES = Metric("claude_code.lines_of_code.count", "", ("type",))  # its type: added or removed
PULL_REQUESTS = Metric("claude_code.pull_request.count", "")
COMMITS = Metric("claude_code.commit.count", "")
# Cost and tokens also carry, from Claude Code 2.1 on and only where they apply, what made the request.
ATTRIBUTION = (
    "query_source",
    "effort",
    "speed",
    "agent.name",
    "skill.name",
    "plugin.name",
    "marketplace.name",
    "mcp_server.name",
    "mcp_tool.name",
)
COST = Metric("claude_code.cost.usage", "USD", ("model", *ATTRIBUTION))
TOKENS = Metric("claude_code.token.usage", "tokens", ("type", "model", *ATTRIBUTION))
DECISIONS = Metric("claude_code.code_edit_tool.decision", "", ("decision", "tool_name", "language", "source"))
ACTIVE_TIME = Metric("claude_code.active_time.total", "s", ("type",))  # its type: user or cli
CATALOGUE = (SESSIONS, LINES, PULL_REQUESTS, COMMITS, COST, TOKENS, DECISIONS, ACTIVE_TIME)

# Values of the attribute ``type``.
TOKEN_TYPES = ("input", "output", "cacheRead", "cacheCreation")
INPUT_TOKEN_TYPES = ("input", "cacheRead", "cacheCreation")  # every token the model read
LINE_CHANGES = ("added", "removed")
ACTIVE_TIME_TYPES = ("user", "cli")
EDIT_DECISIONS = ("accept", "reject")  # values of ``decision``

# The attributes that become labels on /metrics unless --metrics-labels says otherwise: those the panels'
# PromQL groups by, so that a Prometheus scraping /metrics shows the Grafana dashboard as one fed by a
# Collector does (it keeps every attribute). The dimensions of cost and tokens have few values each: Claude
# Code 2.1 names a custom agent and an MCP server and tool "custom" unless OTEL_LOG_TOOL_DETAILS=1, a
# project's skills are a team's few, and /metrics shows at most prometheus.MAX_SERIES series in any case.
DEFAULT_GROUP_KEY = "team.id"  # the resource attribute the "by team" panels break down by
DEFAULT_LABELS = (
    "user.id,user.email,model,type,decision,tool_name,language,team.id,terminal.type,"
    "query_source,effort,service.version,speed,start_type,agent.name,skill.name,plugin.name,"
    "mcp_server.name,mcp_tool.name"
)

# The events ccmetrics shows, by their names (``event.name``, without the ``claude_code.`` prefix).
USER_PROMPT = "user_prompt"  # measure: prompt_length
API_REQUEST = "api_request"  # measures: duration_ms, ttft_ms
API_ERROR = "api_error"
TOOL_RESULT = "tool_result"  # measure: duration_ms
TOOL_DECISION = "tool_decision"
