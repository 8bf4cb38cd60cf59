"""The rules file: TOML or YAML, read once and checked whole, every mistake named with its line.

```toml
evaluation_interval = "5s"     # how often serve evaluates the rules
repeat_interval = "4h"         # a firing alert is notified again this often

[targets]                      # Apprise URLs by name
ops = "json://alerts.example.com/hook"

[[rules]]
name = "HighCost"
kind = "spend"                 # spend | budget | spike | silence | error_rate | tokens_per_minute
window = "1h"
above = 10.0
group_by = "team"              # user, email, team, organization, host or any attribute key
for = "5m"
labels = { severity = "warning" }
```
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from ..store.filters import parse_span

Path_ = tuple[str | int, ...]  # where a value sits in the file: ("rules", 2, "above")

# Short names of the attributes rules group by most; any other attribute key is taken as it is.
GROUP_ALIASES = {
    "user": "user.id",
    "email": "user.email",
    "team": "team.id",
    "organization": "organization.id",
    "organisation": "organization.id",
    "host": "host.name",
}
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_EVALUATION_INTERVAL_S = 5.0
DEFAULT_REPEAT_INTERVAL_S = 4 * 3600.0
DEFAULT_BACKOFF_S = 5.0
DEFAULT_ATTEMPTS = 8
DEFAULT_WARN_AT = (50.0, 80.0, 100.0)


class Kind(StrEnum):
    SPEND = "spend"
    BUDGET = "budget"
    SPIKE = "spike"
    SILENCE = "silence"
    ERROR_RATE = "error_rate"
    TOKENS_PER_MINUTE = "tokens_per_minute"


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True)
class Rule:
    """One rule. ``window_s``: the span the value is computed over (for ``silence``, ``quiet_s``); the
    kind's own fields are set only for that kind."""

    name: str
    kind: Kind
    threshold: float = 0.0  # above: USD, a fraction of requests, tokens per minute; a spike's factor
    window_s: float = 0.0
    group_by: str | None = None
    for_s: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    summary: str | None = None
    filters: tuple[tuple[str, str], ...] = ()
    targets: tuple[str, ...] = ()  # names of [targets]; empty: all of them
    # budget
    period: Period | None = None
    warn_at: tuple[float, ...] = ()
    # spike
    baseline_s: float = 0.0
    min_spend: float = 0.0
    # silence
    seen_within_s: float = 0.0
    # error_rate
    min_requests: int = 1

    @property
    def send_resolved(self) -> bool:
        """A budget warning is said once per period; the period's end resolves it without a word."""
        return self.kind is not Kind.BUDGET

    @property
    def repeats(self) -> bool:
        return self.kind is not Kind.BUDGET

    @property
    def label_key(self) -> str | None:
        """The label an alert of this rule carries its group's value in: the attribute key, or None."""
        return self.group_by


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    targets: Mapping[str, str]  # name -> Apprise URL
    evaluation_interval_s: float = DEFAULT_EVALUATION_INTERVAL_S
    repeat_interval_s: float = DEFAULT_REPEAT_INTERVAL_S
    backoff_s: float = (
        DEFAULT_BACKOFF_S  # the first retry of a failed delivery; each next one waits twice as long
    )
    attempts: int = DEFAULT_ATTEMPTS  # deliveries tried before a notification is given up as failed
    source: str = ""

    def targets_of(self, rule: Rule) -> dict[str, str]:
        names = rule.targets or tuple(self.targets)
        return {name: self.targets[name] for name in names}


NO_RULES = Rules((), {})


class RulesError(ValueError):
    """A rules file that cannot be used; ``problems`` lists each mistake as ``FILE:LINE: what``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load(path: Path) -> Rules:
    """Read and check a rules file (``.toml``, ``.yaml`` or ``.yml``); raises RulesError naming every
    mistake with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError([f"{path}: cannot read it: {exc}"]) from None
    return parse(text, str(path), yaml_format=path.suffix.lower() in (".yaml", ".yml"))


def parse(text: str, source: str = "<rules>", yaml_format: bool = False) -> Rules:
    if yaml_format:
        data, lines = _read_yaml(text, source)
    else:
        data, lines = _read_toml(text, source)
    return _Checker(data, lines, source).rules()


# --- reading, with the line of each value -------------------------------------------------------------


def _read_toml(text: str, source: str) -> tuple[Any, dict[Path_, int]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = found.group(1) if found else "1"
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise RulesError([f"{source}:{line}: not valid TOML: {message}"]) from None
    return data, _toml_lines(text)


_TABLE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(
    r"^\s*((?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-]+)(?:\s*\.\s*(?:\"[^\"]*\"|'[^']*'|[A-Za-z0-9_\-]+))*)\s*="
)


def _toml_key(text: str) -> list[str]:
    return [part.strip().strip("\"'") for part in re.findall(r"\"[^\"]*\"|'[^']*'|[^.]+", text)]


def _toml_lines(text: str) -> dict[Path_, int]:
    """Where each table and key of a TOML file starts: ``[[rules]]`` tables are numbered in order."""
    lines: dict[Path_, int] = {}
    arrays: dict[tuple[str, ...], int] = {}
    table: Path_ = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE.match(line)
        if header:
            keys = tuple(_toml_key(header.group(2)))
            if header.group(1) == "[[":
                arrays[keys] = arrays.get(keys, -1) + 1
                table = (*keys, arrays[keys])
            else:
                # a sub-table of the latest [[rules]] ([rules.labels]) belongs to that rule
                head = keys[:1]
                table = (*head, arrays[head], *keys[1:]) if head in arrays and len(keys) > 1 else keys
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault((*table, *_toml_key(key.group(1))), number)
    return lines


def _read_yaml(text: str, source: str) -> tuple[Any, dict[Path_, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesError([f"{source}:{line}: not valid YAML: {problem}"]) from None
    lines: dict[Path_, int] = {}

    def walk(n: yaml.Node, at: Path_) -> None:
        lines.setdefault(at, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
                lines.setdefault((*at, name), key.start_mark.line + 1)
                walk(value, (*at, name))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*at, i))

    if node is not None:
        walk(node, ())
    return ({} if data is None else data), lines


# --- checking -------------------------------------------------------------------------------------------

_COMMON = {"name", "kind", "group_by", "for", "labels", "summary", "filter", "notify"}
_FIELDS = {
    Kind.SPEND: {"window", "above"},
    Kind.BUDGET: {"period", "amount", "warn_at"},
    Kind.SPIKE: {"window", "factor", "baseline", "min_spend"},
    Kind.SILENCE: {"seen_within", "quiet_for"},
    Kind.ERROR_RATE: {"window", "above", "min_requests"},
    Kind.TOKENS_PER_MINUTE: {"window", "above"},
}
_TOP = {"evaluation_interval", "repeat_interval", "retry_backoff", "delivery_attempts", "targets", "rules"}


class _Checker:
    def __init__(self, data: Any, lines: dict[Path_, int], source: str) -> None:
        self.data = data
        self.lines = lines
        self.source = source
        self.problems: list[str] = []

    def problem(self, at: Path_, message: str) -> None:
        line = None
        for i in range(len(at), -1, -1):  # the value's own line, or its nearest enclosing table's
            line = self.lines.get(at[:i])
            if line is not None:
                break
        where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in at).replace(".[", "[")
        self.problems.append(f"{self.source}:{line or 1}: {where + ': ' if where else ''}{message}")

    def rules(self) -> Rules:
        data = self.data
        if not isinstance(data, dict):
            self.problem((), "the file must be a table of settings with a list of rules")
            raise RulesError(self.problems)
        for key in data:
            if key not in _TOP:
                self.problem((key,), f"unknown setting {key!r} (known: {', '.join(sorted(_TOP))})")
        evaluation = self.span(data, (), "evaluation_interval", DEFAULT_EVALUATION_INTERVAL_S, least=0.1)
        repeat = self.span(data, (), "repeat_interval", DEFAULT_REPEAT_INTERVAL_S, least=1)
        backoff = self.span(data, (), "retry_backoff", DEFAULT_BACKOFF_S, least=0.01)
        attempts = self.number(data, (), "delivery_attempts", DEFAULT_ATTEMPTS, least=1, whole=True)
        targets = self.targets(data.get("targets", {}))
        raw_rules = data.get("rules", [])
        rules: list[Rule] = []
        if not isinstance(raw_rules, list):
            self.problem(("rules",), "must be a list of rules ([[rules]] tables in TOML)")
            raw_rules = []
        names: set[str] = set()
        for i, raw in enumerate(raw_rules):
            rule = self.rule(raw, ("rules", i), set(targets))
            if rule is None:
                continue
            if rule.name in names:
                self.problem(("rules", i, "name"), f"a second rule named {rule.name!r}: names are unique")
            names.add(rule.name)
            rules.append(rule)
        if self.problems:
            raise RulesError(sorted(self.problems, key=_line_of))
        return Rules(
            tuple(rules),
            targets,
            evaluation_interval_s=evaluation,
            repeat_interval_s=repeat,
            backoff_s=backoff,
            attempts=int(attempts),
            source=self.source,
        )

    def targets(self, raw: Any) -> dict[str, str]:
        if not isinstance(raw, dict):
            self.problem(("targets",), 'must be a table of names and Apprise URLs (ops = "json://...")')
            return {}
        out = {}
        for name, url in raw.items():
            if not isinstance(url, str) or "://" not in url:
                self.problem(("targets", name), "must be an Apprise URL, such as json://host:port/path")
                continue
            out[str(name)] = url
        return out

    def rule(self, raw: Any, at: Path_, targets: set[str]) -> Rule | None:
        if not isinstance(raw, dict):
            self.problem(at, "a rule is a table of settings")
            return None
        before = len(self.problems)
        name = raw.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            self.problem((*at, "name"), "every rule needs a name of letters, digits and _ (HighCost)")
            name = f"rules[{at[-1]}]"
        kind_text = raw.get("kind")
        try:
            kind = Kind(str(kind_text))
        except ValueError:
            self.problem((*at, "kind"), f"kind must be one of {', '.join(k.value for k in Kind)}")
            return None
        allowed = _COMMON | _FIELDS[kind]
        for key in raw:
            if key not in allowed:
                self.problem(
                    (*at, key), f"{kind} rules have no {key!r} (they take {', '.join(sorted(allowed))})"
                )
        group_by = raw.get("group_by")
        if group_by is not None and (
            not isinstance(group_by, str) or not group_by.strip() or '"' in group_by
        ):
            self.problem((*at, "group_by"), "must be an attribute key (user, team, or any attribute)")
            group_by = None
        group_key = GROUP_ALIASES.get(group_by, group_by) if isinstance(group_by, str) else None
        labels = self.mapping(raw, at, "labels", label_keys=True)
        filters = tuple(self.mapping(raw, at, "filter").items())
        notify = raw.get("notify", [])
        if isinstance(notify, str):
            notify = [notify]
        if not isinstance(notify, list) or not all(isinstance(n, str) for n in notify):
            self.problem((*at, "notify"), "must be a list of target names")
            notify = []
        for target in notify:
            if target not in targets:
                self.problem((*at, "notify"), f"no target named {target!r} in [targets]")
        summary = raw.get("summary")
        if summary is not None and not isinstance(summary, str):
            self.problem((*at, "summary"), "must be text")
            summary = None
        fields: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "group_by": group_key,
            "for_s": self.span(raw, at, "for", 0.0),
            "labels": labels,
            "summary": summary,
            "filters": filters,
            "targets": tuple(notify),
        }
        if kind in (Kind.SPEND, Kind.ERROR_RATE, Kind.TOKENS_PER_MINUTE, Kind.SPIKE):
            fields["window_s"] = self.span(raw, at, "window", None, least=1)
        if kind in (Kind.SPEND, Kind.TOKENS_PER_MINUTE):
            fields["threshold"] = self.number(raw, at, "above", None)
        if kind is Kind.ERROR_RATE:
            fields["threshold"] = self.number(raw, at, "above", None, least=0, most=1)
            fields["min_requests"] = int(self.number(raw, at, "min_requests", 1, least=1, whole=True))
        if kind is Kind.SPIKE:
            fields["threshold"] = self.number(raw, at, "factor", None, least=0)
            fields["baseline_s"] = self.span(raw, at, "baseline", 7 * 86400.0, least=1)
            fields["min_spend"] = self.number(raw, at, "min_spend", 0.0, least=0)
            if fields["baseline_s"] < fields["window_s"]:
                self.problem((*at, "baseline"), "must be at least as long as the window")
        if kind is Kind.BUDGET:
            period = raw.get("period")
            try:
                fields["period"] = Period(str(period))
            except ValueError:
                self.problem((*at, "period"), "must be day, week or month")
            fields["threshold"] = self.number(raw, at, "amount", None, least=0, above_least=True)
            warn_at = raw.get("warn_at", list(DEFAULT_WARN_AT))
            if (
                not isinstance(warn_at, list)
                or not warn_at
                or not all(_is_number(p) and 0 < p <= 1000 for p in warn_at)
            ):
                self.problem(
                    (*at, "warn_at"), "must be a list of percentages of the amount, such as [50, 80, 100]"
                )
                warn_at = list(DEFAULT_WARN_AT)
            fields["warn_at"] = tuple(sorted({float(p) for p in warn_at}))
        if kind is Kind.SILENCE:
            fields["seen_within_s"] = self.span(raw, at, "seen_within", None, least=60)
            fields["window_s"] = self.span(raw, at, "quiet_for", None, least=1)
            if fields["group_by"] is None:
                fields["group_by"] = GROUP_ALIASES["user"]
            if fields["seen_within_s"] <= fields["window_s"]:
                self.problem((*at, "seen_within"), "must be longer than quiet_for")
        if len(self.problems) > before:
            return None
        return Rule(**fields)

    def mapping(self, raw: dict[str, Any], at: Path_, key: str, label_keys: bool = False) -> dict[str, str]:
        value = raw.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str | int | float) for v in value.values()):
            self.problem((*at, key), "must be a table of names and text values")
            return {}
        if label_keys:
            for name in value:
                if not LABEL_NAME.match(str(name)) or name in ("alertname", "threshold"):
                    self.problem((*at, key, name), "a label name is letters, digits and _, and not alertname")
        return {str(k): str(v) for k, v in value.items()}

    def span(
        self, raw: dict[str, Any], at: Path_, key: str, default: float | None, least: float = 0
    ) -> float:
        value = raw.get(key)
        if value is None:
            if default is None:
                self.problem((*at, key) if at else (key,), "required (a span: 30s, 5m, 1h, 7d)")
                return 0.0
            return default
        span = parse_span(value) if isinstance(value, str) else None
        if span is None or not math.isfinite(seconds := span.total_seconds()) or seconds < least:
            self.problem((*at, key), f"must be a span of at least {least:g}s, such as 30s, 5m, 1h or 7d")
            return default or 0.0
        return seconds

    def number(
        self,
        raw: dict[str, Any],
        at: Path_,
        key: str,
        default: float | None,
        least: float | None = None,
        most: float | None = None,
        whole: bool = False,
        above_least: bool = False,
    ) -> float:
        value = raw.get(key)
        if value is None:
            if default is None:
                self.problem((*at, key) if at else (key,), "required (a number)")
                return 0.0
            return default
        bad = not _is_number(value) or (whole and not float(value).is_integer())
        if not bad and least is not None:
            bad = value <= least if above_least else value < least
        if not bad and most is not None:
            bad = value > most
        if bad:
            bounds = []
            if least is not None:
                bounds.append(f"{'above' if above_least else 'at least'} {least:g}")
            if most is not None:
                bounds.append(f"at most {most:g}")
            what = "a whole number" if whole else "a number"
            self.problem((*at, key), f"must be {what}{' ' + ' and '.join(bounds) if bounds else ''}")
            return default or 0.0
        return float(value)


def _line_of(problem: str) -> int:
    found = re.search(r":(\d+): ", problem)
    return int(found.group(1)) if found else 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def iter_targets(rules: Rules) -> Iterator[tuple[str, str]]:
    yield from rules.targets.items()
