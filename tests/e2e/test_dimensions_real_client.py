"""The dimensions Claude Code 2.1 tags cost and tokens with, from the real CLI: an MCP server's tool, a
project's skill and a custom subagent, each called through the CLI's own tools, as the fake API's script asks.

Four real sessions (print mode) export through the recording tee into one server. With
``OTEL_LOG_TOOL_DETAILS=1``, which lets the CLI name them: one calls a tool of a real stdio MCP server
(``mcp_server.py``, the ``mcp`` package), one invokes a skill of the project
(``.claude/skills/<name>/SKILL.md``) through the Skill tool, one hands a task to a custom agent
(``.claude/agents/<name>.md``) through the Agent tool. The fourth does all three without it. What the
dashboard shows under each dimension must equal what the CLI sent (decoded by ``ground_truth``), and the
panels must be there, on the page too.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from claude_cli import RunResult, Telemetry, make_home, make_repo, run_print
from fake_anthropic import FakeAnthropic, Turn, reply, tool
from ground_truth import Event, Point, flatten, sum_points
from otlp_tee import OtlpTee

from tests.conftest import ServerProcess
from tests.panel_truth import check_panels, cost_and_tokens, expected_panels

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
SERVER = "dims"  # the MCP server, as the CLI's configuration names it
MCP_TOOL = f"mcp__{SERVER}__lookup"  # the name the CLI offers the server's tool ``lookup`` under
SKILL = "release-notes"
AGENT = "reviewer"
AGENT_MARKER = "E2E-REVIEWER-SYSTEM-PROMPT"  # in the agent's definition, so in its system prompt
SKILL_MD = f"""---
name: {SKILL}
description: Writes the release notes of this project. Use when asked for release notes.
---

Write the release notes: one line per change, newest first.
"""
AGENT_MD = f"""---
name: {AGENT}
description: Reviews a change and says whether it is good. Use for reviews.
tools: Read
---

You review changes. {AGENT_MARKER}
"""
DIMENSIONS = {
    "cost_by_query_source": ("query_source",),
    "cost_by_effort": ("effort",),
    "cost_by_speed": ("speed",),
    "cost_by_agent": ("agent.name",),
    "cost_by_skill": ("skill.name",),
    "cost_by_plugin": ("plugin.name",),
    "cost_by_mcp": ("mcp_server.name", "mcp_tool.name"),
}
RUN_TIMEOUT = 120


@dataclass
class Run:
    name: str
    fake: FakeAnthropic
    result: RunResult
    details: bool  # OTEL_LOG_TOOL_DETAILS=1


@dataclass
class Scenario:
    runs: dict[str, Run]
    points: list[Point]
    events: list[Event]
    server: ServerProcess
    mcp_calls: list[dict[str, Any]]

    def points_of(self, run: str, metric: str) -> list[Point]:
        return [p for p in self.points if p.attrs.get("e2e.run") == run and p.metric == metric]


def _agent_call(prompt: str) -> Turn:
    return tool(
        "Agent",
        description="Review the change",
        prompt=prompt,
        subagent_type=AGENT,
        run_in_background=False,
    )


@pytest.fixture(scope="module")
def scenario(
    claude_binary: Path,
    otlp_tee: OtlpTee,
    ccmetrics_server: ServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scenario]:
    root = tmp_path_factory.mktemp("e2e-dimensions")
    repo = make_repo(
        root / "repo",
        {
            "README.md": "# demo\n",
            f".claude/skills/{SKILL}/SKILL.md": SKILL_MD,
            f".claude/agents/{AGENT}.md": AGENT_MD,
        },
    )
    calls = root / "mcp-calls.jsonl"
    mcp_config = root / "mcp.json"
    server = {"type": "stdio", "command": sys.executable, "args": [str(HERE / "mcp_server.py"), SERVER]}
    mcp_config.write_text(
        json.dumps({"mcpServers": {SERVER: {**server, "env": {"E2E_MCP_CALLS": str(calls)}}}})
    )
    mcp_args = ["--mcp-config", str(mcp_config), "--strict-mcp-config"]
    allowed = ["--allowedTools", f"{MCP_TOOL},Skill,Agent"]
    scripts: dict[str, tuple[list[Turn], dict[str, list[Turn]], bool]] = {
        "mcp": ([tool(MCP_TOOL, key="answer"), reply("The answer is 42.")], {}, True),
        "skill": ([tool("Skill", skill=SKILL), reply("Release notes written.")], {}, True),
        "agent": (
            [_agent_call("Review the README."), reply("The reviewer approved it.")],
            {AGENT_MARKER: [reply("Approved: the README is fine.")]},
            True,
        ),
        # all three in one session, without OTEL_LOG_TOOL_DETAILS: what the CLI names then
        "plain": (
            [
                tool(MCP_TOOL, key="colour"),
                tool("Skill", skill=SKILL),
                _agent_call("Review the notes."),
                reply("All three done."),
            ],
            {AGENT_MARKER: [reply("Approved.")]},
            False,
        ),
    }
    runs: dict[str, Run] = {}
    try:
        for seed, (name, (script, agent_scripts, details)) in enumerate(scripts.items(), start=1):
            fake = FakeAnthropic(script, seed=seed, agent_scripts=agent_scripts).start()
            result = run_print(
                claude_binary,
                home=make_home(root, name, [repo]),
                cwd=repo,
                prompt=f"please do the {name} task",
                api_base_url=fake.base_url,
                extra_args=[*mcp_args, *allowed],
                extra_env={"OTEL_LOG_TOOL_DETAILS": "1"} if details else None,
                timeout=RUN_TIMEOUT,
                telemetry=Telemetry(otlp_tee.http_endpoint, resource_attributes={"e2e.run": name}),
            )
            runs[name] = Run(name, fake, result, details)
    finally:
        for run in runs.values():
            run.fake.stop()
    otlp_tee.wait_until_quiet()
    points, events = flatten(otlp_tee.snapshot())
    made = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    yield Scenario(runs, points, events, ccmetrics_server, made)


def dashboard(sc: Scenario, expected_cost: float, timeout: float = 20) -> dict[str, Any]:
    """``/api/dashboard`` once the server has stored all the cost the CLI sent."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(f"{sc.server.url}/api/dashboard", timeout=30).json()
        if answer["panels"]["cost"]["value"] == pytest.approx(expected_cost) or time.monotonic() > deadline:
            return answer
        time.sleep(0.3)


def total_cost(points: list[Point]) -> float:
    return sum_points(p for p in points if p.metric == "claude_code.cost.usage")


# ------------------------------------------------------------------------------------------- tests


def test_every_run_called_its_tools_through_the_cli(scenario: Scenario) -> None:
    for run in scenario.runs.values():
        assert run.result.returncode == 0, (run.name, run.result.stdout, run.result.stderr)
    # the names and inputs the script uses are those the CLI offers (its requests, as the fake API received
    # them): Skill and Agent in its tools, an MCP server's tools named among the deferred ones, whose schemas
    # the model would load with ToolSearch
    fake = scenario.runs["plain"].fake
    offered = fake.tools_offered()
    assert offered["Skill"]["required"] == ["skill"]
    assert {"description", "prompt", "subagent_type", "run_in_background"} <= set(
        offered["Agent"]["properties"]
    )
    assert MCP_TOOL not in offered and "ToolSearch" in offered
    assert any(MCP_TOOL in json.dumps(r["body"]) for r in fake.requests)
    # the MCP server really answered, once per run that called it
    assert scenario.mcp_calls == [{"tool": "lookup", "key": "answer"}, {"tool": "lookup", "key": "colour"}]
    # the subagent's own conversation was played (its system prompt is the agent's definition)
    for name in ("agent", "plain"):
        assert any(s.agent == AGENT_MARKER for s in scenario.runs[name].fake.messages_served()), name


def test_every_dashboard_panel_equals_what_the_cli_sent(scenario: Scenario) -> None:
    expected = expected_panels(scenario.points, scenario.events)
    board = dashboard(scenario, total_cost(scenario.points))
    panels = httpx.get(f"{scenario.server.url}/api/panels", timeout=10).json()["panels"]
    check_panels(board, expected, panels)


def test_each_dimension_panel_equals_what_the_cli_sent(scenario: Scenario) -> None:
    dashboard(scenario, total_cost(scenario.points))
    for pid, keys in DIMENSIONS.items():
        answer = httpx.get(f"{scenario.server.url}/api/panels/{pid}", timeout=10).json()
        assert answer["hide_empty"] is True and answer["kind"] == "table", pid
        data = answer["data"]
        got = {r["name"]: {"cost_usd": r["cost_usd"], "tokens": r["tokens"]} for r in data["rows"]}
        want = cost_and_tokens(scenario.points, keys)
        assert got == {
            k: {f: pytest.approx(v, rel=1e-9) for f, v in row.items()} for k, row in want.items()
        }, pid
        assert "hidden" not in data, pid


def names(sc: Scenario, run: str, key: str) -> set[Any]:
    """The values of an attribute on the cost points of a run."""
    return {p.attrs.get(key) for p in sc.points_of(run, "claude_code.cost.usage")}


def test_what_the_cli_names_for_each_feature(scenario: Scenario) -> None:
    """What 2.1.332 sends: the request after an MCP tool's result is the server's and tool's, the request
    after the Skill tool's the skill's, a subagent's requests its agent's (query_source subagent); cost and
    tokens alike. Without OTEL_LOG_TOOL_DETAILS an MCP server and tool and a custom agent are ``custom``; a
    project's skill keeps its name. No plugin, and no speed (only fast mode sends one)."""
    assert names(scenario, "mcp", "mcp_server.name") == {None, SERVER}
    assert names(scenario, "mcp", "mcp_tool.name") == {None, "lookup"}
    assert names(scenario, "skill", "skill.name") == {None, SKILL}
    assert names(scenario, "agent", "agent.name") == {None, AGENT}
    assert {
        p.attrs.get("query_source")
        for p in scenario.points_of("agent", "claude_code.cost.usage")
        if p.attrs.get("agent.name")
    } == {"subagent"}
    assert names(scenario, "plain", "agent.name") == {None, "custom"}
    assert names(scenario, "plain", "mcp_server.name") == {None, "custom"}
    assert names(scenario, "plain", "skill.name") >= {SKILL}
    for run in scenario.runs:
        assert names(scenario, run, "plugin.name") == {None} and names(scenario, run, "speed") == {None}
        tokens = scenario.points_of(run, "claude_code.token.usage")
        for key in ("agent.name", "skill.name", "mcp_server.name", "mcp_tool.name", "query_source"):
            assert {p.attrs.get(key) for p in tokens} == names(scenario, run, key), (run, key)


def test_the_panels_of_the_dimensions_sent_appear(scenario: Scenario) -> None:
    board = dashboard(scenario, total_cost(scenario.points))["panels"]
    shown = {pid: {r["name"] for r in board[pid]["rows"]} for pid in DIMENSIONS}
    assert shown["cost_by_agent"] == {AGENT, "custom"}
    assert shown["cost_by_skill"] == {SKILL}
    assert shown["cost_by_mcp"] == {f"{SERVER} · lookup", "custom · custom"}
    assert shown["cost_by_query_source"] == {"main", "subagent"}
    assert shown["cost_by_effort"]
    # what no run sent has no rows: the page leaves the panel out (hide_empty)
    assert shown["cost_by_plugin"] == set() and shown["cost_by_speed"] == set()


def test_the_page_shows_the_panels_of_the_dimensions_sent_and_leaves_the_others_out(
    scenario: Scenario, page: Any
) -> None:
    dashboard(scenario, total_cost(scenario.points))
    page.goto(scenario.server.url + "/")
    page.wait_for_selector('section[data-panel="cost_by_mcp"]:not([hidden]) table')
    for pid in ("cost_by_query_source", "cost_by_effort", "cost_by_agent", "cost_by_skill", "cost_by_mcp"):
        assert page.locator(f'section[data-panel="{pid}"]').is_visible(), pid
    for pid in ("cost_by_plugin", "cost_by_speed"):
        assert page.locator(f'section[data-panel="{pid}"]').is_hidden(), pid
    mcp = page.locator('section[data-panel="cost_by_mcp"] tbody').inner_text()
    assert f"{SERVER} · lookup" in mcp and "custom · custom" in mcp
    assert page.errors == []
