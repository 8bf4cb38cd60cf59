"""Client strings that fight the layout, in a real browser: a U+202E (RIGHT-TO-LEFT OVERRIDE) that would
make "evil" read "live" and reorder the text after it, and 3,000-character values that once made the session
page 27,230 px wide. A real ``ccmetrics serve`` gets them as metric points and as log events, and Chromium
shows the dashboard and both sessions' pages at a desktop and a phone width.

On every page and at every width: nothing is wider than the viewport; every element that shows a client value
is bidi-isolated; every element that shows a long value is narrower than the viewport, ellipsised, and has the
whole value in its ``title``; the charts draw long labels cut with an ellipsis and bidi text isolated."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from .browser import shot
from .otlp_builders import SECOND, log_request, prompt_spans, sum_request, trace_request
from .test_browser import post

RLO = "\u202e"
FSI, PDI = "\u2068", "\u2069"
ELLIPSIS = "\u2026"


def long_value(name: str) -> str:
    return (f"{name}-" + "0123456789abcdef" * 200)[:3000]


# Session A: an overriding session id and user; long model, tool and team.
# Session B: the other way round. So each session page shows both kinds of hostile value.
A = {
    "session": f"session{RLO}evil",
    "user": f"user{RLO}evil",
    "model": long_value("model"),
    "tool": long_value("tool"),
    "team": long_value("team"),
}
B = {
    "session": long_value("session"),
    "user": long_value("user"),
    "model": f"model{RLO}evil",
    "tool": f"tool{RLO}evil",
    "team": f"team{RLO}evil",
}
BIDI = sorted({v for s in (A, B) for v in s.values() if RLO in v})
LONG = sorted({v for s in (A, B) for v in s.values() if len(v) == 3000})
WIDTHS = (1440, 400)


def requests_for(s: dict[str, str], now_ns: int):
    resource = {"service.name": "claude-code", "team.id": s["team"]}
    # The email too: a user is shown by it (an id alone is shown cut to a short hash).
    point = {"user.id": s["user"], "user.email": s["user"], "session.id": s["session"], "model": s["model"]}
    start = now_ns - 60 * SECOND
    event = {"user.id": s["user"], "user.email": s["user"], "session.id": s["session"]}
    return (
        sum_request("claude_code.session.count", [(start, now_ns, 1, {**point})], resource=resource),
        sum_request("claude_code.cost.usage", [(start, now_ns, 0.25, point)], resource=resource, unit="USD"),
        sum_request(
            "claude_code.token.usage",
            [
                (start, now_ns, 1200, {**point, "type": "input"}),
                (start, now_ns, 300, {**point, "type": "output"}),
            ],
            resource=resource,
            unit="tokens",
        ),
        log_request(
            [
                (now_ns - 50 * SECOND, "user_prompt", {**event, "prompt_length": 42}),
                (
                    now_ns - 40 * SECOND,
                    "api_request",
                    {
                        **event,
                        "model": s["model"],
                        "cost_usd": 0.25,
                        "duration_ms": 1500,
                        "input_tokens": 1200,
                        "output_tokens": 300,
                    },
                ),
                (
                    now_ns - 30 * SECOND,
                    "tool_decision",
                    {**event, "tool_name": s["tool"], "decision": "accept", "source": "config"},
                ),
                (
                    now_ns - 20 * SECOND,
                    "tool_result",
                    {**event, "tool_name": s["tool"], "success": "true", "duration_ms": 12},
                ),
            ],
            resource=resource,
        ),
        # A prompt's spans: the model on its LLM requests, the tool on its tool span.
        trace_request(
            prompt_spans(1 if s is A else 2, now_ns - 50 * SECOND, event, tool=s["tool"], model=s["model"]),
            resource=resource,
        ),
    )


# Every text node that holds (the start of) a hostile value, and how its element is laid out.
SCAN_TEXT = """([bidi, long]) => {
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const b = bidi.find((v) => node.data.includes(v));
    const l = long.find((v) => node.data.includes(v.slice(0, 40)));
    if (!b && !l) continue;
    const e = node.parentElement, style = getComputedStyle(e), rect = e.getBoundingClientRect();
    const titled = e.closest("[title]");
    let box = e.parentElement;  // the box it is laid out in: an ellipsis cut off by that box is no ellipsis
    while (box.parentElement && getComputedStyle(box).display.startsWith("inline")) box = box.parentElement;
    const outer = box.getBoundingClientRect();
    const place = e.closest("[data-panel]") || e.closest("[id]");
    found.push({
      kind: b ? "bidi" : "long", value: b || l, tag: e.tagName.toLowerCase(),
      place: place ? (place.dataset.panel || place.id) : "",
      isolated: ["isolate", "isolate-override", "plaintext"].includes(style.unicodeBidi)
        || !!e.closest("bdi"),
      title: titled ? titled.getAttribute("title") : null,
      rendered: e.getClientRects().length > 0,
      width: rect.width,
      contained: rect.left >= outer.left - 1 && rect.right <= outer.right + 1,
      ellipsised: (style.textOverflow === "ellipsis" && e.scrollWidth > e.clientWidth)
        || node.data.includes("\u2026"),
    });
  }
  return found;
}"""

# Every string the charts draw: legend items, axis ticks, and each tooltip's title and body.
SCAN_CHARTS = """() => {
  const out = [];
  for (const canvas of document.querySelectorAll("canvas")) {
    const chart = Chart.getChart(canvas);
    if (!chart) continue;
    const panel = canvas.closest("[data-panel]").dataset.panel;
    const add = (where, text) =>
      [].concat(text ?? []).forEach((t) => out.push({ panel, where, text: String(t) }));
    const legend = chart.legend && chart.options.plugins.legend.display !== false;
    for (const item of (legend ? chart.legend.legendItems || [] : [])) add("legend", item.text);
    for (const scale of Object.values(chart.scales)) for (const tick of scale.ticks) add("axis", tick.label);
    if (chart.options.plugins.tooltip.enabled === false) continue;
    chart.data.datasets.forEach((dataset, d) => {
      const index = dataset.data.findLastIndex((v) => v !== null && v !== undefined && v !== 0);
      if (index < 0) return;
      chart.tooltip.setActiveElements([{ datasetIndex: d, index }], { x: 0, y: 0 });
      chart.update("none");
      add("tooltip", chart.tooltip.title);
      for (const part of chart.tooltip.body || []) add("tooltip", part.lines);
    });
    chart.tooltip.setActiveElements([], { x: 0, y: 0 });
    chart.update("none");
  }
  return out;
}"""


def page_width(page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


def check_layout_and_text(page, where: str, must_show: dict[str, set[str]]) -> list[dict]:
    scroll_width, inner_width = page_width(page)
    assert scroll_width <= inner_width + 2, (
        f"{where}: the page is {scroll_width} px wide in a {inner_width} px window"
    )
    found = page.evaluate(SCAN_TEXT, [BIDI, LONG])
    for kind, places in must_show.items():
        shown = {f["place"] for f in found if f["kind"] == kind}
        assert places <= shown, (
            f"{where}: no {kind} value shown in {sorted(places - shown)} (found in {sorted(shown)})"
        )
    for f in found:
        label = f"{where}: <{f['tag']}> in {f['place']!r} showing {f['value'][:20]!r}"
        assert f["isolated"], f"{label} is not bidi-isolated"
        if f["kind"] == "long":
            assert f["title"] == f["value"], (
                f"{label} has no title with the whole value (title {str(f['title'])[:40]!r})"
            )
            if f["rendered"]:
                assert f["width"] <= inner_width, (
                    f"{label} is {f['width']} px wide in a {inner_width} px window"
                )
                assert f["ellipsised"], f"{label} is neither cut nor ellipsised"
                assert f["contained"], f"{label} sticks out of the box it is in, which hides its ellipsis"
    return found


def check_charts(page, where: str) -> None:
    drawn = page.evaluate(SCAN_CHARTS)
    long_labels = [d for d in drawn if any(v[:20] in d["text"] for v in LONG)]
    assert {d["panel"] for d in long_labels} >= {"tokens_by_model", "cost_by_model", "cost_over_time"}, where
    assert {d["where"] for d in long_labels} == {"legend", "axis", "tooltip"}, where
    for d in drawn:
        text = d["text"].replace(FSI, "").replace(PDI, "")
        label = f"{where}: {d['where']} of {d['panel']} draws {text[:30]!r}"
        assert len(text) <= 120, f"{label}... ({len(text)} characters)"
        if any(v[:20] in text for v in LONG):
            assert ELLIPSIS in text, f"{label} cut without an ellipsis"
        if RLO in text:
            # The override is closed inside an isolate: it cannot reorder what the chart draws after it.
            isolate = d["text"].rfind(FSI, 0, d["text"].index(RLO))
            assert isolate >= 0 and PDI in d["text"][d["text"].index(RLO) :], (
                f"{label}: the U+202E is not isolated"
            )


def wait_dashboard(page) -> None:
    page.wait_for_function(
        """([bidi, long]) => {
          const text = (id) => (document.querySelector(`[data-panel="${id}"] tbody`) || {}).textContent || "";
          const charts = ["tokens_by_model", "cost_by_model", "cost_over_time"].every((id) => {
            const canvas = document.querySelector(`[data-panel="${id}"] canvas`);
            return canvas && Chart.getChart(canvas) && Chart.getChart(canvas).data.labels.length > 0;
          });
          return charts && bidi.some((v) => text("leaderboard_users").includes(v)) &&
            long.some((v) => text("tools").includes(v.slice(0, 40))) &&
            [...document.querySelectorAll("#model option")].length >= 3 &&
            [...document.querySelectorAll("#group-value option")].length >= 3;
        }""",
        arg=[BIDI, LONG],
        timeout=10000,
    )


# Where the dashboard shows both kinds of value: tables, and the choices of the filters.
SHOWN_ON_DASHBOARD = {
    "leaderboard_users",
    "leaderboard_groups",
    "tools",
    "api_latency",
    "recent_sessions",
    "model",
    "user",
    "group-value",
}
DASHBOARD_PLACES = {"bidi": SHOWN_ON_DASHBOARD, "long": SHOWN_ON_DASHBOARD}


@pytest.mark.parametrize("width", WIDTHS)
def test_hostile_strings_keep_the_dashboard_in_the_window(server, page, width):
    now = time.time_ns()
    for s in (A, B):
        for request in requests_for(s, now):
            post(server, request)
    page.set_viewport_size({"width": width, "height": 1000})
    page.goto(server.url + "/")
    wait_dashboard(page)
    page.wait_for_timeout(300)
    check_layout_and_text(page, f"dashboard at {width} px", DASHBOARD_PLACES)
    check_charts(page, f"dashboard at {width} px")
    assert page.locator(".panel-error").count() == 0
    shot(page, f"dashboard-hostile-{width}")

    # The dark theme draws the same page.
    page.click("#theme")
    wait_dashboard(page)
    page.wait_for_timeout(300)
    check_layout_and_text(page, f"dark dashboard at {width} px", DASHBOARD_PLACES)
    check_charts(page, f"dark dashboard at {width} px")
    shot(page, f"dashboard-hostile-{width}-dark")

    # A long filter choice, picked: the select and the page stay in the window, the filter is in the URL.
    page.select_option("#model", A["model"])
    page.wait_for_function("() => location.search.includes('filter=model')")
    page.wait_for_function(
        "(v) => !document.querySelector('[data-panel=\"api_latency\"] tbody').textContent.includes(v)",
        arg=B["model"],
    )
    check_layout_and_text(page, f"filtered dashboard at {width} px", {"long": {"model", "api_latency"}})
    assert page.locator("#model").evaluate("e => e.getBoundingClientRect().width") <= min(width, 400)
    assert page.locator("#model").get_attribute("title") == A["model"]
    shot(page, f"dashboard-hostile-{width}-filtered")
    assert page.errors == []


@pytest.mark.parametrize("width", WIDTHS)
def test_hostile_strings_keep_the_session_page_in_the_window(server, page, width):
    now = time.time_ns()
    for s in (A, B):
        for request in requests_for(s, now):
            post(server, request)
    page.set_viewport_size({"width": width, "height": 1000})
    for name, s in (("a", A), ("b", B)):
        page.goto(server.url + "/session/" + quote(s["session"], safe=""))
        page.wait_for_selector("#timeline li[data-event='tool_result']")
        page.wait_for_timeout(200)
        assert page.locator("#session-id").inner_text() == s["session"]
        other = "long" if name == "a" else "bidi"
        found = check_layout_and_text(
            page,
            f"session {name} at {width} px",
            {"bidi" if name == "a" else "long": {"session-id", "facts"}, other: {"timeline", "traces"}},
        )
        shown = {f["value"] for f in found if f["place"] == "timeline"}
        assert {s["model"], s["tool"]} <= shown, f"session {name}: the timeline lacks its model or tool"
        shot(page, f"session-hostile-{name}-{width}")
    assert page.errors == []
