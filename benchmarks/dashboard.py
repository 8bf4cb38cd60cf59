"""How fast is the dashboard on a team's month of data?

Generates a store of DEVELOPERS developers x DAYS days of Claude-Code-shaped sessions (10-120 minutes,
an export every 60 s, several models and teams) through ccmetrics' own writer, then starts a real
``ccmetrics serve`` on it and times, cold (first request of a fresh process) and warm:
the whole dashboard (every panel), a filtered dashboard, and a session page. Prints server time, RSS and
the store's size on disk.

    .venv/bin/python benchmarks/dashboard.py                 # 100 developers x 30 days
    .venv/bin/python benchmarks/dashboard.py --developers 10 --days 7 --keep /tmp/store
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ccmetrics.records import Batch, Event, Point  # noqa: E402
from ccmetrics.store import Store  # noqa: E402

SECOND = 1_000_000_000
MODELS = [("claude-opus-5-5", 0.6), ("claude-sonnet-5", 0.3), ("claude-haiku-5", 0.1)]
PRICE = {
    "claude-opus-5-5": (5, 25, 0.5, 6.25),
    "claude-sonnet-5": (3, 15, 0.3, 3.75),
    "claude-haiku-5": (1, 5, 0.1, 1.25),
}
TEAMS = ["platform", "web", "mobile", "data", "infra"]
TOOLS = ["Read", "Edit", "Write", "Bash", "Grep", "Glob"]
LANGUAGES = ["Python", "TypeScript", "Go", "Rust"]


def developer(i: int, rng: random.Random) -> dict[str, str]:
    return {
        "user.id": f"{rng.getrandbits(256):064x}",
        "user.email": f"dev{i:03d}@example.com",
        "team.id": TEAMS[i % len(TEAMS)],
    }


def pick_model(rng: random.Random) -> str:
    return rng.choices([m for m, _ in MODELS], [w for _, w in MODELS])[0]


def session(dev: dict[str, str], start_ns: int, minutes: int, rng: random.Random) -> Batch:
    """One session's exports (points) and events, as Claude Code would send them."""
    sid = str(uuid.UUID(int=rng.getrandbits(128)))
    resource = {
        "service.name": "claude-code",
        "service.version": "2.1.332",
        "os.type": "linux",
        "host.arch": "amd64",
        "team.id": dev["team.id"],
    }
    base = {
        **resource,
        "user.id": dev["user.id"],
        "user.email": dev["user.email"],
        "session.id": sid,
        "terminal.type": "vscode",
        "anthropic.provider": "firstParty",
    }
    batch = Batch()

    points: dict[tuple, Point] = {}

    def point(metric: str, unit: str, t0: int, t1: int, value: float, **attrs: str) -> None:
        # One delta point per series and export window, as the SDK sends it: repeats within a minute add up.
        key = (metric, t0, tuple(sorted(attrs.items())))
        if key in points:
            points[key].value += value
        else:
            points[key] = Point(
                metric,
                unit,
                "sum",
                "delta",
                True,
                "com.anthropic.claude_code",
                {**base, **attrs},
                t0,
                t1,
                value,
            )

    def event(t: int, name: str, **attrs: object) -> None:
        batch.events.append(
            Event(
                uuid.UUID(int=rng.getrandbits(128)).bytes,
                name,
                t,
                {**base, "event.name": name, **attrs},
                f"claude_code.{name}",
                frozenset(resource),
            )
        )

    point("claude_code.session.count", "", start_ns, start_ns + SECOND, 1, start_type="fresh")
    main_model = pick_model(rng)
    for minute in range(minutes):
        t0, t1 = start_ns + minute * 60 * SECOND, start_ns + (minute + 1) * 60 * SECOND
        if rng.random() < 0.15:
            continue  # an idle minute: nothing to export
        prompt_id = str(uuid.UUID(int=rng.getrandbits(128)))
        if rng.random() < 0.4:
            event(
                t0 + SECOND, "user_prompt", **{"prompt.id": prompt_id, "prompt_length": rng.randint(10, 800)}
            )
            point("claude_code.active_time.total", "s", t0, t1, rng.uniform(2, 30), type="user")
        for model in {main_model, "claude-haiku-5"} if rng.random() < 0.3 else {main_model}:
            tokens = {
                "input": rng.randint(50, 3000),
                "output": rng.randint(20, 2000),
                "cacheRead": rng.randint(1000, 60000),
                "cacheCreation": rng.randint(0, 5000),
            }
            cost = sum(n * p / 1e6 for n, p in zip(tokens.values(), PRICE[model], strict=True))
            for kind, n in tokens.items():
                point(
                    "claude_code.token.usage",
                    "tokens",
                    t0,
                    t1,
                    n,
                    model=model,
                    type=kind,
                    query_source="main",
                    effort="medium",
                )
            point(
                "claude_code.cost.usage",
                "USD",
                t0,
                t1,
                cost,
                model=model,
                query_source="main",
                effort="medium",
            )
            for _ in range(rng.randint(1, 5)):
                event(
                    t0 + rng.randint(1, 59) * SECOND,
                    "api_request",
                    model=model,
                    duration_ms=rng.randint(300, 30000),
                    ttft_ms=rng.randint(100, 3000),
                    cost_usd=cost / 3,
                    **{"prompt.id": prompt_id},
                )
        point("claude_code.active_time.total", "s", t0, t1, rng.uniform(5, 50), type="cli")
        for _ in range(rng.randint(0, 4)):
            tool = rng.choice(TOOLS)
            decision = "accept" if rng.random() < 0.9 else "reject"
            event(
                t0 + rng.randint(1, 59) * SECOND,
                "tool_decision",
                tool_name=tool,
                decision=decision,
                source="config",
            )
            if decision == "accept":
                event(
                    t0 + rng.randint(1, 59) * SECOND,
                    "tool_result",
                    tool_name=tool,
                    success="true" if rng.random() < 0.95 else "false",
                    duration_ms=rng.randint(5, 5000),
                )
            if tool in ("Edit", "Write"):
                point(
                    "claude_code.code_edit_tool.decision",
                    "",
                    t0,
                    t1,
                    1,
                    decision=decision,
                    tool_name=tool,
                    language=rng.choice(LANGUAGES),
                    source="config",
                )
                if decision == "accept":
                    point(
                        "claude_code.lines_of_code.count",
                        "",
                        t0,
                        t1,
                        rng.randint(1, 80),
                        type="added",
                        model=main_model,
                    )
                    point(
                        "claude_code.lines_of_code.count",
                        "",
                        t0,
                        t1,
                        rng.randint(0, 30),
                        type="removed",
                        model=main_model,
                    )
        if rng.random() < 0.02:
            event(
                t0 + 30 * SECOND,
                "api_error",
                model=main_model,
                status_code=rng.choice([429, 500, 529]),
                error="overloaded",
                duration_ms=rng.randint(100, 5000),
            )
        if rng.random() < 0.03:
            point("claude_code.commit.count", "", t0, t1, 1)
        if rng.random() < 0.004:
            point("claude_code.pull_request.count", "", t0, t1, 1)
    batch.points = list(points.values())
    return batch


async def generate(path: Path, developers: int, days: int, seed: int) -> tuple[int, int, int]:
    rng = random.Random(seed)
    store = Store(path)
    now = time.time_ns()
    first_day = now - days * 86400 * SECOND
    sessions = points = events = 0
    pending = []
    for i in range(developers):
        dev = developer(i, rng)
        for day in range(days):
            if rng.random() < 0.25:
                continue  # a day off
            for _ in range(rng.randint(1, 4)):
                start = first_day + day * 86400 * SECOND + rng.randint(8 * 3600, 18 * 3600) * SECOND
                if start > now - 2 * 3600 * SECOND:
                    continue
                batch = session(dev, start, rng.randint(10, 120), rng)
                sessions += 1
                points += len(batch.points)
                events += len(batch.events)
                pending.append(store.write(batch))
                if len(pending) >= 64:
                    await asyncio.gather(*pending)
                    pending.clear()
        print(
            f"\r  generated {i + 1}/{developers} developers: {sessions} sessions, {points:,} points, "
            f"{events:,} events",
            end="",
            flush=True,
        )
    await asyncio.gather(*pending)
    store.close()
    print()
    return sessions, points, events


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
            server.start(timeout=120)
            pid = server.process.pid
            pages = {
                "dashboard, 30 days": dash,
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
            print("targets: whole dashboard <= 250 ms server time (warm), serve RSS <= 100 MB")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
