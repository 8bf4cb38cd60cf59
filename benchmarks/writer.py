#!/usr/bin/env python
"""What storing costs, without HTTP or the event loop: the ingest benchmark's exports, decoded once, then
committed straight through ccmetrics' committer in groups of a fixed size, with a checkpoint after each
commit as the writer's checkpointer does. Single-threaded, so the figures hold steady from run to run (a few
per cent), where the end-to-end benchmark drifts with the machine.

    .venv/bin/python benchmarks/writer.py                        # groups of 1, 10 and 40, a fresh store
    .venv/bin/python benchmarks/writer.py --group 10 --store /tmp/big/ccmetrics.db   # a copy of a big store

Prints, per group size: exports/s, and per export the milliseconds spent committing (SQLite,
fsync included) and checkpointing, and the write-ahead log pages each commit wrote. With --pages, also which
tables and indexes those pages belong to: each page written costs log and checkpoint I/O, so this says
where a change to the layout would save. The store given with --store is written to: give it a copy.
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest  # noqa: E402 - the ingest benchmark's exports

from ccmetrics.otlp.decode import PROTOBUF, Signal, parse  # noqa: E402
from ccmetrics.otlp.normalize import to_batch  # noqa: E402
from ccmetrics.records import Batch  # noqa: E402
from ccmetrics.store.committer import Committer, connect  # noqa: E402
from ccmetrics.store.schema import migrate  # noqa: E402
from ccmetrics.store.writer import RESTART_LOG_PAGES  # noqa: E402

CLIENTS = 24  # exports interleaved as 24 clients send them


def exports(count: int, seed: int) -> list[Batch]:
    """``count`` Claude-Code-shaped exports, decoded, in the order interleaved clients would send them."""
    per_client = count // CLIENTS
    built = [
        ingest.build_client_requests("bench", per_client, 4, 4, (10, 120), seed=seed + k)[0]
        for k in range(CLIENTS)
    ]
    batches = []
    for j in range(per_client):
        for requests in built:
            head, body = requests[j].split(b"\r\n\r\n", 1)
            signal = Signal.LOGS if b"/v1/logs" in head else Signal.METRICS
            batches.append(to_batch(signal, parse(signal, body, PROTOBUF)))
    return batches


def logged_pages(wal: Path, frames: int) -> list[int]:
    """The page numbers of the first ``frames`` frames of a write-ahead log (32-byte header, then frames of a
    24-byte header, whose first field is the page number, and a page)."""
    with wal.open("rb") as log:
        header = log.read(32)
        (page_size,) = struct.unpack(">I", header[8:12])
        numbers = []
        for frame in range(frames):
            log.seek(32 + frame * (24 + page_size))
            numbers.append(struct.unpack(">I", log.read(4))[0])
    return numbers


def run(
    path: Path, batches: list[Batch], group: int, by_table: Counter[str] | None = None
) -> dict[str, float]:
    """Commit the batches in groups. With ``by_table``, count there the pages each commit wrote, per table or
    index: from the second half of the run, when the store has grown; owners as they are at the end."""
    setup = connect(path)
    migrate(setup)
    setup.close()
    committer, checkpoints = Committer(path), connect(path)
    spent = {"commit": 0.0, "checkpoint": 0.0}
    pages = commits = 0
    written: Counter[int] = Counter()
    sampled = 0
    started = time.perf_counter()
    for at in range(0, len(batches), group):
        t1 = time.perf_counter()
        committer.commit(batches[at : at + group])
        t2 = time.perf_counter()
        # Every commit finds the log copied in full, so SQLite writes it from the start: what the log holds
        # now is what this commit wrote.
        _, log_pages, _ = checkpoints.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        pages += log_pages
        commits += 1
        if by_table is not None and at >= len(batches) // 2:
            written.update(logged_pages(path.with_name(path.name + "-wal"), log_pages))
            sampled += 1
        if log_pages > RESTART_LOG_PAGES:
            committer.restart_log()
        t3 = time.perf_counter()
        spent["commit"] += t2 - t1
        spent["checkpoint"] += t3 - t2
    elapsed = time.perf_counter() - started
    if by_table is not None:
        owner = dict(checkpoints.execute("SELECT pageno, name FROM dbstat"))
        for number, count in written.items():
            by_table[owner.get(number, "(freed since)")] += count / max(sampled, 1)
    committer.close()
    checkpoints.close()
    per_export = {name: seconds / len(batches) * 1000 for name, seconds in spent.items()}
    return {"exports/s": len(batches) / elapsed, **per_export, "pages/commit": pages / commits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", type=int, action="append", help="exports per commit (repeatable; 1 10 40)")
    parser.add_argument("--exports", type=int, default=12_000, help="exports committed per group size")
    parser.add_argument("--store", type=Path, help="write into this database (a copy!), not a fresh one")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--pages",
        action="store_true",
        help="also list each commit's pages by table and index (timings then include reading the log)",
    )
    args = parser.parse_args()
    if args.store and len(args.group or [1, 10, 40]) > 1:
        parser.error("with --store, give one --group: a second run would find every export stored already")
    started = time.perf_counter()
    batches = exports(args.exports, args.seed)
    print(f"{len(batches):,} exports built and decoded in {time.perf_counter() - started:.1f} s")
    print(f"{'per commit':>10} {'exports/s':>10} {'commit ms':>10} {'checkpoint ms':>14} {'log pages':>10}")
    by_group: dict[int, Counter[str]] = {}
    for group in args.group or [1, 10, 40]:
        by_table = by_group.setdefault(group, Counter()) if args.pages else None
        with tempfile.TemporaryDirectory() as tmp:
            figures = run(args.store or Path(tmp) / "ccmetrics.db", batches, group, by_table)
        print(
            f"{group:>10} {figures['exports/s']:>10.0f} "
            f"{figures['commit']:>10.3f} {figures['checkpoint']:>14.3f} {figures['pages/commit']:>10.0f}"
        )
    print("(per export; log pages: written to the write-ahead log per commit)")
    for group, by_table in by_group.items():
        print(
            f"\nlog pages per commit of {group}, by table or index (second half of the run; "
            "sqlite_autoindex_T_N: the index of a UNIQUE or PRIMARY KEY constraint of table T):"
        )
        for name, count in by_table.most_common():
            if count >= 0.05:
                print(f"{count:>10.1f}  {name}")


if __name__ == "__main__":
    main()
