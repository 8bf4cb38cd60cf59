"""``ccmetrics push`` from two machines (two HOMEs) to one real server with ingest tokens: the team's total
is the sum of both, and pushing again, or everything again, changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from ccmetrics.access.store import AccessStore
from ccmetrics.access.tokens import Role

from .test_transcripts import CLI_COST
from .test_transcripts_merge import SERVED, TELEMETRY, TRANSCRIPT, shifted_transcripts

SESSIONS = {
    "alice": "9df4c3aa-9e26-40dc-8950-d29c6a75f13a",
    "bob": "043c3b59-22b2-4ed6-ab6f-3017cced94e4",
}


def home_with(tmp_path: Path, name: str) -> Path:
    """A HOME whose ~/.claude/projects holds one of the real CLI's sessions."""
    everything = shifted_transcripts(tmp_path / f"all-{name}")
    home = tmp_path / name
    for path in everything.rglob(f"{SESSIONS[name]}.jsonl"):
        target = home / ".claude" / "projects" / path.relative_to(everything)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    return home


def push(home: Path, server: str, token: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCMETRICS_", "XDG_", "CLAUDE_"))}
    env["HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-m", "ccmetrics", "push", "--server", server, "--token", token, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_two_machines_push_to_one_server(start_server, tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    data_dir.mkdir()
    access = AccessStore(data_dir / "access.db")
    tokens = {
        "alice": access.create("alice", Role.INGEST, user="alice@example.com"),
        "bob": access.create("bob", Role.INGEST, user="bob@example.com"),
        "viewer": access.create("viewer", Role.VIEWER),
    }
    access.close()
    server = start_server(data_dir)
    homes = {name: home_with(tmp_path, name) for name in SESSIONS}

    def summary() -> dict[str, Any]:
        response = httpx.get(
            f"{server.url}/api/summary", headers={"Authorization": f"Bearer {tokens['viewer']}"}, timeout=10
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    first = {name: push(homes[name], server.otlp_http, tokens[name]) for name in SESSIONS}
    assert first["alice"]["imported"]["messages"] == 5 and first["alice"]["sent"] > 0
    team = summary()
    assert team["tokens"] == SERVED
    assert team["sessions"] == 2
    assert round(team["cost_usd"], 6) == round(CLI_COST, 6)
    by_user = {u["user_email"]: u["tokens"] for u in team["by_user"]}
    assert by_user == {"alice@example.com": TELEMETRY, "bob@example.com": TRANSCRIPT}
    assert team["sources"]["transcript"]["sessions"] == 2

    again = {name: push(homes[name], server.otlp_http, tokens[name]) for name in SESSIONS}
    assert all(r["sent"] == 0 and r["imported"]["files_read"] == 0 for r in again.values())
    # everything sent again, as from a machine that lost what it had sent: the server counts it once
    for name in SESSIONS:
        state = next(homes[name].rglob("push.db"))
        state.unlink()
        assert push(homes[name], server.otlp_http, tokens[name])["sent"] == first[name]["sent"]
    assert summary() == team


def ccmetrics(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCMETRICS_", "XDG_", "CLAUDE_"))}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "ccmetrics", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_setup_push_installs_a_session_end_hook_that_pushes(start_server, tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    data_dir.mkdir()
    access = AccessStore(data_dir / "access.db")
    token = access.create("alice", Role.INGEST, user="alice@example.com")
    viewer = access.create("viewer", Role.VIEWER)
    access.close()
    server = start_server(data_dir)
    home = home_with(tmp_path, "alice")
    settings = home / ".claude" / "settings.json"
    theirs = {"type": "command", "command": "echo bye"}
    settings.write_text(
        json.dumps({"model": "opus", "hooks": {"SessionEnd": [{"hooks": [theirs]}]}}, indent=2)
    )

    done = ccmetrics(home, "setup", "--push", server.otlp_http, "--token", token, "--yes")
    assert done.returncode == 0, done.stderr
    document = json.loads(settings.read_text())
    assert document["model"] == "opus"
    entries = document["hooks"]["SessionEnd"]
    assert entries[0] == {"hooks": [theirs]}
    (ours,) = entries[1]["hooks"]
    assert ours["type"] == "command" and "-m ccmetrics push --server" in ours["command"]
    again = ccmetrics(home, "setup", "--push", server.otlp_http, "--token", token, "--yes")
    assert "nothing to change" in again.stdout and json.loads(settings.read_text()) == document

    # the hook's command, run as Claude Code runs it when a session ends
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCMETRICS_", "XDG_", "CLAUDE_"))}
    run = subprocess.run(
        ["sh", "-c", ours["command"]], env={**env, "HOME": str(home)}, timeout=120, check=False
    )
    assert run.returncode == 0
    response = httpx.get(
        f"{server.url}/api/summary", headers={"Authorization": f"Bearer {viewer}"}, timeout=10
    )
    assert response.json()["tokens"] == TELEMETRY  # alice's session: the tokens the fake API served in it

    undone = ccmetrics(home, "setup", "--push", server.otlp_http, "--undo", "--yes")
    assert undone.returncode == 0, undone.stderr
    assert json.loads(settings.read_text()) == {
        "model": "opus",
        "hooks": {"SessionEnd": [{"hooks": [theirs]}]},
    }
