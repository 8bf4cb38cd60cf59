"""What the tests share: a real ``ccmetrics serve`` process on free loopback ports, and the real CLI's
captured exports (``tests/fixtures``), replayed as if sent now."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from . import replay
from .browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "claude-code-2.1.332"
CAPTURES = ("http-protobuf-delta", "http-json-cumulative")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PortTaken(RuntimeError):
    pass


@dataclass
class ServerProcess:
    """``python -m ccmetrics serve`` on free ports with its own data directory."""

    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    otlp_http_port: int = field(default_factory=free_port)
    otlp_grpc_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # The CA of the certificate the server is given in extra_args (--tls-cert, --tls-key): its URLs are https.
    tls_ca: Path | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_ca else "http"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=self.tls_ca) if self.tls_ca else True

    def grpc_channel(self) -> grpc.Channel:
        """A channel to the OTLP/gRPC port, over TLS trusting ``tls_ca`` when the server has a certificate."""
        if self.tls_ca is None:
            return grpc.insecure_channel(self.otlp_grpc)
        return grpc.secure_channel(self.otlp_grpc, grpc.ssl_channel_credentials(self.tls_ca.read_bytes()))

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def otlp_http(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.otlp_http_port}"

    @property
    def otlp_grpc(self) -> str:
        return f"127.0.0.1:{self.otlp_grpc_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "serve.log"

    def start(self, timeout: float = 20, tries: int = 3) -> ServerProcess:
        """Start and wait until healthy. A free port can be taken by someone else before the server binds it
        (the price of picking ports up front): then new ports are picked and the start tried again."""
        for attempt in range(tries):
            try:
                return self._start(timeout)
            except PortTaken:
                if attempt == tries - 1:
                    raise
                self.port, self.otlp_http_port, self.otlp_grpc_port = free_port(), free_port(), free_port()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> ServerProcess:
        offset = self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                output = self.log_path.read_bytes()[offset:].decode(errors="replace")
                if "cannot listen" in output:
                    raise PortTaken(output)
                raise RuntimeError(f"ccmetrics serve exited early:\n{output}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1, verify=self.verify).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"ccmetrics serve did not become ready:\n{self.log_path.read_text()}")

    def spawn(self) -> int:
        """Start the process without waiting for it (a test that kills it while it starts up); returns where
        its output begins in the log."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCMETRICS_")}  # only the flags count
        with self.log_path.open("ab") as log:
            offset = log.tell()
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ccmetrics",
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--otlp-http-port",
                    str(self.otlp_http_port),
                    "--otlp-grpc-port",
                    str(self.otlp_grpc_port),
                    # Much of the tests' data sits at fixed dates, which pruning would take away: a server
                    # keeps everything unless its test gives --retention (a later flag wins).
                    "--retention",
                    "forever",
                    "--rollup-retention",
                    "forever",
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        return offset

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def report_json(self, *args: str) -> str:
        """What ``ccmetrics report summary --json`` prints for this server's data directory."""
        command = [
            sys.executable,
            "-m",
            "ccmetrics",
            "report",
            "summary",
            "--json",
            "--data-dir",
            str(self.data_dir),
        ]
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, check=True, timeout=60
        ).stdout

    def send(self, export: Export) -> httpx.Response:
        """One export as the CLI sent it, over OTLP/HTTP."""
        return send(self.otlp_http, export, self.verify)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """A request to the dashboard and API port."""
        return httpx.get(self.url + path, timeout=30, verify=self.verify, **kwargs)

    def summary(self, bearer: str | None = None, **params: str | list[str]) -> dict:
        """/api/summary; ``bearer``: a viewer or admin token, once the server checks readers."""
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        response = httpx.get(
            f"{self.url}/api/summary", params=params, headers=headers, timeout=10, verify=self.verify
        )
        response.raise_for_status()
        return response.json()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    started: list[ServerProcess] = []

    def start(data_dir: Path | None = None, *extra_args: str) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / f"data{len(started)}", list(extra_args)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process is not None:
            server.stop(signal.SIGKILL)


@pytest.fixture
def connections() -> Iterator[Callable[[int, int], list[socket.socket]]]:
    """Raw TCP connections to a port, non-blocking, closed after the test."""
    opened: list[socket.socket] = []

    def connect(port: int, count: int) -> list[socket.socket]:
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
        opened.extend(socks)
        for sock in socks:
            sock.setblocking(False)
        return socks

    yield connect
    for sock in opened:
        sock.close()


@pytest.fixture
def server(start_server) -> ServerProcess:
    return start_server()


@pytest.fixture
def store(tmp_path: Path) -> Iterator:
    """A real store in the test's own folder, closed after the test."""
    from ccmetrics.store import Store

    store = Store(tmp_path / "ccmetrics.db")
    yield store
    store.close()


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator:
    """The server's HTTP apps in this process, on a real store (see ``in_process.py``)."""
    from .in_process import InProcessServer

    server = InProcessServer(tmp_path / "in-process")
    yield server
    server.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright: one per test module."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("CI=true and Chromium is required for the browser tests")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """``new_page()``: a page in a browser context of its own (its own cookies), closed after the test. Its
    uncaught errors are collected in ``page.errors``; a dialog (``confirm()``, ``alert()``) is dismissed and
    noted there too, or, with ``accept_dialogs=True``, accepted and its message noted in ``page.dialogs``."""
    contexts: list[Any] = []

    def make(accept_dialogs: bool = False) -> Any:
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.dialogs = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        if accept_dialogs:
            page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.accept()))
        else:
            page.on(
                "dialog", lambda dialog: (page.errors.append(f"dialog: {dialog.message}"), dialog.dismiss())
            )
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    return new_page()


_SIGNAL_PATHS = {
    "ExportMetricsServiceRequest": "/v1/metrics",
    "ExportLogsServiceRequest": "/v1/logs",
    "ExportTraceServiceRequest": "/v1/traces",
}


@dataclass(frozen=True)
class Export:
    """One OTLP/HTTP request: as the real CLI sent it, captured in ``tests/fixtures``, or built by a test."""

    path: str
    content_type: str
    content_encoding: str | None
    body: bytes

    @classmethod
    def of(cls, request: Any) -> Export:
        """A request message built by a test (``otlp_builders``), as OTLP/HTTP protobuf sends it."""
        path = _SIGNAL_PATHS[type(request).__name__]
        return cls(path, "application/x-protobuf", None, request.SerializeToString())

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": self.content_type}
        if self.content_encoding:
            headers["Content-Encoding"] = self.content_encoding
        return headers

    @property
    def raw(self) -> bytes:
        """The body without its Content-Encoding."""
        return replay.decompressed(self.body, self.content_encoding)

    def shifted(self, delta_ns: int) -> Export:
        body = replay.shift_body(self.path, self.content_type, self.raw, delta_ns)
        return dataclasses.replace(self, body=replay.compressed(body, self.content_encoding))


def captured_exports(capture: str) -> list[Export]:
    """A capture's exports exactly as the CLI sent them, on the day it sent them."""
    folder = FIXTURES / capture
    if not folder.is_dir():
        pytest.fail(f"fixtures missing: {folder}")
    exports = []
    for meta_path in sorted(folder.glob("*.json")):
        meta = json.loads(meta_path.read_text())
        body = meta_path.with_suffix(".bin").read_bytes()
        exports.append(Export(meta["path"], meta["ctype"], meta.get("enc"), body))
    return exports


@functools.cache
def replay_shift_ns() -> int:
    """How far every replayed capture is moved: whole hours that bring the newest of them into the past hour,
    worked out once per test run, so that a capture replayed twice is the same export (a retry) both times."""
    exports = [export for capture in CAPTURES for export in captured_exports(capture)]
    newest = max(replay.newest_time_ns(e.path, e.content_type, e.raw) for e in exports)
    return replay.hours_to_present(newest)


def fixture_exports(capture: str) -> list[Export]:
    """A capture's exports as if the CLI sent them within the past hour (see ``replay``)."""
    return [export.shifted(replay_shift_ns()) for export in captured_exports(capture)]


def send(base_url: str, export: Export, verify: ssl.SSLContext | bool = True) -> httpx.Response:
    return httpx.post(
        base_url + export.path, content=export.body, headers=export.headers, timeout=10, verify=verify
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true every test is required: a skip there is a failure (a missing package, browser or CLI)."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test is required: {report.longrepr}"
