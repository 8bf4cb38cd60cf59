"""A session's spans on /api/sessions/<id>: trace by trace, each span after its parent with its depth, only
the fields a row tells (never conversation text); and a member sees only their own. In-process, on a real
store and a real access file, with spans sent as OTLP/HTTP exports."""

from __future__ import annotations

import time
from typing import Any

from ccmetrics.access.people import WebRole
from ccmetrics.access.store import AccessStore
from ccmetrics.store.timeline import session_traces

from .conftest import Export
from .in_process import InProcessServer
from .otlp_builders import SECOND, prompt_spans, sum_request, trace_request
from .people import ALICE, BOB, PASSWORD, exports

PROTOBUF = {"content-type": "application/x-protobuf"}


def send(server: InProcessServer, request: Any) -> None:
    response = server.send(Export.of(request))
    assert response.status_code == 200, response.text


def session_started(server: InProcessServer, session: str, at_ns: int, email: str = ALICE) -> None:
    """What makes a session known: its session.count point."""
    who = {"user.email": email, "session.id": session}
    send(server, sum_request("claude_code.session.count", [(at_ns - SECOND, at_ns, 1, who)]))


def traces_of(server: InProcessServer, session: str) -> list[dict[str, Any]]:
    traces: list[dict[str, Any]] = server.get_json(f"/api/sessions/{session}")["traces"]
    return traces


def rows(trace: dict[str, Any]) -> list[tuple[str, int]]:
    return [(span["name"].removeprefix("claude_code."), span["depth"]) for span in trace["spans"]]


PROMPT = [
    ("interaction", 0),
    ("llm_request", 1),
    ("tool", 1),
    ("tool.blocked_on_user", 2),
    ("tool.execution", 2),
    ("llm_request", 1),
]


def test_a_sessions_spans_trace_by_trace_each_under_its_parent(in_process: InProcessServer) -> None:
    now = time.time_ns()
    t0 = now - 600 * SECOND
    session_started(in_process, "s1", t0)
    who = {"session.id": "s1", "user.email": ALICE}
    # Two prompts, the later one sent first; spans of another session at the same time.
    second = prompt_spans(2, t0 + 60 * SECOND, who, tool="Bash")
    first = prompt_spans(1, t0 + 10 * SECOND, who)
    send(in_process, trace_request(second, error=frozenset({second[4][1]})))
    send(in_process, trace_request(first))
    send(in_process, trace_request(prompt_spans(3, t0 + 10 * SECOND, {"session.id": "s2"})))

    traces = traces_of(in_process, "s1")
    assert [t["trace_id"] for t in traces] == [f"{1:032x}", f"{2:032x}"]
    assert [rows(t) for t in traces] == [PROMPT, PROMPT]
    one = traces[0]
    assert (one["start_ns"], one["end_ns"]) == (first[0][4], first[0][5])
    assert [s["span_id"] for s in one["spans"]] == [s[1] for s in first]
    for span, sent in zip(one["spans"], first, strict=True):
        assert (span["parent_span_id"], span["start_ns"], span["end_ns"]) == (sent[2], sent[4], sent[5])
    interaction, request, tool, wait, run, _ = one["spans"]
    # What a row tells: the model and tokens, the tool, the decision; not who, nor the prompt (even redacted).
    assert request["fields"] == {
        "model": "claude-sonnet-4-5",
        "llm_request.context": "interaction",
        "speed": "normal",
        "input_tokens": 700,
        "output_tokens": 30,
        "cache_read_tokens": 9000,
        "cache_creation_tokens": 300,
        "ttft_ms": 400,
        "stop_reason": "tool_use",
    }
    assert tool["fields"] == {"tool_name": "Write"}
    assert wait["fields"] == {"decision": "accept", "source": "user_temporary"}
    assert run["fields"] == {"success": True}
    assert interaction["fields"] == {"user_prompt_length": 12, "interaction.sequence": 1}
    assert [s["error"] for s in traces[1]["spans"]] == [False, False, False, False, True, False]
    assert traces[1]["spans"][2]["fields"] == {"tool_name": "Bash"}

    assert traces_of(in_process, "s2") == []  # never started: no session, no spans
    assert traces_of(in_process, "no-such-session") == []


def test_spans_without_their_parent_loops_and_too_many(in_process: InProcessServer) -> None:
    t0 = time.time_ns() - 600 * SECOND
    session_started(in_process, "s1", t0)
    who = {"session.id": "s1"}
    spans = prompt_spans(1, t0, who)
    trace_id = spans[0][0]
    send(in_process, trace_request(spans[1:]))  # the interaction not (yet) sent
    # Two spans each other's parent, and one its own: shown all the same, after the rest.
    loop = [
        (trace_id, "aa" * 8, "bb" * 8, "claude_code.hook", t0 + 6 * SECOND, t0 + 7 * SECOND, who),
        (trace_id, "bb" * 8, "aa" * 8, "claude_code.hook", t0 + 6 * SECOND + 1, t0 + 7 * SECOND, who),
        (trace_id, "cc" * 8, "cc" * 8, "claude_code.hook", t0 + 8 * SECOND, 0, who),
    ]
    send(in_process, trace_request(loop))
    (trace,) = traces_of(in_process, "s1")
    assert rows(trace) == [
        ("llm_request", 0),
        ("tool", 0),
        ("tool.blocked_on_user", 1),
        ("tool.execution", 1),
        ("llm_request", 0),
        ("hook", 0),  # its own parent
        ("hook", 0),  # the first of the loop
        ("hook", 1),
    ]
    own = trace["spans"][5]
    assert own["span_id"] == "cc" * 8 and own["end_ns"] == own["start_ns"] == t0 + 8 * SECOND  # no end sent

    found, cut = session_traces(in_process.store.reader(), "s1", limit=3)
    assert cut and [rows(t) for t in found] == [
        [("llm_request", 0), ("tool", 0), ("tool.blocked_on_user", 1)]
    ]
    assert session_traces(in_process.store.reader(), "s1", limit=8)[1] is False


def test_a_member_sees_no_spans_of_others(in_process: InProcessServer) -> None:
    now = time.time_ns()
    for path, body in exports(now):  # alice's session and bob's
        assert in_process.otlp.post(path, content=body, headers=PROTOBUF).status_code == 200
    t = now - 300 * SECOND
    alice = {"session.id": "session-alice", "user.email": ALICE}
    bob = {"session.id": "session-bob", "user.email": BOB}
    send(in_process, trace_request(prompt_spans(1, t, alice)))
    send(in_process, trace_request(prompt_spans(2, t, bob)))
    # Spans of bob's that name alice's session, and spans that name nobody.
    send(in_process, trace_request(prompt_spans(3, t, {**bob, "session.id": "session-alice"})))
    send(in_process, trace_request(prompt_spans(4, t, {"session.id": "session-alice"})))
    assert len(traces_of(in_process, "session-alice")) == 3 and len(traces_of(in_process, "session-bob")) == 1

    access = AccessStore(in_process.store.path.parent / "access.db")
    access.add_person(ALICE, WebRole.MEMBER, password=PASSWORD)
    access.add_person("vera", WebRole.VIEWER, password=PASSWORD)
    access.close()
    in_process.gate.keyring._next_check = 0.0
    in_process.gate.keyring.refresh()
    member, viewer = in_process.api, in_process.client()
    for client, name in ((member, ALICE), (viewer, "vera")):
        response = client.post("/api/signin", json={"name": name, "password": PASSWORD})
        assert response.status_code == 200, response.text

    def traces(client: Any, session: str) -> list[str]:
        response = client.get(f"/api/sessions/{session}")
        assert response.status_code == 200, response.text
        return [trace["trace_id"] for trace in response.json()["traces"]]

    assert traces(member, "session-bob") == []
    assert traces(member, "session-alice") == [f"{1:032x}"]
    assert traces(viewer, "session-bob") == [f"{2:032x}"]
    assert traces(viewer, "session-alice") == [f"{n:032x}" for n in (1, 3, 4)]
