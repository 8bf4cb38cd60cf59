"""A session that sent telemetry and has a transcript is counted once, from its telemetry; its transcript adds
where it ran. A session with a transcript alone is counted from it. Either order of arrival."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from pathlib import Path

from ccmetrics.transcripts.importer import import_transcripts

from .conftest import fixture_exports, replay_shift_ns
from .test_transcripts import CLI_COST, TRANSCRIPTS

TELEMETRY_SESSION = "9df4c3aa-9e26-40dc-8950-d29c6a75f13a"  # the one http-protobuf-delta captured
TRANSCRIPT_ONLY = "043c3b59-22b2-4ed6-ab6f-3017cced94e4"
# The summary's names for the tokens the fake API served in both sessions
SERVED = {"input": 8585, "output": 535, "cache_read": 94545, "cache_creation": 6665}
TELEMETRY = {"input": 4130, "output": 230, "cache_read": 46010, "cache_creation": 2870}
TRANSCRIPT = {k: SERVED[k] - TELEMETRY[k] for k in SERVED}
_TIMESTAMP = re.compile(r'"timestamp":"([0-9T:.\-]+)Z"')


def shifted_transcripts(into: Path) -> Path:
    """The real CLI's transcripts moved in time as the replayed telemetry is (see replay.py)."""
    shift = dt.timedelta(microseconds=replay_shift_ns() // 1000)

    def move(match: re.Match[str]) -> str:
        moment = dt.datetime.fromisoformat(match.group(1)) + shift
        return f'"timestamp":"{moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]}Z"'

    for path in TRANSCRIPTS.rglob("*.jsonl"):
        target = into / path.relative_to(TRANSCRIPTS)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_TIMESTAMP.sub(move, path.read_text()))
    return into


def send_telemetry(in_process) -> None:  # noqa: ANN001
    for export in fixture_exports("http-protobuf-delta"):
        assert in_process.send(export).status_code == 200


def check_counted_once(in_process) -> None:  # noqa: ANN001
    summary = in_process.summary()
    assert summary["tokens"] == SERVED
    assert summary["sessions"] == 2
    assert round(summary["cost_usd"], 6) == round(CLI_COST, 6)
    sources = summary["sources"]
    assert sources["telemetry"] == {"sessions": 1, "cost_usd": 0.044672, "tokens": TELEMETRY}
    price_table = sources["transcript"].pop("price_table")
    assert price_table.startswith("genai-prices ")
    assert sources["transcript"] == {
        "sessions": 1,
        "cost_usd": 0.052602,
        "tokens": TRANSCRIPT,
        "unpriced_models": {},
    }
    assert sources["both"] == {"sessions": 1}
    # where they ran, as the transcripts tell: for the session counted from telemetry too
    hello = {
        "project": "/home/dev/src/hello",
        "name": "src/hello",
        "sessions": 2,
        "cost_usd": round(CLI_COST, 9),
        "tokens": SERVED,
    }
    assert summary["by_project"] == [hello]
    assert summary["by_branch"] == [{**hello, "git_branch": "master"}]
    # the dashboard's panels say the same
    panels = {
        pid: {
            i["label"]: round(i["value"], 6)
            for i in in_process.get_json(f"/api/panels/{pid}")["data"]["items"]
        }
        for pid in ("cost_by_source", "cost_by_project", "cost_by_branch")
    }
    assert panels == {
        "cost_by_source": {"telemetry": 0.044672, "transcript": 0.052602},
        "cost_by_project": {"src/hello": round(CLI_COST, 6)},
        "cost_by_branch": {"src/hello: master": round(CLI_COST, 6)},
    }
    conn = sqlite3.connect(in_process.store.path)
    rows = conn.execute(
        "SELECT session_id, cwd, git_branch, counted FROM transcript_sessions ORDER BY 1"
    ).fetchall()
    assert rows == [
        (TRANSCRIPT_ONLY, "/home/dev/src/hello", "master", 1),
        (TELEMETRY_SESSION, "/home/dev/src/hello", "master", 0),
    ]


def test_telemetry_first_then_the_transcripts(in_process, tmp_path: Path) -> None:
    send_telemetry(in_process)
    result = import_transcripts(in_process.store.path, [shifted_transcripts(tmp_path / "projects")])
    assert result.messages == 10  # read, and counted only where no telemetry came
    check_counted_once(in_process)


def test_transcripts_first_then_telemetry(in_process, tmp_path: Path) -> None:
    import_transcripts(in_process.store.path, [shifted_transcripts(tmp_path / "projects")])
    assert in_process.summary()["tokens"] == SERVED  # both from transcripts, for now
    send_telemetry(in_process)  # the session's telemetry takes the place of its transcript's numbers
    check_counted_once(in_process)
    send_telemetry(in_process)  # an exporter's retry
    import_transcripts(in_process.store.path, [tmp_path / "projects"])
    check_counted_once(in_process)


def test_filtering_by_where_sessions_ran(in_process, tmp_path: Path) -> None:
    """A project or branch filter finds a session's usage wherever it is counted from: the telemetry session
    by the place its transcript names, the transcript's own by its points; events too."""
    projects = shifted_transcripts(tmp_path / "projects")
    elsewhere = projects / "-home-dev-src-hello" / f"{TRANSCRIPT_ONLY}.jsonl"
    text = elsewhere.read_text()
    assert '"cwd":"/home/dev/src/hello"' in text and '"gitBranch":"master"' in text
    text = text.replace('"cwd":"/home/dev/src/hello"', '"cwd":"/home/dev/src/other"')
    elsewhere.write_text(text.replace('"gitBranch":"master"', '"gitBranch":"fix/login"'))
    send_telemetry(in_process)
    import_transcripts(in_process.store.path, [projects])

    def tokens(*filters: str) -> dict[str, int]:
        return in_process.summary(filter=list(filters))["tokens"]

    assert tokens() == SERVED
    assert tokens("project=/home/dev/src/hello") == TELEMETRY
    assert tokens("project=/home/dev/src/other") == TRANSCRIPT
    assert tokens("git.branch=fix/login") == TRANSCRIPT
    assert tokens("git.branch=master", "project=/home/dev/src/hello") == TELEMETRY
    assert tokens("project=/nowhere") == dict.fromkeys(SERVED, 0)
    hello = in_process.summary(filter="project=/home/dev/src/hello")
    assert hello["sessions"] == 1
    assert round(hello["cost_usd"], 6) == 0.044672
    # the telemetry session's events are found by its transcript's project, and only they are
    everyone, other = in_process.summary(), in_process.summary(filter="project=/home/dev/src/other")
    assert everyone["prompts"] > 0 and everyone["api_requests"] > 0
    for name in ("prompts", "api_requests"):
        assert (hello[name], other[name]) == (everyone[name], 0), name
    # the filters offer the places, with the values the transcripts told of
    keys = in_process.get_json("/api/filters")["keys"]
    assert {"project", "git.branch"} <= set(keys)
    values = in_process.get_json("/api/filters", key="project")["values"]
    assert sorted(values) == ["/home/dev/src/hello", "/home/dev/src/other"]
    branches = in_process.get_json("/api/filters", key="git.branch", q="FIX")["values"]
    assert branches == ["fix/login"]
