"""A local HTTP receiver of notifications: the target of an Apprise ``json://`` URL in the alert tests."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    at: float  # time.time() when it arrived
    body: dict[str, Any]

    @property
    def title(self) -> str:
        return str(self.body.get("title", ""))

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


@dataclass
class Webhook:
    """Records every POST; answers the first ``fail_first`` with 500; holds each answer ``delay`` seconds."""

    fail_first: int = 0
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    refused: int = 0

    def __post_init__(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if hook.delay:
                    time.sleep(hook.delay)
                with hook._lock:
                    refuse = hook.refused < hook.fail_first
                    if refuse:
                        hook.refused += 1
                    else:
                        hook.received.append(Received(time.time(), json.loads(raw or b"{}")))
                self.send_response(500 if refuse else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The Apprise URL that posts here."""
        return f"json://127.0.0.1:{self.port}/hook"

    def titles(self) -> list[str]:
        with self._lock:
            return [r.title for r in self.received]

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.received)} notifications arrived, not {count}: {self.titles()}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
