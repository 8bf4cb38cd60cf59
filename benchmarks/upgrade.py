"""How long does upgrading a store to schema 6 take, and how long does ingest wait for each of its steps?

Migrates a copy of a schema-5 store (such as the one ``benchmarks/dashboard.py --keep DIR`` leaves, made by
a ccmetrics before schema 6) with the writer's own code, step by step, and prints the migration's time, the
steps' times (what an export waits for at most, while the events are moved) and the store's size.

    .venv/bin/python benchmarks/upgrade.py /path/to/schema-5/ccmetrics.db
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ccmetrics.store.committer import connect  # noqa: E402
from ccmetrics.store.identities import Identities  # noqa: E402
from ccmetrics.store.schema import migrate  # noqa: E402
from ccmetrics.store.upgrade import EventsUpgrade, pending_events  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "database", type=Path, help="a schema-5 ccmetrics.db (left as it is: a copy is upgraded)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ccmetrics-upgrade-"))
    db = work / "ccmetrics.db"
    for part in args.database.parent.glob(args.database.name + "*"):
        shutil.copy(part, work / part.name)
    size = sum(f.stat().st_size for f in work.glob("ccmetrics.db*")) / 1e6
    conn = connect(db)
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    print(f"schema {version}, {size:.0f} MB")

    started = time.perf_counter()
    migrate(conn)
    print(
        f"migrations: {(time.perf_counter() - started) * 1000:.0f} ms (ingest waits for them once, at start)"
    )
    upgrade = EventsUpgrade(conn, Identities(conn))
    events = pending_events(conn)
    steps = []
    while upgrade.pending:
        step_started = time.perf_counter()
        upgrade.step()
        steps.append(time.perf_counter() - step_started)
    moving = sum(steps)
    print(
        f"moving {events:,} events: {moving:.1f} s in {len(steps)} steps; a step takes "
        f"{statistics.median(steps) * 1000:.0f} ms (median), {max(steps) * 1000:.0f} ms at most"
    )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (free_pages,) = conn.execute("PRAGMA freelist_count").fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    size = db.stat().st_size / 1e6
    print(
        f"file {size:.0f} MB, of which {free_pages * page_size / 1e6:.0f} MB free pages (reused by new data)"
    )
    vacuum = sqlite3.connect(db)
    started = time.perf_counter()
    vacuum.execute("VACUUM")
    vacuum.close()
    took = time.perf_counter() - started
    print(f"after VACUUM (server stopped): {db.stat().st_size / 1e6:.0f} MB in {took:.0f} s")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
