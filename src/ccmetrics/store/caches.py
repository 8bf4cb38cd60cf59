"""What the read side keeps between requests, each bounded whatever clients send.

- ``FamilyCache``: the names and group keys of families. Families never change once written, so what is
  learnt about them stays right.
- ``AnswerCache``: answers read from the rollups, kept while the hours they cover do not change (every
  transaction that adds to an hour bumps its version in ``hour_versions``).

Both are shared by the reader threads.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from . import queries
from .queries import FamilyTable

Key = tuple[Any, ...]
MAX_CACHED_FAMILY_KEYS = 200_000  # (family, grouping) pairs FamilyCache keeps: 10 to 50 MB
KEEP_GROUPING_S = 60  # a grouping used this recently is not forgotten to make room for another
MAX_CACHED_ANSWER_ROWS = 100_000  # rows AnswerCache keeps


class FamilyCache:
    """Metric or event names and group keys of families, by id. A group key (the values of a tuple of
    attribute keys) is read once per family and grouping, straight from SQL (only those attributes, never a
    family's whole JSON), so grouping thousands of families is one dictionary lookup each.

    Bounded: at most ``max_entries`` (family, grouping) pairs are kept between requests, and groupings used
    least recently are forgotten first, but only those not used for a minute: the groupings a dashboard asks
    for in turn would otherwise push each other out, and none would ever be found. A grouping that does not
    fit is worked out for the request that asks and not kept: a store with more families than that (a
    cardinality flood) costs time, its keys read again by every request, never memory that stays.
    """

    def __init__(self, max_entries: int = MAX_CACHED_FAMILY_KEYS) -> None:
        self._max = max_entries
        # By (table, attribute keys, or None for the names): family id -> key (or name).
        self._kept: OrderedDict[tuple[FamilyTable, tuple[str, ...] | None], dict[int, Any]] = OrderedDict()
        self._used: dict[
            tuple[FamilyTable, tuple[str, ...] | None], float
        ] = {}  # when each was last asked for
        self._size = 0
        self._lock = threading.Lock()

    @property
    def entries(self) -> int:
        """(family, grouping) pairs kept."""
        return self._size

    def names(self, conn: sqlite3.Connection, table: FamilyTable, ids: Iterable[int]) -> dict[int, str]:
        """``{family_id: metric or event name}`` for (at least) the families asked for."""
        return self._lookup(conn, table, ids, None)

    def keys(
        self, conn: sqlite3.Connection, table: FamilyTable, ids: Iterable[int], by: tuple[str, ...]
    ) -> dict[int, Key]:
        """``{family_id: (value of each key in by)}`` for (at least) the families asked for."""
        return self._lookup(conn, table, ids, by)

    def _lookup(
        self, conn: sqlite3.Connection, table: FamilyTable, ids: Iterable[int], by: tuple[str, ...] | None
    ) -> dict[int, Any]:
        grouping = (table, by)
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(grouping)
            if kept is not None:
                self._kept.move_to_end(grouping)
                self._used[grouping] = now
        known = kept if kept is not None else {}
        asked = ids if isinstance(ids, set | dict) else set(ids)
        missing = [family_id for family_id in asked if family_id not in known]
        if not missing:
            return known
        loaded = _read(conn, table, missing, by)
        with self._lock:
            kept = self._kept.get(grouping)
            for other in list(self._kept):  # make room: the groupings used least recently go first
                if self._size + len(loaded) <= self._max or now - self._used[other] < KEEP_GROUPING_S:
                    break
                if other != grouping:
                    self._size -= len(self._kept.pop(other))
                    del self._used[other]
            if self._size + len(loaded) <= self._max:
                self._used[grouping] = now
                if kept is None:
                    kept = self._kept[grouping] = {}
                before = len(kept)
                kept.update(loaded)  # never removed from while kept: other threads may be reading it
                self._size += len(kept) - before
                return kept
        for family_id in asked:  # too many to keep: this request's own answer
            if family_id in known:
                loaded[family_id] = known[family_id]
        return loaded


def _read(
    conn: sqlite3.Connection, table: FamilyTable, ids: list[int], by: tuple[str, ...] | None
) -> dict[int, Any]:
    """The names (``by`` None) or group keys of families, from SQL."""
    if by is None:
        query = queries.family_names(table, ids)
        names = dict(conn.execute(query.sql, query.params))
        return {family_id: names.get(family_id, "") for family_id in ids}
    if not by:
        return dict.fromkeys(ids, ())
    query = queries.family_attributes(table, ids, by)
    out: dict[int, Key] = {}
    shared: dict[Key, Key] = {}  # one tuple per distinct key, however many families share it
    for family_id, *typed in conn.execute(query.sql, query.params):
        key = tuple(
            _json_value(typed[i], typed[i + 1]) if typed[i] in _NOT_AS_IS else typed[i + 1]
            for i in range(0, len(typed), 2)
        )
        out[family_id] = shared.setdefault(key, key)
    nothing = (None,) * len(by)
    return {family_id: out.get(family_id, nothing) for family_id in ids}


# The JSON types whose value json_extract does not give as json.loads would.
_NOT_AS_IS = frozenset({"true", "false", "array", "object"})


def _json_value(kind: str | None, value: Any) -> Any:
    """An attribute's value as json.loads gives it, from SQLite's json_type and json_extract."""
    if kind == "true":
        return True
    if kind == "false":
        return False
    if kind in ("array", "object"):
        return json.loads(value)
    return value  # text, integer, real; None for null or a missing key


class AnswerCache:
    """Answers read from the rollups, kept for as long as the hours they cover do not change.

    An answer is reused only while the versions of its hours are what they were when it was read: a month of
    history is read once, and then only the hours still receiving data are read again. Bounded by the rows
    it holds; an answer of more than a quarter of that is not kept.
    """

    def __init__(self, max_rows: int = MAX_CACHED_ANSWER_ROWS) -> None:
        self._answers: OrderedDict[Key, tuple[Key, list[tuple[Any, ...]]]] = OrderedDict()
        self._rows = 0
        self._max_rows = max_rows
        self._lock = threading.Lock()

    @property
    def rows_kept(self) -> int:
        return self._rows

    def rows(
        self, conn: sqlite3.Connection, query: queries.Query, since_ns: int | None, until_ns: int | None
    ) -> list[tuple[Any, ...]]:
        """The rows of a query over the rollups of ``[since_ns, until_ns)``: kept ones while still right."""
        # In one transaction (Store.read), the versions are those of the rows read. Outside one, they are read
        # first: a commit landing in between can only make the answer look stale.
        versions = queries.hours_version(since_ns, until_ns)
        version = conn.execute(versions.sql, versions.params).fetchone()
        key = (query.sql, *query.params)
        with self._lock:
            known = self._answers.get(key)
            if known is not None and known[0] == version:
                self._answers.move_to_end(key)
                return known[1]
        rows = conn.execute(query.sql, query.params).fetchall()
        with self._lock:
            old = self._answers.pop(key, None)
            self._rows -= len(old[1]) if old else 0
            if len(rows) <= self._max_rows // 4:
                self._answers[key] = (version, rows)
                self._rows += len(rows)
            while self._rows > self._max_rows:
                _, (_, dropped) = self._answers.popitem(last=False)
                self._rows -= len(dropped)
        return rows
