"""A scripted fake of the Anthropic Messages API, good enough to drive the real Claude Code CLI offline.

It listens on a free loopback port in a background thread.  Main-loop requests (the ones that carry
``tools``) are answered from a SCRIPT: a list of turns, each either plain text or one ``tool_use``
block.  Which turn to play is derived from the request itself (the number of assistant messages already
in the conversation), so a retried request replays the same turn.  Requests without ``tools`` (title /
summary generation and similar side queries) get a short plain-text answer.

Everything served is recorded in :attr:`FakeAnthropic.served` -- model, the exact usage numbers that were
sent, and whether the answer was an error.  That record is the ground truth, independent of the CLI's own
telemetry, for token counts and API request counts.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

# --------------------------------------------------------------------------------------------- turns


@dataclass(frozen=True)
class Turn:
    """One scripted assistant reply: ``text`` alone, or a single tool call (with optional leading text)."""

    text: str = ""
    tool: str | None = None
    input: dict[str, Any] = field(default_factory=dict)

    @property
    def stop_reason(self) -> str:
        return "tool_use" if self.tool else "end_turn"


def reply(text: str) -> Turn:
    return Turn(text=text)


def tool(name: str, text: str = "", **tool_input: Any) -> Turn:
    """A call of any tool by the name the CLI offers it under: ``Skill``, ``Agent``, ``mcp__server__tool``."""
    return Turn(text=text, tool=name, input=tool_input)


def write(file_path: str, content: str) -> Turn:
    return Turn(tool="Write", input={"file_path": file_path, "content": content})


def edit(file_path: str, old: str, new: str) -> Turn:
    return Turn(
        tool="Edit",
        input={"file_path": file_path, "old_string": old, "new_string": new, "replace_all": False},
    )


def read(file_path: str) -> Turn:
    return Turn(tool="Read", input={"file_path": file_path})


def bash(command: str, description: str = "run a command") -> Turn:
    return Turn(tool="Bash", input={"command": command, "description": description})


def git_commit(message: str) -> Turn:
    return bash(
        f"git add -A && git -c user.email=dev@example.com -c user.name=dev commit -q -m '{message}'",
        "commit the change",
    )


# ------------------------------------------------------------------------------------------- records


@dataclass
class Served:
    """What the fake answered to one request (the independent ground truth)."""

    seq: int
    method: str
    path: str
    model: str | None
    main_loop: bool  # request carried `tools`
    turn: int | None  # index into the script (main loop only)
    status: int
    error_type: str | None = None
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0
    stop_reason: str | None = None
    tool: str | None = None
    agent: str | None = None  # the marker of the agent script played, if any

    @property
    def is_message(self) -> bool:
        """A successful /v1/messages answer that carried usage (what the CLI would bill)."""
        return self.path == "/v1/messages" and self.status == 200

    @property
    def is_error(self) -> bool:
        return self.path == "/v1/messages" and self.status >= 400


# ---------------------------------------------------------------------------------------------- fake


class FakeAnthropic:
    """Threaded fake of the Anthropic API on 127.0.0.1.

    ``script``         turns played on main-loop requests; once exhausted, the reply is ``final_text``.
    ``not_found_models`` models answered with 404 ``not_found_error``.
    ``overload_first`` the first N /v1/messages requests (any kind) are answered 529 ``overloaded_error``.
    ``latency_s``      sleep this long before answering a successful /v1/messages request (stretches a run
                       over several telemetry export intervals).
    ``seed``           shifts the deterministic token numbers so that different fakes serve different usage.
    ``agent_scripts``  scripts by a marker: a main-loop request whose system prompt holds the marker plays
                       that script instead (a custom subagent's: the body of its definition is its system
                       prompt, and its own conversation starts again at turn 0).
    """

    def __init__(
        self,
        script: list[Turn] | None = None,
        *,
        not_found_models: set[str] | frozenset[str] = frozenset(),
        overload_first: int = 0,
        seed: int = 0,
        final_text: str = "Done.",
        side_text: str = "Scripted session",
        latency_s: float = 0.0,
        agent_scripts: dict[str, list[Turn]] | None = None,
    ) -> None:
        self.script = list(script or [])
        self.agent_scripts = {marker: list(turns) for marker, turns in (agent_scripts or {}).items()}
        self.not_found_models = set(not_found_models)
        self.overload_first = overload_first
        self.seed = seed
        self.final_text = final_text
        self.side_text = side_text
        self.latency_s = latency_s
        self.served: list[Served] = []
        self.requests: list[dict[str, Any]] = []  # raw request log (method, path, headers, json body)
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._overloads_sent = 0
        self._msg_ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    @property
    def port(self) -> int:
        assert self._httpd is not None, "not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeAnthropic:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-anthropic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- ground truth helpers
    def messages_served(self) -> list[Served]:
        with self._lock:
            return [s for s in self.served if s.is_message]

    def tokens_served(self) -> dict[str, int]:
        """The tokens of the answers served, by the type Claude Code's token metric gives them."""
        messages = self.messages_served()
        return {
            "input": sum(s.input_tokens for s in messages),
            "output": sum(s.output_tokens for s in messages),
            "cache_read": sum(s.cache_read_input_tokens for s in messages),
            "cache_creation": sum(s.cache_creation_input_tokens for s in messages),
        }

    def tools_offered(self) -> dict[str, dict[str, Any]]:
        """Every tool the CLI offered in a main-loop request, by name: its input schema."""
        with self._lock:
            bodies = [r["body"] for r in self.requests if r["body"] and r["body"].get("tools")]
        return {t["name"]: t.get("input_schema") or {} for b in bodies for t in b["tools"] if "name" in t}

    def errors_served(self) -> list[Served]:
        with self._lock:
            return [s for s in self.served if s.is_error]

    # -- token numbers: varied but deterministic
    def _usage(self, n: int) -> dict[str, int]:
        k = self.seed * 11 + n
        cache_5m = 300 + 37 * k
        cache_1h = 20 * (k % 3)
        return {
            "input_tokens": 700 + 13 * k + (k % 5),
            "output_tokens": 30 + 7 * k + (k % 4),
            "cache_read_input_tokens": 9000 + 101 * k,
            "cache_creation_input_tokens": cache_5m + cache_1h,
            "ephemeral_5m_input_tokens": cache_5m,
            "ephemeral_1h_input_tokens": cache_1h,
        }

    # -- request handling (called from handler threads)
    def _next_seq(self) -> int:
        with self._lock:
            return next(self._seq)

    def _record(self, s: Served) -> None:
        with self._lock:
            self.served.append(s)

    def handle_messages(
        self, body: dict[str, Any]
    ) -> tuple[int, dict[str, str], bytes | list[bytes], Served]:
        seq = self._next_seq()
        model = body.get("model")
        tools = body.get("tools") or []
        main_loop = bool(tools)
        stream = bool(body.get("stream"))
        msgs = body.get("messages") or []
        turn = sum(1 for m in msgs if m.get("role") == "assistant") if main_loop else None
        rec = Served(
            seq=seq,
            method="POST",
            path="/v1/messages",
            model=model,
            main_loop=main_loop,
            turn=turn,
            status=200,
            stream=stream,
        )

        if model in self.not_found_models:
            rec.status, rec.error_type = 404, "not_found_error"
            return 404, {}, _error_body("not_found_error", f"model: {model}"), rec
        with self._lock:
            overload = self._overloads_sent < self.overload_first
            if overload:
                self._overloads_sent += 1
        if overload:
            rec.status, rec.error_type = 529, "overloaded_error"
            return 529, {"retry-after-ms": "10"}, _error_body("overloaded_error", "Overloaded"), rec

        if self.latency_s:
            time.sleep(self.latency_s)
        if main_loop:
            system = json.dumps(body.get("system") or "")
            rec.agent = next((marker for marker in self.agent_scripts if marker in system), None)
            script = self.script if rec.agent is None else self.agent_scripts[rec.agent]
            t = script[turn] if turn is not None and turn < len(script) else Turn(text=self.final_text)
        else:
            t = Turn(text=self.side_text)
        usage = self._usage(seq)
        rec.input_tokens = usage["input_tokens"]
        rec.output_tokens = usage["output_tokens"]
        rec.cache_read_input_tokens = usage["cache_read_input_tokens"]
        rec.cache_creation_input_tokens = usage["cache_creation_input_tokens"]
        rec.ephemeral_5m_input_tokens = usage["ephemeral_5m_input_tokens"]
        rec.ephemeral_1h_input_tokens = usage["ephemeral_1h_input_tokens"]
        rec.stop_reason = t.stop_reason
        rec.tool = t.tool
        msg_id = f"msg_fake{self.seed:03d}{next(self._msg_ids):06d}"
        tool_id = f"toolu_fake{self.seed:03d}{seq:06d}"
        content: list[dict[str, Any]] = []
        if t.text:
            content.append({"type": "text", "text": t.text})
        if t.tool:
            content.append({"type": "tool_use", "id": tool_id, "name": t.tool, "input": t.input})
        if stream:
            return (
                200,
                {"content-type": "text/event-stream", "cache-control": "no-cache"},
                _sse(msg_id, model, content, usage, t.stop_reason),
                rec,
            )
        full = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": t.stop_reason,
            "stop_sequence": None,
            "usage": _api_usage(usage, usage["output_tokens"]),
        }
        return 200, {"content-type": "application/json"}, json.dumps(full).encode(), rec


def _api_usage(u: dict[str, int], output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": u["input_tokens"],
        "cache_creation_input_tokens": u["cache_creation_input_tokens"],
        "cache_read_input_tokens": u["cache_read_input_tokens"],
        "cache_creation": {
            "ephemeral_5m_input_tokens": u["ephemeral_5m_input_tokens"],
            "ephemeral_1h_input_tokens": u["ephemeral_1h_input_tokens"],
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _sse(
    msg_id: str, model: str | None, content: list[dict[str, Any]], usage: dict[str, int], stop_reason: str
) -> list[bytes]:
    # Like the real API, message_start reports output_tokens=1 so far; message_delta carries the final
    # (cumulative) output_tokens.  The final value is what the fake records as served.
    out = [
        _event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": _api_usage(usage, 1),
                },
            },
        )
    ]
    for i, block in enumerate(content):
        if block["type"] == "text":
            out.append(
                _event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            out.append(
                _event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "text_delta", "text": block["text"]},
                    },
                )
            )
        else:
            out.append(
                _event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {
                            "type": "tool_use",
                            "id": block["id"],
                            "name": block["name"],
                            "input": {},
                        },
                    },
                )
            )
            out.append(
                _event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
                    },
                )
            )
        out.append(_event("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    out.append(_event("message_stop", {"type": "message_stop"}))
    return out


def _error_body(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


class _Handler(BaseHTTPRequestHandler):
    owner: FakeAnthropic
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
        pass

    def _read_json(self) -> dict[str, Any]:
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {}

    def _send(self, status: int, headers: dict[str, str], body: bytes | list[bytes]) -> None:
        self.send_response(status)
        headers = {"content-type": "application/json", "request-id": "req_fake", **headers}
        for k, v in headers.items():
            self.send_header(k, v)
        payload = b"".join(body) if isinstance(body, list) else body
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _log(self, body: dict[str, Any] | None) -> None:
        with self.owner._lock:
            self.owner.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": body,
                }
            )

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        body = self._read_json()
        self._log(body)
        if path == "/v1/messages":
            status, headers, payload, rec = self.owner.handle_messages(body)
            self.owner._record(rec)
            self._send(status, headers, payload)
        elif path == "/v1/messages/count_tokens":
            self.owner._record(
                Served(
                    seq=self.owner._next_seq(),
                    method="POST",
                    path=path,
                    model=body.get("model"),
                    main_loop=False,
                    turn=None,
                    status=200,
                )
            )
            self._send(200, {}, json.dumps({"input_tokens": 1234}).encode())
        else:
            self.owner._record(
                Served(
                    seq=self.owner._next_seq(),
                    method="POST",
                    path=path,
                    model=body.get("model"),
                    main_loop=False,
                    turn=None,
                    status=404,
                )
            )
            self._send(404, {}, _error_body("not_found_error", f"no route {path}"))

    def do_GET(self) -> None:  # noqa: N802
        self._log(None)
        path = urlsplit(self.path).path
        self.owner._record(
            Served(
                seq=self.owner._next_seq(),
                method="GET",
                path=path,
                model=None,
                main_loop=False,
                turn=None,
                status=404,
            )
        )
        self._send(404, {}, _error_body("not_found_error", f"no route {path}"))

    def do_HEAD(self) -> None:  # noqa: N802
        self._log(None)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
