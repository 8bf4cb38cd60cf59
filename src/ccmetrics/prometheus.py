"""``/metrics``: the store's counters, named as the OpenTelemetry Collector's Prometheus exporter names them.

A dashboard or alert written for a Collector-fed Prometheus therefore works unchanged on a Prometheus that
scrapes ``ccmetrics serve``. The values are all-time sums read from the store, so a restart of ccmetrics
never resets a counter and a counter that stopped moving never expires.
"""

from __future__ import annotations

import json
import sqlite3
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "exposition", "label_name", "metric_name", "parse_label_keys"]

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
DEFAULT_LABELS = (
    "user.id,user.email,model,type,decision,tool_name,language,team.id,terminal.type,"
    "query_source,effort,service.version"
)


def _tokens(text: str) -> list[str]:
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
    return "_".join(_tokens(table.get(unit, unit)))


def metric_name(name: str, unit: str, kind: str = "sum", monotonic: bool = True) -> str:
    """The Collector's normalised name: unit words appended once, ``_total`` once for monotonic sums."""
    words = _tokens(name)
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


def parse_label_keys(setting: str | Iterable[str]) -> tuple[str, ...]:
    """The ``metrics_labels`` setting: a comma-separated list of attribute keys."""
    keys = setting.split(",") if isinstance(setting, str) else setting
    return tuple(dict.fromkeys(k.strip() for k in keys if k and k.strip()))


def _value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return (
        value
        if isinstance(value, str)
        else json.dumps(value)
        if isinstance(value, list | dict)
        else str(value)
    )


@dataclass(frozen=True)
class FamilyMeta:
    metric: str
    unit: str
    monotonic: bool
    attrs: dict


class StoreCollector:
    """A ``prometheus_client`` collector over one read connection: counters summed per label set."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        keys: tuple[str, ...],
        per_session: bool = False,
        meta_cache: dict[int, FamilyMeta] | None = None,
    ) -> None:
        self.conn = conn
        self.keys = keys
        self.per_session = per_session
        self.meta_cache = meta_cache if meta_cache is not None else {}

    def _meta(self, family_ids: Iterable[int]) -> dict[int, FamilyMeta]:
        for family_id in set(family_ids) - set(self.meta_cache):
            row = self.conn.execute(
                "SELECT f.metric, s.unit, s.monotonic, f.attrs FROM families f "
                "JOIN series s ON s.family_id = f.id WHERE f.id = ? LIMIT 1",
                (family_id,),
            ).fetchone()
            if row:
                self.meta_cache[family_id] = FamilyMeta(row[0], row[1], bool(row[2]), json.loads(row[3]))
        return self.meta_cache

    def _totals(self) -> dict[tuple[int, str], float]:
        """All-time sums: per family from the daily rollups of days that have them and the hourly ones of the
        rest, or per family and session from the points."""
        if self.per_session:
            sql = (
                "SELECT s.family_id, coalesce(s.session_id, ''), SUM(p.value) FROM points p "
                "CROSS JOIN series s ON s.id = p.series_id WHERE s.kind = 'sum' "
                "GROUP BY s.family_id, s.session_id"
            )
        else:
            sql = """
                SELECT family_id, '', SUM(value) FROM (
                    SELECT family_id, value FROM rollup_day
                    WHERE start_ns < (SELECT until_ns FROM closed_days)
                    UNION ALL
                    SELECT family_id, value FROM rollup_hour
                    WHERE start_ns >= (SELECT until_ns FROM closed_days)
                ) GROUP BY family_id
            """
        return {(fid, sid): value for fid, sid, value in self.conn.execute(sql)}

    def collect(self) -> Iterator[Metric]:
        totals = self._totals()
        meta = self._meta(fid for fid, _ in totals)
        keys = (*self.keys, "session.id") if self.per_session else self.keys
        labels = [label_name(k) for k in keys]
        grouped: dict[tuple[str, str, bool], dict[tuple[str, ...], float]] = defaultdict(
            lambda: defaultdict(float)
        )
        for (family_id, session_id), value in totals.items():
            family = meta.get(family_id)
            if family is None:
                continue
            attrs = {**family.attrs, "session.id": session_id}
            grouped[(family.metric, family.unit, family.monotonic)][
                tuple(_value(attrs.get(k)) for k in keys)
            ] += value
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for (metric, unit, monotonic), rows in sorted(grouped.items()):
            name = metric_name(metric, unit, "sum", monotonic)
            if name not in families:
                kind = CounterMetricFamily if monotonic else GaugeMetricFamily
                families[name] = kind(name, f"{metric} ({unit or 'no unit'}), all-time total", labels=labels)
            for label_values, value in sorted(rows.items()):
                families[name].add_metric(list(label_values), value)
        yield from families.values()


def exposition(
    conn: sqlite3.Connection,
    keys: str | Iterable[str] = DEFAULT_LABELS,
    per_session: bool = False,
    meta_cache: dict[int, FamilyMeta] | None = None,
) -> bytes:
    """The text exposition format of every counter in the store."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(conn, parse_label_keys(keys), per_session, meta_cache))
    return generate_latest(registry)
