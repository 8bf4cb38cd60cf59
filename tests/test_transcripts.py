"""Importing Claude Code's transcripts: the real CLI's, and made-up ones with every way of going wrong."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from ccmetrics.store import open_reader
from ccmetrics.store.filters import Filters
from ccmetrics.store.summary import summary
from ccmetrics.transcripts import counting
from ccmetrics.transcripts.importer import default_paths, import_transcripts

from .conftest import FIXTURES

TRANSCRIPTS = FIXTURES / "transcripts" / "projects"
# The tokens the fake API served in the two captured sessions (see tests/fixtures/.../README.md)
SERVED = {"input": 8585, "output": 535, "cacheRead": 94545, "cacheCreation": 6665}
CLI_COST = 0.044672 + 0.052602  # what the CLI itself reported for the two sessions


def stored(db: Path) -> dict[str, Any]:
    """What the store holds, summed from its points: tokens by type, cost, sessions."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT s.metric, s.type, SUM(p.value) FROM points p JOIN series s ON s.id = p.series_id "
            "GROUP BY s.metric, s.type"
        ).fetchall()
    finally:
        conn.close()
    totals: dict[str, Any] = {"tokens": dict.fromkeys(SERVED, 0), "cost": 0.0, "sessions": 0}
    for metric, kind, value in rows:
        if metric == "claude_code.token.usage":
            totals["tokens"][kind] = int(value)
        elif metric == "claude_code.cost.usage":
            totals["cost"] = round(value, 6)
        elif metric == "claude_code.session.count":
            totals["sessions"] = int(value)
    return totals


def test_the_real_cli_transcripts_count_what_the_api_served(tmp_path: Path) -> None:
    db = tmp_path / "ccmetrics.db"
    result = import_transcripts(db, [TRANSCRIPTS])
    assert result.tokens == SERVED
    assert result.messages == 10 and result.sessions == 2 and result.files_read == 2
    assert result.price_table.startswith("genai-prices ")
    assert stored(db) == {"tokens": SERVED, "cost": round(CLI_COST, 6), "sessions": 2}
    # priced by the table, the tokens cost what the CLI said they did
    assert result.cost_usd == pytest.approx(CLI_COST, abs=1e-9)
    conn = sqlite3.connect(db)
    sessions = conn.execute("SELECT cwd, git_branch, counted FROM transcript_sessions").fetchall()
    assert sessions == [("/home/dev/src/hello", "master", 1)] * 2


def test_importing_again_reads_nothing_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "ccmetrics.db"
    import_transcripts(db, [TRANSCRIPTS])
    before = stored(db)
    again = import_transcripts(db, [TRANSCRIPTS])
    assert (again.files, again.files_read, again.bytes_read, again.messages) == (2, 0, 0, 0)
    assert stored(db) == before


# A made-up history, line by line in the real format.


def assistant(
    message_id: str,
    *,
    session: str = "s-1",
    request: str | None = "req-1",
    model: str = "claude-sonnet-4-5-20250929",
    output: int = 10,
    input: int = 100,
    cache_read: int = 1000,
    write_5m: int = 50,
    write_1h: int = 0,
    time: str = "2026-03-01T10:00:00.000Z",
    **extra: Any,
) -> str:
    record = {
        "parentUuid": None,
        "isSidechain": False,
        "userType": "external",
        "cwd": "/home/dev/src/app",
        "sessionId": session,
        "version": "2.1.332",
        "gitBranch": "main",
        "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "ok"}],
            "usage": {
                "input_tokens": input,
                "cache_creation_input_tokens": write_5m + write_1h,
                "cache_read_input_tokens": cache_read,
                "output_tokens": output,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": write_5m,
                    "ephemeral_1h_input_tokens": write_1h,
                },
            },
        },
        "requestId": request,
        "type": "assistant",
        "uuid": f"u-{message_id}-{output}",
        "timestamp": time,
        **extra,
    }
    return json.dumps(record, separators=(",", ":"))


def user(text: str, session: str = "s-1") -> str:
    # a tool's result that reports a subagent's usage: not an assistant message, not counted
    record = {
        "parentUuid": None,
        "isSidechain": False,
        "type": "user",
        "message": {"role": "user", "content": text},
        "toolUseResult": {"usage": {"input_tokens": 999_999, "output_tokens": 999_999}},
        "sessionId": session,
        "timestamp": "2026-03-01T10:00:01.000Z",
    }
    return json.dumps(record, separators=(",", ":"))


def write(path: Path, *lines: str, end: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + end)
    return path


def append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def test_each_message_once_with_its_final_usage(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    write(
        projects / "-home-dev-src-app" / "s-1.jsonl",
        user("x" * 100_000),
        assistant("m1", output=1),  # the first streaming record of m1...
        assistant("m1", output=40),  # ...and its final one
        assistant("m1", output=40),  # the same record written again
        assistant("m2", request="req-2", output=7),
        assistant("m3", request="req-3", model="<synthetic>", output=0, input=0),  # made up by the CLI
        assistant("m4", request="req-4", output=5, isApiErrorMessage=True),
        assistant("m5", request="req-5", model="claude-unknown-9", output=3),  # no price anywhere
    )
    write(  # a resumed session starts with a copy of the first one's messages
        projects / "-home-dev-src-app" / "s-2.jsonl",
        assistant("m1", output=40, session="s-1"),
        assistant("m6", session="s-2", request="req-6", output=2),
    )
    write(  # a subagent's own file: its messages count
        projects / "-home-dev-src-app" / "s-1" / "subagents" / "agent-1.jsonl",
        assistant("m7", request="req-7", output=9, isSidechain=True),
    )
    db = tmp_path / "ccmetrics.db"
    result = import_transcripts(db, [projects])
    assert result.messages == 5  # m1, m2, m5, m6, m7
    assert result.skipped == 2
    assert result.tokens["output"] == 40 + 7 + 3 + 2 + 9
    assert result.tokens["input"] == 500
    assert result.unpriced == {"claude-unknown-9": 1}
    assert stored(db)["tokens"] == result.tokens
    assert stored(db)["sessions"] == 2
    # the unpriced message adds no cost: the others are priced by the table
    rates = counting.prices.rates("claude-sonnet-4-5-20250929")
    assert rates is not None
    priced = [(100, 40), (100, 7), (100, 2), (100, 9)]
    expected = sum(rates.cost(i, o, 1000, 50, 0) for i, o in priced)
    assert stored(db)["cost"] == round(expected, 6)
    # the summary and report name the model without a price, and the table the others were priced by
    conn = open_reader(db)
    sources = summary(conn, Filters())["sources"]["transcript"]
    conn.close()
    assert sources["unpriced_models"] == {"claude-unknown-9": 100 + 3 + 1000 + 50}
    assert sources["price_table"] == result.price_table
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccmetrics",
            "report",
            "summary",
            "--data-dir",
            str(tmp_path),
            "--since",
            "2000-01-01",  # every time, whatever the day the test runs on
            "--until",
            "2100-01-01",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert "No price for claude-unknown-9: 1,153 tokens not in the cost." in report
    assert f"priced by {result.price_table}" in report


def test_claude_codes_own_cost_is_kept_and_cache_writes_priced_by_their_tier(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    write(
        projects / "p" / "s-1.jsonl",
        assistant("m1", costUSD=0.5),
        assistant("m2", request="r2", write_5m=0, write_1h=1000, cache_read=0, input=0, output=0),
        assistant("m3", request="r3", input=10, cache_read=250_000, write_5m=0, output=0),  # long context
    )
    result = import_transcripts(tmp_path / "db", [projects])
    rates = counting.prices.rates("claude-sonnet-4-5-20250929")
    assert rates is not None and rates.long is not None
    one_hour = 1000 * rates.cache_write_1h
    long = 10 * rates.long.input + 250_000 * rates.long.cache_read
    assert rates.cache_write_1h > rates.cache_write_5m and rates.long.input > rates.input
    assert result.cost_usd == pytest.approx(0.5 + one_hour + long)


def test_a_growing_file_is_read_from_where_it_stopped(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    db = tmp_path / "ccmetrics.db"
    path = write(projects / "p" / "s-1.jsonl", assistant("m1", output=1))
    torn = assistant("m2", request="r2", output=20)
    append(path, torn[:50])  # a line the CLI is still writing
    first = import_transcripts(db, [projects])
    assert (first.messages, first.tokens["output"], first.bad_lines) == (1, 1, 0)

    append(path, torn[50:] + "\n" + assistant("m1", output=30) + "\n")  # m2 finished; m1's final record
    second = import_transcripts(db, [projects])
    assert (second.messages, second.updated) == (1, 1)
    assert second.bytes_read < path.stat().st_size  # from the last complete line, not the start
    assert stored(db)["tokens"]["output"] == 30 + 20
    assert stored(db)["sessions"] == 1

    # a whole last line without its newline counts, and is not counted again once the newline comes
    append(path, assistant("m3", request="r3", output=5))
    assert import_transcripts(db, [projects]).messages == 1
    append(path, "\n")
    assert import_transcripts(db, [projects]).messages == 0
    assert stored(db)["tokens"]["output"] == 30 + 20 + 5


def test_a_file_growing_while_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    projects = tmp_path / "projects"
    db = tmp_path / "ccmetrics.db"
    path = write(projects / "p" / "s-1.jsonl", assistant("m1", output=1))
    real_summarize = counting.summarize

    def summarize_then_grow(*args: Any) -> Any:
        summary = real_summarize(*args)
        append(
            path, assistant("m2", request="r2", output=2) + "\n"
        )  # written after the read, before the commit
        return summary

    monkeypatch.setattr(counting, "summarize", summarize_then_grow)
    assert import_transcripts(db, [projects]).messages == 1
    monkeypatch.setattr(counting, "summarize", real_summarize)
    assert import_transcripts(db, [projects]).messages == 1  # m2, found next time
    assert stored(db)["tokens"]["output"] == 3


def test_a_rewritten_file_is_read_again_and_counts_nothing_twice(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    db = tmp_path / "ccmetrics.db"
    path = write(projects / "p" / "s-1.jsonl", assistant("m1", output=4), assistant("m2", request="r2"))
    import_transcripts(db, [projects])
    write(path, assistant("m1", output=4))  # shorter than before: replaced
    again = import_transcripts(db, [projects])
    assert (again.files_read, again.messages) == (1, 0)
    assert stored(db)["tokens"]["output"] == 14


def test_workers_count_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(counting, "PARALLEL_BYTES", 0)
    projects = tmp_path / "projects"
    shutil.copytree(TRANSCRIPTS, projects)
    write(projects / "p" / "s-9.jsonl", assistant("m1", session="s-9"))
    write(projects / "p" / "s-8.jsonl", assistant("m1", session="s-9"))  # the same message in another file
    write(  # the session's subagent, read by another worker, written in another transaction
        projects / "p" / "s-9" / "subagents" / "agent-1.jsonl",
        assistant("m2", session="s-9", request="r2", isSidechain=True),
    )
    result = import_transcripts(tmp_path / "db", [projects], workers=2)
    assert result.messages == 12 and result.sessions == 3
    assert result.tokens["input"] == SERVED["input"] + 200
    assert stored(tmp_path / "db") == {
        "tokens": result.tokens,
        "cost": round(result.cost_usd, 6),
        "sessions": 3,  # s-9 once, though two transactions told of it
    }


def test_default_paths(tmp_path: Path) -> None:
    home = tmp_path / "home"
    paths = default_paths({"CLAUDE_CONFIG_DIR": f"{tmp_path}/a, {tmp_path}/b/projects"}, home)
    assert paths == [
        home / ".claude" / "projects",
        home / ".config" / "claude" / "projects",
        tmp_path / "a" / "projects",
        tmp_path / "b" / "projects",
    ]


def test_many_requests_below_the_long_context_threshold_are_priced_below_it(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    # 30 requests of 100,000 input tokens each: 3 million together, each one short of the threshold
    lines = [
        assistant(f"m{i}", request=f"r{i}", input=1_000, cache_read=99_000, write_5m=0) for i in range(30)
    ]
    write(projects / "p" / "s-1.jsonl", *lines)
    result = import_transcripts(tmp_path / "db", [projects])
    rates = counting.prices.rates("claude-sonnet-4-5-20250929")
    assert rates is not None and rates.threshold == 200_000
    assert result.cost_usd == pytest.approx(30 * rates.cost(1_000, 10, 99_000, 0, 0))


def test_import_watch_follows_new_lines(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    path = write(projects / "p" / "s-1.jsonl", assistant("m1", output=1))
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCMETRICS_")}
    command = [
        sys.executable,
        "-m",
        "ccmetrics",
        "import",
        "--watch",
        "--json",
        "--data-dir",
        str(data),
        str(projects),
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        watchdog = threading.Timer(60, process.kill)  # a line that never comes fails the test, not hangs it
        watchdog.start()
        try:
            assert process.stdout is not None
            assert json.loads(process.stdout.readline())["messages"] == 1
            append(path, assistant("m2", request="r2", output=2) + "\n")
            assert json.loads(process.stdout.readline())["messages"] == 1  # read as it was written
            write(projects / "q" / "s-2.jsonl", assistant("m3", session="s-2", request="r3", output=3))
            assert json.loads(process.stdout.readline())["sessions"] == 1  # a new file too
        finally:
            watchdog.cancel()
            process.terminate()
    assert stored(data / "ccmetrics.db")["tokens"]["output"] == 6


def test_files_not_written_to_lately_are_mapped_and_count_the_same(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    shutil.copytree(TRANSCRIPTS, projects)
    torn = assistant("m2", request="r2", output=20)
    path = write(projects / "p" / "s-1.jsonl", assistant("m1", output=1), torn[:40], end="")
    whole = write(
        projects / "p" / "s-2.jsonl", assistant("m3", session="s-2", request="r3", output=3), end=""
    )
    a_day_ago = path.stat().st_mtime - 86_400
    for file in projects.rglob("*.jsonl"):
        os.utime(file, (a_day_ago, a_day_ago))
    db = tmp_path / "db"
    result = import_transcripts(db, [projects])
    assert result.tokens["output"] == SERVED["output"] + 1 + 3  # the torn line waits; the whole one counts
    assert result.messages == 12 and result.bad_lines == 0
    append(path, torn[40:] + "\n")
    append(whole, "\n")
    again = import_transcripts(db, [projects])
    assert (again.messages, again.tokens["output"]) == (1, 20)
    # from the start of each file's last line, the one that was not whole
    m3 = assistant("m3", session="s-2", request="r3", output=3)
    assert again.bytes_read == len(torn) + 1 + len(m3) + 1
