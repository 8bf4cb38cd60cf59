"""How fast is the dashboard on a team's month of data?

Generates a store of DEVELOPERS developers x DAYS days of Claude-Code-shaped sessions (10-120 minutes,
an export every 60 s, several models and teams) through ccmetrics' own writer, then starts a real
``ccmetrics serve`` on it and times, cold (first request of a fresh process) and warm:
the whole dashboard (every panel), with the previous period beside its headline stats as the page asks by
default, a filtered dashboard, and a session page. Prints server time, RSS and
the store's size on disk.

    .venv/bin/python benchmarks/dashboard.py                 # 100 developers x 30 days
    .venv/bin/python benchmarks/dashboard.py --developers 10 --days 7 --keep /tmp/store
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
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
from tests.team_month import SECOND, generate  # noqa: E402

WARMED_UP = "dashboard warmed up"  # what serve logs once it has read its default view
EVENT_TABLES = (
    "events",
    "events_before_6",
    "strings",
    "event_families",
    "event_family_attrs",
    "event_rollup",
)


def print_space(db: Path) -> None:
    """Where the bytes go: per table (with its indexes), and per point and per event."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = dict(
            conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE tbl_name NOT LIKE 'sqlite_%'")
        )
        per_table: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            table = tables.get(name, name)
            per_table[table] = per_table.get(table, 0) + size
        (points,) = conn.execute("SELECT COUNT(*) FROM points").fetchone()
        events = sum(
            conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("events", "events_before_6")
            if t in tables
        )
    finally:
        conn.close()
    event_side = sum(v for t, v in per_table.items() if t.startswith(EVENT_TABLES))
    metric_side = sum(per_table.values()) - event_side
    for what, size, count in (("point", metric_side, points), ("event", event_side, events)):
        print(f"  {what}s: {size / 1e6:.0f} MB, {size / max(count, 1):.0f} bytes per {what} ({count:,})")
    largest = sorted(per_table.items(), key=lambda item: -item[1])[:8]
    print("  largest, with their indexes: " + ", ".join(f"{t} {v / 1e6:.0f} MB" for t, v in largest))


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed(client: httpx.Client, url: str) -> tuple[float, float, int]:
    """Round trip and server time (the Server-Timing header: the store's work for this request), in ms."""
    started = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    server_ms = float(response.headers["server-timing"].split("dur=")[1])
    return elapsed, server_ms, len(response.content)


def _otlp_attrs(attrs: dict[str, str]) -> list[dict]:
    return [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()]


def live_exports(otlp_url: str, stop: threading.Event, every_s: float = 0.1) -> int:
    """Send a developer's tokens and API requests, timed now, until stopped, as a live team would."""
    attrs = {
        "user.id": "f" * 64,
        "user.email": "live@example.com",
        "session.id": str(uuid.uuid4()),
        "model": "claude-opus-5-5",
    }
    resource = {
        "resource": {"attributes": _otlp_attrs({"service.name": "claude-code", "team.id": "platform"})}
    }
    sent = 0
    with httpx.Client(base_url=otlp_url, timeout=30) as client:
        while not stop.wait(every_s):
            now = time.time_ns()
            point = {
                "startTimeUnixNano": str(now - SECOND),
                "timeUnixNano": str(now),
                "asDouble": 100.0,
                "attributes": _otlp_attrs({**attrs, "type": "input"}),
            }
            metrics = {
                "resourceMetrics": [
                    {
                        **resource,
                        "scopeMetrics": [
                            {
                                "metrics": [
                                    {
                                        "name": "claude_code.token.usage",
                                        "unit": "tokens",
                                        "sum": {
                                            "aggregationTemporality": 1,
                                            "isMonotonic": True,
                                            "dataPoints": [point],
                                        },
                                    }
                                ]
                            }
                        ],
                    }
                ]
            }
            record = {
                "timeUnixNano": str(now),
                "body": {"stringValue": "claude_code.api_request"},
                "attributes": _otlp_attrs(
                    {**attrs, "event.name": "api_request", "duration_ms": "900", "event.sequence": str(sent)}
                ),
            }
            logs = {"resourceLogs": [{**resource, "scopeLogs": [{"logRecords": [record]}]}]}
            client.post("/v1/metrics", json=metrics).raise_for_status()
            client.post("/v1/logs", json=logs).raise_for_status()
            sent += 1
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--developers", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=10, help="warm requests per page")
    parser.add_argument("--keep", type=Path, help="reuse or keep the store in this directory")
    args = parser.parse_args()

    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="ccmetrics-bench-"))
    db = data_dir / "ccmetrics.db"
    if not db.exists():
        print(f"generating {args.developers} developers x {args.days} days into {db}")
        started = time.perf_counter()
        sessions, points, events = asyncio.run(generate(db, args.developers, args.days, args.seed))
        print(
            f"  {sessions} sessions, {points:,} points, {events:,} events "
            f"in {time.perf_counter() - started:.0f} s"
        )
    size = sum(f.stat().st_size for f in data_dir.glob("ccmetrics.db*")) / 1e6
    print(f"store on disk: {size:.0f} MB")
    print_space(db)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.conftest import ServerProcess

    server = ServerProcess(data_dir).start(timeout=120)
    pid = server.process.pid
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            dash = "/api/dashboard?since=30d"
            # A generated developer's latest session (not one the "data arriving" run below may have added).
            first = client.get(dash + "&filter=user.email=dev001@example.com").json()
            session_id = first["panels"]["recent_sessions"]["rows"][0]["session_id"]
            server.stop()
            warmed = server.log_path.read_text().count(WARMED_UP)
            server.start(timeout=120)
            pid = server.process.pid
            # Cold: the first request for 30 days, once the server has warmed up its default view (7 days) as
            # it does on every start; measured during that warm-up, it would time two requests at once.
            deadline = time.monotonic() + 120
            while server.log_path.read_text().count(WARMED_UP) == warmed and time.monotonic() < deadline:
                time.sleep(0.05)
            pages = {
                "dashboard, 30 days": dash,
                "dashboard, 30 days, compared": dash + "&compare=previous",
                "dashboard, 7 days": "/api/dashboard?since=7d",
                "dashboard, 30 days, team=web": dash + "&filter=team.id=web",
                "dashboard, 30 days, one user": dash + "&filter=user.email=dev001@example.com",
                "session page": f"/api/sessions/{session_id}",
                "doctor's status (every session)": "/api/status",
            }
            print(
                f"\n{'page':34} {'server ms: cold':>15} {'warm p50':>9} {'warm max':>9}   "
                f"{'round trip p50':>14} {'KB':>5}"
            )
            for name, url in pages.items():
                _, cold, size_b = timed(client, url)
                warm = [timed(client, url) for _ in range(args.repeat)]
                server_ms = [w[1] for w in warm]
                trip = statistics.median(w[0] for w in warm)
                print(
                    f"{name:34} {cold:15.0f} {statistics.median(server_ms):9.0f} {max(server_ms):9.0f}   "
                    f"{trip:14.0f} {size_b / 1024:5.0f}"
                )
            # The same dashboard while exports keep arriving: the hours receiving data are read every time.
            stop = threading.Event()
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                sending = pool.submit(live_exports, server.otlp_http, stop)
                time.sleep(1)
                warm = [timed(client, dash) for _ in range(args.repeat)]
                stop.set()
                exports = sending.result()
            server_ms = [w[1] for w in warm]
            print(
                f"{'dashboard, 30 days, data arriving':34} {'':>15} {statistics.median(server_ms):9.0f} "
                f"{max(server_ms):9.0f}   {statistics.median(w[0] for w in warm):14.0f}   "
                f"({exports} exports of metrics and events, 10/s)"
            )
            rss, peak = rss_mb(pid)
            print(
                f"\nserve RSS now {rss:.0f} MB, peak {peak:.0f} MB (the process that answers the dashboard)"
            )
            children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            for child in children:  # the writer, and multiprocessing's resource tracker
                child_rss, child_peak = rss_mb(child)
                print(f"  child process {child}: RSS now {child_rss:.0f} MB, peak {child_peak:.0f} MB")
            # Proportional set size counts pages the processes share (the interpreter, libraries) once.
            pss = sum(pss_mb(p) for p in (pid, *children))
            print(f"  all of serve, proportional set size: {pss:.0f} MB")
            print(
                "targets: dashboard, 30 days: cold <= 300 ms, warm p50 <= 150 ms (server time); "
                "serve RSS <= 100 MB"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
