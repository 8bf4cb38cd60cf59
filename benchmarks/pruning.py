"""Does pruning a month of a team's data slow ingest down?

Generates (or reuses, with ``--keep``) DEVELOPERS developers x DAYS days of Claude-Code-shaped data, the
dashboard benchmark's (tests/team_month.py), and starts two real ``ccmetrics serve`` on copies of it: one
with ``--retention 30d``, which prunes everything older (a month, with the default 60 days), and one that
keeps everything. Exports are then sent on a fixed schedule (open loop, as a team's many CLIs send them),
to one server and to the other in turns of ``--turn`` seconds, the other stopped meanwhile (SIGSTOP), until
the first has pruned everything and given the space back. Latency counts from when each export was due,
so a stall shows in full. Prints the figures of both side by side: ack latency p50, p99 and max, exports
sent, and how long pruning took and what it gave back.

    .venv/bin/python benchmarks/pruning.py                      # 100 developers x 60 days, prune 30
    .venv/bin/python benchmarks/pruning.py --keep /tmp/prune-store --rate 50 --turn 10
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ccmetrics.store.retention import VACUUM_FROM_PAGES  # noqa: E402
from tests.conftest import ServerProcess  # noqa: E402
from tests.team_month import SECOND, generate  # noqa: E402

WARMED_UP = "dashboard warmed up"
PRUNED = "pruned "  # what serve logs when a pruning run is over (store/retention.py)
P99_BUDGET_MS = 50.0


def _attrs(attrs: dict[str, str]) -> list[dict[str, object]]:
    return [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()]


def export(sent: int, session: str) -> tuple[str, dict[str, object]]:
    """A metrics export or, every fourth, a logs export of one live developer, timed now."""
    now = time.time_ns()
    attrs = {"user.id": "e" * 64, "user.email": "live@example.com", "session.id": session, "model": "m"}
    resource = {"attributes": _attrs({"service.name": "claude-code", "team.id": "platform"})}
    if sent % 4 == 3:
        record = {
            "timeUnixNano": str(now),
            "body": {"stringValue": "claude_code.api_request"},
            "attributes": _attrs({**attrs, "event.name": "api_request", "event.sequence": str(sent)}),
        }
        return "/v1/logs", {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": [record]}]}]}
    point = {
        "startTimeUnixNano": str(now - SECOND),
        "timeUnixNano": str(now),
        "asDouble": 1.0,
        "attributes": _attrs({**attrs, "type": "input"}),
    }
    metric = {
        "name": "claude_code.token.usage",
        "unit": "tokens",
        "sum": {"aggregationTemporality": 1, "isMonotonic": True, "dataPoints": [point]},
    }
    return "/v1/metrics", {
        "resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": [metric]}]}]
    }


def send_for(url: str, seconds: float, rate: float, sessions: list[str]) -> list[float]:
    """Ack latencies (ms) of exports sent to ``url`` at ``rate`` a second for ``seconds``, each counted from
    when it was due; a sender per session, each session going on from one turn to the next."""
    senders = len(sessions)
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.05

    def sender(index: int) -> None:
        session = sessions[index]
        mine: list[float] = []
        with httpx.Client(base_url=url, timeout=30) as client:
            n = 0
            while True:
                due = start + (n * senders + index) / rate
                if due > start + seconds:
                    break
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                path, body = export(n, session)
                client.post(path, json=body).raise_for_status()
                mine.append((time.perf_counter() - due) * 1000)
                n += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def pruned(server: ServerProcess) -> bool:
    """Whether the server's first pruning run is over and the pages it freed are given back."""
    if PRUNED not in server.log_path.read_text():
        return False
    conn = sqlite3.connect(f"file:{server.data_dir / 'ccmetrics.db'}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("PRAGMA freelist_count").fetchone()[0]) < VACUUM_FROM_PAGES
    finally:
        conn.close()


def rows(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        points = conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
        events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return int(points), int(events)
    finally:
        conn.close()


def figures(latencies: list[float]) -> tuple[float, float, float, int]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99, ordered[-1], len(ordered)


def wait_warm(server: ServerProcess) -> None:
    deadline = time.monotonic() + 300
    while WARMED_UP not in server.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--developers", type=int, default=100)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--retention", default="30d")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=50, help="exports per second (50: a busy team)")
    parser.add_argument("--turn", type=float, default=10, help="seconds per turn of each server")
    parser.add_argument("--keep", type=Path, help="reuse or keep the generated store in this directory")
    args = parser.parse_args()

    source = args.keep or Path(tempfile.mkdtemp(prefix="ccmetrics-prune-"))
    db = source / "ccmetrics.db"
    if not db.exists():
        print(f"generating {args.developers} developers x {args.days} days into {db}")
        asyncio.run(generate(db, args.developers, args.days, args.seed))
    work = Path(tempfile.mkdtemp(prefix="ccmetrics-prune-run-"))
    try:
        dirs = {}
        for name in ("pruning", "keeping"):
            dirs[name] = work / name
            dirs[name].mkdir()
            for f in source.glob("ccmetrics.db*"):
                shutil.copy(f, dirs[name] / f.name)
        size_before = (dirs["pruning"] / "ccmetrics.db").stat().st_size
        points, events = rows(dirs["pruning"] / "ccmetrics.db")
        print(f"store: {size_before / 1e6:,.0f} MB, {points:,} points, {events:,} events")

        keeping = ServerProcess(dirs["keeping"]).start(timeout=300)
        wait_warm(keeping)
        assert keeping.process is not None
        keeping.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        pruning = ServerProcess(dirs["pruning"], ["--retention", args.retention]).start(timeout=300)
        assert pruning.process is not None
        measured: dict[str, list[float]] = {"pruning": [], "keeping": []}
        sessions = {name: [str(uuid.uuid4()) for _ in range(4)] for name in measured}
        turns = 0
        took = time.monotonic() - started  # the pruning server's own time: its start-up and its turns
        try:
            while not pruned(pruning):
                this_turn: dict[str, list[float]] = {}
                for name, server, other in (("pruning", pruning, keeping), ("keeping", keeping, pruning)):
                    assert server.process is not None and other.process is not None
                    other.process.send_signal(signal.SIGSTOP)
                    server.process.send_signal(signal.SIGCONT)
                    turn_started = time.monotonic()
                    this_turn[name] = send_for(server.otlp_http, args.turn, args.rate, sessions[name])
                    measured[name] += this_turn[name]
                    if name == "pruning":
                        took += time.monotonic() - turn_started
                turns += 1
                print(
                    f"  turn {turns}: p50 / p99 / max, ms: "
                    + ";  ".join(
                        f"{label} {p50:.1f} / {p99:.1f} / {worst:.0f}"
                        for label, (p50, p99, worst, _) in (
                            ("while pruning", figures(this_turn["pruning"])),
                            ("without", figures(this_turn["keeping"])),
                        )
                    )
                )
        finally:
            for server in (pruning, keeping):
                if server.process is not None:
                    server.process.send_signal(signal.SIGCONT)
                    server.stop()
        left_points, left_events = rows(dirs["pruning"] / "ccmetrics.db")
        size_after = (dirs["pruning"] / "ccmetrics.db").stat().st_size
        print(
            f"\npruned {points - left_points:,} points and {events - left_events:,} events in about "
            f"{took:.0f} s of the pruning server's time; the file went from {size_before / 1e6:,.0f} MB to "
            f"{size_after / 1e6:,.0f} MB"
        )
        print(f"\n{'ack latency, ms':26} {'p50':>7} {'p99':>7} {'max':>7} {'exports':>9}")
        for name, label in (("pruning", "while pruning"), ("keeping", "without pruning")):
            p50, p99, worst, n = figures(measured[name])
            print(f"{label:26} {p50:7.1f} {p99:7.1f} {worst:7.0f} {n:9,}")
        p99 = figures(measured["pruning"])[1]
        verdict = "within" if p99 <= P99_BUDGET_MS else "OVER"
        print(f"\np99 while pruning: {p99:.1f} ms, {verdict} the budget of {P99_BUDGET_MS:.0f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
