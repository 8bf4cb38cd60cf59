"""``ccmetrics backup`` and ``restore`` against a real server: copies taken while exports keep arriving are
whole and hold everything acknowledged before them; a restore puts one back, tokens included, and refuses
over a running server's data unless told."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from ccmetrics.store import open_reader
from ccmetrics.store.filters import Filters
from ccmetrics.store.summary import summary

from .conftest import ServerProcess
from .otlp_builders import sum_request

COST = "claude_code.cost.usage"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def ccmetrics(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccmetrics", *args], capture_output=True, text=True, timeout=120, input=stdin
    )


def cost_export(user: str, n: int, value: float) -> bytes:
    now = time.time_ns()
    attrs = {"user.id": user, "session.id": f"{user}-session", "model": "m"}
    return sum_request(COST, [(now - 1_000_000 - n, now - n, value, attrs)], unit="USD").SerializeToString()


class Senders:
    """Threads exporting a cost of 0.25 each time, as fast as they are answered; ``acknowledged`` is the cost
    the server has acknowledged so far (quarters: exact in any order)."""

    def __init__(self, server: ServerProcess, count: int = 3, token: str | None = None) -> None:
        self._server, self._token = server, token
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.acknowledged = 0.0
        self._threads = [threading.Thread(target=self._send, args=(f"sender-{i}",)) for i in range(count)]
        for t in self._threads:
            t.start()

    def _send(self, user: str) -> None:
        headers = dict(PROTOBUF)
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        with httpx.Client(timeout=30) as client:
            n = 0
            while not self._stop.is_set():
                response = client.post(
                    self._server.otlp_http + "/v1/metrics",
                    content=cost_export(user, n, 0.25),
                    headers=headers,
                )
                assert response.status_code == 200, response.text
                with self._lock:
                    self.acknowledged += 0.25
                n += 1

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def cost_in(db: Path) -> float:
    conn = open_reader(db)
    try:
        return float(summary(conn, Filters())["cost_usd"])
    finally:
        conn.close()


def unpack(backup: Path, into: Path) -> dict[str, Path]:
    into.mkdir()
    with tarfile.open(backup) as tar:
        tar.extractall(into, filter="data")
        return {name: into / name for name in tar.getnames()}


def test_backups_taken_under_sustained_ingest_are_whole_and_hold_what_was_acknowledged(
    start_server: Any, tmp_path: Path
) -> None:
    server = start_server()
    made = ccmetrics("token", "create", "ci", "--role", "ingest", "--data-dir", str(server.data_dir))
    assert made.returncode == 0, made.stderr
    time.sleep(1.5)  # the server sees the new token within a second
    senders = Senders(server, token=made.stdout.strip())
    taken: list[tuple[Path, float]] = []
    try:
        time.sleep(0.5)
        for i in range(20):
            before = senders.acknowledged
            target = tmp_path / "backups" / f"backup-{i}.tar"
            done = ccmetrics("backup", str(target), "--data-dir", str(server.data_dir))
            assert done.returncode == 0, done.stderr
            assert "ccmetrics.db" in done.stdout and "access.db" in done.stdout
            taken.append((target, before))
    finally:
        senders.stop()
    assert senders.acknowledged > taken[-1][1] > taken[0][1]  # exports arrived during the backups

    for i, (backup, acknowledged) in enumerate(taken):
        assert backup.stat().st_mode & 0o077 == 0  # readable by its owner only
        files = unpack(backup, tmp_path / f"unpacked-{i}")
        assert set(files) == {"ccmetrics.db", "access.db"}
        for path in files.values():
            conn = sqlite3.connect(path)
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], (i, path.name)
            conn.close()
        assert cost_in(files["ccmetrics.db"]) >= acknowledged, i
    server.stop()
    assert cost_in(server.data_dir / "ccmetrics.db") == senders.acknowledged


def test_restore_puts_a_backup_back_and_refuses_over_a_running_server_unless_told(
    start_server: Any, tmp_path: Path
) -> None:
    server = start_server()
    data_dir = str(server.data_dir)
    viewer = ccmetrics("token", "create", "kept", "--role", "viewer", "--data-dir", data_dir).stdout.strip()
    time.sleep(1.5)
    token = ccmetrics("token", "create", "ci", "--role", "ingest", "--data-dir", data_dir).stdout.strip()
    time.sleep(1.5)
    headers = {**PROTOBUF, "Authorization": f"Bearer {token}"}
    post = httpx.post(server.otlp_http + "/v1/metrics", content=cost_export("a", 0, 1.5), headers=headers)
    assert post.status_code == 200
    backup = tmp_path / "backup.tar"
    assert ccmetrics("backup", str(backup), "--data-dir", data_dir).returncode == 0
    post = httpx.post(server.otlp_http + "/v1/metrics", content=cost_export("b", 0, 2.0), headers=headers)
    assert post.status_code == 200  # after the backup: a restore takes it away

    refused = ccmetrics("restore", str(backup), "--yes", "--data-dir", data_dir)
    assert refused.returncode == 1 and "stop it first" in refused.stderr and "--force" in refused.stderr
    server.stop()
    assert cost_in(server.data_dir / "ccmetrics.db") == 3.5

    declined = ccmetrics("restore", str(backup), "--data-dir", data_dir, stdin="n\n")
    assert declined.returncode == 1 and cost_in(server.data_dir / "ccmetrics.db") == 3.5
    done = ccmetrics("restore", str(backup), "--yes", "--data-dir", data_dir)
    assert done.returncode == 0, done.stderr
    assert not Path(f"{server.data_dir / 'ccmetrics.db'}-wal").exists()
    assert cost_in(server.data_dir / "ccmetrics.db") == 1.5
    listed = ccmetrics("token", "list", "--json", "--data-dir", data_dir)
    assert {"kept", "ci"} <= {t["name"] for t in json.loads(listed.stdout)}

    # Into a new directory, and over a running server when told; the server restarted has the backup's data.
    elsewhere = tmp_path / "elsewhere"
    server = start_server(elsewhere)
    forced = ccmetrics("restore", str(backup), "--yes", "--force", "--data-dir", str(elsewhere))
    assert forced.returncode == 0, forced.stderr
    assert "restart it" in forced.stderr
    server.stop()
    server = start_server(elsewhere)
    assert server.summary(bearer=viewer)["cost_usd"] == 1.5  # the backup's tokens came back too


def test_restore_refuses_what_is_not_a_whole_backup(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar file at all")
    refused = ccmetrics("restore", str(junk), "--yes", "--data-dir", str(data_dir))
    assert refused.returncode == 1 and "not a ccmetrics backup" in refused.stderr

    stray = tmp_path / "stray.tar"
    (tmp_path / "passwd").write_text("x")
    with tarfile.open(stray, "w") as tar:
        tar.add(tmp_path / "passwd", arcname="../passwd")
    refused = ccmetrics("restore", str(stray), "--yes", "--data-dir", str(data_dir))
    assert refused.returncode == 1 and "'../passwd'" in refused.stderr

    torn = tmp_path / "torn.tar"
    (tmp_path / "ccmetrics.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    with tarfile.open(torn, "w") as tar:
        tar.add(tmp_path / "ccmetrics.db", arcname="ccmetrics.db")
    refused = ccmetrics("restore", str(torn), "--yes", "--data-dir", str(data_dir))
    assert refused.returncode == 1 and "damaged" in refused.stderr
    assert not (data_dir / "ccmetrics.db").exists()
