"""What the read side keeps between requests, each bounded whatever clients send.

- ``FamilyCache``: the names of families and the values of their attributes. Families never change once
  written, so what is learnt about them stays right.
- ``AnswerCache``: answers read from the rollups, kept while the hours they cover do not change (every
  transaction that adds to an hour bumps its version in ``hour_versions``).

Both are shared by the reader threads.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from . import queries
from .queries import FamilyTable

Key = tuple[Any, ...]
MAX_CACHED_FAMILY_VALUES = 200_000  # (family, attribute) pairs FamilyCache keeps: 10 to 30 MB
KEEP_ATTRIBUTE_S = 60  # an attribute used this recently is not forgotten to make room for another
MAX_CACHED_ANSWER_ROWS = 100_000  # rows AnswerCache keeps

# Families' values of one attribute (or, under None, their names): family id -> value.
Column = tuple[FamilyTable, str | None]


class FamilyCache:
    """Metric or event names of families, and the values of their attributes, by id: read once per family
    and attribute, from ``family_attrs`` (as text, the values filters match), so grouping thousands of
    families is a dictionary lookup each.

    Bounded: at most ``max_entries`` (family, attribute) pairs are kept between requests, and attributes used
    least recently are forgotten first, but only those not used for a minute: the groupings a dashboard asks
    for in turn would otherwise push each other out, and none would ever be found. Values that do not fit
    are read for the request that asks and not kept: a store with more families than that (a cardinality
    flood) costs time, read again by every request, never memory that stays.
    """

    def __init__(self, max_entries: int = MAX_CACHED_FAMILY_VALUES) -> None:
        self._max = max_entries
        self._kept: OrderedDict[Column, dict[int, Any]] = OrderedDict()
        self._used: dict[Column, float] = {}  # when each was last asked for
        self._size = 0
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget everything kept: families have been deleted (forgetting.py)."""
        with self._lock:
            self._kept = OrderedDict()
            self._used.clear()
            self._size = 0

    @property
    def entries(self) -> int:
        """(family, attribute) pairs kept, names included."""
        return self._size

    def names(self, conn: sqlite3.Connection, table: FamilyTable, ids: Iterable[int]) -> dict[int, str]:
        """``{family_id: metric or event name}`` for (at least) the families asked for."""
        return self._column(conn, (table, None), _asked(ids))

    def keys(
        self, conn: sqlite3.Connection, table: FamilyTable, ids: Iterable[int], by: tuple[str, ...]
    ) -> dict[int, Key]:
        """``{family_id: (value of each attribute in by, None where a family lacks it)}`` for the families
        asked for."""
        asked = _asked(ids)
        if not by:
            return dict.fromkeys(asked, ())
        columns = [self._column(conn, (table, key), asked) for key in by]
        order = list(asked)
        # Each attribute's values in the families' order, zipped into one tuple per family (a dashboard asks
        # this of thousands of families, dozens of times: no Python loop per family).
        values = [list(map(column.__getitem__, order)) for column in columns]
        return dict(zip(order, zip(*values, strict=True), strict=True))

    def _column(
        self, conn: sqlite3.Connection, column: Column, asked: set[int] | dict[int, Any]
    ) -> dict[int, Any]:
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(column)
            if kept is not None:
                self._kept.move_to_end(column)
                self._used[column] = now
        known = kept if kept is not None else {}
        missing = [family_id for family_id in asked if family_id not in known]
        if not missing:
            return known
        loaded = _read(conn, column, missing)
        with self._lock:
            kept = self._kept.get(column)
            for other in list(self._kept):  # make room: the attributes used least recently go first
                if self._size + len(loaded) <= self._max or now - self._used[other] < KEEP_ATTRIBUTE_S:
                    break
                if other != column:
                    self._size -= len(self._kept.pop(other))
                    del self._used[other]
            if self._size + len(loaded) <= self._max:
                self._used[column] = now
                if kept is None:
                    kept = self._kept[column] = {}
                before = len(kept)
                kept.update(loaded)  # never removed from while kept: other threads may be reading it
                self._size += len(kept) - before
                return kept
        for family_id in asked:  # too many to keep: this request's own answer
            if family_id in known:
                loaded[family_id] = known[family_id]
        return loaded


def _asked(ids: Iterable[int]) -> set[int] | dict[int, Any]:
    return ids if isinstance(ids, set | dict) else set(ids)


def _read(conn: sqlite3.Connection, column: Column, ids: list[int]) -> dict[int, Any]:
    """The names (attribute None) or one attribute's values of families, from SQL."""
    table, key = column
    if key is None:
        query = queries.family_names(table, ids)
        names = dict(conn.execute(query.sql, query.params))
        return {family_id: names.get(family_id, "") for family_id in ids}
    query = queries.family_values(table, key, ids)
    values = dict(conn.execute(query.sql, query.params))
    return {family_id: values.get(family_id) for family_id in ids}


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

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()
            self._rows = 0

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
