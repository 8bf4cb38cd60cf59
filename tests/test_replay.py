"""Replaying captured exports: whatever day a capture was made, it is replayed as sent in the past hour.

``test_replayed_suite_passes_a_year_back_and_ahead`` runs the tests that replay captures, and the browser test
that broke with the calendar once, with the machine's clock a year back and a year ahead (libfaketime).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from . import replay
from .conftest import CAPTURES, IN_CI, captured_exports, fixture_exports, replay_shift_ns

YEAR_NS = 365 * 24 * replay.HOUR_NS
ROOT = Path(__file__).resolve().parents[1]


def _newest(exports: list) -> int:
    return max(replay.newest_time_ns(e.path, e.content_type, e.raw) for e in exports)


@pytest.mark.parametrize(
    "moved_ns", [-YEAR_NS, 0, YEAR_NS], ids=["a year back", "as captured", "a year ahead"]
)
def test_a_capture_of_any_day_is_replayed_within_the_past_hour(moved_ns: int) -> None:
    """The captures moved a year back or ahead first, as if captured then: still replayed as sent just now."""
    for capture in CAPTURES:
        captured = [e.shifted(moved_ns) for e in captured_exports(capture)]
        replayed = [e.shifted(replay.hours_to_present(_newest(captured))) for e in captured]
        age_ns = time.time_ns() - _newest(replayed)
        assert 0 <= age_ns < replay.HOUR_NS, (capture, age_ns)
        for before, after in zip(captured, replayed, strict=True):  # whole hours: the same minute and second
            assert (
                replay.newest_time_ns(after.path, after.content_type, after.raw)
                - replay.newest_time_ns(before.path, before.content_type, before.raw)
            ) % replay.HOUR_NS == 0


def test_every_time_moves_and_nothing_else_changes() -> None:
    shift = replay_shift_ns()
    for capture in CAPTURES:
        for before, after in zip(captured_exports(capture), fixture_exports(capture), strict=True):
            if before.content_type.startswith("application/json"):
                old, new = json.loads(before.raw), json.loads(after.raw)
                assert _without_times(old) == _without_times(new)  # int64 still strings, enums still numbers
                assert sorted(_times(new)) == sorted(t + shift for t in _times(old))
            elif before.path == "/v1/logs":
                old_logs = ExportLogsServiceRequest.FromString(before.raw)
                new_logs = ExportLogsServiceRequest.FromString(after.raw)
                pairs = zip(
                    old_logs.resource_logs[0].scope_logs[0].log_records,
                    new_logs.resource_logs[0].scope_logs[0].log_records,
                    strict=True,
                )
                for old_record, new_record in pairs:
                    assert new_record.time_unix_nano == old_record.time_unix_nano + shift
                    stamps = [
                        (kv.value.string_value for kv in r.attributes if kv.key == "event.timestamp")
                        for r in (old_record, new_record)
                    ]
                    old_stamp, new_stamp = (next(s) for s in stamps)
                    assert _iso_ns(new_stamp) - _iso_ns(old_stamp) == shift


def _times(node: object) -> list[int]:
    if isinstance(node, list):
        return [t for item in node for t in _times(item)]
    if not isinstance(node, dict):
        return []
    found = []
    for key, value in node.items():
        found += [int(value)] if _is_time(key) else _times(value)
    return found


def _is_time(key: str) -> bool:
    return key.endswith(("TimeUnixNano", "timeUnixNano"))


def _without_times(node: object) -> object:
    if isinstance(node, list):
        return [_without_times(item) for item in node]
    if isinstance(node, dict):
        return {k: _without_times(v) for k, v in node.items() if not _is_time(k) and k != "attributes"}
    return node


def _iso_ns(text: str) -> int:
    import datetime as dt

    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1000) * 1_000_000


REPLAYING = ["tests/test_browser.py", "tests/test_fixtures.py", "tests/test_panels.py"]


@pytest.mark.parametrize("offset", ["-365d", "+365d"])
def test_replayed_suite_passes_a_year_back_and_ahead(offset: str) -> None:
    faketime = shutil.which("faketime")
    if faketime is None:
        if IN_CI:
            pytest.fail("CI=true and faketime is required (apt-get install faketime)")
        pytest.skip("faketime is not installed (apt-get install faketime)")
    _forget_stale_faketime_state()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    run = subprocess.run(
        [faketime, "-f", offset, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *REPLAYING],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
    if "FAKETIME" not in os.environ:  # (inside another faketime the offsets do not add up)
        moved = int(
            subprocess.run([faketime, "-f", offset, "date", "+%s"], capture_output=True, text=True).stdout
        )
        assert abs(abs(moved - time.time()) - 365 * 86400) < 3600  # the clock really was moved


def _forget_stale_faketime_state() -> None:
    """libfaketime names its semaphore and shared memory after the process that made them; one killed
    before it could remove them stops a later run whose process gets the same number."""
    for path in Path("/dev/shm").glob("*faketime_*_*"):
        pid = path.name.rsplit("_", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            path.unlink(missing_ok=True)
