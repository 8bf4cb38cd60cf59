"""``ccmetrics export``: the raw points and events of a time range, as CSV or JSON lines.

Everything is read in one read transaction (one snapshot, whatever the server commits meanwhile), a page at
a time, so an export of any size takes little memory and never holds ingest up. Points come first, then
events, each in time order. Conversation text is in an event's attributes only if the server kept it
(``--store-prompts``); otherwise it reads ``<REDACTED>``, as it was stored.

CSV has one row per record, the same columns for both; every text is quoted, no number is, and no text can
be a formula (spreadsheet.inert).
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any, TextIO

from .spreadsheet import FORMULA_START, inert
from .store import queries
from .store.event_rows import whole_attributes
from .store.schema import EVENT_MEASURES
from .store.transactions import read_transaction

PAGE = 5000
COLUMNS = ("record", "time", "time_ns", "name", "value", "unit", "kind", "temporality", "start_ns",
           "cumulative", "extra", "body", "attributes")  # fmt: skip
FORMATS = ("csv", "jsonl")
__all__ = ["COLUMNS", "FORMATS", "FORMULA_START", "PAGE", "records", "write"]


def records(conn: sqlite3.Connection, since_ns: int | None, until_ns: int | None) -> Iterator[dict[str, Any]]:
    """Every point, then every event, of ``[since_ns, until_ns)``, as dicts with the keys of COLUMNS."""
    since, until = queries.bounds(since_ns, until_ns)
    # Just before the first point at ``since``, and later before the first event: ids are never negative.
    after: tuple[int, ...] = (since, queries.EARLIEST_NS, queries.EARLIEST_NS)
    while True:
        rows = conn.execute(queries.EXPORT_POINTS, (*after, until, PAGE)).fetchall()
        for time_ns, _, start_ns, metric, unit, kind, temporality, attrs, value, cumulative, extra in rows:
            yield {
                "record": "point",
                "time": _iso(time_ns),
                "time_ns": time_ns,
                "name": metric,
                "value": value,
                "unit": unit,
                "kind": kind,
                "temporality": temporality,
                "start_ns": start_ns,
                "cumulative": cumulative,
                "extra": json.loads(extra) if extra else None,
                "body": None,
                "attributes": json.loads(attrs),
            }
        if len(rows) < PAGE:
            break
        after = tuple(rows[-1][:3])
    after = (since, queries.EARLIEST_NS)
    while True:
        rows = conn.execute(queries.EXPORT_EVENTS, (*after, until, PAGE)).fetchall()
        for time_ns, _, name, family_attrs, own, session, prompt_id, *measures, body in rows:
            columns = {
                "session.id": session,
                "prompt.id": prompt_id,
                **dict(zip(EVENT_MEASURES, measures, strict=True)),
            }
            yield {
                "record": "event",
                "time": _iso(time_ns),
                "time_ns": time_ns,
                "name": name,
                "value": None,
                "unit": None,
                "kind": None,
                "temporality": None,
                "start_ns": None,
                "cumulative": None,
                "extra": None,
                "body": body,
                "attributes": whole_attributes(json.loads(family_attrs), json.loads(own), columns),
            }
        if len(rows) < PAGE:
            break
        after = tuple(rows[-1][:2])


def write(
    conn: sqlite3.Connection, out: TextIO, fmt: str, since_ns: int | None, until_ns: int | None
) -> tuple[int, int]:
    """Write the range's records to ``out`` in ``fmt`` (csv or jsonl); returns (points, events) written."""
    counts = {"point": 0, "event": 0}
    with read_transaction(conn):
        if fmt == "csv":
            writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC)
            writer.writerow(COLUMNS)
            for record in records(conn, since_ns, until_ns):
                counts[record["record"]] += 1
                writer.writerow([inert(_cell(record[c])) for c in COLUMNS])
        else:
            for record in records(conn, since_ns, until_ns):
                counts[record["record"]] += 1
                out.write(json.dumps(record, ensure_ascii=False, allow_nan=False, default=str) + "\n")
    return counts["point"], counts["event"]


def _cell(value: Any) -> Any:
    """A CSV cell: attributes and buckets as JSON text, nothing as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def _iso(ns: int) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"
    )
