"""Which series, family and event family a record belongs to: found in memory or in the store, and stored when
new. This is the one cache of identities: a known one is found by its attributes, with no hashing or query.

A series is a metric with all of its attributes; its family is the same without the session (what dashboards
group and filter by, a few per person); an event family is an event's kind (see event_rows).
Strings shared by many events (session and prompt ids) are stored once, and known here too.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..recent import Recent
from ..records import Attributes, Point
from .event_rows import EventKind
from .schema import COMMON_COLUMNS, FAMILY_COLUMNS, NOT_IN_FAMILY

KNOWN = 20_000  # identities kept in memory: a large team's active series, with their families

Identity = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class SeriesIds:
    series_id: int
    family_id: int


@dataclass(frozen=True)
class _FamilyTable:
    table: str
    names: str  # the columns that name the family
    columns: dict[str, str]  # attribute: column, for the common ones
    attrs_table: str  # every attribute, for filters on any key


_METRIC_FAMILIES = _FamilyTable("families", "metric, kind", FAMILY_COLUMNS, "family_attrs")
_EVENT_FAMILIES = _FamilyTable("event_families", "name, body", FAMILY_COLUMNS, "event_family_attrs")
_INSERT_SERIES = (
    f"INSERT INTO series (key, family_id, metric, unit, kind, temporality, monotonic, scope, "
    f"{', '.join(COMMON_COLUMNS.values())}, attrs) VALUES ({', '.join('?' * (9 + len(COMMON_COLUMNS)))})"
)

Ids = SeriesIds | int  # a series' ids, or a family's id
MayCreate = Callable[[], bool]


class Identities:
    """Ids of series and families for one connection. What a transaction creates is kept apart until it is
    committed (``committed``), and forgotten with a batch rolled back (``forget_since``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._known: Recent[Identity, Ids] = Recent(KNOWN)
        self._new: dict[Identity, Ids] = {}  # found or created by the transaction under way

    def series(self, point: Point, may_create: MayCreate, unseen: bool = False) -> SeriesIds | None:
        """The ids of the point's series and family, stored if new; None when ``may_create`` refuses a new
        series. ``unseen``: the caller knows the store has no series of the point's session yet, so it is not
        looked for (an import's many new sessions)."""
        identity = (point.metric, point.unit, point.kind, point.temporality, point.scope, frozen(point.attrs))
        known = self._lookup(identity)
        if isinstance(known, SeriesIds):
            return known
        key = digest(identity)
        row = (
            None
            if unseen
            else self._conn.execute("SELECT id, family_id FROM series WHERE key = ?", (key,)).fetchone()
        )
        if row is not None:
            ids = SeriesIds(row[0], row[1])
        elif not may_create():
            return None
        else:
            family_attrs = {k: v for k, v in point.attrs.items() if k not in NOT_IN_FAMILY}
            family_id = self._family(
                _METRIC_FAMILIES,
                ("family", point.metric, point.kind, frozen(family_attrs)),
                (point.metric, point.kind),
                family_attrs,
            )
            cursor = self._conn.execute(
                _INSERT_SERIES,
                (
                    key,
                    family_id,
                    point.metric,
                    point.unit,
                    point.kind,
                    point.temporality,
                    point.monotonic,
                    point.scope,
                    *[text(point.attrs.get(attr)) for attr in COMMON_COLUMNS],
                    to_json(point.attrs),
                ),
            )
            ids = SeriesIds(int(cursor.lastrowid or 0), family_id)
        self._new[identity] = ids
        return ids

    def event_family(self, kind: EventKind, may_create: MayCreate) -> int | None:
        """The id of the family of events of this kind, stored if new; None when ``may_create`` refuses a
        new one."""
        identity: Identity = ("event", kind.name, frozen(kind.attrs))
        if kind.body is not None:
            identity += (kind.body,)
        known = self._lookup(identity)
        if isinstance(known, int):
            return known
        row = self._conn.execute(
            "SELECT id FROM event_families WHERE key = ?", (digest(identity),)
        ).fetchone()
        if row is None and not may_create():
            return None
        names = (kind.name, kind.body)
        family_id = int(row[0]) if row else self._family(_EVENT_FAMILIES, identity, names, kind.attrs)
        self._new[identity] = family_id
        return family_id

    def string(self, value: str) -> int:
        """The id of a string in ``strings``, stored if new."""
        identity = ("string", value)
        known = self._lookup(identity)
        if isinstance(known, int):
            return known
        row = self._conn.execute("SELECT id FROM strings WHERE value = ?", (value,)).fetchone()
        if row is not None:
            string_id = int(row[0])
        else:
            cursor = self._conn.execute("INSERT INTO strings (value) VALUES (?)", (value,))
            string_id = int(cursor.lastrowid or 0)
        self._new[identity] = string_id
        return string_id

    def clear(self) -> None:
        """Forget every id known: rows may have been deleted (forgetting.py)."""
        self._known = Recent(KNOWN)
        self._new.clear()

    def mark(self) -> int:
        return len(self._new)

    def forget_since(self, mark: int) -> None:
        """Forget what was created since ``mark``: its batch was rolled back."""
        for identity in list(self._new)[mark:]:
            del self._new[identity]

    def committed(self) -> None:
        for identity, ids in self._new.items():
            self._known[identity] = ids
        self._new.clear()

    def rolled_back(self) -> None:
        self._new.clear()

    def _lookup(self, identity: Identity) -> Ids | None:
        known = self._known.get(identity)
        return self._new.get(identity) if known is None else known

    def _family(
        self, table: _FamilyTable, identity: Identity, names: tuple[str | None, ...], attrs: Attributes
    ) -> int:
        """The family's id: looked up, or stored with its attributes."""
        known = self._lookup(identity)
        if isinstance(known, int):
            return known
        key = digest(identity)
        row = self._conn.execute(f"SELECT id FROM {table.table} WHERE key = ?", (key,)).fetchone()
        if row is not None:
            family_id = int(row[0])
        else:
            values = (key, *names, *[text(attrs.get(attr)) for attr in table.columns], to_json(attrs))
            cursor = self._conn.execute(
                f"INSERT INTO {table.table} (key, {table.names}, {', '.join(table.columns.values())}, attrs) "
                f"VALUES ({', '.join('?' * len(values))})",
                values,
            )
            family_id = int(cursor.lastrowid or 0)
            self._conn.executemany(
                f"INSERT OR IGNORE INTO {table.attrs_table} (key, value, family_id) VALUES (?, ?, ?)",
                [(k, text(v), family_id) for k, v in attrs.items() if v is not None],
            )
        self._new[identity] = family_id
        return family_id


def frozen(attrs: Attributes) -> Identity:
    """Attributes as a value that can be a key: sorted (key, value) pairs."""
    return tuple(sorted(attrs.items()))


def digest(identity: Identity) -> bytes:
    """An identity's key in the store."""
    return hashlib.blake2b(to_json(identity).encode(), digest_size=16).digest()


def text(value: Any) -> str | None:
    """An attribute as a column holds it."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return to_json(value)


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
