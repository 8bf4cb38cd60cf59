"""Fixtures for the end-to-end tests that drive the real Claude Code CLI.

Everything listens on 127.0.0.1 only.  When the pinned CLI is missing the tests are skipped, except under
CI=true, where a missing CLI is an error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the helper modules below live beside this file, not in a package

from claude_cli import find_claude  # noqa: E402
from fake_anthropic import FakeAnthropic  # noqa: E402
from otlp_tee import OtlpTee  # noqa: E402

from tests.conftest import ServerProcess  # noqa: E402


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def claude_binary() -> Path:
    binary, reason = find_claude()
    if binary is None:
        if _in_ci():
            pytest.fail(f"CI=true and the real Claude Code CLI is required: {reason}", pytrace=False)
        pytest.skip(reason)
    return binary


@pytest.fixture
def fake_api() -> Iterator[Callable[..., FakeAnthropic]]:
    """Factory: ``fake_api(script, **options)`` starts a FakeAnthropic that is stopped after the test."""
    started: list[FakeAnthropic] = []

    def make(*args: object, **kwargs: object) -> FakeAnthropic:
        fake = FakeAnthropic(*args, **kwargs).start()  # type: ignore[arg-type]
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()


@pytest.fixture(scope="module")
def ccmetrics_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("ccmetrics") / "data").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def otlp_tee(ccmetrics_server: ServerProcess) -> Iterator[OtlpTee]:
    """Recording proxy in front of the ccmetrics OTLP receivers (both HTTP and gRPC)."""
    with OtlpTee(ccmetrics_server.otlp_http, ccmetrics_server.otlp_grpc) as tee:
        yield tee
