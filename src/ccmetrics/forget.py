"""``ccmetrics forget``: file the request, wait for the server to carry it out (or, with no server running,
carry it out here), print what was removed, and keep an audit line.

The audit line, appended to ``audit.log`` in the data directory, says who ran the command, when, what kind
of thing was forgotten and how many rows went: never whom, which would keep what was to be forgotten.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import sqlite3
import time
from pathlib import Path

import click

from .alerts import state as alert_state
from .running import ServerRunning, no_server
from .store import open_reader, read_transaction
from .store.committer import connect
from .store.forgetting import Forgetting, file_request, find, outcome, preview
from .store.schema import migrate

AUDIT_NAME = "audit.log"
POLL_S = 0.2


def forget(data_dir: Path, kind: str, value: str, yes: bool) -> dict[str, int]:
    """Forget a user or a session of the store in ``data_dir``; returns the rows removed, by table."""
    db = data_dir / "ccmetrics.db"
    if not db.exists():
        raise FileNotFoundError(f"no database at {db}")
    setup = connect(db)
    try:
        migrate(setup)  # the request needs its table; a running server has done this already
    finally:
        setup.close()
    reader = open_reader(db)
    try:
        with read_transaction(reader):
            found = preview(reader, kind, value)
            who = find(reader, kind, value).aliases  # the person's ids, emails and names
    finally:
        reader.close()
    if not found["families"] and not found["sessions"]:
        click.echo(f"nothing is stored about that {kind}")
        return {}
    click.echo(
        f"this removes every row about that {kind}: {found['sessions']:,} sessions, {found['points']:,} "
        f"points and {found['events']:,} events in them, and takes them out of every sum"
    )
    if not yes:
        click.confirm("Forget it?", abort=True)
    conn = connect(db)
    try:
        request = file_request(conn, kind, value)
        removed = _carried_out(conn, data_dir, request)
    finally:
        conn.close()
    removed["aliases"] = _forget_aliases(data_dir, who)
    removed["alerts"] = alert_state.forget(data_dir / "alerts.db", who or {value})
    _audit(data_dir, kind, removed)
    listed = ", ".join(f"{n:,} {table}" for table, n in sorted(removed.items()) if n)
    click.echo(f"removed {listed or 'nothing'}")
    return removed


def _carried_out(conn: sqlite3.Connection, data_dir: Path, request: int) -> dict[str, int]:
    """Wait for the server to carry the request out; if none runs (or it stops), carry it out here."""
    waiting = False
    while True:
        done = outcome(conn, request)
        if done is not None:
            return done
        try:
            with no_server(data_dir):
                Forgetting(conn).run_all()
            continue
        except ServerRunning:
            if not waiting:
                click.echo(
                    "the server is carrying it out (it carries on if this is interrupted)...", err=True
                )
                waiting = True
        time.sleep(POLL_S)


def _forget_aliases(data_dir: Path, who: set[str]) -> int:
    """The names an admin gave the person's user.ids (access.db): a running server drops them within a
    second, as it does any alias removed."""
    from .access.store import AccessStore

    try:
        access = AccessStore(data_dir / "access.db", create=False)
    except FileNotFoundError:
        return 0
    with contextlib.closing(access):
        theirs = [user_id for user_id in access.aliases() if user_id in who]
        for user_id in theirs:
            access.remove_alias(user_id)
    return len(theirs)


def _audit(data_dir: Path, kind: str, removed: dict[str, int]) -> None:
    line = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "by": getpass.getuser(),
        "command": "forget",
        "what": kind,
        "removed": removed,
    }
    with (data_dir / AUDIT_NAME).open("a", encoding="utf-8") as audit:
        audit.write(json.dumps(line, sort_keys=True) + "\n")
