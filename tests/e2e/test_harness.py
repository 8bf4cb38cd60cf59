"""Checks of the e2e harness itself (no Claude Code CLI needed): the fake API, the tee and ground_truth."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import grpc
import httpx
import pytest
from fake_anthropic import FakeAnthropic, read, reply, tool, write
from ground_truth import ground_truth
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric, NumberDataPoint
from otlp_tee import GRPC_ENCODING_HINT, OtlpStub, OtlpTee, Recorded

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claude-code-2.1.332"
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def sse_events(text: str) -> list[dict]:
    return [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]


def post(fake: FakeAnthropic, body: dict) -> httpx.Response:
    return httpx.post(f"{fake.base_url}/v1/messages?beta=true", json=body, timeout=10)


MAIN = {
    "model": "m-1",
    "stream": True,
    "tools": [{"name": "Write"}],
    "messages": [{"role": "user", "content": "hi"}],
}


# ---------------------------------------------------------------------------------------- the fake


def test_fake_plays_the_script_and_records_exactly_what_it_sent() -> None:
    with FakeAnthropic([write("/tmp/x", "y\n"), reply("end")], seed=7) as fake:
        first = sse_events(post(fake, MAIN).text)
        assert [e["type"] for e in first] == [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        assert first[1]["content_block"]["name"] == "Write"
        assert json.loads(first[2]["delta"]["partial_json"]) == {"file_path": "/tmp/x", "content": "y\n"}
        assert first[4]["delta"]["stop_reason"] == "tool_use"
        usage = first[0]["message"]["usage"]
        assert (
            usage["cache_creation"]["ephemeral_5m_input_tokens"]
            + usage["cache_creation"]["ephemeral_1h_input_tokens"]
            == usage["cache_creation_input_tokens"]
        )
        # second turn: one assistant message in the conversation
        body = {
            **MAIN,
            "messages": [
                *MAIN["messages"],
                {"role": "assistant", "content": []},
                {"role": "user", "content": []},
            ],
        }
        second = sse_events(post(fake, body).text)
        assert second[2]["delta"] == {"type": "text_delta", "text": "end"}
        assert second[-2]["delta"]["stop_reason"] == "end_turn"
        # a side query (no tools) gets plain text, and GET /api/hello is a 404
        side = post(
            fake, {"model": "m-2", "stream": True, "messages": [{"role": "user", "content": "title?"}]}
        )
        assert sse_events(side.text)[2]["delta"]["type"] == "text_delta"
        assert httpx.get(f"{fake.base_url}/api/hello").status_code == 404
        served = fake.messages_served()
        assert [(s.model, s.main_loop, s.turn) for s in served] == [
            ("m-1", True, 0),
            ("m-1", True, 1),
            ("m-2", False, None),
        ]
        for s, events in zip(served, (first, second, sse_events(side.text)), strict=True):
            start = events[0]["message"]["usage"]
            assert (s.input_tokens, s.cache_read_input_tokens, s.cache_creation_input_tokens) == (
                start["input_tokens"],
                start["cache_read_input_tokens"],
                start["cache_creation_input_tokens"],
            )
            assert s.output_tokens == events[-2]["usage"]["output_tokens"]
        assert len({s.input_tokens for s in served}) == 3  # varied numbers


def test_fake_errors_404_for_unknown_model_and_529_then_success() -> None:
    with FakeAnthropic([read("/tmp/x")], not_found_models={"gone"}, overload_first=1) as fake:
        r = post(fake, MAIN)
        assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error"
        r = post(fake, MAIN)
        assert r.status_code == 200
        assert sse_events(r.text)[1]["content_block"]["name"] == "Read"  # the retry replays turn 0
        r = post(fake, {**MAIN, "model": "gone"})
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
        assert [(s.status, s.error_type) for s in fake.served] == [
            (529, "overloaded_error"),
            (200, None),
            (404, "not_found_error"),
        ]
        assert len(fake.errors_served()) == 2 and len(fake.messages_served()) == 1


def test_fake_answers_non_streaming_requests_with_json() -> None:
    with FakeAnthropic([reply("plain")]) as fake:
        r = post(fake, {**MAIN, "stream": False})
        assert r.json()["content"] == [{"type": "text", "text": "plain"}]
        assert r.json()["usage"]["output_tokens"] == fake.served[0].output_tokens


def test_fake_plays_an_agents_script_on_its_system_prompt_and_records_the_tools_offered() -> None:
    agent = {"ZX-AGENT": [tool("Read", file_path="/tmp/a"), reply("agent done")]}
    with FakeAnthropic([tool("mcp__s__t", key="k")], agent_scripts=agent) as fake:
        main = post(fake, {**MAIN, "system": [{"type": "text", "text": "main loop"}]})
        sub = post(fake, {**MAIN, "system": [{"type": "text", "text": "You review. ZX-AGENT"}]})
        assert sse_events(main.text)[1]["content_block"]["name"] == "mcp__s__t"
        assert json.loads(sse_events(main.text)[2]["delta"]["partial_json"]) == {"key": "k"}
        assert sse_events(sub.text)[1]["content_block"]["name"] == "Read"  # the agent's turn 0
        assert [(s.agent, s.tool) for s in fake.served] == [(None, "mcp__s__t"), ("ZX-AGENT", "Read")]
        assert fake.tools_offered() == {"Write": {}}


# ----------------------------------------------------------------------------------------- the tee


def _metrics_request(value: int, temporality: int = DELTA, start: int = 1, time_ns: int = 2) -> bytes:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.append(KeyValue(key="team.id", value=AnyValue(string_value="t")))
    m = Metric(name="claude_code.commit.count")
    m.sum.aggregation_temporality = temporality
    m.sum.is_monotonic = True
    m.sum.data_points.append(
        NumberDataPoint(as_int=value, start_time_unix_nano=start, time_unix_nano=time_ns)
    )
    rm.scope_metrics.add().metrics.append(m)
    return req.SerializeToString()


def test_tee_forwards_http_and_grpc_and_records_raw_bodies() -> None:
    with OtlpStub() as stub, OtlpTee(stub.http_url, stub.grpc_target) as tee:
        body = gzip.compress(_metrics_request(3))
        r = httpx.post(
            f"{tee.http_endpoint}/v1/metrics",
            content=body,
            headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"},
        )
        assert r.status_code == 200
        r = httpx.post(f"{tee.http_endpoint}/v1/logs", json={"resourceLogs": []})
        assert r.status_code == 200 and r.json() == {}
        with grpc.insecure_channel(f"127.0.0.1:{tee.grpc_port}") as ch:
            export = ch.unary_unary(
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                request_serializer=None,
                response_deserializer=None,
            )
            assert export(_metrics_request(4), timeout=10) == b""
            assert (
                export(
                    _metrics_request(5),
                    timeout=10,
                    compression=grpc.Compression.Gzip,
                    metadata=[(GRPC_ENCODING_HINT, "gzip")],
                )
                == b""
            )
        recs = tee.snapshot()
        assert [(r.transport, r.signal, r.content_encoding, r.status) for r in recs] == [
            ("http", "metrics", "gzip", 200),
            ("http", "logs", None, 200),
            ("grpc", "metrics", None, "OK"),
            ("grpc", "metrics", "gzip", "OK"),
        ]
        assert recs[0].body == body
        assert ground_truth(recs).commits == 12


def test_tee_records_refused_exports_as_not_acknowledged() -> None:
    with OtlpTee("http://127.0.0.1:9", "127.0.0.1:9") as tee:  # nothing listens on port 9
        r = httpx.post(
            f"{tee.http_endpoint}/v1/metrics",
            content=_metrics_request(5),
            headers={"content-type": "application/x-protobuf"},
        )
        assert r.status_code == 502
        with grpc.insecure_channel(f"127.0.0.1:{tee.grpc_port}") as ch:
            export = ch.unary_unary(
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                request_serializer=None,
                response_deserializer=None,
            )
            with pytest.raises(grpc.RpcError) as err:
                export(_metrics_request(6), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        recs = tee.snapshot()
        assert [r.acknowledged for r in recs] == [False, False]
        assert ground_truth(recs).commits == 0


# ------------------------------------------------------------------------------------ ground truth


def _rec(seq: int, body: bytes, ctype: str = "application/x-protobuf", status: int = 200) -> Recorded:
    return Recorded(
        seq=seq,
        transport="http",
        path="/v1/metrics",
        signal="metrics",
        content_type=ctype,
        content_encoding=None,
        body=body,
        status=status,
        received_at=0.0,
    )


def test_ground_truth_delta_sums_and_cumulative_takes_latest_per_start_time() -> None:
    recs = [
        _rec(0, _metrics_request(2, DELTA)),
        _rec(1, _metrics_request(3, DELTA)),
        _rec(2, _metrics_request(1, CUMULATIVE, start=10, time_ns=11)),
        _rec(3, _metrics_request(4, CUMULATIVE, start=10, time_ns=13)),
        _rec(4, _metrics_request(3, CUMULATIVE, start=10, time_ns=12)),  # late arrival of an older point
        _rec(5, _metrics_request(5, CUMULATIVE, start=20, time_ns=21)),  # counter restarted
        _rec(6, _metrics_request(100, DELTA), status=500),  # refused: does not count
    ]
    assert ground_truth(recs).commits == 2 + 3 + 4 + 5


def test_ground_truth_reads_otlp_json_with_string_int64_and_numeric_enums() -> None:
    body = json.dumps(
        {
            "resourceMetrics": [
                {
                    "resource": {"attributes": []},
                    "scopeMetrics": [
                        {
                            "metrics": [
                                {
                                    "name": "claude_code.token.usage",
                                    "unit": "tokens",
                                    "sum": {
                                        "aggregationTemporality": 1,
                                        "isMonotonic": True,
                                        "dataPoints": [
                                            {
                                                "attributes": [
                                                    {"key": "type", "value": {"stringValue": "cacheRead"}}
                                                ],
                                                "startTimeUnixNano": "1",
                                                "timeUnixNano": "2",
                                                "asDouble": 42,
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ]
        }
    ).encode()
    assert ground_truth([_rec(0, body, "application/json")]).tokens["cache_read"] == 42
    logs = ExportLogsServiceRequest()
    lr = logs.resource_logs.add().scope_logs.add().log_records.add()
    lr.body.string_value = "claude_code.user_prompt"
    lr.attributes.append(KeyValue(key="event.name", value=AnyValue(string_value="user_prompt")))
    lr.attributes.append(KeyValue(key="prompt_length", value=AnyValue(string_value="28")))
    rec = Recorded(
        seq=1,
        transport="http",
        path="/v1/logs",
        signal="logs",
        content_type="application/x-protobuf",
        content_encoding=None,
        body=logs.SerializeToString(),
        status=200,
        received_at=0.0,
    )
    t = ground_truth([rec])
    assert (t.prompts, t.avg_prompt_length) == (1, 28.0)


def _readme_table(readme: str) -> dict[str, dict[str, str]]:
    """The README's totals table: {row label: {capture folder: cell}}."""
    lines = [ln for ln in readme.splitlines() if ln.startswith("|")]
    start = next(
        i
        for i, ln in enumerate(lines)
        if "http-protobuf-delta" in ln
        and "sessions" not in ln
        and ln.count("|") == 4
        and "protocol" not in ln
    )
    header = [c.strip().strip("`") for c in lines[start].strip("|").split("|")]
    table = {}
    for ln in lines[start + 2 :]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if len(cells) != len(header):
            break
        table[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return table


def test_ground_truth_reproduces_the_fixture_totals() -> None:
    """Decoding the real CLI's captured exports gives the totals their README computed independently."""
    table = _readme_table((FIXTURES / "README.md").read_text())
    assert table, "could not read the README's totals table"
    for capture in ("http-protobuf-delta", "http-json-cumulative"):
        recs = []
        for i, meta_path in enumerate(sorted((FIXTURES / capture).glob("*.json"))):
            meta = json.loads(meta_path.read_text())
            recs.append(
                Recorded(
                    seq=i,
                    transport="http",
                    path=meta["path"],
                    signal=meta["path"].removeprefix("/v1/"),
                    content_type=meta["ctype"],
                    content_encoding=meta.get("enc"),
                    body=meta_path.with_suffix(".bin").read_bytes(),
                    status=meta.get("status", 200),
                    received_at=0.0,
                )
            )
        t = ground_truth(recs)

        def nums(label: str, capture: str = capture) -> list[float]:
            return [float(x) for x in re.split(r"\s*[/,]\s*", table[label][capture])]

        assert [t.sessions] == nums("sessions")
        assert [t.cost_usd] == pytest.approx(nums("cost_usd"))
        assert [t.tokens[k] for k in ("input", "output", "cache_read", "cache_creation")] == nums(
            "tokens input / output / cacheRead / cacheCreation"
        )
        assert [t.lines_of_code["added"], t.lines_of_code["removed"]] == nums("lines of code added / removed")
        assert [t.commits] == nums("commits")
        assert [t.edit_decisions["accept"], t.edit_decisions["reject"]] == nums(
            "edit decisions accept / reject"
        )
        assert [t.active_time_seconds["cli"]] == pytest.approx(nums("active time cli (s)"))
        assert [t.prompts, t.avg_prompt_length] == nums("user_prompt events, prompt_length")
        assert [t.api_requests] == nums("api_request events")
