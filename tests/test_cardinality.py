"""A cardinality flood (a client sending a new attribute set with every point) cannot take the server down.

A client may create only so many new series a minute (``--new-series-per-minute``): past that, points of new
series are rejected in partial_success, over HTTP and gRPC, and points of the series it has are never
refused. What the flood did store is shown bounded: leaderboards, tables, pies and timelines show their top
rows and an "others" row that keeps the total exact, /api/summary's lists are capped the same way,
/api/filters lists the most common choices and finds the rest by search, and /metrics exposes at most its
cap of series and says how many it left out. The server's memory stays bounded.

The committer's limit is also checked in-process, on a real SQLite file.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from prometheus_client.parser import text_string_to_metric_families

from ccmetrics.otlp.decode import Signal
from ccmetrics.otlp.normalize import to_batch
from ccmetrics.panels import TOP
from ccmetrics.prometheus import MAX_SERIES
from ccmetrics.store import Store
from ccmetrics.store.committer import Committer, WriteResult
from ccmetrics.store.filter_choices import FILTER_CHOICES
from ccmetrics.store.limits import NewSeriesLimit
from ccmetrics.store.summary import TOP as SUMMARY_TOP

from .conftest import ServerProcess, fixture_exports
from .otlp_builders import SECOND, log_request, sum_request
from .test_fixtures import EXPECTED

COST = "claude_code.cost.usage"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
FLOOD = {"service.name": "claude-code", "team.id": "flood"}
LIMIT_MESSAGE = "new series in a minute (--new-series-per-minute)"


def flood_request(users: range, now_ns: int, prefix: str = "flood-user", models: int = 0) -> Any:
    """A cost point per user, each with an attribute set of its own: its user.id, and a key of its own.
    Costs are multiples of 1/8, so that any sum of them is exact."""
    points = []
    for i in users:
        attrs = {"user.id": f"{prefix}-{i:05d}", f"flood.k{i}": "x"}
        if models:
            attrs["model"] = f"flood-model-{i % models:02d}"
        points.append((now_ns - 60 * SECOND, now_ns, 0.125 * (1 + i % 7), attrs))
    return sum_request(COST, points, unit="USD", resource=FLOOD)


def post(server: ServerProcess, path: str, message: Any, source: str = "127.0.0.1") -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=60) as client:
        response = client.post(server.otlp_http + path, content=message.SerializeToString(), headers=PROTOBUF)
    assert response.status_code == 200, response.text
    return response


def rejected_points(response: httpx.Response) -> tuple[int, str]:
    answer = ExportMetricsServiceResponse.FromString(response.content)
    return answer.partial_success.rejected_data_points, answer.partial_success.error_message


def load_fixture(server: ServerProcess, capture: str, source: str = "127.0.0.1") -> None:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as client:
        for export in fixture_exports(capture):
            response = client.post(
                server.otlp_http + export.path, content=export.body, headers=export.headers
            )
            assert response.status_code == 200, response.text
            assert b"rejected" not in response.content and b"new series" not in response.content


def get(server: ServerProcess, path: str, **params: Any) -> Any:
    response = httpx.get(server.url + path, params=params, timeout=60)
    response.raise_for_status()
    return response.json() if path.startswith("/api/") else response.text


# --- the limit, over real sockets -------------------------------------------------------------------------


def test_new_series_past_the_limit_are_rejected_over_http_and_grpc_and_good_data_stays_exact(start_server):
    server = start_server(None, "--new-series-per-minute", "50")
    load_fixture(server, "http-protobuf-delta")  # 12 series, 13 kinds of event: within the limit
    before = server.summary()
    now = time.time_ns()

    # 200 new series at once over HTTP: the client's allowance (50 a minute, 12 of them used) is stored, the
    # rest rejected with a message that says why.
    rejected, message = rejected_points(post(server, "/v1/metrics", flood_request(range(200), now)))
    stored_http = 200 - rejected
    assert 0 < stored_http <= 50 - 12 + 5  # what was left, and what refilled meanwhile (50 a minute)
    assert message == (
        f"{rejected} points of new series were rejected: this client created more than 50 {LIMIT_MESSAGE}"
    )

    # Over gRPC, from the same address: its allowance is used up.
    with grpc.insecure_channel(server.otlp_grpc) as channel:
        answer = metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(
            flood_request(range(1000, 1100), now), timeout=30
        )
    assert answer.partial_success.rejected_data_points >= 95
    assert LIMIT_MESSAGE in answer.partial_success.error_message
    stored_grpc = 100 - answer.partial_success.rejected_data_points

    # New kinds of event are limited apart, the same way.
    events = log_request([(now, "api_request", {"user.id": f"flood-user-{i}"}) for i in range(100)], FLOOD)
    response = post(server, "/v1/logs", events)
    logs = ExportLogsServiceResponse.FromString(response.content).partial_success
    assert 100 - 50 <= logs.rejected_log_records < 100
    assert "events of new kinds were rejected" in logs.error_message
    assert "(--new-series-per-minute)" in logs.error_message

    # Series that exist are never refused, even with the allowance used up: a new point of a flood series
    # the server took, and the captures sent again (an exporter's retry, which changes nothing).
    again = sum_request(
        COST,
        [(now, now + SECOND, 0.25, {"user.id": "flood-user-00000", "flood.k0": "x"})],
        unit="USD",
        resource=FLOOD,
    )
    assert rejected_points(post(server, "/v1/metrics", again)) == (0, "")
    load_fixture(server, "http-protobuf-delta")
    assert server.summary(filter="user.id=flood-user-00000")["cost_usd"] == 0.125 + 0.25

    # Another client's new series are its own to create.
    load_fixture(server, "http-json-cumulative", source="127.0.0.2")

    after = server.summary()
    delta, cumulative = EXPECTED["http-protobuf-delta"], EXPECTED["http-json-cumulative"]
    assert before["cost_usd"] == pytest.approx(delta["cost_usd"], abs=1e-9)
    assert before["tokens"] == delta["tokens"]
    flood = server.summary(filter="team.id=flood")
    assert (
        flood["cost_usd"]
        == sum(0.125 * (1 + i % 7) for i in range(stored_http))
        + sum(0.125 * (1 + i % 7) for i in range(1000, 1000 + stored_grpc))
        + 0.25
    )
    assert flood["api_requests"] == 100 - logs.rejected_log_records
    assert after["cost_usd"] == pytest.approx(
        delta["cost_usd"] + cumulative["cost_usd"] + flood["cost_usd"], abs=1e-9
    )
    assert after["tokens"] == {k: delta["tokens"][k] + cumulative["tokens"][k] for k in delta["tokens"]}
    assert after["api_requests"] == delta["api_requests"] + cumulative["api_requests"] + flood["api_requests"]
    assert after["sessions"] == 2


# --- what a flood that was let in looks like ------------------------------------------------------------


def others_row(rows: list[dict[str, Any]], limit: int = TOP) -> dict[str, Any]:
    assert len(rows) == limit + 1
    assert all("others" not in row for row in rows[:-1])
    return rows[-1]


def test_a_flood_of_users_is_shown_as_the_top_rows_and_others(start_server):
    server = start_server(None, "--new-series-per-minute", "100000")
    for capture in ("http-protobuf-delta", "http-json-cumulative"):
        load_fixture(server, capture)
    before = get(server, "/api/dashboard", since="7d")["panels"]
    users_before, models_before = (
        len(before["leaderboard_users"]["rows"]),
        len(before["cost_by_model"]["items"]),
    )
    summary_users_before = len(get(server, "/api/summary")["by_user"])
    samples_before = scrape(server)
    series_before = len(counters(samples_before))
    now = time.time_ns()
    users = 12_000
    for first in range(0, users, 1000):
        request = flood_request(range(first, first + 1000), now, models=60)
        assert rejected_points(post(server, "/v1/metrics", request)) == (0, "")
    flood_cost = sum(0.125 * (1 + i % 7) for i in range(users))

    # The dashboard: the user leaderboard, the cost by model bars and its timeline show their top and others.
    dashboard = get(server, "/api/dashboard", since="7d")
    panels = dashboard["panels"]
    total = panels["cost"]["value"]
    assert total == pytest.approx(before["cost"]["value"] + flood_cost, rel=1e-12)
    board = panels["leaderboard_users"]["rows"]
    others = others_row(board)
    assert others["others"] == users + users_before - TOP and others["name"] == f"others ({others['others']})"
    assert [row["cost_usd"] for row in board[:-1]] == sorted(
        (row["cost_usd"] for row in board[:-1]), reverse=True
    )
    assert math.fsum(row["cost_usd"] for row in board) == pytest.approx(total, rel=1e-12)
    assert math.fsum(row["sessions"] for row in board) == panels["sessions"]["value"]
    by_model = panels["cost_by_model"]["items"]
    assert others_row(by_model)["others"] == 60 + models_before - TOP
    assert math.fsum(item["value"] for item in by_model) == pytest.approx(total, rel=1e-12)
    over_time = panels["cost_over_time"]["series"]
    assert others_row(over_time)["others"] == 60 + models_before - TOP
    assert math.fsum(sum(s["values"]) for s in over_time) == pytest.approx(total, rel=1e-12)
    sessions = panels["recent_sessions"]["rows"]
    assert len(sessions) == 2 and all("others" not in row for row in sessions)  # the flood names no session

    # /api/summary's by_user likewise.
    summary = get(server, "/api/summary")
    others = others_row(summary["by_user"], SUMMARY_TOP)
    assert others["user_id"] is None and others["others"] == users + summary_users_before - SUMMARY_TOP
    assert math.fsum(row["cost_usd"] for row in summary["by_user"]) == pytest.approx(
        summary["cost_usd"], abs=1e-6
    )
    assert len(summary["by_model"]) == 60 + models_before
    assert all("others" not in row for row in summary["by_model"])

    # /api/filters: the most common choices, and a search for the others.
    options = get(server, "/api/filters")
    assert len(options["users"]) == FILTER_CHOICES and len(options["keys"]) == FILTER_CHOICES
    assert options["truncated"] and options["users_truncated"] and options["keys_truncated"]
    assert not options["models_truncated"] and len(options["models"]) == 60 + models_before
    assert options["keys"][0] == "service.name"  # in every family: the most common
    values = get(server, "/api/filters", key="user.id")
    assert len(values["values"]) == FILTER_CHOICES and values["truncated"]
    assert "flood-user-11999" not in values["values"]
    found = get(server, "/api/filters", key="user.id", q="USER-11999")
    assert found == {
        "key": "user.id",
        "values": ["flood-user-11999"],
        "truncated": False,
        "names": {"flood-user-11999": "flood-user\u2026"},  # no email, name or alias: its first characters
    }
    found = get(server, "/api/filters", q="flood-user-1199")
    assert sorted(u["id"] for u in found["users"]) == [f"flood-user-1199{i}" for i in range(10)]
    assert "flood.k11998" in get(server, "/api/filters", q="flood.k1199")["keys"]

    # /metrics: at most its cap of series, each metric's largest first, and how many it left out.
    samples = scrape(server)
    dropped = samples.pop(("ccmetrics_metrics_series_dropped", ()))
    assert len(counters(samples)) == MAX_SERIES
    assert dropped == series_before + users - MAX_SERIES
    # Names only for the users those series label: the names are bounded by the cap too.
    labelled = {dict(labels).get("user_id") for _, labels in counters(samples)} - {None, ""}
    named = {dict(labels)["user_id"] for name, labels in samples if name == "ccmetrics_user_info"}
    assert named == labelled
    # The captures' token series are all there: the flood of cost series did not push them out.
    tokens = {k: v for k, v in samples_before.items() if k[0] == "claude_code_token_usage_tokens_total"}
    assert tokens and all(samples[k] == v for k, v in tokens.items())


def counters(samples: dict[tuple[str, tuple], float]) -> list[tuple[str, tuple]]:
    """The series of Claude Code's metrics: not the dropped-series gauge, not the users' names."""
    return [key for key in samples if key[0].startswith("claude_code_")]


def scrape(server: ServerProcess) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, by name and labels (parsing checks that the exposition is valid)."""
    samples = {}
    for family in text_string_to_metric_families(get(server, "/metrics")):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, key
            samples[key] = sample.value
    return samples


# --- memory ---------------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# An idle server takes about 55 MB. What it keeps between requests is bounded: FamilyCache (200,000 entries,
# 10 to 50 MB), AnswerCache (100,000 rows, about 10 MB), and the ingest path's series and attribute caches
# (20,000 each, about 20 MB). 200 MB leaves room for the allocator; a server that kept every family of this
# flood, and built a row for each in its answers, took over 400 MB.
RSS_BOUND_MB = 200


def test_memory_stays_bounded_after_a_large_flood(start_server):
    server = start_server()  # the default limit
    load_fixture(server, "http-protobuf-delta")
    now = time.time_ns()
    rejected = 0
    transport = httpx.HTTPTransport(local_address="127.0.0.1")
    with httpx.Client(transport=transport, timeout=60) as client:
        for first in range(0, 100_000, 1000):
            body = flood_request(range(first, first + 1000), now).SerializeToString()
            response = client.post(server.otlp_http + "/v1/metrics", content=body, headers=PROTOBUF)
            assert response.status_code == 200
            rejected += rejected_points(response)[0]
    for path in ("/api/dashboard", "/api/summary", "/api/filters", "/metrics"):
        get(server, path)
    assert server.process is not None
    assert rss_mb(server.process.pid) < RSS_BOUND_MB
    # the default limit, 10,000 new series at once and 10,000 more a minute, is what kept it so
    assert rejected >= 100_000 - 25_000


# --- the committer's limit, in-process on a real SQLite file ----------------------------------------------


@pytest.fixture
def committer(tmp_path: Path):
    path = tmp_path / "ccmetrics.db"
    Store(path).close()  # the schema
    return Committer(path, new_series_per_minute=10)


def commit(committer: Committer, request: Any, now_ns: int, source: str = "10.0.0.1") -> WriteResult:
    signal = Signal.METRICS if request.DESCRIPTOR.name.startswith("ExportMetrics") else Signal.LOGS
    batch = to_batch(signal, request)
    batch.source = source
    (outcome,) = committer.commit([batch], now_ns)
    assert isinstance(outcome, WriteResult)
    return outcome


def test_the_committer_limits_new_series_per_source_and_minute(committer):
    now = time.time_ns()
    users = flood_request(range(25), now)
    first = commit(committer, users, now)
    assert (first.points, first.rejected) == (10, 15)
    assert first.problems == [
        f"15 points of new series were rejected: this client created more than 10 {LIMIT_MESSAGE}"
    ]
    retry = commit(committer, users, now)  # the 10 stored are a retry: not new, and not refused
    assert (retry.points, retry.rejected) == (0, 15)
    later = commit(committer, flood_request(range(25), now + SECOND), now)  # new points of the same series
    assert (later.points, later.rejected) == (10, 15)
    other = commit(committer, users, now, source="10.0.0.2")  # another source has its own allowance
    assert (other.points, other.rejected) == (10, 5)
    half = commit(committer, users, now + 30 * SECOND)  # half a minute refills half the allowance
    assert (half.points, half.rejected) == (5, 0)  # the last 5: every series exists now


def test_the_committer_limits_new_kinds_of_event_apart(committer):
    now = time.time_ns()
    assert commit(committer, flood_request(range(10), now), now).rejected == 0
    events = log_request([(now, "api_request", {"user.id": f"u{i}"}) for i in range(15)])
    outcome = commit(committer, events, now)
    assert (outcome.events, outcome.rejected) == (10, 5)
    assert outcome.problems[0].startswith("5 events of new kinds were rejected")
    again = commit(committer, events, now + 60 * SECOND)  # a minute later: the rest fit
    assert (again.events, again.rejected) == (5, 0)


def test_the_limit_remembers_only_the_sources_of_the_last_minute():
    limit = NewSeriesLimit(100)
    now = time.time_ns()
    for i in range(1000):
        limit.spend("series", f"10.0.{i // 256}.{i % 256}", 100, now)
    assert limit.sources == 1000 and limit.allowance("series", "10.0.0.0", now) == 0
    assert limit.allowance("series", "10.0.0.0", now + 30 * SECOND) == 50
    limit.spend("series", "10.1.0.0", 1, now + 60 * SECOND)  # the others are full again: forgotten
    assert limit.sources == 1
    assert limit.allowance("series", "10.0.0.0", now + 60 * SECOND) == 100
    assert NewSeriesLimit(0).allowance("series", "10.0.0.0", now) == math.inf  # 0: no limit
