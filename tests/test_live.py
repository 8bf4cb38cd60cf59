"""Live updates: a commit that stores something wakes every waiter at once; nothing else does.

``Store.changed`` in-process on a real SQLite file, then ``GET /api/live`` of a real ``ccmetrics serve``: a
``data`` event within a second of a commit on every open stream, none without one, at most one per quarter
second under a stream of commits, and no stream that costs the server anything while nothing happens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from ccmetrics.store import Store

from .otlp_builders import SECOND, T0, sum_request
from .test_browser import post
from .test_store import COST, USER, batch_of


def cost_request(minute: int, user: dict[str, str] = USER):
    start = T0 + minute * 60 * SECOND
    return sum_request(COST, [(start, start + 60 * SECOND, 0.25, user)], unit="USD")


# --- Store.version and Store.changed ---------------------------------------------------------------------


def test_a_commit_wakes_every_waiter_and_a_retry_wakes_none(tmp_path: Path) -> None:
    store = Store(tmp_path / "ccmetrics.db")

    async def scenario() -> None:
        assert store.version == 0
        # Nothing committed: changed() gives back what was seen once the timeout is up.
        started = time.monotonic()
        assert await store.changed(0, 0.2) == 0
        assert 0.15 <= time.monotonic() - started < 1

        waiters = [asyncio.ensure_future(store.changed(0, 10)) for _ in range(50)]
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in waiters)
        started = time.monotonic()
        assert (await store.write(batch_of(cost_request(0)))).stored_anything
        assert await asyncio.wait_for(asyncio.gather(*waiters), 2) == [1] * 50
        assert time.monotonic() - started < 1

        # A version already past what the caller saw is answered at once.
        assert await asyncio.wait_for(store.changed(0, 10), 0.1) == 1

        # The same export again stores nothing: no new version, nobody woken.
        waiter = asyncio.ensure_future(store.changed(1, 10))
        assert not (await store.write(batch_of(cost_request(0)))).stored_anything
        await asyncio.sleep(0.2)
        assert not waiter.done() and store.version == 1
        await store.write(batch_of(cost_request(1)))
        assert await asyncio.wait_for(waiter, 2) == 2

    try:
        asyncio.run(scenario())
    finally:
        store.close()


# --- GET /api/live on a real server ----------------------------------------------------------------------


class Stream:
    """One ``GET /api/live`` on its own socket, read on a thread: every event, with when it arrived."""

    def __init__(self, server) -> None:
        self.events: list[tuple[float, str, int]] = []  # (time.monotonic(), event, version)
        self._sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self._sock.sendall(f"GET /api/live HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self.wait_for(lambda: self.names() == ["hello"])

    def _read(self) -> None:
        text = ""
        while True:
            try:
                chunk = self._sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            text += chunk.decode()
            # Each event is one chunk of the chunked body: "event: NAME\ndata: JSON\n\n".
            while (match := EVENT.search(text)) is not None:
                self.events.append((time.monotonic(), match["name"], json.loads(match["data"])["version"]))
                text = text[match.end() :]

    def names(self) -> list[str]:
        return [name for _, name, _ in self.events]

    def data(self) -> list[tuple[float, str, int]]:
        return [e for e in self.events if e[1] == "data"]

    def wait_for(self, condition, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"the stream did not get there: {self.events}"
            time.sleep(0.01)

    def ended(self, timeout: float = 5) -> bool:
        """Whether the server ended the stream (within ``timeout``)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # already closed by the server
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(5)


EVENT = re.compile(r"event: (?P<name>\w+)\ndata: (?P<data>\{[^\n]*\})\n\n")


def commit(server, user: str = "live") -> None:
    """An export of one new point, answered once it is committed."""
    now = time.time_ns()
    post(server, sum_request(COST, [(now - SECOND, now, 0.5, {**USER, "user.id": user})], unit="USD"))


def version(server) -> int:
    return httpx.get(f"{server.url}/api/dashboard", timeout=30).json()["version"]


def test_a_commit_reaches_every_open_stream_within_a_second_and_nothing_else_does(server) -> None:
    streams = [Stream(server), Stream(server)]
    try:
        time.sleep(1.5)
        assert [s.names() for s in streams] == [["hello"], ["hello"]], "no commit, no event"

        now = time.time_ns()
        export = sum_request(COST, [(now - SECOND, now, 0.5, USER)], unit="USD")
        post(server, export)
        committed = time.monotonic()
        for s in streams:
            s.wait_for(lambda s=s: len(s.data()) == 1, timeout=2)
            assert s.data()[0][0] - committed < 1.0
            assert s.data()[0][2] == version(server)

        # The same export again stores nothing, and nobody hears of it.
        post(server, export)
        time.sleep(1.5)
        assert [len(s.data()) for s in streams] == [1, 1]
        assert [s.names() for s in streams] == [["hello", "data"], ["hello", "data"]]
    finally:
        for s in streams:
            s.close()


def test_a_stream_of_commits_is_announced_at_most_every_quarter_second(server) -> None:
    stream = Stream(server)
    try:
        started = time.monotonic()
        for i in range(20):
            commit(server, f"burst-{i}")
        took = time.monotonic() - started
        final = version(server)
        stream.wait_for(lambda: stream.data() and stream.data()[-1][2] == final, timeout=2)
        time.sleep(0.5)
        data = stream.data()
        assert data[-1][2] == final, "the last event names the last version"
        assert 1 < len(data) <= took / 0.25 + 2, (len(data), took)
        gaps = [b[0] - a[0] for a, b in zip(data, data[1:], strict=False)]
        assert min(gaps) >= 0.18, gaps  # sent 0.25 s apart; reading them here adds jitter
    finally:
        stream.close()


def cpu_seconds(pid: int) -> float:
    """The time the process's threads have run, to the nanosecond (schedstat), not sampled at clock ticks: a
    tick charges a thread that ran for a moment with 10 ms."""
    return (
        sum(int((task / "schedstat").read_text().split()[0]) for task in Path(f"/proc/{pid}/task").iterdir())
        / 1e9
    )


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc/<pid>/stat")
def test_open_streams_cost_nothing_while_nothing_is_committed(server) -> None:
    assert server.process is not None
    streams = [Stream(server) for _ in range(20)]
    try:
        time.sleep(0.5)
        before = cpu_seconds(server.process.pid)
        time.sleep(5)
        used = cpu_seconds(server.process.pid) - before
        # Polling every 250 ms in each stream cost 0.06 to 0.12 s here; the server with its streams, idle,
        # about 0.015 s.
        assert used <= 0.04, f"{used:.2f} s of CPU in 5 s with 20 open streams and no commit"
        assert all(s.names() == ["hello"] for s in streams)
    finally:
        for s in streams:
            s.close()


def test_open_streams_end_when_the_server_stops_and_do_not_hold_it_up(server) -> None:
    streams = [Stream(server) for _ in range(3)]
    try:
        started = time.monotonic()
        assert server.stop(timeout=10) == 0
        assert time.monotonic() - started < 5
        assert all(s.ended() for s in streams)
    finally:
        for s in streams:
            s.close()
