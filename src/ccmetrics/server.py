"""``ccmetrics serve``: the OTLP receivers, the store and the web app in one process and one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from . import hosts, listeners
from .config import Config
from .otlp import grpc as otlp_grpc
from .otlp import http as otlp_http
from .otlp.receiver import Intake, Receiver
from .store import Store
from .web.app import create_app, warm_up

log = logging.getLogger("ccmetrics")


class _Server(uvicorn.Server):
    """Several uvicorn servers share this process, so signals are handled once, by ``serve``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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


async def serve(config: Config) -> None:
    web_socket = _listen(config.host, config.port, "the dashboard")
    otlp_socket = _listen(config.host, config.otlp_http_port, "OTLP/HTTP")
    store = Store(config.db_path, new_series_per_minute=config.new_series_per_minute)
    receiver = Receiver(
        store,
        Intake(
            max_body_bytes=config.max_body_bytes,
            store_prompts=config.store_prompts,
            max_clock_skew_s=config.max_clock_skew,
        ),
    )
    max_connections = listeners.fit_open_files(config.max_connections)
    # Each uvicorn server counts the connections of its own listener.
    http = listeners.guarded_http(max_connections, config.header_timeout)
    grpc_server = None
    try:
        grpc_server = await otlp_grpc.start(
            receiver,
            config.host,
            config.otlp_grpc_port,
            max_connections=max_connections,
            idle_timeout=config.idle_timeout,
            header_timeout=config.header_timeout,
        )
        # The same Host names as the dashboard: a rebinding page could write exports too.
        otlp_app = hosts.HostCheck(
            otlp_http.create_app(receiver, config.idle_timeout),
            hosts.allowed_names(config.host, config.allowed_hosts),
        )
        servers = [
            _Server(
                uvicorn.Config(
                    create_app(store, config),
                    log_level="warning",
                    lifespan="off",
                    access_log=False,
                    http=http,
                    timeout_keep_alive=config.idle_timeout,
                )
            ),
            _Server(
                uvicorn.Config(
                    otlp_app,
                    log_level="warning",
                    lifespan="off",
                    access_log=False,
                    proxy_headers=False,
                    server_header=False,
                    date_header=False,
                    http=http,
                    timeout_keep_alive=config.idle_timeout,
                )
            ),
        ]
        loop = asyncio.get_running_loop()

        def stop() -> None:
            store.stop_waiters()  # live streams end, or the dashboard's server would wait on them for ever
            for server in servers:
                server.should_exit = True

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        tasks = [
            asyncio.create_task(servers[0].serve(sockets=[web_socket])),
            asyncio.create_task(servers[1].serve(sockets=[otlp_socket])),
        ]
        while not all(server.started for server in servers):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.01)
        log.info(
            "ccmetrics is ready: dashboard http://%s:%d  OTLP gRPC %s:%d  OTLP/HTTP http://%s:%d  data %s",
            config.host,
            config.port,
            config.host,
            config.otlp_grpc_port,
            config.host,
            config.otlp_http_port,
            config.db_path,
        )
        log.info("send Claude Code's telemetry here: run `ccmetrics setup`, then `ccmetrics doctor` to check")
        # What is alive now (modules, classes, protobuf and gRPC internals) lives as long as the process:
        # leave it out of the garbage collector's full passes, which would otherwise walk those tens of
        # thousands of objects for 20-40 ms each, answering no export meanwhile.
        gc.freeze()
        warming = asyncio.create_task(warm_up(store, config))
        await asyncio.gather(*tasks)
        warming.cancel()
    finally:
        if grpc_server is not None:
            await grpc_server.stop(grace=2)
        receiver.close()
        store.close()
        web_socket.close()
        otlp_socket.close()
