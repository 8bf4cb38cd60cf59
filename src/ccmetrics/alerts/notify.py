"""Delivery of queued notifications through Apprise, one thread per target.

Each target's notifications go out in the order they were queued. A failed delivery is tried again after
``backoff``, then twice as long each time, up to ``attempts`` tries; its error is kept for the alerts page.
A target that hangs holds up only its own thread: never ingest, the dashboard or the other targets.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .state import connect

log = logging.getLogger("ccmetrics")
MAX_BACKOFF_S = 3600.0
# Apprise keeps nothing on disk (its persistent store); a dict, as not every release types the keyword
IN_MEMORY: dict[str, Any] = {"storage_mode": "memory"}
IDLE_WAIT_S = 60.0


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None


class _Errors(logging.Handler):
    """Apprise logs why a delivery failed; this keeps the last warning of each thread."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: dict[int, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread is not None:
            self.last[record.thread] = record.getMessage()


_errors = _Errors()
_errors_lock = threading.Lock()
_installed = False


def _install() -> None:
    global _installed
    with _errors_lock:
        if not _installed:
            logging.getLogger("apprise").addHandler(_errors)
            _installed = True


def check_url(url: str) -> str | None:
    """Why Apprise cannot use ``url``, or None when it can."""
    import apprise

    sender = apprise.Apprise(asset=apprise.AppriseAsset(**IN_MEMORY))
    if not sender.add(url):
        return "Apprise does not know this URL (see its list of supported services)"
    return None


class Sender:
    """One target's Apprise client, made once: Apprise loads its plugins the first time, which takes a
    moment better spent before the first alert than after it."""

    def __init__(self, url: str) -> None:
        import apprise

        _install()
        self._apprise = apprise
        self._sender = apprise.Apprise(asset=apprise.AppriseAsset(**IN_MEMORY))
        self.known = bool(self._sender.add(url))

    def send(self, title: str, body: str, status: str) -> Outcome:
        """One delivery, in the calling thread."""
        if not self.known:
            return Outcome(False, "Apprise does not know this URL")
        kinds = self._apprise.NotifyType
        kind = {"firing": kinds.FAILURE, "resolved": kinds.SUCCESS}.get(status, kinds.INFO)
        me = threading.get_ident()
        _errors.last.pop(me, None)
        try:
            ok = bool(self._sender.notify(body=body, title=title, notify_type=kind))
        except Exception as exc:  # a plugin's own failure is one more failed delivery
            return Outcome(False, f"{type(exc).__name__}: {exc}")
        return Outcome(True) if ok else Outcome(False, _errors.last.pop(me, "the target refused it"))


def send(url: str, title: str, body: str, status: str) -> Outcome:
    return Sender(url).send(title, body, status)


class Deliverer:
    """Sends what ``alerts.db`` has queued, one thread per target of ``targets`` (name -> Apprise URL)."""

    def __init__(self, path: Path, targets: Mapping[str, str], backoff_s: float, attempts: int) -> None:
        self.path = path
        self.targets = dict(targets)
        self.backoff_s = backoff_s
        self.attempts = attempts
        self._wake = {name: threading.Event() for name in self.targets}
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(name,), name=f"ccmetrics-notify-{name}", daemon=True)
            for name in self.targets
        ]

    def start(self) -> None:
        conn = connect(self.path)
        try:  # what was queued for a target no longer in the file can never go
            conn.execute(
                "UPDATE notifications SET state = 'failed', error = 'no such target in the rules file', "
                f"done_ns = ? WHERE state = 'queued' AND target NOT IN ({','.join('?' * len(self.targets))})",
                (time.time_ns(), *self.targets),
            )
        finally:
            conn.close()
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    def stop(self) -> None:
        self._stopping.set()
        self.wake()
        for thread in self._threads:
            if thread.ident is not None:  # started
                thread.join(timeout=5)  # a delivery in flight may take its timeout; the thread is a daemon

    def _run(self, target: str) -> None:
        conn = connect(self.path)
        sender = Sender(self.targets[target])
        try:
            while not self._stopping.is_set():
                wait = self._deliver_next(conn, target, sender)
                if wait:
                    self._wake[target].wait(wait)
                    self._wake[target].clear()
        finally:
            conn.close()

    def _deliver_next(self, conn: sqlite3.Connection, target: str, sender: Sender) -> float:
        """Deliver this target's first queued notification if it is due; how long to wait otherwise."""
        row: Any = conn.execute(
            "SELECT id, status, title, body, attempts, next_ns FROM notifications "
            "WHERE state = 'queued' AND target = ? ORDER BY id LIMIT 1",
            (target,),
        ).fetchone()
        if row is None:
            return IDLE_WAIT_S
        notification_id, status, title, body, attempts, next_ns = row
        now = time.time_ns()
        if next_ns > now:
            return (next_ns - now) / 1e9
        outcome = sender.send(title, body, status)
        attempts += 1
        now = time.time_ns()
        if outcome.ok:
            conn.execute(
                "UPDATE notifications SET state = 'sent', attempts = ?, done_ns = ? WHERE id = ?",
                (attempts, now, notification_id),
            )
        elif attempts >= self.attempts:
            log.warning("giving up notifying %s of %r: %s", target, title, outcome.error)
            conn.execute(
                "UPDATE notifications SET state = 'failed', attempts = ?, error = ?, done_ns = ? "
                "WHERE id = ?",
                (attempts, outcome.error, now, notification_id),
            )
        else:
            delay = min(self.backoff_s * 2 ** (attempts - 1), MAX_BACKOFF_S)
            log.warning("could not notify %s of %r (try %d): %s", target, title, attempts, outcome.error)
            conn.execute(
                "UPDATE notifications SET attempts = ?, error = ?, next_ns = ? WHERE id = ?",
                (attempts, outcome.error, now + int(delay * 1e9), notification_id),
            )
        return 0.0
