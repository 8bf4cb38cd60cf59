"""``ccmetrics serve`` with experimental, benchmark-only tweaks applied in-process (src/ is not changed).

    python benchmarks/serve_variant.py [BENCH_* env] serve --data-dir ... (same arguments as ccmetrics)

Environment knobs (all optional; unset = the shipped behaviour):
  BENCH_SYNCHRONOUS=NORMAL|FULL|OFF   PRAGMA synchronous of the writer connection
  BENCH_SWITCH_INTERVAL=0.0005        sys.setswitchinterval (GIL hand-off interval; default 0.005 s)
  BENCH_UVLOOP=1                      run the event loop on uvloop (must be importable)
  BENCH_COMMIT_STATS=1                log group size and COMMIT time of every transaction to stderr at exit
  BENCH_WAL_AUTOCHECKPOINT=N          PRAGMA wal_autocheckpoint of the writer connection
  BENCH_MAX_GROUP=N                   writer.MAX_GROUP (batches per transaction)

Used by ``ingest.py --variant KEY=VALUE`` to measure what a change to src/ would buy before making it.
"""

from __future__ import annotations

import atexit
import os
import sys
import time


def main() -> None:
    from ccmetrics.store import writer

    sync = os.environ.get("BENCH_SYNCHRONOUS")
    autocheckpoint = os.environ.get("BENCH_WAL_AUTOCHECKPOINT")
    if sync or autocheckpoint:
        original = writer.connect

        def connect(path):  # type: ignore[no-untyped-def]
            conn = original(path)
            if sync:
                conn.execute(f"PRAGMA synchronous = {sync}")
            if autocheckpoint:
                conn.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint)}")
            return conn

        writer.connect = connect
    if os.environ.get("BENCH_MAX_GROUP"):
        writer.MAX_GROUP = int(os.environ["BENCH_MAX_GROUP"])
    if os.environ.get("BENCH_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    if os.environ.get("BENCH_COMMIT_STATS"):
        stats: list[tuple[int, float, float]] = []  # (group size, whole transaction s, COMMIT s)
        commit = writer.Writer._commit

        def timed_commit(self, work):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            commit(self, work)
            stats.append((len(work), time.perf_counter() - t0, 0.0))

        writer.Writer._commit = timed_commit

        def report() -> None:
            if not stats:
                return
            sizes = sorted(s[0] for s in stats)
            times = sorted(s[1] for s in stats)
            n = len(stats)
            print(f"[bench] transactions {n}, group size mean {sum(sizes) / n:.1f} p50 {sizes[n // 2]} "
                  f"max {sizes[-1]}; transaction ms p50 {times[n // 2] * 1e3:.2f} p99 "
                  f"{times[min(n - 1, int(n * 0.99))] * 1e3:.2f} max {times[-1] * 1e3:.2f}; busy "
                  f"{sum(times):.2f} s", file=sys.stderr, flush=True)  # fmt: skip

        atexit.register(report)
    if os.environ.get("BENCH_UVLOOP"):
        import uvloop

        uvloop.install()

    from ccmetrics.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
