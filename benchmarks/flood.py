"""Cardinality flood: what many distinct attribute sets do to a running ``ccmetrics serve``.

Starts a real ``ccmetrics serve`` on free loopback ports with a fresh data directory, stores the real CLI's
captures (tests/fixtures) as a small team's data, and measures: the dashboard (/api/dashboard?since=7d, as
the page asks, server time from its Server-Timing header and the round trip, first after the flood and
the median of a few more), /api/summary, /metrics (time, size, series), /api/filters (size, keys, users)
and the server's RSS (serve and its writer process). Then it sends the flood: ``--points`` points of
claude_code.cost.usage (default 200,000), each with an attribute set of its own (its own ``user.id``, and
an attribute key of its own), in OTLP/HTTP protobuf exports of ``--per-export`` points (default 1,000), from
``--sources`` addresses (127.0.0.1, 127.0.0.2, ...), ``--concurrency`` exports in flight; counts the points
the server rejected (partial_success); and measures again.

    .venv/bin/python benchmarks/flood.py
    .venv/bin/python benchmarks/flood.py --sources 4
    .venv/bin/python benchmarks/flood.py --serve-args="--new-series-per-minute 0"     # no limit
    PYTHONPATH=/tmp/before/src .venv/bin/python benchmarks/flood.py  # another checkout's server

The server is started with this interpreter and the ccmetrics it imports (PYTHONPATH first), so the same
script measures the code before and after a change.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import shlex
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import ServerProcess, fixture_exports, send  # noqa: E402

SECOND = 1_000_000_000
CAPTURES = ("http-protobuf-delta", "http-json-cumulative")


def flood_export(first: int, count: int, now_ns: int) -> bytes:
    """``count`` cost points, the i-th with user.id flood-user-<i> and an attribute key flood.k<i>."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(
        [
            KeyValue(key="service.name", value=AnyValue(string_value="claude-code")),
            KeyValue(key="team.id", value=AnyValue(string_value="flood")),
        ]
    )
    metric = rm.scope_metrics.add().metrics.add(name="claude_code.cost.usage", unit="USD")
    metric.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    metric.sum.is_monotonic = True
    for i in range(first, first + count):
        dp = metric.sum.data_points.add(
            start_time_unix_nano=now_ns - 60 * SECOND, time_unix_nano=now_ns, as_double=0.01
        )
        dp.attributes.extend(
            [
                KeyValue(key="user.id", value=AnyValue(string_value=f"flood-user-{i:07d}")),
                KeyValue(key=f"flood.k{i}", value=AnyValue(string_value="x")),
                KeyValue(key="model", value=AnyValue(string_value="claude-opus-5-5")),
            ]
        )
    return request.SerializeToString()


def rss_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (the peak) of a process, in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def get(client: httpx.Client, url: str) -> tuple[httpx.Response, float, float | None]:
    """The response, the round trip in ms, and the server's own time (Server-Timing) when it says."""
    started = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    timing = response.headers.get("server-timing")
    return response, elapsed, float(timing.split("dur=")[1]) if timing else None


def measure(server: ServerProcess, repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=server.url, timeout=600) as client:
        for name, url in (
            ("dashboard", "/api/dashboard?since=7d&group_by=team.id"),
            ("summary", "/api/summary?since=7d"),
            ("metrics", "/metrics"),
            ("filters", "/api/filters"),
        ):
            response, first, server_first = get(client, url)
            again = [get(client, url)[1:] for _ in range(repeat)]
            out[name] = {
                "first_ms": first,
                "server_first_ms": server_first,
                "warm_ms": statistics.median(ms for ms, _ in again) if again else None,
                "kb": len(response.content) / 1024,
            }
            if name == "dashboard":
                board = response.json()["panels"]["leaderboard_users"]["rows"]
                out[name]["leaderboard_rows"] = len(board)
            elif name == "summary":
                out[name]["by_user"] = len(response.json()["by_user"])
            elif name == "metrics":
                lines = [line for line in response.text.splitlines() if line and not line.startswith("#")]
                dropped = [line for line in lines if line.startswith("ccmetrics_metrics_series_dropped")]
                out[name]["series"] = len(lines) - len(dropped)
                out[name]["dropped"] = float(dropped[0].split()[-1]) if dropped else None
            else:
                body = response.json()
                out[name]["keys"] = len(body["keys"])
                out[name]["users"] = len(body["users"])
    assert server.process is not None
    pid = server.process.pid
    out["rss"], out["peak"] = rss_mb(pid)
    out["writer_rss"] = sum(rss_mb(child)[0] for child in children(pid))
    return out


def flood(server: ServerProcess, args: argparse.Namespace) -> dict[str, Any]:
    now = time.time_ns()
    bodies = [
        flood_export(first, min(args.per_export, args.points - first), now)
        for first in range(0, args.points, args.per_export)
    ]
    sources = [f"127.0.0.{1 + i}" for i in range(args.sources)]
    local = threading.local()
    clients: list[httpx.Client] = []

    def client_for(index: int) -> httpx.Client:
        if getattr(local, "clients", None) is None:
            local.clients = {}
        source = sources[index % len(sources)]
        if source not in local.clients:
            transport = httpx.HTTPTransport(local_address=source)
            local.clients[source] = httpx.Client(base_url=server.otlp_http, transport=transport, timeout=600)
            clients.append(local.clients[source])
        return local.clients[source]

    def post(index: int) -> tuple[int, int, str]:
        response = client_for(index).post(
            "/v1/metrics", content=bodies[index], headers={"Content-Type": "application/x-protobuf"}
        )
        if response.status_code != 200:
            return response.status_code, 0, response.text[:200]
        answer = ExportMetricsServiceResponse.FromString(response.content)
        return 200, answer.partial_success.rejected_data_points, answer.partial_success.error_message

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        results = list(pool.map(post, range(len(bodies))))
    seconds = time.perf_counter() - started
    for client in clients:
        client.close()
    failed = [r for r in results if r[0] != 200]
    messages = {r[2] for r in results if r[2]}
    return {
        "seconds": seconds,
        "exports": len(bodies),
        "failed": len(failed),
        "rejected": sum(r[1] for r in results),
        "message": next(iter(messages), ""),
    }


def row(label: str, before: Any, after: Any) -> None:
    print(f"  {label:44} {before!s:>14} {after!s:>14}")


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=200_000, help="distinct attribute sets to send")
    parser.add_argument("--per-export", type=int, default=1_000, help="points per export")
    parser.add_argument("--sources", type=int, default=1, help="client addresses 127.0.0.1 and on")
    parser.add_argument("--concurrency", type=int, default=2, help="exports in flight")
    parser.add_argument("--repeat", type=int, default=3, help="requests of each page after the first")
    parser.add_argument("--serve-args", default="", help="more arguments for ccmetrics serve")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="ccmetrics-flood-"))
    server = ServerProcess(data_dir, shlex.split(args.serve_args)).start(timeout=60)
    try:
        for capture in CAPTURES:
            for export in fixture_exports(capture):
                send(server.otlp_http, export).raise_for_status()
        time.sleep(0.5)
        before = measure(server, args.repeat)
        print(
            f"flood: {args.points:,} points, each its own attribute set, in exports of {args.per_export:,}, "
            f"from {args.sources} address(es), {args.concurrency} in flight"
        )
        sent = flood(server, args)
        print(
            f"  sent in {sent['seconds']:.1f} s ({sent['exports']} exports, {sent['failed']} failed); "
            f"points rejected: {sent['rejected']:,} ({sent['rejected'] / args.points:.1%}), "
            f"stored: {args.points - sent['rejected']:,}"
        )
        if sent["message"]:
            print(f"  message: {sent['message']}")
        after = measure(server, args.repeat)
    finally:
        server.stop()
    size = sum(f.stat().st_size for f in data_dir.glob("ccmetrics.db*")) / 1e6

    print(f"\n  {'':44} {'before flood':>14} {'after flood':>14}")
    for page in ("dashboard", "summary", "metrics", "filters"):
        b, a = before[page], after[page]
        row(f"{page}: first request, ms", fmt(b["first_ms"]), fmt(a["first_ms"]))
        if b["server_first_ms"] is not None:
            row(f"{page}: first request, server ms", fmt(b["server_first_ms"]), fmt(a["server_first_ms"]))
        row(f"{page}: later requests, median ms", fmt(b["warm_ms"]), fmt(a["warm_ms"]))
        row(f"{page}: KB", fmt(b["kb"], 1), fmt(a["kb"], 1))
    row(
        "dashboard: leaderboard rows",
        before["dashboard"]["leaderboard_rows"],
        after["dashboard"]["leaderboard_rows"],
    )
    row("summary: by_user entries", before["summary"]["by_user"], after["summary"]["by_user"])
    row("metrics: series", f"{before['metrics']['series']:,}", f"{after['metrics']['series']:,}")
    row("metrics: series_dropped", before["metrics"]["dropped"], after["metrics"]["dropped"])
    row(
        "filters: keys / users",
        f"{before['filters']['keys']} / {before['filters']['users']}",
        f"{after['filters']['keys']:,} / {after['filters']['users']:,}",
    )
    row("serve RSS, MB", fmt(before["rss"]), fmt(after["rss"]))
    row("serve peak RSS (VmHWM), MB", fmt(before["peak"]), fmt(after["peak"]))
    row("writer RSS, MB", fmt(before["writer_rss"]), fmt(after["writer_rss"]))
    print(f"  store on disk after: {size:.0f} MB")


if __name__ == "__main__":
    main()
