"""Spend, tokens and API calls sent as Claude Code sends them, dated now: what alert rules measure."""

from __future__ import annotations

import time
from typing import Any

import httpx

from .otlp_builders import log_request, sum_request

SECOND = 1_000_000_000
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def resource(user: str = "dev@example.com", team: str = "platform", **more: str) -> dict[str, Any]:
    return {
        "service.name": "claude-code",
        "user.email": user,
        "user.id": f"id-{user}",
        "team.id": team,
        **more,
    }


def cost_body(usd: float, at_ns: int | None = None, session: str = "s1", **who: str) -> bytes:
    at = at_ns if at_ns is not None else time.time_ns()
    request = sum_request(
        "claude_code.cost.usage",
        [(at - SECOND, at, usd, {"session.id": session, "model": "claude-sonnet"})],
        unit="USD",
        resource=resource(**who),
    )
    return request.SerializeToString()


def tokens_body(tokens: int, at_ns: int | None = None, session: str = "s1", **who: str) -> bytes:
    at = at_ns if at_ns is not None else time.time_ns()
    request = sum_request(
        "claude_code.token.usage",
        [(at - SECOND, at, tokens, {"session.id": session, "model": "claude-sonnet", "type": "output"})],
        unit="tokens",
        resource=resource(**who),
    )
    return request.SerializeToString()


def api_events_body(ok: int, failed: int, at_ns: int | None = None, **who: str) -> bytes:
    at = at_ns if at_ns is not None else time.time_ns()
    records = [(at - i, "api_request", {"model": "m"}) for i in range(ok)]
    records += [(at - ok - i, "api_error", {"model": "m", "status_code": "500"}) for i in range(failed)]
    return log_request(records, resource=resource(**who)).SerializeToString()


def post(otlp_http: str, path: str, body: bytes) -> None:
    response = httpx.post(otlp_http + path, content=body, headers=PROTOBUF, timeout=10)
    assert response.status_code == 200, response.text
