"""A team's weeks of Claude Code, generated: DEVELOPERS developers x DAYS days of Claude-Code-shaped sessions
(10-120 minutes, an export every 60 s, several models and teams), written through ccmetrics' own store. The
dashboard benchmark measures on it, and the upgrade tests migrate it.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path

from ccmetrics.records import Batch, Event, Point, event_key
from ccmetrics.store import Store

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
                event_key(t, uuid.UUID(int=rng.getrandbits(128)).bytes),
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


async def generate(
    path: Path, developers: int, days: int, seed: int, *, quiet: bool = False, now: int | None = None
) -> tuple[int, int, int]:
    """Sessions, points and events written, up to ``now`` (the present by default)."""
    rng = random.Random(seed)
    store = Store(path)
    now = now or time.time_ns()
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
        if not quiet:
            print(
                f"\r  generated {i + 1}/{developers} developers: {sessions} sessions, {points:,} points, "
                f"{events:,} events",
                end="",
                flush=True,
            )
    await asyncio.gather(*pending)
    store.close()
    if not quiet:
        print()
    return sessions, points, events
