"""The real CLI with its beta tracing on (CLAUDE_CODE_ENHANCED_TELEMETRY_BETA=1, OTEL_TRACES_EXPORTER=otlp),
through the recording tee into a real ``ccmetrics serve``: the session's spans on /api/sessions/<id> are the
spans the CLI sent, each under its parent, and their numbers are what the fake API served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from claude_cli import Telemetry, make_home, make_repo, run_interactive, run_print
from fake_anthropic import bash, reply, write
from ground_truth import attrs
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_tee import OtlpTee

from tests.conftest import ServerProcess

pytestmark = pytest.mark.e2e

TRACING = {
    "CLAUDE_CODE_ENHANCED_TELEMETRY_BETA": "1",
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_TRACES_EXPORT_INTERVAL": "500",
}
WAIT_S = 2.0  # how long the user takes to allow a tool


def spans_sent(tee: OtlpTee) -> dict[str, dict[str, Any]]:
    """Every span of the acknowledged trace exports, by span id, decoded with opentelemetry-proto only."""
    found: dict[str, dict[str, Any]] = {}
    for rec in tee.snapshot():
        if rec.signal != "traces" or not rec.acknowledged:
            continue
        request = ExportTraceServiceRequest()
        request.ParseFromString(rec.body)
        for rs in request.resource_spans:
            resource = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    found[span.span_id.hex()] = {
                        "trace_id": span.trace_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "start_ns": span.start_time_unix_nano,
                        "end_ns": span.end_time_unix_nano,
                        "attrs": {**resource, **attrs(span.attributes)},
                    }
    return found


def test_a_real_sessions_spans_each_under_its_parent(
    claude_binary: Path,
    fake_api: Any,
    otlp_tee: OtlpTee,
    ccmetrics_server: ServerProcess,
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    home = make_home(tmp_path, "dev", [repo])
    # A Write the print mode may not do (no permission for it), a git command it may, then the answer.
    fake = fake_api(
        [write(str(repo / "notes.md"), "# notes\n"), bash("git status", "see the status"), reply("Done.")],
        seed=7,
    )
    result = run_print(
        claude_binary,
        home=home,
        cwd=repo,
        prompt="add notes",
        api_base_url=fake.base_url,
        telemetry=Telemetry(otlp_tee.http_endpoint, protocol="http/protobuf"),
        extra_args=["--allowedTools", "Bash(git:*)"],
        extra_env=TRACING,
    )
    assert result.returncode == 0, result.stderr
    otlp_tee.wait_until_quiet()  # the CLI flushes on exit
    sent = spans_sent(otlp_tee)
    assert sent, "the CLI sent no spans"
    (session,) = {s["attrs"].get("session.id") for s in sent.values()}
    assert session

    response = httpx.get(f"{ccmetrics_server.url}/api/sessions/{session}", timeout=30)
    response.raise_for_status()
    answer = response.json()
    traces = answer["traces"]
    assert answer["traces_truncated"] is False
    shown = {s["span_id"]: s for t in traces for s in t["spans"]}
    # Every span the CLI sent, once, as it sent it; each trace's spans after their parent.
    assert sorted(shown) == sorted(sent)
    for span_id, span in shown.items():
        truth = sent[span_id]
        assert span["name"] == truth["name"]
        assert span["parent_span_id"] == truth["parent_span_id"]
        assert (span["start_ns"], span["end_ns"]) == (truth["start_ns"], truth["end_ns"])
    for trace in traces:
        seen: dict[str, int] = {}
        for span in trace["spans"]:
            assert {sent[span["span_id"]]["trace_id"]} == {trace["trace_id"]}
            parent = span["parent_span_id"]
            assert span["depth"] == (seen[parent] + 1 if parent in seen else 0)
            seen[span["span_id"]] = span["depth"]

    # One trace: the prompt. Under it its LLM requests and tools; under each tool its wait for permission
    # (in print mode the settings decide at once) and, when allowed, its run.
    (trace,) = traces
    interaction = trace["spans"][0]
    assert interaction["name"] == "claude_code.interaction" and interaction["depth"] == 0
    assert interaction["fields"]["interaction.sequence"] == 1
    assert (trace["start_ns"], trace["end_ns"]) == (interaction["start_ns"], interaction["end_ns"])
    under = {
        "claude_code.llm_request": "claude_code.interaction",
        "claude_code.tool": "claude_code.interaction",
        "claude_code.tool.blocked_on_user": "claude_code.tool",
        "claude_code.tool.execution": "claude_code.tool",
    }
    ms = 1_000_000  # the CLI's start times are whole milliseconds
    for span in trace["spans"][1:]:
        parent = shown[span["parent_span_id"]]
        assert parent["name"] == under[span["name"]], span
        assert parent["start_ns"] - ms <= span["start_ns"] and span["end_ns"] <= parent["end_ns"] + ms, span

    def named(name: str) -> list[dict[str, Any]]:
        return sorted((s for s in trace["spans"] if s["name"] == name), key=lambda s: s["start_ns"])

    # One LLM request span per main-loop message the fake served, in order, with its model and tokens.
    served = sorted((s for s in fake.messages_served() if s.main_loop), key=lambda s: s.seq)
    requests = named("claude_code.llm_request")
    assert len(served) == 3 and len(requests) == len(served)
    for span, truth in zip(requests, served, strict=True):
        assert span["fields"]["model"] == truth.model
        assert span["fields"]["stop_reason"] == truth.stop_reason
        tokens = [span["fields"][k] for k in ("input_tokens", "output_tokens", "cache_read_tokens")]
        assert tokens == [truth.input_tokens, truth.output_tokens, truth.cache_read_input_tokens]
        assert span["fields"]["cache_creation_tokens"] == truth.cache_creation_input_tokens
    # The Write refused by the settings, never run; Bash allowed, and run.
    tools = named("claude_code.tool")
    assert [t["fields"]["tool_name"] for t in tools] == ["Write", "Bash"]
    for tool, decision, runs in ((tools[0], "reject", 0), (tools[1], "accept", 1)):
        below = [s for s in trace["spans"] if s["parent_span_id"] == tool["span_id"]]
        (wait,) = [s for s in below if s["name"] == "claude_code.tool.blocked_on_user"]
        assert wait["fields"] == {"decision": decision, "source": "config"}
        assert [s["fields"]["success"] for s in below if s["name"] == "claude_code.tool.execution"] == [
            True
        ] * runs
    assert not (tmp_path / "repo" / "notes.md").exists()


def test_a_tool_waiting_for_the_users_permission(
    claude_binary: Path,
    fake_api: Any,
    otlp_tee: OtlpTee,
    ccmetrics_server: ServerProcess,
    tmp_path: Path,
) -> None:
    """Interactive, in tmux, in the mode that asks: the Write waits for the user's Yes, given after 2 s."""
    repo = make_repo(tmp_path / "repo")
    home = make_home(tmp_path, "asked", [repo])
    fake = fake_api([write(str(repo / "notes.md"), "# notes\n"), reply("Wrote the notes 4711.")], seed=8)
    before = set(spans_sent(otlp_tee))
    result = run_interactive(
        claude_binary,
        home=home,
        cwd=repo,
        prompt="add notes",
        answer_marker="Wrote the notes 4711",
        api_base_url=fake.base_url,
        telemetry=Telemetry(otlp_tee.http_endpoint, protocol="http/protobuf"),
        extra_args=["--permission-mode", "default"],
        extra_env=TRACING,
        permission_after_s=WAIT_S,
    )
    assert result.exited and result.permissions_given == 1, result.screens[-1]
    otlp_tee.wait_until_quiet()
    sent = {k: v for k, v in spans_sent(otlp_tee).items() if k not in before}
    (session,) = {s["attrs"].get("session.id") for s in sent.values()}
    response = httpx.get(f"{ccmetrics_server.url}/api/sessions/{session}", timeout=30)
    response.raise_for_status()
    spans = [s for t in response.json()["traces"] for s in t["spans"]]
    assert sorted(s["span_id"] for s in spans) == sorted(sent)

    (tool,) = [s for s in spans if s["name"] == "claude_code.tool"]
    assert tool["fields"]["tool_name"] == "Write" and tool["depth"] == 1
    assert {s["name"] for s in spans if s["span_id"] == tool["parent_span_id"]} == {"claude_code.interaction"}
    below = {s["name"]: s for s in spans if s["parent_span_id"] == tool["span_id"]}
    assert set(below) == {"claude_code.tool.blocked_on_user", "claude_code.tool.execution"}
    wait, run = below["claude_code.tool.blocked_on_user"], below["claude_code.tool.execution"]
    assert wait["fields"] == {"decision": "accept", "source": "user_temporary"}
    assert wait["end_ns"] - wait["start_ns"] >= WAIT_S * 1e9 - 1_000_000  # the user's time, ms apart
    assert wait["end_ns"] <= run["start_ns"] + 1_000_000 and run["fields"]["success"] is True
    assert (repo / "notes.md").read_text() == "# notes\n"
