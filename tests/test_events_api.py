"""``/api/events``: events whole, as they arrived, though each fact is stored once (its family, its row,
``strings``). In-process through httpx's ASGI transport, on a real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlencode

import httpx

from ccmetrics.config import Config
from ccmetrics.store import Store

from .otlp_builders import SECOND, T0, log_request
from .test_dashboard_config import get_all
from .test_store import _iso, batch_of

RESOURCE = {
    "service.name": "claude-code",
    "service.version": "2.1.332",
    "team.id": "web",
    "host.arch": "arm64",
}
S1 = {"session.id": "s1", "user.id": "u" * 64, "anthropic.provider": "firstParty"}


def get(store: Store, tmp_path: Path, path: str, **params: str) -> httpx.Response:
    (answer,) = get_all(
        store, Config(data_dir=tmp_path), "http://127.0.0.1:3000", f"{path}?{urlencode(params)}"
    )
    return answer


def test_a_sessions_events_come_back_whole_in_order(store: Store, tmp_path: Path) -> None:
    sent = [
        (T0, "user_prompt", {**S1, "prompt.id": "p1", "prompt_length": 28, "event.sequence": 1}),
        (
            T0 + SECOND,
            "api_request",
            {**S1, "prompt.id": "p1", "model": "m", "cost_usd": 0.25, "duration_ms": 900, "ttft_ms": 120.5},
        ),
        (T0 + 2 * SECOND, "tool_result", {**S1, "tool_name": "Edit", "success": True, "duration_ms": 3.5}),
        (T0 + 3 * SECOND, "user_prompt", {"session.id": "s2", "prompt_length": 7}),
        (T0 + 4 * SECOND, "odd_one", {**S1, "duration_ms": "slow", "retried": False}),
    ]

    async def write() -> None:
        await store.write(batch_of(log_request(sent, RESOURCE)))

    asyncio.run(write())

    answer = get(store, tmp_path, "/api/events", session="s1").json()
    assert answer["truncated"] is False
    assert [(e["time_ns"], e["name"], e["body"]) for e in answer["events"]] == [
        (t, name, f"claude_code.{name}") for t, name, attrs in sent if attrs.get("session.id") == "s1"
    ]
    expected = [
        {**RESOURCE, "event.name": name, **attrs}
        for _, name, attrs in sent
        if attrs.get("session.id") == "s1"
    ]
    got = [e["attributes"] for e in answer["events"]]
    assert got == expected
    assert [type(a.get("duration_ms")) for a in got] == [type(None), int, float, str]  # each as it came

    everything = get(store, tmp_path, "/api/events", limit="3").json()
    assert [e["name"] for e in everything["events"]] == ["user_prompt", "api_request", "tool_result"]
    assert everything["truncated"] is True
    assert get(store, tmp_path, "/api/events", limit="-1").json()["events"][0]["name"] == "user_prompt"
    late = get(store, tmp_path, "/api/events", since="1970-01-01T00:00:00Z", until=_iso(T0 + 3 * SECOND))
    assert len(late.json()["events"]) == 3
    assert get(store, tmp_path, "/api/events", limit="many").status_code == 400
