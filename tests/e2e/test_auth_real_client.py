"""The real Claude Code CLI, set up by ``ccmetrics setup --token``, sends through ingest authentication: what
it sends is counted exactly, as the token's user and team. With a wrong or revoked token nothing is stored.
Over OTLP/gRPC and OTLP/HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from claude_cli import run_print
from test_setup_real_client import ccmetrics, configured_user

from tests.conftest import ServerProcess

PROTOCOLS = ["grpc", "http/protobuf"]
TOTALS = ("sessions", "api_requests", "prompts", "tokens", "cost_usd")


@dataclass(frozen=True)
class GuardedServer:
    """A server whose ingest needs a token from the start, and its admin token, which reads."""

    process: ServerProcess
    admin_token: str


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardedServer]:
    process = ServerProcess(tmp_path_factory.mktemp("ccmetrics-auth") / "data")
    made = ccmetrics(
        Path.home(), "token", "create", "first", "--role", "admin", "--data-dir", str(process.data_dir)
    )
    assert made.returncode == 0, made.stderr
    server = GuardedServer(process, made.stdout.strip())
    process.start()
    try:
        yield server
    finally:
        process.stop()


def token(server: GuardedServer, name: str, *options: str) -> str:
    made = ccmetrics(
        Path.home(), "token", "create", name, *options, "--data-dir", str(server.process.data_dir)
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def endpoint(server: GuardedServer, protocol: str) -> str:
    port = server.process.otlp_grpc_port if protocol == "grpc" else server.process.otlp_http_port
    return f"http://127.0.0.1:{port}"


def summary(server: GuardedServer, *filters: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{server.process.url}/api/summary",
        params={"filter": list(filters)},
        headers={"authorization": f"Bearer {server.admin_token}"},
        timeout=10,
    )
    answer.raise_for_status()
    return {key: answer.json()[key] for key in TOTALS}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_session_sent_with_a_token_is_counted_exactly_as_the_tokens_user(
    claude_binary: Path, fake_api, tmp_path: Path, protocol: str, guarded_server: GuardedServer
) -> None:
    server = guarded_server
    email = f"dev-{protocol.replace('/', '-')}@example.com"
    secret = token(server, email, "--role", "ingest", "--user", email, "--team", "auth-e2e")
    home, project = configured_user(
        tmp_path,
        "auth-user",
        "--protocol",
        protocol,
        "--endpoint",
        endpoint(server, protocol),
        "--token",
        secret,
        "--attr",
        "user.email=ceo@example.com",  # what the client claims: the token's user wins
    )
    fake = fake_api(final_text="All done.")
    result = run_print(
        claude_binary, home=home, cwd=project, prompt="say hi", api_base_url=fake.base_url, telemetry=None
    )
    assert result.returncode == 0, result.stderr

    served = fake.messages_served()
    expected_tokens = fake.tokens_served()
    assert served
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        mine = summary(server, f"user.email={email}")
        if mine["api_requests"] == len(served) and mine["tokens"] == expected_tokens and mine["prompts"]:
            break
        time.sleep(0.3)
    assert mine["sessions"] == 1 and mine["prompts"] == 1 and mine["cost_usd"] > 0
    assert mine["api_requests"] == len(served)
    assert mine["tokens"] == expected_tokens
    assert summary(server, f"user.email={email}", "team.id=auth-e2e") == mine
    assert summary(server, "user.email=ceo@example.com")["api_requests"] == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_session_sent_with_a_wrong_or_revoked_token_stores_nothing(
    claude_binary: Path, fake_api, tmp_path: Path, protocol: str, guarded_server: GuardedServer
) -> None:
    server = guarded_server
    name = f"revoked-{protocol.replace('/', '-')}"
    revoked = token(server, name, "--role", "ingest", "--team", "revoked")
    assert (
        ccmetrics(Path.home(), "token", "revoke", name, "--data-dir", str(server.process.data_dir)).returncode
        == 0
    )
    time.sleep(1.5)  # the server checks the access file once a second
    before = summary(server)
    fake = fake_api(final_text="All done.")
    for user, secret in (("wrong", "ccm_" + "x" * 43), ("revoked", revoked)):
        (tmp_path / user).mkdir()
        home, project = configured_user(
            tmp_path / user,
            user,
            "--protocol",
            protocol,
            "--endpoint",
            endpoint(server, protocol),
            "--token",
            secret,
        )
        result = run_print(
            claude_binary, home=home, cwd=project, prompt="say hi", api_base_url=fake.base_url, telemetry=None
        )
        assert result.returncode == 0, result.stderr
    assert fake.messages_served()  # there was usage to send
    time.sleep(3)  # the CLI flushed on exit; anything accepted would be stored by now
    assert summary(server) == before
