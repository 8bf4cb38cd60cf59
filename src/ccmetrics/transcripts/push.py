"""``ccmetrics push``: this machine's transcript usage to a team server, over OTLP/HTTP with an ingest token.

Only numbers leave the machine: tokens, cost and a session count, with the session id, model, project,
working folder and branch. Never a prompt or a response: the import never reads them (see scan.py).

The transcripts are imported into the local store first (incremental, see importer.py); what is sent is,
for each of its transcript series and hour, the running total of that hour, as a cumulative sum whose stream
starts at the hour. The server turns a running total into the increment since the stream's last point, and
ignores a point it has already stored: so sending the same total twice changes nothing, and a larger one adds
only the difference. Each total is dated by the last point in its hour plus the number of points there, which
grows with every import that adds to the hour. A small file beside the database (push.db) remembers what each
server was sent, so a push sends only the totals that changed.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from .. import __version__
from ..store.schema import HOUR_NS
from ..store.sources import SOURCE, TRANSCRIPT
from .importer import ImportResult, import_transcripts

PER_REQUEST = 2000  # points in one export
_MARKED = f'%"{SOURCE}":"{TRANSCRIPT}"%'


@dataclass
class PushResult:
    imported: ImportResult
    sent: int = 0  # running totals sent
    requests: int = 0

    def to_json(self) -> dict[str, object]:
        return {"imported": self.imported.to_json(), "sent": self.sent, "requests": self.requests}


Total = tuple[str, str, str, dict[str, str], int, int, float]  # metric, unit, key, attrs, start, time, value


def totals(db_path: Path) -> list[Total]:
    """Every transcript series' running total per hour, dated as the module says."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        series = {
            sid: (metric, unit, attrs)
            for sid, metric, unit, attrs in conn.execute(
                "SELECT id, metric, unit, attrs FROM series WHERE attrs LIKE ?", (_MARKED,)
            )
        }
        hours: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0.0, 0, 0])
        for sid, time_ns, value in conn.execute("SELECT series_id, time_ns, value FROM points"):
            if sid in series:
                found = hours[(sid, time_ns - time_ns % HOUR_NS)]
                found[0] += value
                found[1] = max(found[1], time_ns)
                found[2] += 1
    finally:
        conn.close()
    out: list[Total] = []
    for (sid, hour), (value, last, count) in sorted(hours.items()):
        metric, unit, attrs = series[sid]
        out.append((metric, unit, f"{attrs}|{hour}", json.loads(attrs), hour, int(last + count), value))
    return out


def push(
    db_path: Path,
    server: str,
    token: str | None,
    paths: list[Path] | None = None,
    *,
    timeout: float = 30.0,
) -> PushResult:
    result = PushResult(import_transcripts(db_path, paths))
    if not db_path.exists():
        return result
    state_path = db_path.with_name("push.db")
    state = sqlite3.connect(state_path)
    try:
        state.execute(
            "CREATE TABLE IF NOT EXISTS sent "
            "(server TEXT, key TEXT, time_ns INTEGER, PRIMARY KEY (server, key))"
        )
        sent = {k: t for k, t in state.execute("SELECT key, time_ns FROM sent WHERE server = ?", (server,))}
        todo = [t for t in totals(db_path) if sent.get(t[2]) != t[5]]
        headers = {"Content-Type": "application/x-protobuf"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = server.rstrip("/") + "/v1/metrics"
        with httpx.Client(timeout=timeout) as client:
            for start in range(0, len(todo), PER_REQUEST):
                chunk = todo[start : start + PER_REQUEST]
                response = client.post(url, content=encode(chunk).SerializeToString(), headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
                state.executemany(
                    "INSERT OR REPLACE INTO sent (server, key, time_ns) VALUES (?, ?, ?)",
                    [(server, t[2], t[5]) for t in chunk],
                )
                state.commit()  # what the server has acknowledged is not sent again
                result.sent += len(chunk)
                result.requests += 1
    finally:
        state.close()
    return result


def user_id(home: Path | None = None) -> str:
    """The user.id Claude Code's telemetry carries for this HOME (``userID`` in ``~/.claude.json``), so the
    pushed usage is the same person's on the server; else a hash of the user, machine and HOME."""
    home = Path.home() if home is None else home
    for config in (home / ".claude.json", home / ".claude" / ".claude.json"):
        try:
            found = json.loads(config.read_text()).get("userID")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(found, str) and found:
            return found
    who = f"{getpass.getuser()}@{socket.gethostname()}:{home}"
    return hashlib.sha256(who.encode()).hexdigest()


def encode(chunk: list[Total], user: str | None = None) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.append(_attr("user.id", user or user_id()))
    resource.resource.attributes.append(_attr("service.name", "ccmetrics-push"))
    resource.resource.attributes.append(_attr("service.version", __version__))
    scope = resource.scope_metrics.add()
    scope.scope.name = "ccmetrics.transcripts"
    by_metric: dict[tuple[str, str], list[Total]] = defaultdict(list)
    for total in chunk:
        by_metric[(total[0], total[1])].append(total)
    for (name, unit), found in by_metric.items():
        metric = scope.metrics.add()
        metric.name = name
        metric.unit = unit
        metric.sum.is_monotonic = True
        metric.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        for _, _, _, attrs, start, time_ns, value in found:
            point = metric.sum.data_points.add()
            point.start_time_unix_nano = start
            point.time_unix_nano = time_ns
            point.as_double = value
            point.attributes.extend(_attr(k, v) for k, v in attrs.items())
    return request


def _attr(key: str, value: object) -> common_pb2.KeyValue:
    kv = common_pb2.KeyValue(key=key)
    kv.value.string_value = str(value)
    return kv
