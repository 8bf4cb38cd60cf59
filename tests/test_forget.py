"""``ccmetrics forget`` against a real server taking exports from others: the person goes from every table,
every sum, every answer and every byte of the file; everyone else's totals stay exact; a server killed
with SIGKILL while it forgets loses nothing and finishes the job at its next start."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ccmetrics.records import Batch, Point
from ccmetrics.store import Store, connect, open_reader
from ccmetrics.store.filters import Filters
from ccmetrics.store.forgetting import Forgetting, file_request
from ccmetrics.store.schema import DAY_NS, HOUR_NS
from ccmetrics.store.summary import summary

from .alert_traffic import cost_body
from .conftest import ServerProcess
from .otlp_builders import attrs, log_request, sum_request
from .team_month import generate
from .test_alerts_serve import INTERVAL, alerts, rules_file, wait_until
from .test_backup import Senders
from .webhook import Webhook

SECOND = 1_000_000_000
USER_ID = "uid-forget-8c1f0e"
EMAIL = "forget.me.zyx@example.com"
NAME = "Forget Me Zyx"
SECRETS = (USER_ID, EMAIL, NAME)
BY_EMAIL = "by.stander@example.com"
BYSTANDER = {"user.id": "uid-bystander", "user.email": BY_EMAIL}
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def ccmetrics(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccmetrics", *args], capture_output=True, text=True, timeout=300, input=stdin
    )


def post(server: ServerProcess, path: str, message: Any) -> None:
    response = httpx.post(
        server.otlp_http + path, content=message.SerializeToString(), headers=PROTOBUF, timeout=30
    )
    assert response.status_code == 200, response.text


def send_person(server: ServerProcess, who: dict[str, str], resource: dict[str, str], now: int) -> None:
    """Two sessions of cost, tokens and events, points of one more that name only the user id, a span, and
    a point in the first session that names no one."""
    tag = "t" if who["user.id"] == USER_ID else "b"  # session ids that do not name the person
    for i, session in enumerate(("sess-a", "sess-b")):
        sid = f"{tag}-{session}"
        t = now - (i + 2) * 3600 * SECOND
        point = {**who, "session.id": sid, "model": "m1"}
        post(
            server,
            "/v1/metrics",
            sum_request(
                "claude_code.cost.usage", [(t - SECOND, t, 1.25, point)], unit="USD", resource=resource
            ),
        )
        tokens = [(t - SECOND, t, 100, {**point, "type": kind}) for kind in ("input", "output")]
        post(
            server,
            "/v1/metrics",
            sum_request("claude_code.token.usage", tokens, unit="tokens", resource=resource),
        )
        records = [
            (t, "user_prompt", {**who, "session.id": sid, "prompt.id": f"{sid}-p1", "prompt_length": 12}),
            (
                t + 1,
                "api_request",
                {
                    **who,
                    "session.id": sid,
                    "prompt.id": f"{sid}-p1",
                    "model": "m1",
                    "cost_usd": 1.25,
                    "duration_ms": 500,
                },
            ),
        ]
        post(server, "/v1/logs", log_request(records, resource=resource))
    only_id = {"user.id": who["user.id"], "session.id": f"{tag}-sess-c"}
    post(
        server,
        "/v1/metrics",
        sum_request(
            "claude_code.cost.usage", [(now - 10 * SECOND, now - 5 * SECOND, 0.5, only_id)], unit="USD"
        ),
    )
    anonymous = {"session.id": f"{tag}-sess-a"}
    post(
        server,
        "/v1/metrics",
        sum_request(
            "claude_code.session.count",
            [(now - 4 * 3600 * SECOND, now - 4 * 3600 * SECOND + 1, 1, anonymous)],
        ),
    )
    traces = ExportTraceServiceRequest()
    spans = traces.resource_spans.add()
    spans.resource.attributes.extend(attrs({**resource, **who}))
    span = spans.scope_spans.add().spans.add(
        trace_id=bytes(range(16)) if who["user.id"] == USER_ID else bytes(range(1, 17)),
        span_id=b"\x01" * 8,
        name="claude_code.interaction",
        start_time_unix_nano=now - 3600 * SECOND,
        end_time_unix_nano=now - 3600 * SECOND + SECOND,
    )
    span.attributes.extend(attrs({"session.id": f"{tag}-sess-a", **who}))
    post(server, "/v1/traces", traces)


def user_summary(server: ServerProcess, user_id: str) -> dict[str, Any]:
    return server.summary(filter=f"user.id={user_id}")


def answers(server: ServerProcess) -> str:
    """Everything the server shows: dashboard, filters, panels as CSV, /metrics, sessions, summary."""
    texts = [
        server.get("/api/dashboard", params={"since": "30d"}).text,
        server.get("/api/filters").text,
        server.get("/api/filters", params={"key": "user.email"}).text,
        server.get("/metrics").text,
        server.get("/api/summary").text,
        server.get("/api/events", params={"since": "30d"}).text,
    ]
    for panel in server.get("/api/panels").json()["panels"]:
        texts.append(server.get(f"/api/panels/{panel['id']}", params={"format": "csv", "since": "30d"}).text)
    for sid in ("sess-a", "sess-b"):
        texts.append(server.get(f"/api/sessions/t-{sid}").text)
    return "\n".join(texts)


def file_bytes(db: Path) -> bytes:
    """The database file and its write-ahead log, once checkpointed."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    wal = Path(f"{db}-wal")
    return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_forgetting_a_person_under_sustained_ingest(start_server: Any) -> None:
    server = start_server()
    now = time.time_ns()
    resource = {"service.name": "claude-code", "team.id": "platform", "user.name": NAME}
    send_person(server, {"user.id": USER_ID, "user.email": EMAIL}, resource, now)
    send_person(server, BYSTANDER, {"service.name": "claude-code", "team.id": "platform"}, now)
    bystander = user_summary(server, BYSTANDER["user.id"])
    assert bystander["cost_usd"] == 3.0
    assert user_summary(server, USER_ID)["cost_usd"] == 3.0
    assert all(secret in answers(server) for secret in SECRETS)

    senders = Senders(server)
    try:
        time.sleep(0.5)
        done = ccmetrics("forget", "--user", EMAIL, "--yes", "--data-dir", str(server.data_dir))
        assert done.returncode == 0, done.stderr
        time.sleep(0.5)
    finally:
        senders.stop()
    assert "removed" in done.stdout and "points" in done.stdout and "events" in done.stdout
    assert "3 sessions" in done.stdout  # two with their email, one with their id alone

    assert user_summary(server, BYSTANDER["user.id"]) == bystander
    assert user_summary(server, USER_ID)["cost_usd"] == 0
    # Every sum: the bystander's, the senders' acknowledged exports, nothing of the forgotten person.
    assert server.summary()["cost_usd"] == 3.0 + senders.acknowledged
    shown = answers(server)
    for secret in SECRETS:
        assert secret not in shown, secret
    report = server.report_json()
    exported = ccmetrics("export", "--data-dir", str(server.data_dir)).stdout
    assert exported and not any(secret in report + exported for secret in SECRETS)

    audit = (server.data_dir / "audit.log").read_text()
    line = json.loads(audit)
    assert line["command"] == "forget" and line["what"] == "user" and line["removed"]["points"] >= 6
    assert not any(secret in audit for secret in SECRETS)

    server.stop()
    stored = file_bytes(server.data_dir / "ccmetrics.db")
    for secret in SECRETS:
        assert secret.encode() not in stored, secret
    assert BYSTANDER["user.email"].encode() in stored


def test_forgetting_a_session_takes_exactly_it_out_of_the_sums(start_server: Any) -> None:
    server = start_server()
    now = time.time_ns()
    send_person(server, BYSTANDER, {"service.name": "claude-code"}, now)
    before = server.summary()
    session = "b-sess-a"
    declined = ccmetrics("forget", "--session", session, "--data-dir", str(server.data_dir), stdin="n\n")
    assert declined.returncode == 1 and server.summary() == before
    done = ccmetrics("forget", "--session", session, "--yes", "--data-dir", str(server.data_dir))
    assert done.returncode == 0, done.stderr
    after = server.summary()
    assert after["cost_usd"] == before["cost_usd"] - 1.25
    assert server.get(f"/api/sessions/{session}").json()["timeline"] == []
    other = server.get("/api/sessions/b-sess-b").json()
    assert other["summary"]["cost_usd"] == 1.25 and len(other["timeline"]) == 2
    nothing = ccmetrics("forget", "--session", session, "--yes", "--data-dir", str(server.data_dir))
    assert nothing.returncode == 0 and "nothing is stored" in nothing.stdout


def per_user(db: Path, emails: list[str]) -> dict[str, dict[str, Any]]:
    conn = open_reader(db)
    try:
        return {e: summary(conn, Filters(attrs=(("user.email", e),))) for e in emails}
    finally:
        conn.close()


def test_sigkill_while_forgetting_loses_nothing_and_leaves_the_sums_exact(
    tmp_path: Path, start_server: Any
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db = data_dir / "ccmetrics.db"
    asyncio.run(generate(db, developers=3, days=20, seed=11, quiet=True))
    emails = [f"dev{i:03d}@example.com" for i in range(3)]
    before = per_user(db, emails)
    assert before[emails[1]]["cost_usd"] > 0
    shutil.copy(db, tmp_path / "before.db")

    server = start_server(data_dir)
    filed = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ccmetrics",
            "forget",
            "--user",
            emails[1],
            "--yes",
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        row = conn.execute("SELECT removed, done_ns FROM forget_requests").fetchone()
        conn.close()
        if row and row[1] is None and json.loads(row[0]).get("points"):
            break
        time.sleep(0.005)
    assert row is not None and row[1] is None, "the request was carried out before the kill"
    request = sum_request(
        "claude_code.cost.usage",
        [(time.time_ns() - SECOND, time.time_ns(), 0.75, {"user.id": "late"})],
        unit="USD",
    )
    post(server, "/v1/metrics", request)  # acknowledged while it forgets: on disk whatever happens
    server.stop(signal.SIGKILL)

    server = start_server(data_dir)  # carries the request on; the command waiting sees it done
    out, err = filed.communicate(timeout=120)
    assert filed.returncode == 0, err
    assert "removed" in out
    after = per_user(db, emails)
    assert after[emails[0]] == before[emails[0]] and after[emails[2]] == before[emails[2]]
    assert after[emails[1]]["cost_usd"] == 0
    conn = open_reader(db)
    late = summary(conn, Filters(attrs=(("user.id", "late"),)))["cost_usd"]
    everyone = summary(conn, Filters())["cost_usd"]
    conn.close()
    assert late == 0.75
    # Exact to the nanodollar the summary rounds to: the generated costs, added up here in another order than
    # the store's, can differ from its sum in the last bit.
    expected = before[emails[0]]["cost_usd"] + before[emails[2]]["cost_usd"] + 0.75
    assert everyone == pytest.approx(expected, rel=0, abs=1e-9)
    server.stop()
    assert emails[1].encode() not in file_bytes(db)


def test_with_no_server_running_the_command_forgets_by_itself(start_server: Any) -> None:
    server = start_server()
    now = time.time_ns()
    send_person(server, {"user.id": USER_ID, "user.email": EMAIL}, {"service.name": "claude-code"}, now)
    send_person(server, BYSTANDER, {"service.name": "claude-code"}, now)
    bystander = user_summary(server, BYSTANDER["user.id"])
    server.stop()
    data_dir = str(server.data_dir)
    assert ccmetrics("user", "alias", USER_ID, "Nickname of theirs", "--data-dir", data_dir).returncode == 0
    assert (
        ccmetrics("user", "alias", BYSTANDER["user.id"], "Bystander", "--data-dir", data_dir).returncode == 0
    )
    done = ccmetrics("forget", "--user", USER_ID, "--yes", "--data-dir", data_dir)
    assert done.returncode == 0, done.stderr
    assert "carrying it out" not in done.stderr and "removed" in done.stdout and "1 aliases" in done.stdout
    aliases = json.loads(ccmetrics("user", "aliases", "--json", "--data-dir", data_dir).stdout)
    assert aliases == [{"user_id": BYSTANDER["user.id"], "name": "Bystander"}]  # theirs gone, no one else's
    assert b"Nickname of theirs" not in file_bytes(server.data_dir / "access.db")
    server = start_server(server.data_dir)
    assert user_summary(server, BYSTANDER["user.id"]) == bystander
    assert server.summary()["cost_usd"] == bystander["cost_usd"]
    server.stop()
    assert EMAIL.encode() not in file_bytes(server.data_dir / "ccmetrics.db")


def test_a_session_of_days_and_weeks_that_have_ended_leaves_their_sums_as_if_never_sent(
    tmp_path: Path,
) -> None:
    """Taken out of the hourly, daily and weekly sums alike: every range reads what a store that never
    had the session reads."""
    now = time.time_ns() // HOUR_NS * HOUR_NS

    def points(session: str, user: str, days_ago: int, value: float) -> list[Point]:
        t = now - days_ago * DAY_NS
        attrs = {"user.id": user, "session.id": session, "model": "m"}
        cost = Point("claude_code.cost.usage", "USD", "sum", "delta", True, "s", attrs, t - SECOND, t, value)
        anonymous = {"session.id": session}  # a family of no one: shared, so taken away from
        count = Point("claude_code.session.count", "", "sum", "delta", True, "s", anonymous, t - 1, t, 1.0)
        return [cost, count]

    def store(path: Path, *sessions: list[Point]) -> None:
        async def run() -> None:
            s = Store(path)
            try:
                for batch in sessions:
                    await s.write(Batch(points=batch))
            finally:
                s.close()

        asyncio.run(run())

    kept = [points("s2", "u1", 3, 0.5), points("s3", "u2", 3, 0.25), points("s4", "u1", 10, 2.0)]
    gone = [points("s1", "u1", 3, 1.5), points("s1", "u1", 10, 0.75), points("s1", "u1", 0, 4.0)]
    forgetting, never = tmp_path / "forgetting.db", tmp_path / "never.db"
    store(forgetting, *kept, *gone)
    store(never, *kept)
    conn = connect(forgetting)
    file_request(conn, "session", "s1")
    Forgetting(conn).run_all()
    conn.close()

    ranges = [
        Filters(),
        Filters(now - 14 * DAY_NS, now),
        Filters(now - 3 * DAY_NS - DAY_NS // 2, now - 2 * DAY_NS),
        Filters(now - 30 * DAY_NS, now, (("user.id", "u1"),)),
    ]
    for db in (forgetting, never):
        reader = open_reader(db)
        try:
            got = [summary(reader, f) for f in ranges]
        finally:
            reader.close()
        if db == forgetting:
            after = got
    assert after == got
    assert after[0]["cost_usd"] == 2.75


def test_forgetting_a_person_takes_their_alerts_with_them(start_server: Any, tmp_path: Path) -> None:
    """Their firing alert, its history and the notifications that named them go from the page's API and
    from every byte of alerts.db, while the server runs and evaluates; another person's alert stays."""
    hook = Webhook()
    try:
        server = start_server(None, "--alerts", str(rules_file(tmp_path, hook.url, window=600)))
        post(
            server,
            "/v1/metrics",
            ExportMetricsServiceRequest.FromString(cost_body(2.0, session="s-theirs", user=EMAIL)),
        )
        post(
            server,
            "/v1/metrics",
            ExportMetricsServiceRequest.FromString(cost_body(3.0, session="s-by", user=BY_EMAIL)),
        )
        hook.wait_for(1, timeout=10)
        firing = wait_until(lambda: len(alerts(server)["firing"]) == 2, 10, "both alerts firing")
        assert firing and EMAIL in server.get("/api/alerts").text
        done = ccmetrics("forget", "--user", EMAIL, "--yes", "--data-dir", str(server.data_dir))
        assert done.returncode == 0, done.stderr
        assert "alerts" in done.stdout
        time.sleep(4 * INTERVAL)  # evaluations after it: nothing of theirs comes back
        state = alerts(server)
        assert [a["labels"]["user.email"] for a in state["firing"]] == [BY_EMAIL]
        assert [h["labels"]["user.email"] for h in state["history"]] == [BY_EMAIL]
        assert EMAIL not in server.get("/api/alerts").text
        assert server.stop() == 0
        assert EMAIL.encode() not in file_bytes(server.data_dir / "alerts.db")
        assert BY_EMAIL.encode() in file_bytes(server.data_dir / "alerts.db")
    finally:
        hook.close()
