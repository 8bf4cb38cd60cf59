"""The session page's waterfall in Chromium: a row per span under its parent, its bar inside the track where
its time is, its duration, and what it tells when opened; client strings as text; light and dark, 1440 and
400 px; and what to set when a session has no traces. One real server, sent spans as OTLP/HTTP exports."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .browser import shot
from .conftest import Export, ServerProcess
from .otlp_builders import SECOND, prompt_spans, sum_request, trace_request

XSS = "<img src=x onerror=\"document.title='pwned'\">"
TRACED, UNTRACED = "traced-session", "untraced-session"
DEPTHS = [0, 1, 1, 2, 2, 1]
NAMES = ["interaction", "llm_request", "tool", "tool.blocked_on_user", "tool.execution", "llm_request"]


def post(server: ServerProcess, request: Any) -> None:
    response = server.send(Export.of(request))
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = ServerProcess(tmp_path_factory.mktemp("traces")).start()
    t0 = time.time_ns() - 600 * SECOND
    for session in (TRACED, UNTRACED):
        who = {"user.email": "dev@example.com", "session.id": session}
        post(started, sum_request("claude_code.session.count", [(t0 - SECOND, t0, 1, who)]))
    who = {"user.email": "dev@example.com", "session.id": TRACED}
    post(started, trace_request(prompt_spans(1, t0 + 10 * SECOND, who)))
    hostile = prompt_spans(2, t0 + 60 * SECOND, who, tool=XSS, model=XSS)
    post(started, trace_request(hostile, error=frozenset({hostile[4][1]})))
    yield started
    started.stop(signal.SIGKILL)


# Per row: its span, depth, the indent of its name, and its bar and track as boxes.
ROWS = """() => [...document.querySelectorAll('#traces .trace')].map((trace) =>
  [...trace.querySelectorAll('details.span')].map((row) => {
    const box = (n) => { const r = n.getBoundingClientRect(); return [r.left, r.right, r.width]; };
    return { span: row.dataset.span.replace('claude_code.', ''), depth: Number(row.dataset.depth),
             indent: parseFloat(getComputedStyle(row.querySelector('.span-name')).paddingLeft),
             bar: box(row.querySelector('.bar')), track: box(row.querySelector('.track')),
             took: row.querySelector('.took').textContent, bad: row.classList.contains('bad') };
  }))"""
WIDER = "() => document.documentElement.scrollWidth > innerWidth + 1"


def check_rows(page: Any) -> list[list[dict[str, Any]]]:
    traces = page.evaluate(ROWS)
    assert len(traces) == 2
    for rows in traces:
        assert [r["span"] for r in rows] == NAMES and [r["depth"] for r in rows] == DEPTHS
        assert [r["indent"] for r in rows] == [12 * d for d in DEPTHS]  # each under its parent
        for r in rows:
            (left, right, width), (track_left, track_right, _) = r["bar"], r["track"]
            assert track_left - 0.5 <= left and right <= track_right + 0.5, r  # inside its track
            assert width >= 1, r
        interaction, request, tool, wait, run, answer = rows
        scale = interaction["track"][2] / 5000  # px per ms: the interaction is the trace, 5 s long
        assert interaction["bar"][0] == pytest.approx(interaction["track"][0], abs=0.5)
        assert interaction["bar"][2] == pytest.approx(interaction["track"][2], abs=0.5)
        for row, start_ms, took_ms in (
            (request, 10, 1490),
            (tool, 1600, 2000),
            (wait, 1600, 1400),
            (run, 3000, 500),
            (answer, 3700, 1200),
        ):
            assert row["bar"][0] - row["track"][0] == pytest.approx(start_ms * scale, abs=1), row
            assert row["bar"][2] == pytest.approx(took_ms * scale, abs=1), row
            assert re.sub(r"\D", "", row["took"]) == str(took_ms), row
        assert re.sub(r"\D", "", interaction["took"]) == "5000"
    assert [r["bad"] for r in traces[1]] == [False, False, False, False, True, False]
    return traces


def test_each_prompt_as_a_waterfall(server: ServerProcess, page: Any) -> None:
    page.goto(f"{server.url}/session/{TRACED}")
    page.wait_for_selector("#traces .trace")
    check_rows(page)
    headings = page.locator("#traces .trace h3").all_inner_texts()
    assert [h.split(" · ")[0] for h in headings] == ["Prompt 1", "Prompt 2"]
    assert all(re.search(r" · 5.000 ms · 6 spans$", h) for h in headings), headings
    first = page.locator("#traces .trace").first
    name, model, took = first.locator("summary").nth(1).inner_text().split("\n")
    assert (name, model, re.sub(r"\D", "", took)) == ("LLM request", "claude-sonnet-4-5", "1490")
    # Opened, a row tells what the span carries.
    first.locator("summary").nth(1).click()
    fields = first.locator("details.span").nth(1).locator(".fields")
    assert fields.is_visible()
    text = fields.inner_text()
    assert "input tokens" in text and "700" in text and "stop reason" in text and "tool_use" in text
    wait = first.locator("details.span").nth(3)
    wait.locator("summary").click()
    assert "accept" in wait.locator(".fields").inner_text()
    assert "decision: accept" in (wait.locator("summary").get_attribute("title") or "")
    shot(page, "traces-1440-light")

    # A client's markup is text: in a row's name, its title and its fields.
    hostile = page.locator("#traces .trace").nth(1)
    tool = hostile.locator("details.span").nth(2)
    assert XSS in tool.locator("summary").inner_text()
    tool.locator("summary").click()
    assert XSS in tool.locator(".fields").inner_text()
    assert XSS in hostile.locator("details.span").nth(1).inner_text()  # the model
    assert page.locator("#traces img").count() == 0
    assert page.title() != "pwned"

    for theme in ("dark", "light"):
        page.evaluate(f"localStorage.setItem('ccmetrics-theme', '{theme}')")
        page.set_viewport_size({"width": 1440, "height": 1000})
        page.reload()
        page.wait_for_selector("#traces .trace")
        check_rows(page)
        assert not page.evaluate(WIDER)
        shot(page, f"traces-1440-{theme}")
        page.set_viewport_size({"width": 400, "height": 900})
        page.wait_for_timeout(200)
        check_rows(page)
        assert not page.evaluate(WIDER)
        shot(page, f"traces-400-{theme}")
    assert page.errors == []


def test_a_session_without_traces_says_what_to_set(server: ServerProcess, page: Any) -> None:
    page.goto(f"{server.url}/session/{UNTRACED}")
    page.wait_for_selector("#traces .note")
    text = page.locator("#traces").inner_text()
    assert "No traces for this session" in text
    assert "CLAUDE_CODE_ENHANCED_TELEMETRY_BETA=1" in text and "OTEL_TRACES_EXPORTER=otlp" in text
    assert page.locator("#traces .trace").count() == 0
    page.set_viewport_size({"width": 400, "height": 900})
    assert not page.evaluate(WIDER)
    assert page.errors == []
