"""``/metrics``: the store's counters, named as the OpenTelemetry Collector's Prometheus exporter names them.

A dashboard or alert written for a Collector-fed Prometheus therefore works unchanged on a Prometheus that
scrapes ``ccmetrics serve``. The values are all-time sums read from the store, so a restart of ccmetrics
never resets a counter and a counter that stopped moving never expires.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from .metrics import DEFAULT_LABELS, label_name, metric_name
from .store.people import People
from .store.schema import FAMILY_COLUMNS

__all__ = ["CONTENT_TYPE_LATEST", "exposition", "label_name", "metric_name", "parse_label_keys"]

MAX_SERIES = 10_000  # series /metrics exposes at most; ccmetrics_metrics_series_dropped counts the rest
USER_ID = "user.id"


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


def _label_text(text: str) -> str:
    """``_value`` of an attribute from its JSON text, for what SQL cannot turn into the same text: a float
    (Python's repr), a list or a map (json.dumps)."""
    return _value(json.loads(text))


def _label_columns(i: int, key: str) -> list[str]:
    """What a family (``f``) gives for the i-th label, read once per family: the column of a common
    attribute, or the attribute's JSON text, as ``c{i}`` and ``j{i}`` (a common attribute's JSON text only
    when its column could be a list's or map's)."""
    path = "'$.\"" + key.replace('"', "").replace("'", "''") + "\"'"
    column = FAMILY_COLUMNS.get(key)
    if column is None:
        return [f"NULL AS c{i}", f"f.attrs -> {path} AS j{i}"]
    return [
        f"f.{column} AS c{i}",
        f"CASE WHEN substr(f.{column}, 1, 1) IN ('[', '{{') THEN f.attrs -> {path} END AS j{i}",
    ]


def _label_sql(i: int) -> str:
    """The i-th label's text from ``_label_columns``: the same as ``_value`` gives."""
    j = f"j{i}"
    from_json = (
        f"CASE WHEN {j} = 'null' THEN '' WHEN substr({j}, 1, 1) = '\"' THEN {j} ->> '$' "
        f"WHEN {j} IN ('true', 'false') THEN {j} "
        f"WHEN substr({j}, 1, 1) IN ('[', '{{') OR {j} GLOB '*[.eE]*' THEN ccmetrics_label({j}) ELSE {j} END"
    )
    return f"CASE WHEN {j} IS NOT NULL THEN {from_json} ELSE coalesce(c{i}, '') END"


class StoreCollector(Collector):
    """A ``prometheus_client`` collector over one read connection: counters summed per label set.

    At most ``max_series`` series are exposed: each metric's largest first, in turn (every metric's largest,
    then every metric's second largest...), so that a flood of label sets in one metric cannot push the
    others out. ``ccmetrics_metrics_series_dropped`` tells how many were left out. The series are added up
    and picked in SQL: what stays in memory is the series exposed, however many families there are.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        keys: tuple[str, ...],
        per_session: bool = False,
        max_series: int = MAX_SERIES,
        people: People | None = None,
    ) -> None:
        self.conn = conn
        self.keys = keys
        self.per_session = per_session
        self.max_series = max_series
        self.people = people or People(conn)

    def _totals_sql(self) -> str:
        """All-time sums as (family_id, session_id, value): per family from the daily rollups of days that
        have them and the hourly ones of the rest, or per family and session from the points."""
        if self.per_session:
            return (
                "SELECT s.family_id, coalesce(s.session_id, ''), SUM(p.value) FROM points p "
                "CROSS JOIN series s ON s.id = p.series_id WHERE s.kind = 'sum' "
                "GROUP BY s.family_id, s.session_id"
            )
        return """
            SELECT family_id, '', SUM(value) FROM (
                SELECT family_id, value FROM rollup_day
                WHERE start_ns < (SELECT until_ns FROM closed_days)
                UNION ALL
                SELECT family_id, value FROM rollup_hour
                WHERE start_ns >= (SELECT until_ns FROM closed_days)
            ) GROUP BY family_id
        """

    def series(self) -> tuple[list[tuple[Any, ...]], int]:
        """``(metric, unit, monotonic, *label values, value)`` of the series exposed, and how many there are
        in all."""
        keys = (*self.keys, "session.id") if self.per_session else self.keys
        labels = [f"l{i}" for i in range(len(keys))]
        columns = [
            f"t.session_id AS c{i}, NULL AS j{i}"
            if key == "session.id"
            else ", ".join(_label_columns(i, key))
            for i, key in enumerate(keys)
        ]
        group = ", ".join(["metric", "unit", "monotonic", *labels])
        self.conn.create_function("ccmetrics_label", 1, _label_text, deterministic=True)
        # Each family's label columns are read once (MATERIALIZED: not once per use), then turned into text.
        sql = f"""
            WITH totals(family_id, session_id, value) AS ({self._totals_sql()}),
            labelled AS MATERIALIZED (
                SELECT f.metric AS metric, s.unit AS unit, s.monotonic AS monotonic,
                       {", ".join([*columns, "t.value AS value"])}
                FROM totals t CROSS JOIN families f ON f.id = t.family_id
                CROSS JOIN series s ON s.id = (SELECT id FROM series WHERE family_id = f.id LIMIT 1)
            ),
            grouped AS (
                SELECT metric, unit, monotonic,
                       {", ".join(f"{_label_sql(i)} AS {label}" for i, label in enumerate(labels))},
                       SUM(value) AS value
                FROM labelled GROUP BY {group}
            )
            SELECT {group}, value, COUNT(*) OVER () FROM (
                SELECT *, ROW_NUMBER() OVER (PARTITION BY metric ORDER BY abs(value) DESC, {group}) AS turn
                FROM grouped
            ) ORDER BY turn, metric LIMIT ?  -- a turn holds one series of each metric
        """
        rows = self.conn.execute(sql, (self.max_series,)).fetchall()
        return [row[:-1] for row in rows], rows[0][-1] if rows else 0

    def collect(self) -> Iterator[Metric]:
        rows, count = self.series()
        keys = (*self.keys, "session.id") if self.per_session else self.keys
        labels = [label_name(k) for k in keys]
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for metric, unit, monotonic, *label_values, value in sorted(rows, key=lambda r: r[:-1]):
            name = metric_name(metric, unit, "sum", bool(monotonic))
            if name not in families:
                kind = CounterMetricFamily if monotonic else GaugeMetricFamily
                families[name] = kind(name, f"{metric} ({unit or 'no unit'}), all-time total", labels=labels)
            families[name].add_metric(list(label_values), value)
        yield from families.values()
        users = {row[3 + keys.index(USER_ID)] for row in rows} - {""} if USER_ID in keys else set()
        if users:
            yield self._user_info(users)
        if count:
            yield GaugeMetricFamily(
                "ccmetrics_metrics_series_dropped",
                f"Series left out of this exposition: it shows at most {self.max_series}, each metric's "
                "largest first; fewer labels (--metrics-labels) make fewer series",
                value=count - len(rows),
            )

    def _user_info(self, user_ids: set[str]) -> InfoMetricFamily:
        """``ccmetrics_user_info{user_id, user_name} 1`` for each user the counters above label: the
        counters keep the id (a name that changes would split their series), and PromQL joins the name
        (``* on(user_id) group_left(user_name) ccmetrics_user_info``)."""
        info = InfoMetricFamily(
            "ccmetrics_user",
            "The name shown for each user.id: its email, user.name, alias, or first characters",
            labels=[label_name(USER_ID)],
        )
        for user_id, name in sorted(self.people.names(user_ids).items()):
            info.add_metric([user_id], {"user_name": name})
        return info


def exposition(
    conn: sqlite3.Connection,
    keys: str | Iterable[str] = DEFAULT_LABELS,
    per_session: bool = False,
    max_series: int = MAX_SERIES,
    people: People | None = None,
) -> bytes:
    """The text exposition format of every counter in the store (up to ``max_series`` series), and the name
    of each user they label (``ccmetrics_user_info``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        StoreCollector(conn, parse_label_keys(keys), per_session, max_series=max_series, people=people)
    )
    return generate_latest(registry)
