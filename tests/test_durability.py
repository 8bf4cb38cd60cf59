"""An acknowledged export is on disk: it survives SIGKILL mid-stream, a retry of it is not counted twice, and
a clean restart changes nothing. Also cumulative temporality through resets, late points and duplicates."""

from __future__ import annotations

import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from ccmetrics.store.committer import LOG_SIZE_LIMIT

from .conftest import ServerProcess, fixture_exports, send

SECOND = 1_000_000_000
T0 = 1_760_000_000 * SECOND
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
TOKEN_TYPES = ("input", "output", "cacheRead", "cacheCreation")
SUMMARY_TOKEN = {
    "input": "input",
    "output": "output",
    "cacheRead": "cache_read",
    "cacheCreation": "cache_creation",
}
HEADERS = {"Content-Type": "application/x-protobuf"}


def kvs(attrs: dict[str, str]) -> list[common_pb2.KeyValue]:
    return [common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v)) for k, v in attrs.items()]


@dataclass(frozen=True)
class Export:
    """One delta export of Claude Code's shape, with values known to the test."""

    sender: int
    seq: int
    tokens: dict[str, int]
    cost: float  # a multiple of 1/256: sums of these are exact in binary floating point

    @property
    def body(self) -> bytes:
        point_attrs = {
            "user.id": f"user-{self.sender}",
            "session.id": f"session-{self.sender}",
            "terminal.type": "tty",
            "anthropic.provider": "firstParty",
            "model": "claude-sonnet-4-5",
            "query_source": "main",
            "effort": "default",
        }
        start = T0 + self.seq * 10 * SECOND  # a time range of its own per export (and per sender: own series)
        end = start + 10 * SECOND
        request = metrics_service_pb2.ExportMetricsServiceRequest()
        rm = request.resource_metrics.add()
        rm.resource.attributes.extend(kvs({"service.name": "claude-code", "service.version": "2.1.332"}))
        sm = rm.scope_metrics.add()
        sm.scope.name, sm.scope.version = "com.anthropic.claude_code", "2.1.332"
        tokens = sm.metrics.add(name="claude_code.token.usage", unit="tokens")
        tokens.sum.aggregation_temporality, tokens.sum.is_monotonic = DELTA, True
        for token_type, value in self.tokens.items():
            dp = tokens.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=end, as_double=value)
            dp.attributes.extend(kvs({**point_attrs, "type": token_type}))
        cost = sm.metrics.add(name="claude_code.cost.usage", unit="USD")
        cost.sum.aggregation_temporality, cost.sum.is_monotonic = DELTA, True
        dp = cost.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=end, as_double=self.cost)
        dp.attributes.extend(kvs(point_attrs))
        return request.SerializeToString()


def make_exports(senders: int, per_sender: int, seed: int = 7) -> list[list[Export]]:
    rng = random.Random(seed)
    return [
        [
            Export(s, n, {t: rng.randint(1, 5000) for t in TOKEN_TYPES}, rng.randint(1, 512) / 256)
            for n in range(per_sender)
        ]
        for s in range(senders)
    ]


def expected_totals(exports: list[Export]) -> dict:
    distinct = {(e.sender, e.seq): e for e in exports}.values()
    tokens = {SUMMARY_TOKEN[t]: sum(e.tokens[t] for e in distinct) for t in TOKEN_TYPES}
    return {"tokens": tokens, "cost_usd": sum(e.cost for e in distinct)}


def totals(server: ServerProcess) -> dict:
    summary = server.summary()
    return {"tokens": summary["tokens"], "cost_usd": summary["cost_usd"]}


def post(client: httpx.Client, server: ServerProcess, export: Export) -> int:
    return client.post(server.otlp_http + "/v1/metrics", content=export.body, headers=HEADERS).status_code


def test_sigkill_mid_stream_loses_nothing_acknowledged_and_counts_nothing_twice(start_server) -> None:
    server = start_server()
    exports = make_exports(senders=6, per_sender=500)
    acknowledged: set[tuple[int, int]] = set()
    attempted: set[tuple[int, int]] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def sender(mine: list[Export]) -> None:
        with httpx.Client(timeout=10) as client:
            for export in mine:
                if stop.is_set():
                    return
                with lock:
                    attempted.add((export.sender, export.seq))
                try:
                    status = post(client, server, export)
                except httpx.HTTPError:
                    return  # the server is gone
                if status == 200:
                    with lock:
                        acknowledged.add((export.sender, export.seq))

    threads = [threading.Thread(target=sender, args=(mine,)) for mine in exports]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    server.process.send_signal(signal.SIGKILL)
    for thread in threads:
        thread.join(30)
    stop.set()
    server.stop(signal.SIGKILL)  # reap it
    everything = [e for mine in exports for e in mine]
    by_key = {(e.sender, e.seq): e for e in everything}
    assert acknowledged, "nothing was acknowledged within a second: the test proves nothing"
    assert len(acknowledged) < len(everything), "the server took everything before the kill: send more"
    print(f"acknowledged {len(acknowledged)} of {len(everything)} before SIGKILL; {len(attempted)} attempted")

    restarted = start_server(server.data_dir)
    # Before any retry: everything acknowledged is there; at most the in-flight (attempted, unanswered) more.
    after_kill = totals(restarted)
    floor = expected_totals([by_key[k] for k in acknowledged])
    ceiling = expected_totals([by_key[k] for k in attempted])
    for token_type, value in after_kill["tokens"].items():
        assert floor["tokens"][token_type] <= value <= ceiling["tokens"][token_type], token_type
    assert floor["cost_usd"] - 1e-9 <= after_kill["cost_usd"] <= ceiling["cost_usd"] + 1e-9

    # The exporters retry: everything not acknowledged, plus some that were (their ack got lost).
    retries = [e for e in everything if (e.sender, e.seq) not in acknowledged]
    retries += random.Random(1).sample([by_key[k] for k in sorted(acknowledged)], min(50, len(acknowledged)))
    random.Random(2).shuffle(retries)

    def retry(batch: list[Export]) -> list[int]:
        with httpx.Client(timeout=30) as client:
            return [post(client, restarted, export) for export in batch]

    with ThreadPoolExecutor(6) as pool:
        statuses = [s for batch in pool.map(retry, [retries[i::6] for i in range(6)]) for s in batch]
    assert statuses == [200] * len(retries)

    expected = expected_totals(everything)
    final = totals(restarted)
    assert final["tokens"] == expected["tokens"]
    assert final["cost_usd"] == pytest.approx(expected["cost_usd"], abs=1e-9)
    # and per sender (each is its own user), so a loss cannot hide behind a double count elsewhere
    summary = restarted.summary()
    for s, mine in enumerate(exports):
        (row,) = [u for u in summary["by_user"] if u["user_id"] == f"user-{s}"]
        assert row["tokens"] == expected_totals(mine)["tokens"]


def test_sigterm_restart_keeps_totals(start_server) -> None:
    server = start_server()
    for capture in ("http-protobuf-delta", "http-json-cumulative"):
        for export in fixture_exports(capture):
            assert send(server.otlp_http, export).status_code == 200
    generated = [e for mine in make_exports(senders=2, per_sender=20, seed=3) for e in mine]
    with httpx.Client(timeout=10) as client:
        for export in generated:
            assert post(client, server, export) == 200
    before = server.summary()
    assert before["tokens"]["input"] == 8585 + expected_totals(generated)["tokens"]["input"]
    assert server.stop(signal.SIGTERM) == 0

    restarted = start_server(server.data_dir)
    assert restarted.summary() == before
    # The dashboard's first view is read as the server starts, from the store with data in it now.
    deadline = time.monotonic() + 20
    while restarted.log_path.read_text().count("dashboard warmed up") < 2:
        assert "could not warm up" not in restarted.log_path.read_text()
        assert time.monotonic() < deadline, restarted.log_path.read_text()
        time.sleep(0.05)
    # Retries after the restart (the writer's caches are empty now) are still recognised as retries.
    for capture in ("http-protobuf-delta", "http-json-cumulative"):
        for export in fixture_exports(capture):
            assert send(restarted.otlp_http, export).status_code == 200
    with httpx.Client(timeout=10) as client:
        for export in generated[:10]:
            assert post(client, restarted, export) == 200
    assert restarted.summary() == before
    assert restarted.stop(signal.SIGTERM) == 0
    assert start_server(server.data_dir).summary() == before


# --- cumulative temporality --------------------------------------------------------------------------------

USER = {"user.id": "cumulative-user", "session.id": "cumulative-session", "model": "claude-sonnet-4-5"}


def cumulative_export(points: list[tuple[str, int, int, float]], user: str = USER["user.id"]) -> bytes:
    """Points ``(series, start_s, time_s, running_total)``: series is a token type, or ``cost``."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(kvs({"service.name": "claude-code"}))
    sm = rm.scope_metrics.add()
    sm.scope.name = "com.anthropic.claude_code"
    tokens = sm.metrics.add(name="claude_code.token.usage", unit="tokens")
    cost = sm.metrics.add(name="claude_code.cost.usage", unit="USD")
    for metric in (tokens, cost):
        metric.sum.aggregation_temporality, metric.sum.is_monotonic = CUMULATIVE, True
    attrs = {**USER, "user.id": user}
    for series, start_s, time_s, total in points:
        metric = cost if series == "cost" else tokens
        dp = metric.sum.data_points.add(
            start_time_unix_nano=T0 + start_s * SECOND, time_unix_nano=T0 + time_s * SECOND
        )
        if series == "cost":
            dp.as_double = total
            dp.attributes.extend(kvs(attrs))
        else:
            dp.as_int = int(total)
            dp.attributes.extend(kvs({**attrs, "type": series}))
    for metric in (tokens, cost):
        if not metric.sum.data_points:
            sm.metrics.remove(metric)
    return request.SerializeToString()


# The scenario, by collection time. Every 10 s the exporter sends the running totals since start (0 s).
#   input:  10, 25, 40 | process restarts: new start time 35 s: 5, 12
#   output: 100, 150, then 30 (reset without a new start time), 70
#   cost:   0.5, 0.75, 1.25, 1.25 (no change)
EXPORTS = {
    "e10": [("input", 0, 10, 10), ("output", 0, 10, 100), ("cost", 0, 10, 0.5)],
    "e20": [("input", 0, 20, 25), ("output", 0, 20, 150), ("cost", 0, 20, 0.75)],
    "e30": [("input", 0, 30, 40), ("output", 0, 30, 30), ("cost", 0, 30, 1.25)],
    "e40": [("input", 35, 40, 5), ("output", 0, 40, 70), ("cost", 0, 40, 1.25)],
    "e50": [("input", 35, 50, 12)],
}
# Arrival: e20 first, e40 before e30 and e10, e50 last; e30 three times (identical bodies).
ARRIVAL = ["e20", "e40", "e10", "e30", "e30", "e50", "e30"]
# By hand, from the running totals above:
#   input:  40 from the first process (10 + 15 + 15), then 12 from the second (5 + 7)       = 52
#   output: 100 + 50, then the reset: 30 counted whole, then 70 - 30 = 40                     = 220
#   cost:   0.5 + 0.25 + 0.5 + 0                                                              = 1.25
EXPECTED_CUMULATIVE = {"input": 52, "output": 220, "cost_usd": 1.25}


def check_cumulative(server: ServerProcess) -> None:
    summary = server.summary(filter="user.id=cumulative-user")
    assert summary["tokens"] == {
        "input": EXPECTED_CUMULATIVE["input"],
        "output": EXPECTED_CUMULATIVE["output"],
        "cache_read": 0,
        "cache_creation": 0,
    }
    assert summary["cost_usd"] == pytest.approx(EXPECTED_CUMULATIVE["cost_usd"], abs=1e-12)


def test_cumulative_resets_out_of_order_and_duplicates(start_server) -> None:
    server = start_server()
    with httpx.Client(timeout=10) as client:
        for name in ARRIVAL:
            response = client.post(
                server.otlp_http + "/v1/metrics", content=cumulative_export(EXPORTS[name]), headers=HEADERS
            )
            assert response.status_code == 200, name
    check_cumulative(server)
    server.stop(signal.SIGKILL)
    restarted = start_server(server.data_dir)
    check_cumulative(restarted)
    # After a restart, a retry of every export (in yet another order) changes nothing.
    with httpx.Client(timeout=10) as client:
        for name in ["e50", "e10", "e30", "e20", "e40"]:
            body = cumulative_export(EXPORTS[name])
            assert (
                client.post(restarted.otlp_http + "/v1/metrics", content=body, headers=HEADERS).status_code
                == 200
            )
    check_cumulative(restarted)


def test_cumulative_arrival_order_does_not_matter(start_server) -> None:
    """The same exports in a few orders give the same totals (each order as its own user)."""
    orders = [sorted(EXPORTS), sorted(EXPORTS, reverse=True), ["e30", "e10", "e50", "e20", "e40"]]
    server = start_server()
    for n, order in enumerate(orders):
        user = f"order-{n}"
        with httpx.Client(timeout=10) as client:
            for name in order:
                body = cumulative_export(EXPORTS[name], user)
                assert (
                    client.post(server.otlp_http + "/v1/metrics", content=body, headers=HEADERS).status_code
                    == 200
                )
        summary = server.summary(filter=f"user.id={user}")
        assert (summary["tokens"]["input"], summary["tokens"]["output"]) == (52, 220), order
        assert summary["cost_usd"] == pytest.approx(1.25, abs=1e-12), order


def test_a_steady_stream_keeps_the_write_ahead_log_bounded(start_server) -> None:
    """Under a stream that never pauses, committed pages are still copied into the database file and the log
    is started over once long: it stays near its size limit instead of holding everything ever sent."""
    server = start_server()
    exports = make_exports(senders=8, per_sender=500)
    wal = server.data_dir / "ccmetrics.db-wal"
    sizes: list[int] = []

    def sender(mine: list[Export]) -> None:
        with httpx.Client(timeout=10) as client:
            for export in mine:
                assert post(client, server, export) == 200
                if export.sender == 0:
                    sizes.append(wal.stat().st_size)

    with ThreadPoolExecutor(len(exports)) as pool:
        list(pool.map(sender, exports))
    assert totals(server) == expected_totals([e for mine in exports for e in mine])
    # Kept whole, this stream's log would be several times the limit (the test fails with no checkpoints).
    assert max(sizes) <= LOG_SIZE_LIMIT * 1.1, f"the log grew to {max(sizes):,} bytes"
