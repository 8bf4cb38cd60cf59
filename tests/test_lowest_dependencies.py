"""The lowest versions pyproject.toml allows install together and work.

Every lower bound (``>=``) in pyproject.toml is what gets tested. In a fresh virtualenv, the build backend,
then ccmetrics with its runtime dependencies, then the test extra are installed, each of them pinned (``==``)
to its bound; what they need in turn resolves as usual. With the runtime dependencies alone, every module of
ccmetrics imports (none may need a test tool), and ``ccmetrics serve`` on free ports serves the dashboard,
takes the real CLI's capture (metrics and events) over OTLP/HTTP and a point over OTLP/gRPC, counts them in
``/api/summary`` and stops on SIGTERM (exit 0). With the test extra beside them, ``pip check`` finds nothing
broken, the lowest mypy passes on src with the lowest stubs, the lowest ruff passes, and the lowest pytest
runs a test of the suite under its configuration (warnings are errors).

It needs the package index: a few minutes when pip's cache is empty, under a minute when it is not. Without
the index it is skipped, except under CI=true, where it must run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from packaging.requirements import Requirement

from .conftest import IN_CI, fixture_exports, free_port, send
from .good_traffic import DELTA_COST, GRPC_COST
from .otlp_builders import sum_request

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NETWORK_TROUBLE = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ReadTimeoutError",
)
IMPORT_EVERY_MODULE = (
    "import importlib, pkgutil, ccmetrics\n"
    "for module in pkgutil.walk_packages(ccmetrics.__path__, 'ccmetrics.'):\n"
    "    if not module.name.endswith('__main__'):\n"
    "        importlib.import_module(module.name)\n"
)


def lowest(requirements: list[str]) -> list[str]:
    """Each requirement pinned to its lower bound, with its environment marker."""
    pins = []
    for text in requirements:
        requirement = Requirement(text)
        bounds = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert len(bounds) == 1, f"{text!r}: every dependency has one lower bound (>=)"
        pin = f"{requirement.name}=={bounds[0]}"
        pins.append(f"{pin}; {requirement.marker}" if requirement.marker else pin)
    return pins


def test_every_dependency_has_one_lower_bound():
    project = PYPROJECT["project"]
    for requirements in (
        PYPROJECT["build-system"]["requires"],
        project["dependencies"],
        *project["optional-dependencies"].values(),
    ):
        assert len(lowest(requirements)) == len(requirements)


class Venv:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.python = path / "bin" / "python"
        # The package as installed, not the source tree a developer's PYTHONPATH points at.
        self.env = {
            k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("CCMETRICS_")
        }
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)

    def run(self, *args: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
        done = subprocess.run(
            [str(arg) for arg in args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = done.stdout + done.stderr
        if done.returncode != 0:
            if not IN_CI and any(trouble in output for trouble in NETWORK_TROUBLE):
                pytest.skip(f"the package index is out of reach: {output[-500:]}")
            pytest.fail(f"{' '.join(map(str, args))} exited {done.returncode}:\n{output[-6000:]}")
        return output

    def pip_install(self, *args: str | Path) -> str:
        return self.run(self.python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args)


def write_pins(path: Path, requirements: list[str]) -> Path:
    path.write_text("\n".join(lowest(requirements)) + "\n")
    return path


def source_copy(into: Path) -> Path:
    """What a wheel is built from, outside the repository, so the build leaves nothing in it."""
    into.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, into / name)
    shutil.copytree(ROOT / "src", into / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return into


def smoke(venv: Venv, data_dir: Path) -> None:
    """``ccmetrics serve`` from the virtualenv: its dashboard, and the real CLI's capture over OTLP/HTTP and
    a point over OTLP/gRPC, counted."""
    port, http_port, grpc_port = free_port(), free_port(), free_port()
    log = data_dir.parent / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(venv.python), "-m", "ccmetrics", "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1"]
            + ["--port", str(port), "--otlp-http-port", str(http_port), "--otlp-grpc-port", str(grpc_port)],
            cwd=data_dir,
            env=venv.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        page = httpx.get(base + "/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()  # the package data was installed
        for export in fixture_exports("http-protobuf-delta"):  # the real CLI's metrics and events
            response = send(f"http://127.0.0.1:{http_port}", export)
            assert response.status_code == 200, response.text
        now = time.time_ns()
        point = (now - 10**9, now, GRPC_COST, {"session.id": "over-grpc"})
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(
                sum_request("claude_code.cost.usage", [point], unit="USD"), timeout=10
            )
        summary = httpx.get(f"{base}/api/summary", timeout=10).json()
        assert summary["cost_usd"] == pytest.approx(DELTA_COST + GRPC_COST, abs=1e-9), summary
        assert summary["api_requests"] == 5 and summary["prompts"] == 1, summary
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.network
@pytest.mark.timeout(1500)
def test_the_lowest_allowed_versions_install_together_and_work(tmp_path: Path):
    project = PYPROJECT["project"]
    venv = Venv(tmp_path / "venv")
    venv.pip_install("-r", write_pins(tmp_path / "build.txt", PYPROJECT["build-system"]["requires"]))
    venv.pip_install(
        "--no-build-isolation",  # built by the lowest setuptools allowed, just installed
        source_copy(tmp_path / "project"),
        "-r",
        write_pins(tmp_path / "runtime.txt", project["dependencies"]),
    )
    venv.run(venv.python, "-c", IMPORT_EVERY_MODULE, cwd=tmp_path)
    (tmp_path / "data").mkdir()
    smoke(venv, tmp_path / "data")

    venv.pip_install(
        "-r",
        write_pins(tmp_path / "test.txt", project["optional-dependencies"]["test"]),
        "-r",
        tmp_path / "runtime.txt",  # the runtime dependencies stay at their lowest
    )
    venv.run(venv.python, "-m", "pip", "check")
    bin_ = venv.path / "bin"
    venv.run(bin_ / "mypy", "--cache-dir", tmp_path / "mypy-cache", cwd=ROOT)
    venv.run(bin_ / "ruff", "check", "--no-cache", ".", cwd=ROOT)
    venv.run(bin_ / "ruff", "format", "--check", "--no-cache", ".", cwd=ROOT)
    venv.run(
        venv.python,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_host_check.py::test_which_names_each_bound_address_answers",
        cwd=ROOT,
    )
