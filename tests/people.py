"""Two people's data, sent as Claude Code sends it, and the people and tokens that read it: shared by the
sign-in tests in-process, over sockets and in the browser."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .otlp_builders import SECOND, log_request, sum_request

PASSWORD = "correct horse battery"
ALICE = "alice@example.com"
BOB = "bob@example.com"


@dataclass(frozen=True)
class Usage:
    email: str
    sessions: tuple[str, ...]
    cost: float

    @property
    def session(self) -> str:
        return self.sessions[0]


USAGE = (Usage(ALICE, ("session-alice",), 1.25), Usage(BOB, ("session-bob", "session-bob-2"), 2.5))
TOTAL_COST = sum(u.cost for u in USAGE)


def exports(now_ns: int | None = None) -> list[tuple[str, bytes]]:
    """``(path, protobuf body)`` of each person's cost, sessions and one API request, a few minutes ago."""
    t = (now_ns or time.time_ns()) - 300 * SECOND
    found: list[tuple[str, bytes]] = []
    for usage in USAGE:
        resource: dict[str, Any] = {"service.name": "claude-code", "team.id": "web"}
        point = {"user.email": usage.email, "user.id": usage.email + "-id", "session.id": usage.session}
        cost = sum_request(
            "claude_code.cost.usage",
            [(t, t + SECOND, usage.cost, {**point, "model": "claude-opus-5-5"})],
            unit="USD",
            resource=resource,
        )
        sessions = sum_request(
            "claude_code.session.count",
            [(t, t + SECOND, 1, {**point, "session.id": session}) for session in usage.sessions],
            resource=resource,
        )
        events = log_request(
            [(t + SECOND, "api_request", {**point, "cost_usd": str(usage.cost), "model": "claude-opus-5-5"})],
            resource=resource,
        )
        found += [
            ("/v1/metrics", cost.SerializeToString()),
            ("/v1/metrics", sessions.SerializeToString()),
            ("/v1/logs", events.SerializeToString()),
        ]
    return found
