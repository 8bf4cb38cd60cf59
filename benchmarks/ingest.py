#!/usr/bin/env python
"""Ingest benchmark: N concurrent OTLP/HTTP clients against a real ``ccmetrics serve``.

    .venv/bin/python benchmarks/ingest.py --clients 24 --seconds 20

What it does
------------
1. Starts ``python -m ccmetrics serve`` on free loopback ports with a fresh temporary data directory
   (or, with ``--url``, targets an already running server).
2. In separate generator process(es) (``--procs``, multiprocessing/spawn), pre-builds every request
   before the clock starts: Claude-Code-shaped OTLP/HTTP protobuf exports (metrics: token.usage for
   4 types x 2 models, cost.usage x 2 models, active_time user/cli, lines_of_code added/removed,
   code_edit_tool.decision, session.count in a session's first window = 15-16 points; logs:
   user_prompt + 2 api_request + tool_result events, 1 export in ``--log-every``). Each session is
   built once as a protobuf template; the per-window fields (fixed64 timestamps, double values,
   fixed-width ISO timestamps and prompt ids) are then patched in place, so building 10^5 bodies
   takes about a second. The complete HTTP/1.1 request (head + body) is pre-serialised as bytes.
   Every export has its own (session, time window), so none is a duplicate of another. Sessions last a
   random 10-120 windows (``--windows-per-session``) and start staggered, as Claude Code's do. A client's
   sessions share its clock, which moves on a minute each time all of them have sent: time runs faster
   than life, but exports sent together carry the same minutes, as a live team's do.
3. The generator sends them over keep-alive connections as fast as they are acknowledged: each client
   has exactly one request in flight (closed loop). The default driver ``raw`` is a minimal asyncio
   HTTP/1.1 client (a protocol that writes pre-built bytes and parses the status line and Content-Length
   body as they arrive, with no stream reader or timer per request): about 85 us of CPU per request,
   the kernel's part included, so the generator takes little CPU away from the server on a 2-core
   box. ``--driver httpx`` uses httpx.AsyncClient instead (heavier; for comparison). With ``--rate`` the
   clients send on a fixed schedule instead (open loop), as a team's many CLIs do, and latency counts
   from when each request was due: what the server sustains at that load, stalls included.
4. Leaves the first ``--warmup`` seconds (every session new to the server, caches cold) out of the figures,
   then prints throughput, ack latency percentiles, errors by status, server RSS (VmHWM/VmRSS) and CPU,
   DB size, and a zero-loss check: GET /api/summary before and after, compared with what was
   acknowledged (token, cost, session, line, decision, active-time totals and event counts; values
   are dyadic fractions so float sums are exact in any order). Exit status 1 on loss.

``--create-token`` makes an ingest token in the server it starts and sends it with every export
(``--token`` sends a given one): the cost of authentication, measured against runs without. The
zero-loss check then reads the summary with a viewer token (``--read-token`` with ``--url``).

Only loopback targets are allowed; the run is bounded by ``--seconds`` and ``--max-exports``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGET_EXPORTS_PER_S = 800.0  # about 5,000 developers exporting every 10 s
TARGET_P99_MS = 50.0

# --- sentinels patched per window --------------------------------------------------------------------
# fixed64 timestamps and doubles are fixed-width on the wire, so a template can be patched in place.
SENT_START = 0x1A2B3C4D5E6F0011
SENT_END = 0x1A2B3C4D5E6F0022
SENT_LOG_T = 0x1A2B3C4D5E6F1000  # + record index (time_unix_nano); observed uses +0x100
SENT_DOUBLE = 7.0e15  # + slot index; as_double / cost_usd values
ISO_SENT = "9999-12-31T23:59:5{}.999Z"  # 24 chars, {} = record index
PROMPT_ID_SENT = "ffffffff-eeee-4ddd-8ccc-bbbbbbbbbbbb"  # 36 chars

TOKEN_TYPES = ("input", "output", "cacheRead", "cacheCreation")
SUMMARY_TOKEN = {
    "input": "input",
    "output": "output",
    "cacheRead": "cache_read",
    "cacheCreation": "cache_creation",
}
MODELS = (("claude-opus-5-5", "main", "medium"), ("claude-haiku-4-5", "auxiliary", "low"))
TERMINALS = ("xterm", "vscode", "iTerm.app", "tmux", "cursor", "ghostty")
TEAMS = ("web", "platform", "data", "mobile", "infra")
VERSIONS = ("2.1.332", "2.1.331", "2.1.320")
OS_TYPES = (("linux", "amd64"), ("darwin", "arm64"), ("linux", "arm64"))

# Totals tracked per export (index into the tuple kept beside each body).
FIELDS = (
    "points",
    "events",
    "tok_input",
    "tok_output",
    "tok_cache_read",
    "tok_cache_creation",
    "cost",
    "sessions",
    "loc_added",
    "loc_removed",
    "dec_accept",
    "dec_reject",
    "active_user",
    "active_cli",
    "user_prompt",
    "api_request",
)
F = {name: i for i, name in enumerate(FIELDS)}


# =====================================================================================================
# Building exports (runs in the generator processes)
# =====================================================================================================


def _kv(key: str, value: Any):
    from opentelemetry.proto.common.v1 import common_pb2

    any_value = common_pb2.AnyValue()
    if isinstance(value, bool):
        any_value.bool_value = value
    elif isinstance(value, int):
        any_value.int_value = value
    elif isinstance(value, float):
        any_value.double_value = value
    else:
        any_value.string_value = value
    return common_pb2.KeyValue(key=key, value=any_value)


def _offsets(blob: bytes, needle: bytes, expect: int | None = None) -> list[int]:
    found, start = [], 0
    while True:
        i = blob.find(needle, start)
        if i < 0:
            break
        found.append(i)
        start = i + 1
    if expect is not None and len(found) != expect:
        raise AssertionError(f"sentinel {needle!r} found {len(found)} times, expected {expect}")
    return found


@dataclass
class Session:
    session_id: str
    user_id: str
    terminal: str
    team: str
    version: str
    os_type: str
    arch: str

    @classmethod
    def new(cls, rng: random.Random) -> Session:
        os_type, arch = rng.choice(OS_TYPES)
        return cls(
            session_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            user_id=f"{rng.getrandbits(256):064x}",
            terminal=rng.choice(TERMINALS),
            team=rng.choice(TEAMS),
            version=rng.choice(VERSIONS),
            os_type=os_type,
            arch=arch,
        )

    def resource(self) -> list:
        return [
            _kv("team.id", self.team),
            _kv("host.arch", self.arch),
            _kv("os.type", self.os_type),
            _kv("os.version", "6.8.0"),
            _kv("service.name", "claude-code"),
            _kv("service.version", self.version),
        ]

    def common(self) -> list:
        return [
            _kv("team.id", self.team),
            _kv("user.id", self.user_id),
            _kv("session.id", self.session_id),
            _kv("anthropic.provider", "firstParty"),
            _kv("terminal.type", self.terminal),
        ]


@dataclass
class MetricTemplate:
    blob: bytes
    start_offsets: list[int]
    end_offsets: list[int]
    slots: list[tuple[int, str]]  # (offset of the double, what it is)


def metric_template(session: Session, first: bool) -> MetricTemplate:
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    from opentelemetry.proto.metrics.v1 import metrics_pb2

    request = metrics_service_pb2.ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(session.resource())
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = "com.anthropic.claude_code", session.version
    slot_names: list[str] = []

    def metric(name: str, unit: str, description: str, points: list[tuple[str, list]]) -> None:
        m = sm.metrics.add()
        m.name, m.unit, m.description = name, unit, description
        m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
        m.sum.is_monotonic = True
        for slot, extra in points:
            dp = m.sum.data_points.add()
            dp.start_time_unix_nano = SENT_START
            dp.time_unix_nano = SENT_END
            dp.as_double = SENT_DOUBLE + len(slot_names)
            slot_names.append(slot)
            dp.attributes.extend(session.common())
            dp.attributes.extend(extra)

    if first:
        metric(
            "claude_code.session.count",
            "",
            "Count of CLI sessions started",
            [("sessions", [_kv("start_type", "fresh")])],
        )
    metric(
        "claude_code.lines_of_code.count",
        "",
        "Count of lines of code modified",
        [
            ("loc_added", [_kv("type", "added"), _kv("model", MODELS[0][0])]),
            ("loc_removed", [_kv("type", "removed"), _kv("model", MODELS[0][0])]),
        ],
    )
    metric(
        "claude_code.cost.usage",
        "USD",
        "Cost of the Claude Code session",
        [
            (f"cost:{i}", [_kv("model", m), _kv("query_source", q), _kv("effort", e)])
            for i, (m, q, e) in enumerate(MODELS)
        ],
    )
    metric(
        "claude_code.token.usage",
        "tokens",
        "Number of tokens used",
        [
            (f"tok:{t}:{i}", [_kv("model", m), _kv("query_source", q), _kv("effort", e), _kv("type", t)])
            for i, (m, q, e) in enumerate(MODELS)
            for t in TOKEN_TYPES
        ],
    )
    metric(
        "claude_code.code_edit_tool.decision",
        "",
        "Count of code editing tool permission decisions",
        [
            (
                "dec_accept",
                [
                    _kv("decision", "accept"),
                    _kv("source", "config"),
                    _kv("tool_name", "Edit"),
                    _kv("language", "Python"),
                ],
            )
        ],
    )
    metric(
        "claude_code.active_time.total",
        "s",
        "Total active time in seconds",
        [("active_user", [_kv("type", "user")]), ("active_cli", [_kv("type", "cli")])],
    )

    blob = request.SerializeToString()
    return MetricTemplate(
        blob=blob,
        start_offsets=_offsets(blob, struct.pack("<Q", SENT_START), len(slot_names)),
        end_offsets=_offsets(blob, struct.pack("<Q", SENT_END), len(slot_names)),
        slots=[
            (_offsets(blob, struct.pack("<d", SENT_DOUBLE + i), 1)[0], name)
            for i, name in enumerate(slot_names)
        ],
    )


@dataclass
class LogTemplate:
    blob: bytes
    time_offsets: list[tuple[int, int]]  # (offset, record index)
    iso_offsets: list[tuple[int, int]]
    prompt_offsets: list[int]
    cost_offsets: list[int]
    n_records: int


def log_template(session: Session, rng: random.Random) -> LogTemplate:
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

    request = logs_service_pb2.ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.extend(session.resource())
    sl = rl.scope_logs.add()
    sl.scope.name, sl.scope.version = "com.anthropic.claude_code.events", session.version
    seq = rng.randrange(1, 400)
    records: list[tuple[str, list]] = [
        (
            "user_prompt",
            [
                _kv("prompt_length", str(rng.randrange(5, 900))),
                _kv("prompt", "<REDACTED>"),
                _kv("message.uuid", str(uuid.UUID(int=rng.getrandbits(128), version=4))),
            ],
        ),
    ]
    for k, (model, source, effort) in enumerate(MODELS):
        records.append(
            (
                "api_request",
                [
                    _kv("model", model),
                    _kv("input_tokens", rng.randrange(1, 5000)),
                    _kv("output_tokens", rng.randrange(1, 2000)),
                    _kv("cache_read_tokens", rng.randrange(0, 60000)),
                    _kv("cache_creation_tokens", rng.randrange(0, 5000)),
                    _kv("cost_usd", SENT_DOUBLE + k),
                    _kv("duration_ms", rng.randrange(200, 30000)),
                    _kv("ttft_ms", rng.randrange(50, 3000)),
                    _kv("speed", "normal"),
                    _kv("query_source", source),
                    _kv("effort", effort),
                ],
            )
        )
    records.append(
        (
            "tool_result",
            [
                _kv("tool_name", "Read"),
                _kv("success", "true"),
                _kv("duration_ms", str(rng.randrange(1, 900))),
                _kv("tool_result_size_bytes", str(rng.randrange(10, 90000))),
            ],
        )
    )
    for r, (name, extra) in enumerate(records):
        record = sl.log_records.add()
        record.time_unix_nano = SENT_LOG_T + r
        record.observed_time_unix_nano = SENT_LOG_T + 0x100 + r
        record.body.string_value = f"claude_code.{name}"
        record.attributes.extend(session.common())
        record.attributes.extend(
            [
                _kv("event.name", name),
                _kv("event.timestamp", ISO_SENT.format(r)),
                _kv("event.sequence", seq + r),
                _kv("prompt.id", PROMPT_ID_SENT),
            ]
        )
        record.attributes.extend(extra)
    blob = request.SerializeToString()
    time_offsets = []
    for r in range(len(records)):
        time_offsets += [(o, r) for o in _offsets(blob, struct.pack("<Q", SENT_LOG_T + r), 1)]
        time_offsets += [(o, r) for o in _offsets(blob, struct.pack("<Q", SENT_LOG_T + 0x100 + r), 1)]
    return LogTemplate(
        blob=blob,
        time_offsets=time_offsets,
        iso_offsets=[(_offsets(blob, ISO_SENT.format(r).encode(), 1)[0], r) for r in range(len(records))],
        prompt_offsets=_offsets(blob, PROMPT_ID_SENT.encode(), len(records)),
        cost_offsets=[_offsets(blob, struct.pack("<d", SENT_DOUBLE + k), 1)[0] for k in range(len(MODELS))],
        n_records=len(records),
    )


WINDOW_NS = 60 * 1_000_000_000  # Claude Code's default metric export interval


def _iso(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest // 1_000_000:03d}Z"


SESSION_SENT = "00000000-5e55-4000-8000-5e55105e5510"  # 36 chars, like a uuid
USER_SENT = "feed" * 16  # 64 hex chars, like user.id


@dataclass
class Variant:
    """Templates for one kind of session (terminal, team, version, OS); ids are patched per session."""

    metric_first: MetricTemplate
    metric_next: MetricTemplate
    logs: LogTemplate
    id_offsets: dict[str, list[tuple[int, int]]]  # template name -> [(offset, 0=session 1=user)]

    @classmethod
    def new(cls, rng: random.Random) -> Variant:
        session = Session.new(rng)
        session.session_id, session.user_id = SESSION_SENT, USER_SENT
        first, following, logs = (
            metric_template(session, True),
            metric_template(session, False),
            log_template(session, rng),
        )
        ids = {}
        for name, tpl in (("first", first), ("next", following), ("logs", logs)):
            ids[name] = [(o, 0) for o in _offsets(tpl.blob, SESSION_SENT.encode())] + [
                (o, 1) for o in _offsets(tpl.blob, USER_SENT.encode())
            ]
        return cls(first, following, logs, ids)

    def blobs(self, session_id: bytes, user_id: bytes) -> dict[str, bytes]:
        out = {}
        for name, tpl in (("first", self.metric_first), ("next", self.metric_next), ("logs", self.logs)):
            blob = bytearray(tpl.blob)
            for offset, which in self.id_offsets[name]:
                value = user_id if which else session_id
                blob[offset : offset + len(value)] = value
            out[name] = bytes(blob)
        return out


@dataclass
class LiveSession:
    variant: Variant
    blobs: dict[str, bytes]
    base_ns: int
    length: int  # metric exports (one a minute) before the session ends
    metric_windows: int = 0


def build_client_requests(
    host_header: str,
    count: int,
    log_every: int,
    sessions_per_client: int,
    windows_per_session: tuple[int, int],
    seed: int,
    token: str | None = None,
) -> tuple[list[bytes], list[tuple], list[bool]]:
    """``count`` complete HTTP requests for one client, with the totals each one carries."""
    rng = random.Random(seed)
    now = time.time_ns()
    variants = [Variant.new(rng) for _ in range(6)]
    pack_into = struct.pack_into

    def new_live() -> LiveSession:
        session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode()
        user_id = (b"%064x" % rng.getrandbits(256)) if rng.random() < 0.7 or not users else rng.choice(users)
        users.append(user_id)  # some users run several sessions
        variant = rng.choice(variants)
        # A session starts in the client's current window, at its own second: live sessions report the
        # same minutes, so a commit's points go to the end of the store's time-ordered tables, as live.
        window = clock_start + (n_metrics // sessions_per_client) * WINDOW_NS
        base = window - rng.randrange(0, 60) * 1_000_000_000
        return LiveSession(
            variant, variant.blobs(session_id, user_id), base, rng.randint(*windows_per_session)
        )

    users: list[bytes] = []
    # The client's clock moves on a window each time all of its sessions have sent one. It ends before now
    # (only metric exports move it on), so no timestamp is in the future; early in a UTC day it starts at
    # midnight instead, so the replay never turns into a day of late data (and a long run may then send
    # windows a little ahead of the clock).
    day_start = now - now % (24 * 3600 * 1_000_000_000)
    clock_start = max(now - (count // sessions_per_client + 2) * WINDOW_NS, day_start + WINDOW_NS)
    n_metrics = n_logs = 0
    live = [new_live() for _ in range(sessions_per_client)]
    for (
        ls
    ) in live:  # the first sessions end at random points, so sessions start and end staggered, as in life
        ls.length = rng.randint(1, ls.length)
    requests, totals, is_log = [], [], []
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    head_metrics = (
        f"POST /v1/metrics HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: ccmetrics-bench\r\n{authorization}"
        "Content-Type: application/x-protobuf\r\nContent-Length: "
    ).encode()
    head_logs = head_metrics.replace(b"/v1/metrics", b"/v1/logs")
    for j in range(count):
        t = [0] * len(FIELDS)
        if log_every and j % log_every == log_every - 1:
            ls = live[n_logs % sessions_per_client]
            n_logs += 1
            tpl = ls.variant.logs
            blob = bytearray(ls.blobs["logs"])
            start = ls.base_ns + ls.metric_windows * WINDOW_NS  # the events of the session's current window
            for offset, r in tpl.time_offsets:
                pack_into(
                    "<Q", blob, offset, start + (r + 1) * 1_000_000_000 + rng.randrange(0, 999) * 1_000_000
                )
            for offset, r in tpl.iso_offsets:
                blob[offset : offset + 24] = _iso(start + r * 1_000_000_000).encode()
            prompt_id = str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode()
            for offset in tpl.prompt_offsets:
                blob[offset : offset + 36] = prompt_id
            for offset in tpl.cost_offsets:
                pack_into("<d", blob, offset, rng.randrange(1, 4000) / 65536)
            t[F["events"]] = tpl.n_records
            t[F["user_prompt"]] = 1
            t[F["api_request"]] = len(MODELS)
            head = head_logs
            is_log.append(True)
        else:
            slot = n_metrics % sessions_per_client
            n_metrics += 1
            ls = live[slot]
            first = ls.metric_windows == 0
            tpl = ls.variant.metric_first if first else ls.variant.metric_next
            blob = bytearray(ls.blobs["first" if first else "next"])
            start = ls.base_ns + ls.metric_windows * WINDOW_NS
            ls.metric_windows += 1
            for offset in tpl.start_offsets:
                pack_into("<Q", blob, offset, start)
            for offset in tpl.end_offsets:
                pack_into("<Q", blob, offset, start + WINDOW_NS)
            for offset, name in tpl.slots:
                # Dyadic values (integers, k/64, k/65536) make float sums exact in any order.
                if name == "sessions" or name == "dec_accept":
                    value = 1.0
                elif name.startswith("loc_"):
                    value = float(rng.randrange(0, 80))
                elif name.startswith("active_"):
                    value = rng.randrange(1, 60 * 64) / 64
                elif name.startswith("cost:"):
                    value = rng.randrange(1, 4000) / 65536
                    name = "cost"
                else:  # tok:type:i
                    kind = name.split(":")[1]
                    value = float(
                        {
                            "input": rng.randrange(1, 6000),
                            "output": rng.randrange(1, 3000),
                            "cacheRead": rng.randrange(0, 80000),
                            "cacheCreation": rng.randrange(0, 8000),
                        }[kind]
                    )
                    name = "tok_" + SUMMARY_TOKEN[kind]
                pack_into("<d", blob, offset, value)
                t[F[name]] += value
            t[F["points"]] = len(tpl.slots)
            head = head_metrics
            is_log.append(False)
            if ls.metric_windows >= ls.length:
                live[slot] = new_live()  # the session ends; a new one takes its place
        requests.append(head + str(len(blob)).encode() + b"\r\n\r\n" + bytes(blob))
        totals.append(tuple(t))
    return requests, totals, is_log


# =====================================================================================================
# Sending (generator processes)
# =====================================================================================================


@dataclass
class ClientResult:
    latencies: array.array = field(default_factory=lambda: array.array("d"))
    acked: list[int] = field(default_factory=list)  # indices of acknowledged (2xx, no rejection) requests
    statuses: dict[str, int] = field(default_factory=dict)
    indeterminate: list[int] = field(default_factory=list)  # sent, outcome unknown (timeout, reset)
    partial: int = 0
    measured: int = 0  # acknowledged, and sent after the warm-up
    reconnects: int = 0
    exhausted: bool = False


def _count(result: ClientResult, key: str) -> None:
    result.statuses[key] = result.statuses.get(key, 0) + 1


def _rejected(body: bytes, is_log: bool) -> int:
    if not body:
        return 0
    if is_log:
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as svc

        message = svc.ExportLogsServiceResponse.FromString(body)
        return message.partial_success.rejected_log_records or (
            1 if message.partial_success.error_message else 0
        )
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc

    message = svc.ExportMetricsServiceResponse.FromString(body)
    return message.partial_success.rejected_data_points or (1 if message.partial_success.error_message else 0)


def _record(
    result: ClientResult,
    i: int,
    status: int,
    body: bytes,
    is_log: bool,
    elapsed: float,
    t_start: float,
    buckets: array.array,
) -> None:
    """One answer: its latency and its second when it was sent after the warm-up, whether it was
    acknowledged."""
    measured = time.monotonic() - elapsed >= t_start
    if measured:
        result.latencies.append(elapsed)
    if not 200 <= status < 300:
        _count(result, str(status))
    elif body and _rejected(body, is_log):
        result.partial += 1
        _count(result, f"{status}-partial")
    else:
        result.acked.append(i)
        _count(result, str(status))
        if measured:
            result.measured += 1
            second = int(time.monotonic() - t_start)
            if second < len(buckets):
                buckets[second] += 1


class Schedule:
    """When a client sends. Closed loop (no interval): each request as soon as the previous one is answered.
    Open loop: one request every ``interval`` seconds, from a random phase, whatever the answers; a request's
    latency counts from when it was due, so a stall counts against every request it held up, not just the
    one that met it (no coordinated omission)."""

    def __init__(self, interval: float, rng: random.Random) -> None:
        self.interval = interval
        self.due = time.perf_counter() + rng.random() * interval

    async def wait(self) -> None:
        if self.interval:
            delay = self.due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)

    def started(self, sent_at: float) -> float:
        """When the latency of the request sent at ``sent_at`` counts from; moves on to the next one."""
        if not self.interval:
            return sent_at
        due, self.due = self.due, self.due + self.interval
        return min(due, sent_at)


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight: the answer is parsed in
    ``data_received`` and handed to a future, with no stream reader or timer per request."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.sent_at = 0.0  # when the request in flight was written (for the timeout watchdog)
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes, bool]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.sent_at = time.monotonic()
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[: end + 2]).lower()
        k = head.find(b"\r\ncontent-length:")
        if k >= 0:
            length = int(head[k + 17 : head.find(b"\r\n", k + 2)])
            if len(buffer) < end + 4 + length:
                return
            body = bytes(buffer[end + 4 : end + 4 + length])
        elif b"transfer-encoding: chunked" in head:  # not expected from uvicorn for these answers
            if not buffer.endswith(b"0\r\n\r\n"):
                return
            body = b""
        else:
            body = b""
        buffer.clear()
        self._finish(result=(int(head[9:12]), body, b"connection: close" in head))

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(error=exc or ConnectionResetError("the server closed the connection"))

    def fail(self, error: BaseException) -> None:
        """Give up on the request in flight (timed out): the connection is not used again."""
        self._finish(error=error)
        if self.transport is not None:
            self.transport.abort()

    def _finish(
        self, result: tuple[int, bytes, bool] | None = None, error: BaseException | None = None
    ) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(result)


async def _watch_timeouts(connections: list[_Connection], timeout: float) -> None:
    """Fail requests that have waited longer than ``timeout``: one check a second for all clients."""
    while True:
        await asyncio.sleep(min(1.0, timeout))
        now = time.monotonic()
        for connection in connections:
            if connection.waiter is not None and now - connection.sent_at > timeout:
                connection.fail(TimeoutError())


async def _raw_client(
    host: str,
    port: int,
    requests: list[bytes],
    is_log: list[bool],
    deadline: float,
    connections: list[_Connection],
    result: ClientResult,
    buckets: array.array,
    t_start: float,
    schedule: Schedule,
) -> None:
    loop = asyncio.get_running_loop()
    perf = time.perf_counter
    mono = time.monotonic
    connection: _Connection | None = None
    for i, request in enumerate(requests):
        await schedule.wait()
        if mono() >= deadline:
            break
        if connection is None:
            _, connection = await loop.create_connection(_Connection, host, port)
            connections.append(connection)
        t0 = schedule.started(perf())
        try:
            status, body, close = await connection.send(request)
        except (TimeoutError, ConnectionError, OSError) as exc:
            result.indeterminate.append(i)
            _count(result, type(exc).__name__)
            connections.remove(connection)
            if connection.transport is not None:
                connection.transport.abort()
            connection = None
            result.reconnects += 1
            continue
        _record(result, i, status, body, is_log[i], perf() - t0, t_start, buckets)
        if close:
            connections.remove(connection)
            assert connection.transport is not None
            connection.transport.close()
            connection = None
            result.reconnects += 1
    else:
        result.exhausted = True
    if connection is not None and connection.transport is not None:
        connection.transport.close()


async def _httpx_client(
    client: Any,
    base: str,
    requests: list[bytes],
    is_log: list[bool],
    deadline: float,
    timeout: float,
    result: ClientResult,
    buckets: array.array,
    t_start: float,
    schedule: Schedule,
    token: str | None = None,
) -> None:
    import httpx

    perf = time.perf_counter
    mono = time.monotonic
    headers = {"Content-Type": "application/x-protobuf", "User-Agent": "ccmetrics-bench"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    for i, request in enumerate(requests):
        await schedule.wait()
        if mono() >= deadline:
            break
        body = request[request.index(b"\r\n\r\n") + 4 :]
        path = "/v1/logs" if is_log[i] else "/v1/metrics"
        t0 = schedule.started(perf())
        try:
            response = await client.post(base + path, content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            result.indeterminate.append(i)
            _count(result, type(exc).__name__)
            continue
        _record(result, i, response.status_code, response.content, is_log[i], perf() - t0, t_start, buckets)
    else:
        result.exhausted = True


def generator_main(
    proc_index: int, client_ids: list[int], args: dict, ready: Any, go: Any, shared: Any, out: Any
) -> None:
    """One generator process: build every request first, then send when told to."""
    try:
        parsed = urllib.parse.urlsplit(args["url"])
        host, port = parsed.hostname, parsed.port
        built = {}
        t_build = time.perf_counter()
        for cid in client_ids:
            built[cid] = build_client_requests(
                f"{host}:{port}",
                args["per_client"],
                args["log_every"],
                args["sessions_per_client"],
                args["windows_per_session"],
                args["seed"] * 1_000_003 + cid,
                args["token"],
            )
        build_s = time.perf_counter() - t_build
        ready.put((proc_index, build_s, sum(len(r) for reqs, _, _ in built.values() for r in reqs)))
        go.wait()
        t_start, deadline = shared[0], shared[1]
        ru0 = os.times()
        buckets = array.array("L", [0] * (int(args["seconds"]) + 2))
        results = {cid: ClientResult() for cid in client_ids}
        interval = args["clients"] / args["rate"] if args["rate"] else 0.0
        schedules = {cid: Schedule(interval, random.Random(args["seed"] + cid)) for cid in client_ids}

        async def run() -> None:
            if args["driver"] == "raw":
                connections: list[_Connection] = []
                watchdog = asyncio.create_task(_watch_timeouts(connections, args["timeout"]))
                await asyncio.gather(
                    *(
                        _raw_client(
                            host,
                            port,
                            built[cid][0],
                            built[cid][2],
                            deadline,
                            connections,
                            results[cid],
                            buckets,
                            t_start,
                            schedules[cid],
                        )
                        for cid in client_ids
                    )
                )
                watchdog.cancel()
            else:
                import httpx

                limits = httpx.Limits(
                    max_connections=len(client_ids), max_keepalive_connections=len(client_ids)
                )
                async with httpx.AsyncClient(limits=limits) as client:
                    await asyncio.gather(
                        *(
                            _httpx_client(
                                client,
                                args["url"],
                                built[cid][0],
                                built[cid][2],
                                deadline,
                                args["timeout"],
                                results[cid],
                                buckets,
                                t_start,
                                schedules[cid],
                                args["token"],
                            )
                            for cid in client_ids
                        )
                    )

        try:  # the same loop as the server's: the generator's share of the two cores stays small
            import uvloop
        except ImportError:
            asyncio.run(run())
        else:
            uvloop.run(run())
        t_end = time.monotonic()
        ru1 = os.times()
        # Sum the totals of acknowledged requests here, so only small numbers cross the process boundary.
        acked_totals = [0.0] * len(FIELDS)
        indeterminate_totals = [0.0] * len(FIELDS)
        latencies = array.array("d")
        statuses: dict[str, int] = {}
        acked = measured = partial = reconnects = indeterminate = 0
        exhausted = False
        for cid, res in results.items():
            totals = built[cid][1]
            for i in res.acked:
                for k, v in enumerate(totals[i]):
                    acked_totals[k] += v
            for i in res.indeterminate:
                for k, v in enumerate(totals[i]):
                    indeterminate_totals[k] += v
            latencies.extend(res.latencies)
            for key, n in res.statuses.items():
                statuses[key] = statuses.get(key, 0) + n
            acked += len(res.acked)
            measured += res.measured
            indeterminate += len(res.indeterminate)
            partial += res.partial
            reconnects += res.reconnects
            exhausted |= res.exhausted
        out.put(
            {
                "proc": proc_index,
                "ok": True,
                "t_end": t_end,
                "acked": acked,
                "measured": measured,
                "acked_totals": acked_totals,
                "indeterminate": indeterminate,
                "indeterminate_totals": indeterminate_totals,
                "latencies": latencies.tobytes(),
                "statuses": statuses,
                "partial": partial,
                "reconnects": reconnects,
                "exhausted": exhausted,
                "buckets": list(buckets),
                "cpu_s": (ru1.user - ru0.user) + (ru1.system - ru0.system),
            }
        )
    except BaseException as exc:  # report, never hang the parent
        import traceback

        try:
            ready.put((proc_index, -1.0, 0))
        except Exception:
            pass
        out.put({"proc": proc_index, "ok": False, "error": f"{exc!r}\n{traceback.format_exc()}"})


# =====================================================================================================
# The server under test
# =====================================================================================================


def http_get_json(url: str, timeout: float, token: str | None = None) -> Any:
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # loopback only, checked in main()
        return json.loads(response.read())


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS in KiB from /proc/<pid>/status."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "Threads"):
                values[key] = int(rest.split()[0])
    except OSError:
        pass
    return values


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the server's writer process)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of every thread of ``pid`` and of its child processes:
    {tid: (comm, seconds)}."""
    tick = os.sysconf("SC_CLK_TCK")
    threads = {}
    tasks = [task for p in (pid, *child_pids(pid)) for task in Path(f"/proc/{p}/task").glob("*")]
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
            comm = (task / "comm").read_text().strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        threads[int(task.name)] = (comm, (int(fields[11]) + int(fields[12])) / tick)
    return threads


def cpu_busy_seconds() -> tuple[float, float]:
    """Busy CPU seconds of the whole machine (all cores) from /proc/stat, and of them the time stolen by the
    hypervisor for other guests: on a virtual machine, a box that is slow for no visible reason shows it."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, values[7] / tick


def db_size(data_dir: Path | None) -> tuple[int, dict[str, int]]:
    if data_dir is None:
        return 0, {}
    parts = {}
    for suffix in ("", "-wal", "-shm"):
        path = data_dir / f"ccmetrics.db{suffix}"
        if path.exists():
            parts[path.name] = path.stat().st_size
    return sum(parts.values()), parts


# =====================================================================================================
# The run
# =====================================================================================================


def summary_numbers(summary: dict) -> dict[str, float]:
    tokens = summary.get("tokens", {})
    return {
        "tok_input": tokens.get("input", 0),
        "tok_output": tokens.get("output", 0),
        "tok_cache_read": tokens.get("cache_read", 0),
        "tok_cache_creation": tokens.get("cache_creation", 0),
        "cost": summary.get("cost_usd", 0) or 0,
        "sessions": summary.get("sessions", 0),
        "loc_added": summary.get("lines_of_code", {}).get("added", 0),
        "loc_removed": summary.get("lines_of_code", {}).get("removed", 0),
        "dec_accept": summary.get("edit_decisions", {}).get("accept", 0),
        "dec_reject": summary.get("edit_decisions", {}).get("reject", 0),
        "active_user": summary.get("active_time_seconds", {}).get("user", 0),
        "active_cli": summary.get("active_time_seconds", {}).get("cli", 0),
        "user_prompt": summary.get("prompts", 0),
        "api_request": summary.get("api_requests", 0),
    }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(0, math.ceil(q / 100 * len(sorted_values)) - 1)  # nearest-rank
    return sorted_values[rank]


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        import ipaddress

        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _window_range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    low, high = int(lo), int(hi or lo)
    if not 1 <= low <= high:
        raise argparse.ArgumentTypeError("expected N or LO-HI with 1 <= LO <= HI")
    return low, high


def create_token(data_dir: Path, name: str = "bench", role: str = "ingest") -> str:
    """A token of the server about to start in ``data_dir``, made as an operator would."""
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccmetrics",
            "token",
            "create",
            name,
            "--role",
            role,
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # 24: the fewest exports in flight that keep the server busy on 2 cores. With 16, throughput is bound by
    # latency (about 10% lower); with 32, it is the same, and each export waits a third longer in line.
    p.add_argument(
        "--clients", type=int, default=24, help="concurrent clients, one request in flight each (24)"
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0,
        metavar="EXPORTS_PER_S",
        help="open loop: offer this many exports/s in all, spread evenly over the clients, whatever "
        "the answers (as many Claude Code CLIs do); latency counts from when each request was "
        "due. Default: closed loop, each client sending as soon as it is answered",
    )
    p.add_argument("--seconds", type=float, default=20, help="how long to measure, after the warm-up (20)")
    p.add_argument(
        "--warmup",
        type=float,
        default=3,
        help="seconds sent first and left out of the figures (3): every session is new to the server "
        "then, and the server's caches are cold; they still count in the zero-loss check",
    )
    p.add_argument(
        "--max-exports",
        type=int,
        default=80_000,
        help="requests pre-built in total (bounds the run and memory; 80000 = ~350 MiB)",
    )
    p.add_argument(
        "--procs", type=int, default=1, help="generator processes (1; clients are spread over them)"
    )
    p.add_argument(
        "--driver",
        choices=("raw", "httpx"),
        default="raw",
        help="raw: minimal asyncio HTTP/1.1 keep-alive client (cheap); httpx: httpx.AsyncClient",
    )
    p.add_argument("--log-every", type=int, default=4, help="every Nth export is a log export (4; 0 = none)")
    p.add_argument("--sessions-per-client", type=int, default=4, help="sessions each client interleaves (4)")
    p.add_argument(
        "--windows-per-session",
        type=_window_range,
        default=(10, 120),
        metavar="LO-HI",
        help="metric exports (60 s windows) per session before it ends and a new one starts, drawn "
        "at random per session (10-120: Claude Code's sessions of 10 to 120 minutes); "
        "1 = every export creates new series (worst case)",
    )
    p.add_argument("--timeout", type=float, default=30, help="per-request timeout in seconds (30)")
    p.add_argument(
        "--seed", type=int, default=None, help="random seed (default: random, so reruns never collide)"
    )
    p.add_argument(
        "--url", help="OTLP/HTTP base URL of a running server (loopback only), e.g. http://127.0.0.1:4318"
    )
    p.add_argument("--api-url", help="with --url: dashboard/API base URL for the zero-loss check")
    p.add_argument("--server-pid", type=int, help="with --url: server pid, for RSS and CPU figures")
    p.add_argument("--data-dir", type=Path, help="with --url: the server's data dir, for the DB size")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir of the started server")
    p.add_argument("--serve-arg", action="append", default=[], help="extra argument for `ccmetrics serve`")
    p.add_argument(
        "--token",
        help="send Authorization: Bearer TOKEN with every export (with --url: a token of that server)",
    )
    p.add_argument(
        "--read-token",
        help="with --url: a viewer (or admin) token of that server, for the zero-loss check's reads",
    )
    p.add_argument(
        "--create-token",
        action="store_true",
        help="create an ingest token in the server this starts and send it with every export: the cost of "
        "authentication, measured against a run without",
    )
    p.add_argument(
        "--py-spy",
        metavar="OUT",
        help="profile the server with `py-spy record` during the run; "
        "OUT ending .svg = flamegraph, .txt = collapsed stacks, .json = speedscope",
    )
    p.add_argument(
        "--py-spy-args",
        default="--rate 200 --threads",
        help="extra py-spy record arguments ('--rate 200 --threads'; add --native/--nonblocking)",
    )
    p.add_argument("--json", metavar="OUT", type=Path, help="also write the results as JSON here")
    p.add_argument("--strict", action="store_true", help="exit 3 when a throughput/latency target is missed")
    args = p.parse_args(argv)
    if args.clients < 1 or args.procs < 1 or args.seconds <= 0 or args.rate < 0:
        p.error("--clients, --procs and --seconds must be positive, --rate not negative")
    args.procs = min(args.procs, args.clients)
    if args.url and not _is_loopback(args.url):
        p.error("--url must point at a loopback address")
    if args.api_url and not _is_loopback(args.api_url):
        p.error("--api-url must point at a loopback address")
    if args.create_token and (args.url or args.token):
        p.error("--create-token makes the token of the server this starts: not with --url or --token")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    server: ServerProcess | None = None
    tmp: str | None = None
    data_dir: Path | None = args.data_dir
    pid = args.server_pid
    if args.url:
        url, api = args.url.rstrip("/"), (args.api_url.rstrip("/") if args.api_url else None)
    else:
        tmp = tempfile.mkdtemp(prefix="ccmetrics-bench-")
        data_dir = Path(tmp) / "data"
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.conftest import ServerProcess  # the same real-server harness the tests use

        if args.create_token:  # once a token exists, the zero-loss check reads with a viewer's
            args.token = create_token(data_dir)
            args.read_token = create_token(data_dir, "bench-reader", "viewer")
        server = ServerProcess(data_dir, list(args.serve_arg)).start(timeout=30)
        url, api, pid = server.otlp_http, server.url, server.process.pid

    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    shared = ctx.Array("d", [0.0, 0.0], lock=False)
    per_client = max(1, math.ceil(args.max_exports / args.clients))
    gen_args = {
        "url": url,
        "per_client": per_client,
        "log_every": args.log_every,
        "seed": seed,
        "sessions_per_client": args.sessions_per_client,
        "windows_per_session": args.windows_per_session,
        "seconds": args.seconds,
        "timeout": args.timeout,
        "driver": args.driver,
        "clients": args.clients,
        "rate": args.rate,
        "token": args.token,
    }
    procs = []
    profiler: subprocess.Popen | None = None
    code = 0
    try:
        for k in range(args.procs):
            client_ids = list(range(k, args.clients, args.procs))
            proc = ctx.Process(
                target=generator_main,
                args=(k, client_ids, gen_args, ready, go, shared, out),
                name=f"bench-gen-{k}",
                daemon=True,
            )
            proc.start()
            procs.append(proc)
        loop = (
            f"open loop at {args.rate:,.0f} exports/s offered"
            if args.rate
            else "closed loop, one request in flight each"
        )
        print(
            f"ccmetrics ingest benchmark: {args.clients} clients ({loop}) in {args.procs} generator "
            f"process(es), driver={args.driver}, {args.seconds:g}s, seed={seed}"
        )
        print(f"  target OTLP/HTTP {url}" + (f" (server pid {pid}, data {data_dir})" if pid else ""))
        print(f"  authentication: {'a bearer token on every export' if args.token else 'none sent'}")
        built_bytes = 0
        for _ in procs:
            proc_index, build_s, nbytes = ready.get(timeout=600)
            if build_s < 0:
                raise RuntimeError(out.get(timeout=10).get("error", "generator failed"))
            built_bytes += nbytes
        print(
            f"  pre-built {per_client * args.clients:,} requests ({_fmt_bytes(built_bytes)}), "
            f"1 in {args.log_every or 'none'} a log export; {args.sessions_per_client} sessions/client, "
            f"{args.windows_per_session[0]}-{args.windows_per_session[1]} windows/session, staggered"
        )

        before = http_get_json(f"{api}/api/summary", 30, args.read_token) if api else None
        if data_dir is not None and (data_dir / "ccmetrics.db").exists():
            with sqlite3.connect(f"file:{data_dir / 'ccmetrics.db'}?mode=ro", uri=True) as conn:
                rows_before = [
                    conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("points", "events")
                ]
        else:
            rows_before = None
        if args.py_spy and pid:
            exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            fmt = {".svg": "flamegraph", ".txt": "raw", ".json": "speedscope"}.get(
                Path(args.py_spy).suffix, "flamegraph"
            )
            profiler = subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(max(1, int(args.seconds))),
                    "--format",
                    fmt,
                    "-o",
                    args.py_spy,
                    *args.py_spy_args.split(),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(0.5)  # let it attach
        t_go = time.monotonic()
        t_start = t_go + args.warmup  # figures count what is sent from here on
        shared[0], shared[1] = t_start, t_start + args.seconds
        rss_samples = []
        go.set()
        time.sleep(max(0.0, t_start - time.monotonic()))  # the warm-up: new sessions' series, cold caches
        cpu_before = thread_cpu(pid) if pid else {}
        machine_before, steal_before = cpu_busy_seconds()
        results = []
        while len(results) < len(procs):
            try:
                results.append(out.get(timeout=0.5))
            except Exception:
                if pid:
                    rss_samples.append(proc_status(pid).get("VmRSS", 0))
                if time.monotonic() > t_start + args.seconds + args.timeout + 60:
                    raise RuntimeError("generators did not finish") from None
        cpu_after = thread_cpu(pid) if pid else {}
        machine_now, steal_now = cpu_busy_seconds()
        machine_busy, steal = machine_now - machine_before, steal_now - steal_before
        for r in results:
            if not r["ok"]:
                raise RuntimeError(f"generator {r['proc']} failed:\n{r['error']}")
        t_end = max(r["t_end"] for r in results)
        elapsed = t_end - t_start

        # --- figures ----------------------------------------------------------------------------------
        acked = sum(r["acked"] for r in results)  # all of them, warm-up included: for the zero-loss check
        measured = sum(r["measured"] for r in results)  # sent after the warm-up: for the figures
        totals = [sum(r["acked_totals"][k] for r in results) for k in range(len(FIELDS))]
        indeterminate = sum(r["indeterminate"] for r in results)
        ind_totals = [sum(r["indeterminate_totals"][k] for r in results) for k in range(len(FIELDS))]
        latencies = array.array("d")
        for r in results:
            latencies.frombytes(r["latencies"])
        lat = sorted(latencies)
        statuses: dict[str, int] = {}
        for r in results:
            for key, n in r["statuses"].items():
                statuses[key] = statuses.get(key, 0) + n
        buckets = [sum(col) for col in zip(*(r["buckets"] for r in results), strict=True)]
        full_seconds = buckets[: int(elapsed)] if elapsed >= 1 else []
        gen_cpu = sum(r["cpu_s"] for r in results)
        gen_cpu_measured = gen_cpu * measured / max(1, acked + indeterminate)
        exhausted = any(r["exhausted"] for r in results)
        points, events = totals[F["points"]], totals[F["events"]]
        exports_s = measured / elapsed if elapsed > 0 else 0.0
        share = measured / acked if acked else 0.0  # points and events of the measured exports, about
        p50, p95, p99, pmax = (percentile(lat, q) * 1000 for q in (50, 95, 99, 100))
        mean = (sum(lat) / len(lat) * 1000) if lat else float("nan")

        status = proc_status(pid) if pid else {}
        size, parts = db_size(data_dir)
        server_cpu = {}
        if cpu_after:
            for tid, (comm, seconds) in cpu_after.items():
                used = seconds - cpu_before.get(tid, (comm, 0.0))[1]
                label = "main (event loop)" if tid == pid else f"{comm}[{tid}]"
                server_cpu[label] = used

        def mark(ok: bool) -> str:
            return "ok  " if ok else "MISS"

        print()
        print(
            f"  measured               {elapsed:8.2f} s   after a {args.warmup:g} s warm-up"
            + ("   (stopped early: pre-built requests exhausted; raise --max-exports)" if exhausted else "")
        )
        print(
            f"  acknowledged exports   {acked:8,d}   ({measured:,d} measured; "
            f"all: metric points {int(points):,d}, log events {int(events):,d})"
        )
        print(
            f"  exports/s              {exports_s:8.1f}   target >= {TARGET_EXPORTS_PER_S:,.0f}   "
            f"{mark(exports_s >= TARGET_EXPORTS_PER_S)}"
        )
        if full_seconds:
            srt = sorted(full_seconds)
            print(
                f"    per second           min {srt[0]:,d} / median {srt[len(srt) // 2]:,d} "
                f"/ max {srt[-1]:,d}"
            )
        print(
            f"  points/s               {points * share / elapsed:8.1f}   "
            f"(+ {events * share / elapsed:,.1f} events/s)"
        )
        print(
            f"  ack latency ms         p50 {p50:.2f}  p95 {p95:.2f}  p99 {p99:.2f}  max {pmax:.2f}  "
            f"mean {mean:.2f}"
            f"   p99 target <= {TARGET_P99_MS:g}   {mark(p99 <= TARGET_P99_MS)}"
        )
        print(
            f"  responses by status    {json.dumps(dict(sorted(statuses.items())))}"
            + (
                f"   reconnects {sum(r['reconnects'] for r in results)}"
                if any(r["reconnects"] for r in results)
                else ""
            )
        )
        if status:
            print(
                f"  server RSS             peak (VmHWM) {_fmt_bytes(status.get('VmHWM', 0) * 1024)}, "
                f"now (VmRSS) {_fmt_bytes(status.get('VmRSS', 0) * 1024)}, threads {status.get('Threads')}"
            )
            for child in child_pids(pid):  # the writer, and multiprocessing's resource tracker
                child_status = proc_status(child)
                print(
                    f"    child process {child:<7d} "
                    f"peak (VmHWM) {_fmt_bytes(child_status.get('VmHWM', 0) * 1024)}, "
                    f"now (VmRSS) {_fmt_bytes(child_status.get('VmRSS', 0) * 1024)}"
                )
        if server_cpu:
            total_cpu = sum(server_cpu.values())
            top = sorted(server_cpu.items(), key=lambda kv: -kv[1])[:4]
            print(
                f"  server CPU             {total_cpu / elapsed * 100:5.1f}% of a core  ("
                + ", ".join(f"{k} {v / elapsed * 100:.1f}%" for k, v in top if v > 0)
                + ")"
            )
            if measured:
                main_cpu = server_cpu.get("main (event loop)", 0.0)
                print(
                    f"    per acked export     {total_cpu / measured * 1e3:.2f} ms server CPU (event loop "
                    f"{main_cpu / measured * 1e3:.2f} ms, other threads and the writer process "
                    f"{(total_cpu - main_cpu) / measured * 1e3:.2f} ms)"
                )
        print(
            f"  generator CPU          {gen_cpu_measured / elapsed * 100:5.1f}% of a core "
            f"({args.procs} process(es), "
            f"{gen_cpu / max(1, acked + indeterminate) * 1e6:.0f} us/request)"
        )
        other = machine_busy - gen_cpu_measured - sum(server_cpu.values())
        # A fifth of a core taken by something else costs this benchmark about a tenth of its throughput.
        busy_box = other / elapsed > 0.15
        print(
            f"  other load on the box  {other / elapsed * 100:5.1f}% of a core busy outside server + "
            f"generator ({os.cpu_count()} cores; {steal / elapsed * 100:.1f}% stolen by the hypervisor)"
            + ("   WARNING: not a quiet machine, figures are pessimistic" if busy_box else "")
        )
        if data_dir is not None:
            print(
                f"  DB on disk             {_fmt_bytes(size)}  "
                + ", ".join(f"{k} {_fmt_bytes(v)}" for k, v in parts.items())
            )

        # --- zero-loss check ---------------------------------------------------------------------------
        loss_ok: bool | None = None
        if api:
            after = http_get_json(f"{api}/api/summary", 60, args.read_token)
            got_after, got_before = summary_numbers(after), summary_numbers(before or {})
            mismatches = []
            for name, value in got_after.items():
                stored = value - got_before[name]
                sent = totals[F[name]]
                if name == "cost":
                    stored, sent = round(value, 9) - round(got_before[name], 9), round(sent, 9)
                    # With earlier data, both totals are rounded to 9 places: allow that rounding, no more.
                    ok = (
                        math.isclose(stored, sent, rel_tol=0, abs_tol=2.5e-9)
                        if got_before[name]
                        else round(value, 9) == round(totals[F[name]], 9)
                    )
                else:
                    # Exact: every value sent is a binary fraction. A store that held other data has totals
                    # that are not, and their sums carry rounding: allow that (far below one export's worth).
                    ok = (
                        stored == sent
                        or bool(got_before[name])
                        and math.isclose(stored, sent, rel_tol=0, abs_tol=abs(value) * 1e-12)
                    )
                if not ok and indeterminate:
                    # Requests whose answer never came back may or may not have been stored.
                    ok = sent <= stored <= sent + ind_totals[F[name]] + 1e-9
                if not ok:
                    mismatches.append(f"{name}: acknowledged {sent!r}, stored {stored!r}")
            if rows_before is not None:
                with sqlite3.connect(f"file:{data_dir / 'ccmetrics.db'}?mode=ro", uri=True) as conn:
                    rows_after = [
                        conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("points", "events")
                    ]
                for name, b, a, sent, ind in (
                    ("points rows", rows_before[0], rows_after[0], points, ind_totals[F["points"]]),
                    ("events rows", rows_before[1], rows_after[1], events, ind_totals[F["events"]]),
                ):
                    if not (sent <= a - b <= sent + ind):
                        mismatches.append(f"{name}: acknowledged {int(sent)}, stored {a - b}")
            loss_ok = not mismatches
            shown = {
                "tokens": int(
                    sum(
                        totals[F[k]]
                        for k in ("tok_input", "tok_output", "tok_cache_read", "tok_cache_creation")
                    )
                ),
                "cost_usd": round(totals[F["cost"]], 6),
                "sessions": int(totals[F["sessions"]]),
                "user_prompt": int(totals[F["user_prompt"]]),
                "api_request": int(totals[F["api_request"]]),
            }
            print(
                f"  zero-loss check        {'PASS' if loss_ok else 'FAIL'}  "
                "acknowledged == stored for tokens (4 types), "
                f"cost, sessions, lines, decisions, active time, prompts, api_requests"
                + (", point and event rows" if rows_before is not None else "")
            )
            print(
                f"                         acknowledged: {json.dumps(shown)}"
                + (f"; {indeterminate} requests with unknown outcome" if indeterminate else "")
            )
            for line in mismatches:
                print(f"                         MISMATCH {line}")
            if not loss_ok:
                code = 1
        else:
            print("  zero-loss check        skipped (give --api-url with --url)")
        targets_ok = exports_s >= TARGET_EXPORTS_PER_S and p99 <= TARGET_P99_MS
        print(
            f"  verdict                throughput {mark(exports_s >= TARGET_EXPORTS_PER_S).strip()}, "
            f"p99 {mark(p99 <= TARGET_P99_MS).strip()}, "
            f"loss {'PASS' if loss_ok else ('n/a' if loss_ok is None else 'FAIL')}"
        )
        if args.strict and not targets_ok and code == 0:
            code = 3
        if profiler is not None:
            try:
                _, err = profiler.communicate(timeout=60)
                print(
                    f"  py-spy profile         {args.py_spy}"
                    + (f"  ({err.decode().strip().splitlines()[-1]})" if profiler.returncode and err else "")
                )
            except subprocess.TimeoutExpired:
                profiler.kill()
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "clients": args.clients,
                        "procs": args.procs,
                        "driver": args.driver,
                        "seconds": elapsed,
                        "acked": acked,
                        "measured": measured,
                        "warmup_s": args.warmup,
                        "exports_per_s": exports_s,
                        "points_per_s": points * share / elapsed,
                        "events_per_s": events * share / elapsed,
                        "latency_ms": {"p50": p50, "p95": p95, "p99": p99, "max": pmax, "mean": mean},
                        "per_second": full_seconds,
                        "statuses": statuses,
                        "indeterminate": indeterminate,
                        "rss_kib": status,
                        "db_bytes": size,
                        "server_cpu_s": server_cpu,
                        "generator_cpu_s": gen_cpu,
                        "zero_loss": loss_ok,
                        "seed": seed,
                        "other_load_cores": other / elapsed,
                    },
                    indent=1,
                )
            )
        return code
    finally:
        go.set()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        if profiler is not None and profiler.poll() is None:
            profiler.terminate()
        if server is not None:
            rc = server.stop()
            if rc not in (0, None, -signal.SIGTERM):
                print(f"  (server exited with {rc}; log {server.log_path})")
        if tmp is not None:
            if args.keep:
                print(f"  data kept in {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
