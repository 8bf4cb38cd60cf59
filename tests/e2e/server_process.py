"""Start and stop a real `ccmetrics serve` subprocess on free loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class CcmetricsServer:
    data_dir: Path
    port: int
    otlp_http_port: int
    otlp_grpc_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def otlp_http_url(self) -> str:
        return f"http://127.0.0.1:{self.otlp_http_port}"

    @property
    def otlp_grpc_target(self) -> str:
        return f"127.0.0.1:{self.otlp_grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_ccmetrics(data_dir: Path, timeout: float = 30.0) -> CcmetricsServer:
    data_dir.mkdir(parents=True, exist_ok=True)
    port, http_port, grpc_port = free_port(), free_port(), free_port()
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process below
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCMETRICS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ccmetrics", "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1",
         "--port", str(port), "--otlp-http-port", str(http_port), "--otlp-grpc-port", str(grpc_port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
    )
    log.close()
    server = CcmetricsServer(data_dir, port, http_port, grpc_port, proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ccmetrics serve exited with {proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/api/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_ccmetrics(server)
    raise RuntimeError(f"ccmetrics serve did not answer /api/health within {timeout}s:\n{server.log()}")


def stop_ccmetrics(server: CcmetricsServer) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=10)


