"""CSV formula injection: attribute values that a spreadsheet would run as formulas, through a real server and
in-process.

A model or user id starting with =, +, -, @, a tab or a carriage return came out of ``?format=csv`` as it was,
and a spreadsheet opening the file would run it (``=HYPERLINK(...)``). OWASP's rule: such a text cell gets a
leading single quote and is quoted. Numbers stay numbers, negative ones too.
"""

from __future__ import annotations

import csv
import io
import time

import httpx
import pytest

from ccmetrics.web.app import to_csv

from .conftest import Export, ServerProcess
from .good_traffic import assert_still_counts, send_before, totals
from .in_process import InProcessServer
from .otlp_builders import sum_request

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
HOSTILE = ['=HYPERLINK("http://x")', "@SUM(1)", "+1", "-2", "\tx", "\rx", "=1+2", "-2+3"]
COST_EACH = 0.001


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def send_hostile(server: ServerProcess | InProcessServer) -> None:
    now = time.time_ns()
    points = [
        (now - 10**9, now, COST_EACH, {"model": value, "user.id": value, "session.id": f"csv-{i}"})
        for i, value in enumerate(HOSTILE)
    ]
    request = sum_request("claude_code.cost.usage", points, unit="USD")
    export = Export("/v1/metrics", "application/x-protobuf", None, request.SerializeToString())
    response = server.send(export)
    assert response.status_code == 200, response.text


def panel_csv(server: ServerProcess | InProcessServer, panel_id: str) -> list[list[str]]:
    response = server.get(f"/api/panels/{panel_id}", params={"format": "csv"})
    assert response.status_code == 200, (panel_id, response.text[:200])
    return list(csv.reader(io.StringIO(response.text, newline="")))


def assert_inert(rows: list[list[str]], where: str) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_START) or is_number(cell), (where, cell)


def test_formula_like_values_are_exported_as_text(server):
    before = send_before(server)
    send_hostile(server)
    with_hostile = totals(server.summary())
    assert with_hostile["cost_usd"] == pytest.approx(before["cost_usd"] + COST_EACH * len(HOSTILE), abs=1e-9)

    panels = httpx.get(f"{server.url}/api/panels", timeout=10).json()["panels"]
    cells: set[str] = set()
    for panel in panels:
        rows = panel_csv(server, panel["id"])
        assert_inert(rows, panel["id"])
        cells.update(cell for row in rows for cell in row)
    # The values are there, as text: the panels by model and by user list them.
    for value in HOSTILE:
        if value[0] not in "\t\r":  # the store may clean control characters out of a value
            assert "'" + value in cells, value
    assert_still_counts(server, with_hostile)


def test_the_csv_of_a_panel_by_model_has_its_numbers_as_numbers(in_process):
    send_before(in_process)
    send_hostile(in_process)
    rows = panel_csv(in_process, "cost_by_model")
    assert rows[0] == ["label", "value"]
    by_label = {label: value for label, value in rows[1:]}
    for value in ('=HYPERLINK("http://x")', "@SUM(1)", "+1", "-2"):
        assert float(by_label["'" + value]) == pytest.approx(COST_EACH)


def test_numbers_stay_numbers_and_text_is_quoted():
    data = {
        "columns": [{"key": "user", "label": "User"}, {"key": "cost", "label": "-Cost"}],
        "rows": [
            {"user": "=cmd|' /C calc'!A0", "cost": -1.5},
            {"user": "plain", "cost": 2},
            {"user": "-3", "cost": None},
        ],
    }
    text = to_csv(data)
    assert text.splitlines() == [
        '"User","\'-Cost"',
        "\"'=cmd|' /C calc'!A0\",-1.5",
        '"plain",2',
        '"\'-3",""',
    ]
    series = {
        "times": [0],
        "series": [{"label": "@evil", "values": [-0.25]}, {"label": "\tok", "values": [3]}],
    }
    assert list(csv.reader(io.StringIO(to_csv(series)))) == [
        ["time", "'@evil", "'\tok"],
        ["1970-01-01T00:00:00Z", "-0.25", "3"],
    ]
    assert to_csv({"items": [{"label": "+1", "value": -7}]}).splitlines() == ['"label","value"', '"\'+1",-7']
    assert to_csv({"value": -0.5}).splitlines() == ['"value"', "-0.5"]
