"""The dashboard a team lead opens every morning, in Chromium at 1440 and 400 px, light and dark: nothing cut,
axes that read, empty panels that say so, one colour per model, filters that explain themselves, the
previous period beside each headline stat, the doctor's test export kept out, and a session page that
fits. One server for the module: empty first, then a team's last hours of data (sent now)."""

from __future__ import annotations

import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from ccmetrics.doctor import probe_requests

from .browser import shot, wait_stat
from .conftest import Export, ServerProcess, fixture_exports, send
from .otlp_builders import SECOND, log_request, sum_request

STATIC = Path(__file__).resolve().parents[1] / "src" / "ccmetrics" / "web" / "static"
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
MODELS = ("claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "claude-haiku-4-5-20251001")
SESSION = "glance-session-1"
NARROW = {"width": 400, "height": 900}


def post(server: ServerProcess, request: Any) -> None:
    response = server.send(Export.of(request))
    assert response.status_code == 200, response.text


def team_hours(server: ServerProcess, now: int) -> None:
    """Four people on two teams over the past five hours (a point every 10 minutes, three models), one of
    them a day earlier too (the previous period of a 24-hour view), and a session that loads six plugins."""
    people = [(f"dev{i}@example.com", "platform" if i < 2 else "web") for i in range(4)]
    for i, (email, team) in enumerate(people):
        resource = {"service.name": "claude-code", "team.id": team}
        session = SESSION if i == 0 else f"glance-session-{i + 1}"
        who = {"user.id": f"{i:02x}" * 32, "user.email": email, "session.id": session}
        start = now - 5 * HOUR + i * MINUTE
        steps = [start + k * 10 * MINUTE for k in range(29)]
        post(
            server,
            sum_request("claude_code.session.count", [(start - SECOND, start, 1, who)], resource=resource),
        )
        cost, tokens, lines, active = [], [], [], []
        for k, t in enumerate(steps):
            model = MODELS[(i + k) % 3]
            cost.append((t - 10 * MINUTE, t, 0.01 * (k % 5 + 1) * (i + 1), {**who, "model": model}))
            for kind, n in (("input", 1200 + 37 * k), ("output", 90 + k)):
                tokens.append((t - 10 * MINUTE, t, n, {**who, "model": model, "type": kind}))
            lines.append((t - 10 * MINUTE, t, 3 + k % 4, {**who, "model": model, "type": "added"}))
            active.append((t - 10 * MINUTE, t, 11.0 + (k % 3) * 0.25, {**who, "type": "cli"}))
        post(server, sum_request("claude_code.cost.usage", cost, unit="USD", resource=resource))
        post(server, sum_request("claude_code.token.usage", tokens, unit="tokens", resource=resource))
        post(server, sum_request("claude_code.lines_of_code.count", lines, resource=resource))
        post(server, sum_request("claude_code.active_time.total", active, unit="s", resource=resource))
        post(
            server,
            sum_request(
                "claude_code.commit.count", [(steps[5] - SECOND, steps[5], 2, who)], resource=resource
            ),
        )
        events = [
            (
                t,
                "api_request",
                {**who, "model": MODELS[(i + k) % 3], "duration_ms": 900 + 40 * k, "ttft_ms": 300 + k},
            )
            for k, t in enumerate(steps)
        ]
        events += [(t + SECOND, "user_prompt", {**who, "prompt_length": 40 + k}) for k, t in enumerate(steps)]
        events += [
            (
                t + 2 * SECOND,
                "tool_result",
                {**who, "tool_name": "Edit", "success": "true", "duration_ms": 12},
            )
            for t in steps
        ]
        if i == 0:
            events += [(start + n, "plugin_loaded", {**who, "plugin.name": f"plugin-{n}"}) for n in range(6)]
            late = steps[-1] + 5 * SECOND
            events += [
                (late, "api_refusal", {**who, "model": MODELS[0]}),
                (
                    late + 1,
                    "compaction",
                    {**who, "trigger": "auto", "pre_tokens": 150000, "post_tokens": 9000},
                ),
                (
                    late + 2,
                    "hook_execution_complete",
                    {**who, "hook_event": "PreToolUse", "hook_name": "lint"},
                ),
                (late + 3, "subagent_completed", {**who, "agent.name": "reviewer"}),
                (late + 4, "skill_activated", {**who, "skill.name": "pdf"}),
                (late + 5, "mcp_server_connection", {**who, "mcp_server.name": "github"}),
            ]
        post(server, log_request(events, resource=resource))
    # The day before: the previous period of the last 24 hours.
    who = {"user.id": "00" * 32, "user.email": "dev0@example.com", "session.id": "glance-yesterday"}
    resource = {"service.name": "claude-code", "team.id": "platform"}
    then = now - 30 * HOUR
    post(server, sum_request("claude_code.session.count", [(then - SECOND, then, 1, who)], resource=resource))
    point = (then - MINUTE, then, 0.5, {**who, "model": MODELS[0]})
    post(server, sum_request("claude_code.cost.usage", [point], unit="USD", resource=resource))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    started = ServerProcess(tmp_path_factory.mktemp("glance")).start()
    yield started
    started.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def loaded(server: ServerProcess) -> ServerProcess:
    # The doctor's test export first: by itself, it is no data (see the first test).
    metrics, logs = probe_requests(str(uuid.uuid4()))
    post(server, metrics)
    post(server, logs)
    team_hours(server, time.time_ns())
    for capture in ("http-protobuf-delta", "http-json-cumulative"):
        for export in fixture_exports(capture):
            assert send(server.otlp_http, export).status_code == 200
    return server


def dashboard(server: ServerProcess, **params: Any) -> dict[str, Any]:
    response = httpx.get(server.url + "/api/dashboard", params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def narrow(page: Any) -> None:
    page.set_viewport_size(NARROW)
    page.wait_for_timeout(300)


def theme(page: Any, name: str) -> None:
    page.evaluate(f"localStorage.setItem('ccmetrics-theme', '{name}')")
    page.reload()


# Whatever is cut: titles and values wider or taller than their box, and anything past the page's right edge.
CUT = """() => {
  const cut = (n) => n.scrollWidth > n.clientWidth + 1 || n.scrollHeight > n.clientHeight + 1;
  const out = [];
  const shown = '.panel:not([hidden]) h3, .stat-value, .card .label, .card bdi, pre';
  for (const n of document.querySelectorAll(shown))
    if (n.offsetParent && cut(n)) out.push(n.textContent);
  for (const n of document.querySelectorAll('.panel:not([hidden]) h3')) {
    const h = n.getBoundingClientRect(), p = n.closest('.panel').getBoundingClientRect();
    if (h.bottom > p.bottom || h.right > p.right) out.push('outside its panel: ' + n.textContent);
  }
  if (document.documentElement.scrollWidth > innerWidth + 1) out.push('page wider than the window');
  return out;
}"""

# Tables that are cut without saying so: wider than their box, with no shadow and no hint.
SILENTLY_CLIPPED = """() => [...document.querySelectorAll('.table-box')].filter((b) => b.offsetParent &&
  b.scrollWidth > b.clientWidth + 1 && !(b.classList.contains('scroll-x') && !b.nextElementSibling.hidden))
  .map((b) => b.closest('.panel').dataset.panel)"""

# Per chart over time: the labels of its x axis that overlap (each drawn label as a box, 6 px apart at least);
# per chart of whole numbers: ticks that are not whole.
AXES = """() => {
  const out = { overlaps: [], fractions: [], charts: 0 };
  for (const canvas of document.querySelectorAll('.panel canvas')) {
    const chart = Chart.getChart(canvas), panel = canvas.closest('.panel').dataset.panel;
    if (!chart || !chart.scales.x) continue;
    out.charts++;
    const x = chart.scales.x, ctx = chart.ctx;
    ctx.font = Chart.helpers.toFont(x.options.ticks.font).string;
    const boxes = x.ticks.map((t, i) => {
      const lines = [].concat(x.getLabelForValue(t.value));
      const w = Math.max(...lines.map((l) => ctx.measureText(String(l)).width));
      const at = x.getPixelForTick(i);
      return [at - w / 2, at + w / 2];
    });
    if (x.type === 'category')
      for (let i = 1; i < boxes.length; i++) if (boxes[i][0] < boxes[i - 1][1] + 6) out.overlaps.push(panel);
    for (const axis of Object.values(chart.scales))
      if (axis.type === 'linear' && axis.options.ticks.precision === 0)
        for (const t of axis.ticks)
          if (!Number.isInteger(t.value)) out.fractions.push(`${panel}: ${t.value}`);
  }
  return out;
}"""

COLOURS = """() => {
  const seen = {};
  for (const canvas of document.querySelectorAll('.panel canvas')) {
    const chart = Chart.getChart(canvas), panel = canvas.closest('.panel').dataset.panel;
    if (!chart || chart.config.type === 'doughnut' && !chart.data.labels) continue;
    const add = (label, colour) => { (seen[label] = seen[label] || {})[panel] = String(colour).slice(0, 7); };
    if (chart.config.type === 'line' || panel.endsWith('over_time'))
      chart.data.datasets.forEach((d) => add(d.label, d.borderColor));
    else (chart.data.labels || []).forEach((l, i) => add(l, chart.data.datasets[0].backgroundColor[i]));
  }
  return seen;
}"""


def test_the_doctors_test_export_alone_leaves_the_guidance(server, page):
    metrics, logs = probe_requests(str(uuid.uuid4()))
    post(server, metrics)
    post(server, logs)
    answer = dashboard(server, since="7d")
    assert answer["has_data"] is False
    assert not [k for k in answer["choices"]["filters"]["keys"] if k.startswith("ccmetrics.")]
    page.goto(server.url + "/")
    page.wait_for_selector("#empty:not([hidden])")
    text = page.locator("#empty").inner_text()
    assert "ccmetrics setup" in text and "ccmetrics doctor" in text
    setup = page.locator("#empty-setup").inner_text()
    assert f"ccmetrics setup --endpoint http://127.0.0.1:{server.otlp_grpc_port}" in setup
    assert page.evaluate(CUT) == []
    shot(page, "glance-empty-1440")
    narrow(page)
    assert page.evaluate(CUT) == []  # the code blocks wrap rather than run off a narrow screen
    shot(page, "glance-empty-400")
    assert page.errors == []


def test_dashboard_at_a_glance(loaded, page):
    server = loaded
    answer = dashboard(server, since="24h", compare="previous")
    panels = answer["panels"]
    keys = answer["choices"]["filters"]["keys"]
    assert "team.id" in keys and not [k for k in keys if k.startswith("ccmetrics.")]
    # The previous period of the same length (the cost and session of the day before), and a sparkline.
    assert panels["cost"]["previous"] == pytest.approx(0.5)
    assert panels["sessions"]["previous"] == 1
    assert len(panels["cost"]["spark"]) == len(panels["cost_over_time"]["times"])
    assert sum(panels["commits"]["spark"]) == panels["commits"]["value"] == 9
    # An average's sparkline: the mean of each bucket with prompts in it, none where there are none
    lengths = [x for x in panels["avg_prompt_length"]["spark"] if x is not None]
    assert lengths and len(lengths) < len(panels["avg_prompt_length"]["spark"])
    assert min(lengths) <= panels["avg_prompt_length"]["value"] <= max(lengths)
    assert "previous" not in dashboard(server, since="24h")["panels"]["cost"]
    # A few hours of data in a 7-day view: charted over the hours there are, not as a spike at the end.
    week = dashboard(server, since="7d")["panels"]["tokens_over_time"]
    assert week["times"][-1] - week["times"][0] <= 32 * HOUR
    assert sum(1 for i in range(len(week["times"])) if any(s["values"][i] for s in week["series"])) >= 10

    page.goto(server.url + "/?range=24h")
    wait_stat(page, "commits", "9")
    page.wait_for_selector('[data-panel="cost"] .delta:not([hidden]) .up')
    assert "was $0.5000" in page.locator('section[data-panel="cost"] .delta').inner_text()
    for panel in ("sessions", "commits", "lines_net", "cost", "active_time", "avg_prompt_length"):
        assert page.locator(f'section[data-panel="{panel}"] .spark polyline').count() == 1, panel
    # Empty panels say so, in a short panel, instead of bare axes.
    errors = page.locator('section[data-panel="api_errors_by_status"]')
    assert errors.inner_text().endswith("No API errors in this range")
    assert errors.locator("canvas").count() == 0 and errors.evaluate("n => n.offsetHeight") < 150
    # Nothing cut at 1440 px: titles, values, tables (they fit); axes that read.
    assert page.evaluate(CUT) == []
    assert page.evaluate(SILENTLY_CLIPPED) == []
    for panel in ("api_latency", "leaderboard_users", "leaderboard_groups", "tools"):
        box = page.locator(f'section[data-panel="{panel}"] .table-box')
        assert box.evaluate("b => b.scrollWidth <= b.clientWidth + 1"), panel
    axes = page.evaluate(AXES)
    assert axes["charts"] >= 6 and axes["overlaps"] == [] and axes["fractions"] == []
    # One colour per model, in the pie, the bars and the lines alike.
    colours = page.evaluate(COLOURS)
    for model in MODELS:
        assert len(colours[model]) >= 3 and len(set(colours[model].values())) == 1, colours[model]
    shot(page, "glance-1440-light")
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 3800, height  # all panels shown, the outcome tables too; 3,952 px before, with fewer
    theme(page, "dark")
    wait_stat(page, "commits", "9")
    assert page.evaluate(CUT) == [] and page.evaluate(AXES)["overlaps"] == []
    shot(page, "glance-1440-dark")

    # 400 px: tables that do not fit say that they scroll; nothing else is cut.
    narrow(page)
    assert page.evaluate(CUT) == []
    assert page.evaluate(SILENTLY_CLIPPED) == []
    assert page.locator(".table-box.scroll-x").count() >= 1
    assert page.evaluate(AXES)["overlaps"] == []
    shot(page, "glance-400-dark")
    theme(page, "light")
    wait_stat(page, "commits", "9")
    shot(page, "glance-400-light")

    # "Compared with": nothing.
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.select_option("#compare", "off")
    page.wait_for_url("**compare=off**")
    page.wait_for_selector('[data-panel="cost"] .delta[hidden]', state="attached")
    assert page.errors == []


def test_a_filter_the_numbers_cannot_be_split_by_says_so(loaded, page):
    server = loaded
    model = MODELS[1]
    answer = dashboard(server, since="24h", filter=f"model={model}")["panels"]
    assert answer["sessions"]["value"] == 4  # the sessions that used the model
    assert "model" in answer["sessions"]["note"]
    for panel in ("commits", "active_time", "productivity_ratio"):
        assert answer[panel]["unsplit"] == ["model"] and answer[panel]["value"] is None, panel
    assert answer["cost"]["value"] > 0 and "unsplit" not in answer["cost"]
    assert answer["leaderboard_users"]["unsplit_columns"] == ["commits", "sessions"]
    assert answer["recent_sessions"]["unsplit_columns"] == ["prompts", "commits"]
    assert {row["commits"] for row in answer["recent_sessions"]["rows"]} == {None}
    # The README's example: a team and a model.
    both = {"filter": ["team.id=platform", f"model={model}"]}
    summary = server.summary(since="24h", **both)
    assert summary["sessions"] == 2 and summary["cost_usd"] > 0

    page.goto(server.url + f"/?range=24h&filter=model%3D{model}")
    wait_stat(page, "sessions", "4")
    assert "model" in page.locator('section[data-panel="sessions"] .note').inner_text()
    for panel in ("commits", "active_time", "active_time_over_time", "edit_decisions"):
        message = page.locator(f'section[data-panel="{panel}"] .message.unsplit')
        assert message.inner_text().startswith("Not split by model"), panel
    assert "*" in page.locator('section[data-panel="leaderboard_users"] thead').inner_text()
    assert page.evaluate(CUT) == []
    shot(page, "glance-model-filter")
    # A key nothing carries, from a link: named as text, like every client string.
    key = "<em>role</em>"
    page.goto(server.url + "/?range=24h&" + urlencode({"filter": f"{key}=x"}))
    page.wait_for_selector('[data-panel="commits"] .message.unsplit')
    assert key in page.locator('[data-panel="commits"] .message').inner_text()
    assert page.locator("em").count() == 0
    assert page.errors == []


def test_session_page_fits_and_tells_its_team_and_active_time(loaded, page):
    page.goto(loaded.url + f"/session/{SESSION}")
    page.wait_for_selector("#timeline li[data-event]")
    cards = dict(
        zip(
            page.locator(".card .label").all_inner_texts(),
            page.locator(".card .stat-value").all_inner_texts(),
            strict=True,
        )
    )
    assert cards["team.id"] == "platform"
    assert cards["Active time"].endswith("m") or cards["Active time"].endswith("s")
    plugins = page.locator('#timeline li[data-event="plugin_loaded"]')
    assert plugins.count() == 1 and plugins.get_attribute("data-count") == "6"
    assert "plugin-5" in plugins.inner_text() and "×6" in plugins.inner_text()
    # Newer events, with what they tell.
    shown = {
        name: page.locator(f'#timeline li[data-event="{name}"]').inner_text()
        for name in ("api_refusal", "compaction", "hook_execution_complete", "subagent_completed")
    }
    assert "API refusal" in shown["api_refusal"] and MODELS[0] in shown["api_refusal"]
    assert "auto" in shown["compaction"] and "150.0K" in shown["compaction"]
    assert "lint" in shown["hook_execution_complete"] and "reviewer" in shown["subagent_completed"]
    assert page.locator('#timeline li[data-event="api_refusal"].bad').count() == 1
    for name, detail in (("skill_activated", "pdf"), ("mcp_server_connection", "github")):
        assert detail in page.locator(f'#timeline li[data-event="{name}"]').inner_text()
    assert page.evaluate(CUT) == []
    shot(page, "glance-session-1440")
    for name in ("dark", "light"):
        theme(page, name)
        page.wait_for_selector("#timeline li[data-event]")
        narrow(page)
        assert page.evaluate(CUT) == []
        shot(page, f"glance-session-400-{name}")
    assert page.errors == []


def test_formats_keep_their_shape_and_the_page_stays_small(loaded, page):
    page.goto(loaded.url + "/?range=24h")
    page.wait_for_selector('[data-panel="cost"] .stat-value')
    same = page.evaluate(
        """() => [[11, 11.22, "seconds"], [3, 3.5, "count"], [12.5, 12.53, "usd"], [12500, 12530, "tokens"],
                  [120, 120.4, "chars"], [900, 900.5, "ms"]].map(([a, b, unit]) =>
          [ccm.format(a, unit), ccm.format(b, unit)].map((t) => t.replace(/\\d/g, "9")))"""
    )
    for a, b in same:
        assert a == b
    # The page's own JavaScript and CSS (Chart.js aside) stay under 60 KB.
    pages = [(STATIC / page).read_text() for page in ("index.html", "session.html")]
    own = {
        name
        for html in pages
        for name in re.findall(r'(?:src|href)="/static/([^"]+\.(?:js|css))"', html)
        if not name.startswith("vendor/")
    }
    assert {"common.js", "dashboard.js", "session.js", "style.css"} <= own
    size = sum((STATIC / name).stat().st_size for name in own)
    assert size < 60_000, size
    assert page.errors == []
