"""``ccmetrics export``: every point and event of a range, as CSV or JSON lines, read from a real store while
it takes data; prompt text only when the server kept it, and no CSV cell a spreadsheet would run."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ccmetrics import export
from ccmetrics.store import open_reader

from .conftest import Export
from .in_process import InProcessServer
from .otlp_builders import log_request, sum_request

SECOND = 1_000_000_000
DAY = 86400 * SECOND
PROMPT = "please refactor the billing module"
HOSTILE_EVENT = '=HYPERLINK("http://x")'
HOSTILE_UNIT = "-2+3"
HOSTILE_USER = "@SUM(1)"


def ccmetrics(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccmetrics", *args], capture_output=True, text=True, timeout=120
    )


def otlp(path: str, message: Any) -> Export:
    return Export(path, "application/x-protobuf", None, message.SerializeToString())


def fill(server: InProcessServer, now: int) -> None:
    """Points and events today, and one of each three days ago."""
    user = {"user.id": HOSTILE_USER, "session.id": "s-1", "model": "m"}
    for when in (now - 3 * DAY, now - 60 * SECOND, now - 30 * SECOND):
        points = [(when - SECOND, when, 0.5, {**user, "type": t}) for t in ("input", "output")]
        sent = server.send(
            otlp("/v1/metrics", sum_request("claude_code.token.usage", points, unit=HOSTILE_UNIT))
        )
        assert sent.status_code == 200
        records = [
            (when, "user_prompt", {**user, "prompt": PROMPT, "prompt_length": len(PROMPT)}),
            (when + 1, HOSTILE_EVENT, user),
        ]
        assert server.send(otlp("/v1/logs", log_request(records))).status_code == 200


def stored(db: Path, since_ns: int) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        points = conn.execute("SELECT COUNT(*) FROM points WHERE time_ns >= ?", (since_ns,)).fetchone()[0]
        events = conn.execute("SELECT COUNT(*) FROM events WHERE time_ns >= ?", (since_ns,)).fetchone()[0]
        return int(points), int(events)
    finally:
        conn.close()


@pytest.mark.parametrize("store_prompts", [False, True])
def test_jsonl_holds_every_record_of_the_range_and_prompt_text_only_if_kept(
    tmp_path: Path, store_prompts: bool
) -> None:
    data_dir = tmp_path / "data"
    now = time.time_ns()
    server = InProcessServer(data_dir, store_prompts=store_prompts)
    try:
        fill(server, now)
        done = ccmetrics("export", "--since", "1d", "--format", "jsonl", "--data-dir", str(data_dir))
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    points = [r for r in lines if r["record"] == "point"]
    events = [r for r in lines if r["record"] == "event"]
    assert (len(points), len(events)) == stored(data_dir / "ccmetrics.db", now - DAY) == (4, 4)
    assert f"exported {len(points)} points and {len(events)} events" in done.stderr
    assert all(r["time_ns"] >= now - DAY for r in lines)
    assert [r["record"] for r in lines] == ["point"] * 4 + ["event"] * 4  # points first, each in time order
    assert [r["time_ns"] for r in events] == sorted(r["time_ns"] for r in events)
    assert {p["unit"] for p in points} == {HOSTILE_UNIT} and sum(p["value"] for p in points) == 2.0
    assert all(p["attributes"]["user.id"] == HOSTILE_USER for p in points)
    prompts = [e for e in events if e["name"] == "user_prompt"]
    assert {e["attributes"]["prompt"] for e in prompts} == {PROMPT if store_prompts else "<REDACTED>"}
    assert (PROMPT in done.stdout) is store_prompts
    assert {e["attributes"]["session.id"] for e in events} == {"s-1"}


def test_csv_cells_are_never_formulas_and_numbers_stay_numbers(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    now = time.time_ns()
    server = InProcessServer(data_dir)
    try:
        fill(server, now)
    finally:
        server.close()
    out = tmp_path / "out.csv"
    done = ccmetrics("export", "--format", "csv", "-o", str(out), "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    for row in csv.reader(io.StringIO(text, newline="")):
        for cell in row:
            try:
                float(cell)
            except ValueError:
                assert not cell.startswith(export.FORMULA_START), cell
    # Read as a spreadsheet would: unquoted cells are numbers, quoted ones text.
    header, *rows = list(csv.reader(io.StringIO(text, newline=""), quoting=csv.QUOTE_NONNUMERIC))
    assert tuple(header) == export.COLUMNS
    records = [dict(zip(header, row, strict=True)) for row in rows]
    assert len(records) == sum(stored(data_dir / "ccmetrics.db", 0)) == 12  # all of it: no --since
    points = [r for r in records if r["record"] == "point"]
    assert all(isinstance(r["value"], float) and isinstance(r["time_ns"], float) for r in points)
    assert {r["unit"] for r in points} == {"'" + HOSTILE_UNIT}
    assert {r["name"] for r in records if r["record"] == "event"} == {"user_prompt", "'" + HOSTILE_EVENT}
    assert json.loads(str(points[0]["attributes"]))["user.id"] == HOSTILE_USER  # inside JSON: not a cell


def test_pages_join_up_without_losing_or_repeating_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    server = InProcessServer(data_dir)
    try:
        fill(server, time.time_ns())
    finally:
        server.close()

    def exported() -> str:
        conn = open_reader(data_dir / "ccmetrics.db")
        out = io.StringIO()
        try:
            export.write(conn, out, "jsonl", None, None)
        finally:
            conn.close()
        return out.getvalue()

    whole = exported()
    monkeypatch.setattr(export, "PAGE", 1)
    assert exported() == whole
    monkeypatch.setattr(export, "PAGE", 3)
    assert exported() == whole
    assert len(whole.splitlines()) == 12
