"""What the dashboard page gets from the server, in-process: ``/api/config`` (its defaults, range presets,
live heartbeat, panels and the settings that send data here), and ``/api/dashboard``, which answers a whole
refresh (panels, ``has_data``, the filters' choices) and applies the server's default group-by key."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ccmetrics.config import Config
from ccmetrics.panels import PANELS
from ccmetrics.store import Store
from ccmetrics.web.app import LIVE_HEARTBEAT_S, create_app

from .otlp_builders import SECOND, T0, sum_request
from .test_store import COST, USER, batch_of


def get_all(store: Store, config: Config, base: str, *paths: str) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(store, config))
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            return [await client.get(path) for path in paths]

    return asyncio.run(go())


def write(store: Store, *requests) -> None:
    async def go() -> None:
        for request in requests:
            await store.write(batch_of(request))

    asyncio.run(go())


def test_config_holds_the_defaults_and_what_the_page_shows_before_any_data(store, tmp_path) -> None:
    config = Config(data_dir=tmp_path, otlp_grpc_port=14317, otlp_http_port=14318)
    (answer,) = get_all(store, config, "http://127.0.0.1:3000", "/api/config")
    body = answer.json()
    assert body["defaults"] == {"range": "7d", "group_by": "team.id"}
    assert [r["value"] for r in body["ranges"]] == ["1h", "24h", "7d", "30d", "90d", "all"]
    assert body["live"]["heartbeat_s"] == LIVE_HEARTBEAT_S
    assert [p["id"] for p in body["panels"]] == [p.id for p in PANELS]
    grpc, http = body["setup"]["grpc"], body["setup"]["http"]
    assert grpc["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:14317"
    assert grpc["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc" and grpc["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1"
    assert http["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:14318"
    assert http["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"


def test_settings_change_the_defaults_of_the_page_and_of_the_api(store, tmp_path) -> None:
    config = Config(data_dir=tmp_path, host="0.0.0.0", dashboard_range="14d", dashboard_group_by="department")
    write(
        store,
        sum_request(
            COST,
            [(T0 - 60 * SECOND, T0, 0.5, USER)],
            unit="USD",
            resource={"service.name": "claude-code", "department": "eng"},
        ),
    )
    answers = get_all(
        store,
        config,
        "http://metrics.example:3000",
        "/api/config",
        "/api/dashboard",
        "/api/panels/leaderboard_groups",
        "/api/filters",
        "/api/filters?key=department",
    )
    assert [a.status_code for a in answers] == [200] * 5
    body, dashboard, panel, filters, values = (a.json() for a in answers)
    assert body["defaults"] == {"range": "14d", "group_by": "department"}
    # A default range that is not a preset is one more choice, before "all".
    assert [r["value"] for r in body["ranges"]] == ["1h", "24h", "7d", "30d", "90d", "14d", "all"]
    # Bound to every address: the settings name the host the page was reached by.
    assert body["setup"]["grpc"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://metrics.example:4317"

    # Without group_by, the API groups by the server's default too.
    assert dashboard["panels"]["leaderboard_groups"]["columns"][0]["label"] == "department"
    assert [r["key"] for r in dashboard["panels"]["leaderboard_groups"]["rows"]] == ["eng"]
    assert panel["data"]["columns"][0]["label"] == "department"
    # One answer for a refresh: the filters' choices come with the panels.
    assert dashboard["has_data"] is True
    assert dashboard["choices"] == {"filters": filters, "group": values}
    assert values == {"key": "department", "values": ["eng"], "truncated": False}


@pytest.mark.parametrize(
    ("setting", "value"),
    [("dashboard_range", "yesterday-ish"), ("dashboard_group_by", ""), ("dashboard_group_by", 'a"b')],
)
def test_a_default_the_dashboard_cannot_show_is_refused(store, tmp_path, setting, value) -> None:
    with pytest.raises(ValueError, match=setting.replace("_", "-")):
        create_app(store, Config(data_dir=tmp_path, **{setting: value}))
