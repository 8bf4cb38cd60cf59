"""``ccmetrics serve``'s two HTTP apps in the test's own process, on a real store: the dashboard and API app,
and the OTLP/HTTP app with the receiver in front of the store's writer, each through httpx's ASGI transport
(no sockets, no process to start).

For tests of what the API answers, where a real process adds nothing. Tests of sockets, signals, restarts,
gRPC and the real CLI keep using ``ServerProcess``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from ccmetrics.access.exposure import gate_for
from ccmetrics.config import Config
from ccmetrics.otlp import http as otlp_http
from ccmetrics.otlp.receiver import Intake, Receiver
from ccmetrics.records import Batch
from ccmetrics.store import Store, WriteResult
from ccmetrics.web.app import create_app

from .conftest import Export


class Client:
    """Requests to one ASGI app, made one at a time on the server's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, app: Any, base_url: str) -> None:
        self._loop = loop
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())


class InProcessServer:
    def __init__(self, data_dir: Path, *, base_url: str = "http://127.0.0.1:3000", **settings: Any) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        config = Config(data_dir=data_dir, **settings)
        self.store = Store(data_dir / "ccmetrics.db")
        # The gate serve has: tokens check ingest, and tokens, people and sessions check the dashboard.
        self.gate = gate_for(config)
        self.receiver = Receiver(
            self.store,
            Intake(config.max_body_bytes, config.store_prompts, config.max_clock_skew),
            self.gate,
        )
        # One event loop for the server's life, as serve has: the writer answers exports on it.
        self._loop = asyncio.new_event_loop()
        self.app = create_app(self.store, config, self.gate)
        self.api = Client(self._loop, self.app, base_url)
        self._clients: list[Client] = []
        self.otlp = Client(
            self._loop, otlp_http.create_app(self.receiver, config.idle_timeout), "http://127.0.0.1:4318"
        )

    def send(self, export: Export) -> httpx.Response:
        """One export as the CLI sent it."""
        return self.otlp.post(export.path, content=export.body, headers=export.headers)

    def write(self, batch: Batch) -> WriteResult:
        """Records stored as the receiver stores them, once it has made them (a token's trusted attributes
        applied, for example)."""
        return self._loop.run_until_complete(self.store.write(batch))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """A request to the dashboard and API app."""
        return self.api.get(path, **kwargs)

    def get_json(self, path: str, **params: Any) -> Any:
        response = self.api.get(path, params=params)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        return response.json()

    def summary(self, **params: Any) -> dict[str, Any]:
        summary: dict[str, Any] = self.get_json("/api/summary", **params)
        return summary

    def client(self, base_url: str = "http://127.0.0.1:3000") -> Client:
        """Another browser: a client of the dashboard app with cookies of its own."""
        client = Client(self._loop, self.app, base_url)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self.otlp.close()
        self.api.close()
        self.app.state.sign_in.close()
        self.receiver.close()
        self.store.close()
        self._loop.close()
