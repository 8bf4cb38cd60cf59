"""The real Claude Code CLI exports over TLS to ``ccmetrics serve --tls-cert --tls-key``.

The server's certificate comes from a test CA that only ``NODE_EXTRA_CA_CERTS`` makes the CLI trust; the CLI
is configured by ``ccmetrics setup --endpoint https://...`` alone (gRPC: https://localhost, see below). What
the server counts must be exactly what the fake API served: tokens by type and requests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from claude_cli import run_print
from fake_anthropic import FakeAnthropic
from test_setup_real_client import configured_user

from tests.conftest import ServerProcess
from tests.test_tls import TlsFiles, make_tls_files


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, TlsFiles]]:
    files = make_tls_files(tmp_path_factory.mktemp("tls"))
    server = ServerProcess(
        tmp_path_factory.mktemp("ccmetrics-tls") / "data", list(files.args), tls_ca=files.ca
    ).start()
    try:
        yield server, files
    finally:
        server.stop()


def served_totals(fake: FakeAnthropic) -> dict:
    return {"api_requests": len(fake.messages_served()), "tokens": fake.tokens_served()}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_cli_exports_over_tls_and_is_counted_exactly(
    claude_binary: Path, fake_api, tmp_path: Path, tls_server: tuple[ServerProcess, TlsFiles], protocol: str
) -> None:
    server, files = tls_server
    port = server.otlp_grpc_port if protocol == "grpc" else server.otlp_http_port
    team = "tls-" + protocol.replace("/", "-")
    # The CLI's gRPC client will not send an IP address as the TLS server name, so setup refuses one for
    # gRPC; the certificate also names localhost.
    host = "localhost" if protocol == "grpc" else "127.0.0.1"
    home, project = configured_user(
        tmp_path, "tls-user", "--protocol", protocol, "--endpoint", f"https://{host}:{port}", "--team", team
    )
    fake = fake_api(final_text="All done.")
    result = run_print(
        claude_binary,
        home=home,
        cwd=project,
        prompt="say hi",
        api_base_url=fake.base_url,
        telemetry=None,
        extra_env={"NODE_EXTRA_CA_CERTS": str(files.ca)},
    )
    assert result.returncode == 0, result.stderr
    expected = served_totals(fake)
    assert expected["api_requests"] >= 1

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        summary = server.summary(filter=f"team.id={team}")
        if summary["api_requests"] >= expected["api_requests"] and summary["prompts"] >= 1:
            break
        time.sleep(0.3)
    assert summary["sessions"] == 1
    assert summary["api_requests"] == expected["api_requests"]
    assert summary["tokens"] == {key: float(n) for key, n in expected["tokens"].items()}
    assert summary["prompts"] == 1
    assert summary["cost_usd"] > 0
