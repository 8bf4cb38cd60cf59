"""The real CLI's own transcripts, imported beside its telemetry: two real sessions, one sending telemetry
to the server and one sending none; importing both HOMEs' transcripts counts each session once, from its
telemetry where it sent any, and every token the fake API served is counted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from claude_cli import Telemetry, make_home, make_repo, run_print

from tests.conftest import ServerProcess

pytestmark = pytest.mark.e2e


def summary(server: ServerProcess) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/api/summary", timeout=10)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def added(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a[k] + b[k] for k in a}


def import_into(server: ServerProcess, *homes: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCMETRICS_", "CLAUDE_"))}
    paths = [str(home / ".claude" / "projects") for home in homes]
    done = subprocess.run(
        [sys.executable, "-m", "ccmetrics", "import", "--data-dir", str(server.data_dir), *paths],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_real_sessions_with_and_without_telemetry_counted_once(
    claude_binary: Path, fake_api, start_server, tmp_path: Path
) -> None:
    server = start_server()
    repo = make_repo(tmp_path / "repo")
    sent, silent = make_home(tmp_path, "sent", [repo]), make_home(tmp_path, "silent", [repo])
    fake_sent, fake_silent = fake_api(final_text="All done.", seed=1), fake_api(final_text="Done.", seed=2)
    telemetry = Telemetry(server.otlp_http, "http/protobuf")
    for home, fake, sends in ((sent, fake_sent, telemetry), (silent, fake_silent, None)):
        result = run_print(
            claude_binary, home=home, cwd=repo, prompt="say hi", api_base_url=fake.base_url, telemetry=sends
        )
        assert result.returncode == 0, result.stderr
    by_telemetry, by_transcript = fake_sent.tokens_served(), fake_silent.tokens_served()
    deadline = time.monotonic() + 30
    while summary(server)["tokens"] != by_telemetry and time.monotonic() < deadline:
        time.sleep(0.3)
    before = summary(server)
    assert before["tokens"] == by_telemetry and before["sessions"] == 1

    import_into(server, sent, silent)
    after = summary(server)
    assert after["tokens"] == added(by_telemetry, by_transcript)  # each token the fakes served, once
    assert after["sessions"] == 2
    sources = after["sources"]
    assert sources["telemetry"]["tokens"] == by_telemetry and sources["telemetry"]["sessions"] == 1
    assert sources["transcript"]["tokens"] == by_transcript and sources["transcript"]["sessions"] == 1
    assert sources["both"] == {"sessions": 1}
    assert sources["transcript"]["cost_usd"] > 0 and sources["transcript"]["unpriced_models"] == {}
    (project,) = after["by_project"]
    assert project["project"] == str(repo) and project["sessions"] == 2
    assert project["tokens"] == after["tokens"]
    (branch,) = after["by_branch"]
    assert branch["git_branch"] == "main"

    import_into(server, sent, silent)  # nothing new: nothing changes
    assert summary(server) == after
