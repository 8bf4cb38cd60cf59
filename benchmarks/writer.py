#!/usr/bin/env python
"""What storing costs, without HTTP, the event loop or a second process: the ingest benchmark's exports,
decoded once, then committed straight through ccmetrics' committer in groups of a fixed size, with a
checkpoint after each commit as the writer process does. Single-threaded, so the figures hold steady from
run to run (a few per cent), where the end-to-end benchmark drifts with the machine.

    .venv/bin/python benchmarks/writer.py                        # groups of 1, 10 and 40, a fresh store
    .venv/bin/python benchmarks/writer.py --group 10 --store /tmp/big/ccmetrics.db   # a copy of a big store

Prints, per group size: exports/s, and per export the milliseconds spent preparing rows, committing (SQLite,
fsync included) and checkpointing, and the write-ahead log pages each commit wrote. The store given with
--store is written to: give it a copy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest  # noqa: E402 - the ingest benchmark's exports

from ccmetrics.otlp.decode import PROTOBUF, Signal, parse  # noqa: E402
from ccmetrics.otlp.normalize import Batch, to_batch  # noqa: E402
from ccmetrics.store.committer import Committer, connect, prepare  # noqa: E402
from ccmetrics.store.schema import migrate  # noqa: E402
from ccmetrics.store.writer import RESTART_LOG_PAGES, KnownSeries  # noqa: E402

CLIENTS = 24  # exports interleaved as 24 clients send them


def exports(count: int, seed: int) -> list[Batch]:
    """``count`` Claude-Code-shaped exports, decoded, in the order interleaved clients would send them."""
    per_client = count // CLIENTS
    built = [ingest.build_client_requests("bench", per_client, 4, 4, (10, 120), seed=seed + k)[0]
             for k in range(CLIENTS)]  # fmt: skip
    batches = []
    for j in range(per_client):
        for requests in built:
            head, body = requests[j].split(b"\r\n\r\n", 1)
            signal = Signal.LOGS if b"/v1/logs" in head else Signal.METRICS
            batches.append(to_batch(signal, parse(signal, body, PROTOBUF)))
    return batches


def run(path: Path, batches: list[Batch], group: int) -> dict[str, float]:
    setup = connect(path)
    migrate(setup)
    setup.close()
    committer, checkpoints, known = Committer(path), connect(path), KnownSeries()
    spent = {"prepare": 0.0, "commit": 0.0, "checkpoint": 0.0}
    pages = commits = 0
    started = time.perf_counter()
    for at in range(0, len(batches), group):
        t0 = time.perf_counter()
        wires = [known.compact(batch) for batch in batches[at : at + group]]
        prepared = [prepare(wire) for wire, _ in wires]
        t1 = time.perf_counter()
        outcomes = committer.commit(prepared)
        t2 = time.perf_counter()
        for (_, unknown), outcome in zip(wires, outcomes, strict=True):
            known.learn(unknown, outcome)
        # Every commit finds the log copied in full, so SQLite writes it from the start: what the log holds
        # now is what this commit wrote.
        _, log_pages, _ = checkpoints.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        pages += log_pages
        commits += 1
        if log_pages > RESTART_LOG_PAGES:
            committer.restart_log()
        t3 = time.perf_counter()
        spent["prepare"] += t1 - t0
        spent["commit"] += t2 - t1
        spent["checkpoint"] += t3 - t2
    elapsed = time.perf_counter() - started
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
    args = parser.parse_args()
    if args.store and len(args.group or [1, 10, 40]) > 1:
        parser.error("with --store, give one --group: a second run would find every export stored already")
    started = time.perf_counter()
    batches = exports(args.exports, args.seed)
    print(f"{len(batches):,} exports built and decoded in {time.perf_counter() - started:.1f} s")
    print(f"{'per commit':>10} {'exports/s':>10} {'prepare ms':>11} {'commit ms':>10} {'checkpoint ms':>14} "
          f"{'log pages':>10}")  # fmt: skip
    for group in args.group or [1, 10, 40]:
        with tempfile.TemporaryDirectory() as tmp:
            figures = run(args.store or Path(tmp) / "ccmetrics.db", batches, group)
        print(
            f"{group:>10} {figures['exports/s']:>10.0f} {figures['prepare']:>11.3f} "
            f"{figures['commit']:>10.3f} {figures['checkpoint']:>14.3f} {figures['pages/commit']:>10.0f}"
        )
    print("(per export; log pages: written to the write-ahead log per commit)")


if __name__ == "__main__":
    main()
