"""``ccmetrics serve``: the OTLP receivers, the store and the web app in one process and one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn

from . import hosts, listeners, running, tls
from .access.aliases import AliasBook
from .access.exposure import gate_for
from .access.gate import Gate
from .config import Config
from .otlp import grpc as otlp_grpc
from .otlp import http as otlp_http
from .otlp.receiver import Intake, Receiver
from .store import Store
from .web.app import create_app, warm_up
from .web.auth import WebGate

log = logging.getLogger("ccmetrics")

SHUTDOWN_GRACE_S = 2  # what an export in flight has to be answered when the server stops


class _ByPort:
    """The ASGI app of both HTTP listeners, served by one uvicorn server: each request goes to the app of the
    local port it arrived on (``scope["server"]``). Its lifespan startup is the moment uvicorn is serving."""

    def __init__(self, apps: dict[int, hosts.ASGIApp], on_startup: Callable[[], None]) -> None:
        self.apps = apps
        self.on_startup = on_startup

    async def __call__(self, scope: hosts.Scope, receive: hosts.Receive, send: hosts.Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                self.on_startup()
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        else:
            await self.apps[scope["server"][1]](scope, receive, send)


@contextlib.contextmanager
def _serving_stops_on_signals() -> Iterator[None]:
    """While uvicorn serves, SIGINT and SIGTERM are its: it shuts down gracefully, puts back the handlers it
    found and raises the signal again (its cooperative signal handling). The handlers it finds are these,
    which do nothing, so that ``serve`` goes on to stop the gRPC server and close the store. Once it has
    stopped, the usual handlers are back: a second signal ends the process at once."""
    found = {signum: signal.signal(signum, _noted) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in found.items():
            signal.signal(signum, handler)


def _noted(signum: int, frame: FrameType | None) -> None:
    """uvicorn has already stopped serving for this signal; the rest of ``serve`` closes what is left."""


def _announce(config: Config) -> None:
    scheme = "https" if config.tls else "http"
    log.info(
        "ccmetrics is ready: dashboard %s://%s:%d  OTLP/gRPC %s://%s:%d  OTLP/HTTP %s://%s:%d  data %s",
        *(scheme, config.host, config.port),
        *(scheme, config.host, config.otlp_grpc_port),
        *(scheme, config.host, config.otlp_http_port),
        config.db_path,
    )
    if config.tls:
        log.info("TLS is on for the dashboard, OTLP/HTTP and OTLP/gRPC (certificate %s)", config.tls_cert)
    else:
        log.info("TLS is off for the dashboard, OTLP/HTTP and OTLP/gRPC (--tls-cert, --tls-key turn it on)")
    log.info("send Claude Code's telemetry here: run `ccmetrics setup`, then `ccmetrics doctor` to check")


def _announce_access(config: Config, gate: Gate, web_gate: WebGate) -> None:
    log.info("OTLP gRPC %s:%d: %s", config.host, config.otlp_grpc_port, gate.describe())
    log.info("OTLP/HTTP %s:%d: %s", config.host, config.otlp_http_port, gate.describe())
    log.info("dashboard %s:%d: %s", config.host, config.port, web_gate.describe())


def _listen(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen for {what} on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(config: Config, certificate: tls.Certificate | None = None) -> None:
    """Serve until SIGINT or SIGTERM; with ``certificate`` (``tls.load`` of the config's files), TLS only."""
    gate = gate_for(config)  # first: a server that must not start binds nothing
    serving = running.hold_while_serving(config.data_dir)  # `restore` and `vacuum` wait for it to stop
    web_socket = _listen(config.host, config.port, "the dashboard")
    otlp_socket = _listen(config.host, config.otlp_http_port, "OTLP/HTTP")
    store = Store(config.db_path, new_series_per_minute=config.new_series_per_minute, retention=config.kept())
    aliases = AliasBook(config.access_path)  # the names users are shown by, beside the gate's tokens
    receiver = Receiver(
        store,
        Intake(
            max_body_bytes=config.max_body_bytes,
            store_prompts=config.store_prompts,
            max_clock_skew_s=config.max_clock_skew,
        ),
        gate,
    )
    # One uvicorn server serves both HTTP listeners and counts the connections of each.
    http = listeners.guarded_http(
        listeners.fit_open_files(config.max_connections),
        config.header_timeout,
        certificate.context if certificate else None,
    )
    grpc_server = None
    web_app = None
    alerts = None
    warming: list[asyncio.Task[None]] = []
    try:
        grpc_server = await otlp_grpc.start(
            receiver,
            config.host,
            config.otlp_grpc_port,
            max_connections=http.max_connections,
            idle_timeout=config.idle_timeout,
            header_timeout=config.header_timeout,
            credentials=certificate.grpc_credentials() if certificate else None,
        )
        # The same Host names as the dashboard: a rebinding page could write exports too.
        otlp_app = hosts.HostCheck(
            otlp_http.create_app(receiver, config.idle_timeout),
            hosts.allowed_names(config.host, config.allowed_hosts),
        )

        if config.alerts is not None:
            from .alerts.engine import AlertEngine
            from .alerts.rules import load

            alerts = AlertEngine(store, load(config.alerts), config.alerts_state_path)
        web_app = create_app(store, config, gate, aliases, alerts=alerts)
        web_gate: WebGate = web_app.state.web_gate

        def started() -> None:
            _announce(config)
            _announce_access(config, gate, web_gate)
            # What is alive now (modules, classes, protobuf and gRPC internals) lives as long as the process:
            # leave it out of the garbage collector's full passes, which would otherwise walk those tens of
            # thousands of objects for 20-40 ms each, answering no export meanwhile.
            gc.freeze()
            warming.append(asyncio.create_task(warm_up(store, config)))
            if alerts is not None:
                warming.append(asyncio.create_task(alerts.run()))

        apps: dict[int, hosts.ASGIApp] = {
            web_socket.getsockname()[1]: web_app,
            otlp_socket.getsockname()[1]: otlp_app,
        }
        server = uvicorn.Server(
            uvicorn.Config(
                _ByPort(apps, started),
                log_level="warning",
                lifespan="on",
                access_log=False,
                # The receiver limits new series by client address, which X-Forwarded-For must not change.
                proxy_headers=False,
                server_header=False,
                http=http,
                ws="none",  # no WebSockets here: an upgrade request is answered as plain HTTP
                timeout_keep_alive=config.idle_timeout,
                # On SIGTERM, what is still running after this is cancelled: an open dashboard's live stream
                # never ends by itself, and would otherwise hold the server up for ever.
                timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            )
        )
        with _serving_stops_on_signals():
            await server.serve(sockets=[web_socket, otlp_socket])
    finally:
        for task in warming:
            task.cancel()
        if grpc_server is not None:
            await grpc_server.stop(grace=2)
        if web_app is not None:
            web_app.state.sign_in.close()
        receiver.close()
        aliases.close()
        if alerts is not None:
            alerts.close()
        store.close()
        web_socket.close()
        otlp_socket.close()
        os.close(serving)
