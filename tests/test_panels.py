"""Every catalogue panel, over the real CLI's captures, shows what the raw exports say, and renders: the API
in-process, on a real store (the end-to-end tests run the same panels through a real server and CLI)."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from ccmetrics.panels import PANELS

from .conftest import Export, fixture_exports
from .e2e.ground_truth import flatten
from .in_process import InProcessServer
from .otlp_builders import log_request
from .panel_truth import check_panels, expected_panels

CAPTURES = ("http-protobuf-delta", "http-json-cumulative")


@dataclass(frozen=True)
class Record:
    """A captured export in the shape ``ground_truth`` reads."""

    signal: str
    body: bytes
    content_type: str
    content_encoding: str | None
    transport: str = "http"
    acknowledged: bool = True


def captured_records() -> list[Record]:
    return [
        Record(e.path.rsplit("/", 1)[1], e.body, e.content_type, e.content_encoding)
        for capture in CAPTURES
        for e in fixture_exports(capture)
    ]


@pytest.fixture
def loaded(in_process: InProcessServer) -> InProcessServer:
    for capture in CAPTURES:
        for export in fixture_exports(capture):
            assert in_process.send(export).status_code == 200
    return in_process


def dashboard(server: InProcessServer, **params) -> dict:
    response = server.api.get("/api/dashboard", params=params)
    response.raise_for_status()
    assert float(response.headers["server-timing"].removeprefix("store;dur=")) >= 0
    return response.json()


def panel_list(server: InProcessServer) -> list[dict]:
    return server.get_json("/api/panels")["panels"]


def test_every_panel_equals_the_raw_exports(loaded):
    points, events = flatten(captured_records())
    check_panels(dashboard(loaded), expected_panels(points, events), panel_list(loaded))


def test_panels_follow_filters(loaded):
    points, events = flatten(captured_records())
    web = lambda attrs: attrs.get("team.id") == "web"  # noqa: E731
    expected = expected_panels([p for p in points if web(p.attrs)], [e for e in events if web(e.attrs)])
    check_panels(dashboard(loaded, filter="team.id=web"), expected, panel_list(loaded))
    # Group the team leaderboard by another attribute.
    by_terminal = dashboard(loaded, group_by="terminal.type")["panels"]["leaderboard_groups"]
    assert by_terminal["columns"][0]["label"] == "terminal.type"
    assert {row["key"] for row in by_terminal["rows"]} == {p.attrs.get("terminal.type") for p in points}


def test_every_panel_answers_alone_in_json_and_csv(loaded):
    assert [p["id"] for p in panel_list(loaded)] == [p.id for p in PANELS]
    full = dashboard(loaded)
    for panel in PANELS:
        one = loaded.api.get(f"/api/panels/{panel.id}")
        assert one.status_code == 200, panel.id
        assert one.json()["data"][
            "series"
            if "series" in full["panels"][panel.id]
            else "items"
            if "items" in full["panels"][panel.id]
            else "rows"
            if "rows" in full["panels"][panel.id]
            else "value"
        ] is not None or panel.kind in ("stat", "gauge")
        table = loaded.api.get(f"/api/panels/{panel.id}", params={"format": "csv"})
        assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv"), panel.id
        rows = list(csv.reader(io.StringIO(table.text)))
        assert len(rows) >= 2 or panel.kind in ("table", "bar", "pie"), (panel.id, rows)
    assert loaded.api.get("/api/panels/nope").status_code == 404
    cost = list(csv.reader(io.StringIO(loaded.api.get("/api/panels/cost?format=csv").text)))
    assert cost[0] == ["value"] and float(cost[1][0]) == pytest.approx(0.044672 + 0.052602)


def test_empty_store_says_so_and_bad_filters_are_400(in_process):
    empty = dashboard(in_process)
    assert empty["has_data"] is False
    assert all(v is not None for v in empty["panels"].values())
    bad = in_process.api.get("/api/dashboard", params={"since": "yesterday-ish"})
    assert bad.status_code == 400 and "7d" in bad.json()["error"]


def test_session_page_data_is_the_session_in_order(loaded):
    points, events = flatten(captured_records())
    session_id = next(p.attrs["session.id"] for p in points if p.attrs.get("team.id") == "web")
    detail = loaded.get_json(f"/api/sessions/{session_id}")
    own = [e for e in events if e.attrs.get("session.id") == session_id]
    assert [e["name"] for e in detail["timeline"]] == [
        e.name
        for e in sorted(own, key=lambda e: (e.attrs["event.timestamp"], int(e.attrs["event.sequence"])))
    ]
    assert detail["summary"]["cost_usd"] == pytest.approx(0.044672)
    assert detail["session"]["user_id"] == next(p.attrs["user.id"] for p in points)
    assert all("prompt" not in e["fields"] for e in detail["timeline"])


def test_the_average_prompt_length_sparkline_is_each_buckets_mean(in_process: InProcessServer) -> None:
    hour = 3_600_000_000_000
    start = (time.time_ns() // hour - 30) * hour  # whole hours, a day and more ago: read from the rollups too
    prompts = [(start + 10, 10), (start + 20, 30), (start + 5 * hour, 7), (start + 29 * hour + 1, 100)]
    request = log_request(
        [(at, "user_prompt", {"prompt_length": str(n), "session.id": "s"}) for at, n in prompts]
    )
    response = in_process.send(Export.of(request))
    assert response.status_code == 200, response.text
    iso = lambda ns: datetime.fromtimestamp(ns / 1e9, UTC).isoformat()  # noqa: E731
    since, until = iso(start), iso(start + 30 * hour)
    spark = in_process.get_json("/api/panels/avg_prompt_length", since=since, until=until)["data"]["spark"]
    chart = in_process.get_json("/api/panels/cost_over_time", since=since, until=until)["data"]
    times, bucket = chart["times"], chart["bucket_ns"]
    assert len(spark) == len(times)
    expected = []
    for t in times:
        lengths = [n for at, n in prompts if t <= at < t + bucket]
        expected.append(sum(lengths) / len(lengths) if lengths else None)
    assert spark == expected
    assert sorted(x for x in spark if x is not None) == [7.0, 20.0, 100.0]  # (10 + 30) / 2 in one bucket
