"""The migrations: frozen as the SQL they ran, and every earlier version upgrades to the schema of a new
database, its rows intact. Real SQLite files, no mocks."""

from __future__ import annotations

import ast
import hashlib
import sqlite3
import types
from pathlib import Path
from typing import Any

import pytest

from ccmetrics.store import schema
from ccmetrics.store.identities import Identities
from ccmetrics.store.schema import (
    DAY_NS,
    MIGRATIONS,
    SCHEMA_VERSION,
    check_columns,
    expected_columns,
    migrate,
    missing_columns,
    statements,
)
from ccmetrics.store.upgrade import EventsUpgrade

# sha256 of each migration's SQL, in order: databases out there ran exactly this text. When you add a
# migration, add its checksum here; never change an existing one (a schema change is a new migration).
CHECKSUMS = [
    "fe322ad8d78e7795a86b50fd833da40473dcad7277967904bef2376312cca6f0",
    "c3c617a6f8feda9a9aaa8691b85b15e028201301e74b6fd431b3d846e4fe1575",
    "20817b878603b474dced8ff8aa9246de2f67124111f0cdb408c5026950e4bac0",
    "aee3307396b44311c23860ed31ce3d3ede876984782c63da599e475518c69f37",
    "8bc2a476ca3801376b728f0b35d52ae684ca3919741c792b99f9973b1cc6a6f3",
    "a4130090f194181b2f96053cdb3eb497c4a9c799c62573b8a40fc359efa5d818",
    "9fcbd3968dc002a96f06776e0b1164422ef8c5d17e374ffba38782e67a6896bf",
    "dd59993f2f0213b444e34f4c4f37f265baec735d7a6df44e00101ecd0a8807e1",
    "37168d18bb1b0000e9c5bf15a77fc2b27d44150ff049d9ff84b0e44cf1da8398",
    "1d1c38542123c54eb7d539956b2e66037efd3c2d65ac2fdd8c55a317b9190a86",
]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)  # migrate runs its own transactions


def _at_version(path: Path, k: int) -> sqlite3.Connection:
    """A database as the first ``k`` migrations left it: each in its transaction, as ``migrate`` runs it."""
    conn = _connect(path)
    for version in range(k):
        conn.execute("BEGIN IMMEDIATE")
        for statement in statements(MIGRATIONS[version]):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version + 1}")
        conn.execute("COMMIT")
    if k >= 6:  # and, as the writer does once at schema 6, the events stored before it moved
        _upgrade_events(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == k
    return conn


def _schema(conn: sqlite3.Connection) -> dict[str, Any]:
    """Everything about the layout: the stored CREATE statements, each table's columns, each index."""
    master = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name, tbl_name"
    ).fetchall()
    tables = [name for kind, name, _, _ in master if kind == "table"]
    indexes = {table: conn.execute(f"PRAGMA index_list({table})").fetchall() for table in tables}
    return {
        "user_version": conn.execute("PRAGMA user_version").fetchone()[0],
        "sqlite_master": master,
        "table_info": {table: conn.execute(f"PRAGMA table_info({table})").fetchall() for table in tables},
        "index_list": indexes,
        "index_xinfo": {
            index[1]: conn.execute(f"PRAGMA index_xinfo({index[1]})").fetchall()
            for table in tables
            for index in indexes[table]
        },
    }


def _upgrade_events(conn: sqlite3.Connection) -> None:
    """What the writer does after migration 6, between its commits: move the events stored before (none, in a
    new database) and drop their table."""
    upgrade = EventsUpgrade(conn, Identities(conn))
    while upgrade.pending:
        upgrade.step(size=2)


def _fresh_schema(tmp_path: Path) -> dict[str, Any]:
    conn = _connect(tmp_path / "fresh.db")
    try:
        assert migrate(conn) == 0
        _upgrade_events(conn)
        return _schema(conn)
    finally:
        conn.close()


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[Any, ...]]:
    return conn.execute(f"PRAGMA table_info({table})").fetchall()


def _fill(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Three rows in every table there is, the third with NULL wherever a column allows it. Integers are the
    row's number, so the ids that join tables (series.id and points.series_id...) match."""
    tables = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    filled = {}
    for table in tables:
        columns = _columns(conn, table)
        for i in (1, 2, 3):
            values: list[Any] = []
            for _, name, kind, notnull, _, pk in columns:
                if i == 3 and not notnull and not pk:
                    values.append(None)
                elif kind == "INTEGER":
                    values.append(i)
                elif kind == "REAL":
                    values.append(i + 0.25)
                elif kind == "BLOB":
                    values.append(f"{table}.{i}".encode())
                else:
                    values.append(f"{table}.{name}.{i}")
            conn.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(values))})", values)
        filled[table] = [column[1] for column in columns]
    return filled


def _rows(conn: sqlite3.Connection, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    names = ", ".join(columns)
    return conn.execute(f"SELECT {names} FROM {table} ORDER BY {names}").fetchall()


def test_past_migrations_never_change():
    """Each migration's text is the one every database at that version ran: a checksum apiece."""
    assert [_sha256(sql) for sql in MIGRATIONS] == CHECKSUMS
    assert SCHEMA_VERSION == len(CHECKSUMS)


def test_migrations_are_plain_string_literals():
    """No migration is built from a constant (an f-string, a call, a name): its text cannot move with code."""
    tree = ast.parse(Path(schema.__file__).read_text())
    (value,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.target.id == "MIGRATIONS"
    ]
    assert isinstance(value, ast.Tuple) and len(value.elts) == SCHEMA_VERSION
    for element in value.elts:
        literal = isinstance(element, ast.Constant) and isinstance(element.value, str)
        assert literal, f"the migration at line {element.lineno} of schema.py is not a plain string literal"


def _schema_module_with(tmp_path: Path, old: str, new: str) -> types.ModuleType:
    """store/schema.py as it would be after an edit to its source, imported on its own."""
    source = Path(schema.__file__).read_text()
    assert source.count(old) == 1
    module = types.ModuleType("edited_schema")
    module.__file__ = str(tmp_path / "edited_schema.py")
    exec(compile(source.replace(old, new), module.__file__, "exec"), module.__dict__)
    return module


def test_an_entry_added_to_a_constant_leaves_the_migrations_as_they_were_and_is_caught(tmp_path):
    """Someone adds an attribute to COMMON_COLUMNS and no migration: the migrations stay the SQL they ran (and
    so keep their checksums), and the guard refuses the schema until a new migration adds the column."""
    edited = _schema_module_with(
        tmp_path, "COMMON_COLUMNS = {\n", 'COMMON_COLUMNS = {\n    "test.unmigrated": "test_unmigrated",\n'
    )
    assert edited.COMMON_COLUMNS["test.unmigrated"] == edited.FAMILY_COLUMNS["test.unmigrated"]
    assert edited.MIGRATIONS == MIGRATIONS

    conn = _connect(tmp_path / "new.db")
    try:
        with pytest.raises(RuntimeError, match="needs a migration") as refused:
            edited.migrate(conn)
        for table in ("families", "series", "event_families"):
            assert f"{table}.test_unmigrated" in str(refused.value)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION  # the migrations ran
    finally:
        conn.close()


def test_the_tables_have_every_column_the_constants_name(tmp_path):
    conn = _connect(tmp_path / "fresh.db")
    try:
        migrate(conn)
        assert missing_columns(conn) == []
        check_columns(conn)
        for table, columns in expected_columns().items():
            present = [column[1] for column in _columns(conn, table)]
            assert set(columns) <= set(present), table
        # Every table the constants speak of, with each of their entries.
        expected = expected_columns()
        assert {"families", "series", "event_families", "events"} <= set(expected)
        assert {f"{prefix}_{tier}" for prefix in ("rollup", "event_rollup") for tier in schema.TIERS} <= set(
            expected
        )
        assert set(schema.COMMON_COLUMNS.values()) <= set(expected["series"])
        assert set(schema.EVENT_STRINGS.values()) | set(schema.EVENT_MEASURES) <= set(expected["events"])
    finally:
        conn.close()


def test_a_measure_added_without_a_migration_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(schema, "EVENT_MEASURES", (*schema.EVENT_MEASURES, "output_tokens"))
    conn = _connect(tmp_path / "fresh.db")
    try:
        with pytest.raises(RuntimeError, match="events.output_tokens"):
            migrate(conn)
        assert missing_columns(conn) == [
            "events.output_tokens",
            "event_rollup_hour.output_tokens_sum",
            "event_rollup_hour.output_tokens_count",
            "event_rollup_day.output_tokens_sum",
            "event_rollup_day.output_tokens_count",
            "event_rollup_week.output_tokens_sum",
            "event_rollup_week.output_tokens_count",
        ]
    finally:
        conn.close()


@pytest.mark.parametrize("k", range(SCHEMA_VERSION))
def test_a_database_at_every_earlier_version_upgrades_to_the_schema_of_a_new_one(tmp_path, k):
    """Built by the first k migrations, a few rows in each of its tables, then upgraded: the same layout as a
    database created now, and its rows kept."""
    fresh = _fresh_schema(tmp_path)
    conn = _at_version(tmp_path / f"v{k}.db", k)
    try:
        conn.execute("BEGIN")
        filled = _fill(conn)
        conn.execute("COMMIT")
        assert bool(filled) == (k > 0)
        before = {table: _rows(conn, table, columns) for table, columns in filled.items()}
        assert all(len(rows) >= 3 for rows in before.values())  # and what the migrations put there

        assert migrate(conn) == k
        moved = k < 6  # events stored before schema 6 are moved into its layout
        old_events = before.pop("events", []) if moved else []
        assert (_schema(conn) != fresh) == moved  # until they are
        _upgrade_events(conn)
        assert _schema(conn) == fresh
        kept = {t: columns for t, columns in filled.items() if t != "events" or not moved}
        assert {t: _rows(conn, t, columns) for t, columns in kept.items()} == before

        # Each event moved, with what it held: strings stored once, and its attributes whole.
        assert not moved or conn.execute(
            "SELECT e.key, e.family_id, e.time_ns, s.value, p.value, e.prompt_length, e.duration_ms, "
            "e.ttft_ms, e.sample, e.attrs, e.body FROM events e LEFT JOIN strings s ON s.id = e.session "
            "LEFT JOIN strings p ON p.id = e.prompt ORDER BY e.key"
        ).fetchall() == [
            tuple(row[filled["events"].index(c)] for c in _MOVED_EVENT_COLUMNS)
            for row in sorted(old_events, key=lambda row: row[filled["events"].index("key")])
        ]

        # What the later migrations derive from the rows that were there.
        if 0 < k < 3:  # the times each session sent points: from points and their series ('' without one)
            assert conn.execute("SELECT * FROM session_times ORDER BY 1, 2").fetchall() == [
                ("", 3),
                ("series.session_id.1", 1),
                ("series.session_id.2", 2),
            ]
        if 0 < k < 4:  # events stored so far keep their old keys, up to the last of their times
            assert conn.execute("SELECT until_ns FROM untimed_event_keys").fetchall() == [(3,)]
        if k < 5:  # one row: the start of the current day
            ((until_ns,),) = conn.execute("SELECT until_ns FROM closed_days").fetchall()
            assert until_ns % DAY_NS == 0 and until_ns > 0
        assert missing_columns(conn) == []
    finally:
        conn.close()


_MOVED_EVENT_COLUMNS = (
    "key",
    "family_id",
    "time_ns",
    "session_id",
    "prompt_id",
    "prompt_length",
    "duration_ms",
    "ttft_ms",
    "sample",
    "attrs",  # not JSON here: moved as it is
    "body",
)


def test_migrating_a_database_twice_changes_nothing(tmp_path):
    path = tmp_path / "ccmetrics.db"
    conn = _connect(path)
    try:
        migrate(conn)
        schema_once = _schema(conn)
        assert migrate(conn) == SCHEMA_VERSION
        assert _schema(conn) == schema_once
    finally:
        conn.close()


def test_a_database_newer_than_the_code_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "ccmetrics.db"
    conn = _at_version(path, SCHEMA_VERSION)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    expected = _schema(conn)
    conn.close()
    content = path.read_bytes()

    conn = _connect(path)
    try:
        with pytest.raises(RuntimeError, match="newer than this ccmetrics understands"):
            migrate(conn)
        assert _schema(conn) == expected
    finally:
        conn.close()
    assert path.read_bytes() == content
