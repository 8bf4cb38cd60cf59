"""A large corpus of Claude Code transcripts in the real format, made from the real CLI's transcripts in
tests/fixtures: every line is one of theirs with its ids, times, usage, sizes and paths changed.

    python benchmarks/transcript_corpus.py DIR [--sessions 1500 --messages 176000 --gigabytes 6.7]

DIR gets ``projects/<project>/<session>.jsonl`` (and ``<session>/subagents/agent-*.jsonl`` for some): the
layout of ``~/.claude``, so ``CLAUDE_CONFIG_DIR=DIR`` points ccusage at it. What it holds, on purpose:
- sessions on one model, a quarter of them switching to another halfway;
- some messages written as two records (a partial streaming record, then the final one with more output);
- resumed sessions whose file starts with a copy of an earlier session's messages (counted once);
- subagent files (``isSidechain``), synthetic and API-error records (not counted), a model no price table has,
  ``costUSD`` on some records (older versions wrote it), long-context requests, 1-hour cache writes.
Deterministic: the same arguments make the same bytes.
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from pathlib import Path
from typing import Any

FIXTURES = (
    Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "claude-code-2.1.332" / "transcripts"
)
MODELS = (
    ["claude-sonnet-4-5-20250929"] * 6 + ["claude-opus-4-1-20250805"] * 2 + ["claude-haiku-4-5-20251001"] * 2
)
UNKNOWN_MODEL = "claude-experimental-9"
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: fixed, so the corpus does not depend on the day


def _templates() -> dict[str, Any]:
    lines = [
        json.loads(line) for f in sorted(FIXTURES.rglob("*.jsonl")) for line in f.read_text().splitlines()
    ]
    assistant = next(r for r in lines if r.get("type") == "assistant")
    tool_result = next(r for r in lines if r.get("type") == "user" and "toolUseResult" in r)
    prompt = next(r for r in lines if r.get("type") == "user" and "toolUseResult" not in r)
    others = [r for r in lines if r.get("type") not in ("user", "assistant")][:12]
    return {"assistant": assistant, "tool_result": tool_result, "prompt": prompt, "others": others}


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class Corpus:
    def __init__(self, root: Path, sessions: int, messages: int, gigabytes: float, seed: int = 7) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.t = _templates()
        self.sessions = sessions
        self.messages = messages
        self.bytes_per_message = int(gigabytes * 1e9 / messages)
        self.counter = 0
        self.model = MODELS[0]
        self.written: list[list[str]] = []  # earlier sessions' assistant lines, for resumed sessions
        self.padding = "".join(self.rng.choice("abcdefghij klmnopqrstuvwxyz\n{}();=") for _ in range(1 << 16))

    def make(self) -> None:
        counts = [self.messages // self.sessions] * self.sessions
        for i in range(self.messages - sum(counts)):
            counts[i] += 1
        for i, n in enumerate(counts):  # vary the lengths, keeping the total
            j = self.rng.randrange(self.sessions)
            if j == i:
                continue
            move = self.rng.randrange(min(n, counts[j]) // 2 + 1)
            counts[i], counts[j] = counts[i] - move, counts[j] + move
        projects = [f"/home/dev/src/project-{k:02d}" for k in range(25)]
        for i, n in enumerate(counts):
            self._session(i, n, self.rng.choice(projects))

    def _session(self, index: int, n: int, cwd: str) -> None:
        rng = self.rng
        session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        folder = self.root / "projects" / cwd.replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        branch = rng.choice(["main", "main", "feature/search", "fix/login", "release-2"])
        clock = BASE_MS + index * 3_600_000 * 5 + rng.randrange(3_600_000)
        common = {"cwd": cwd, "sessionId": session_id, "version": "2.1.332", "gitBranch": branch}
        sub = n // 5 if rng.random() < 0.1 and n > 20 else 0  # a subagent's messages, in a file of its own
        out: list[str] = []
        mine: list[str] = []
        if self.written and rng.random() < 0.03:  # resumed: the earlier session's messages copied first
            out += rng.choice(self.written)[:20]
        prompt = dict(self.t["prompt"], **common, uuid=str(uuid.uuid4()), timestamp=_iso(clock))
        out.append(json.dumps(prompt, separators=(",", ":")))
        for r in self.t["others"]:
            out.append(json.dumps(dict(r, sessionId=session_id), separators=(",", ":")))
        # A session runs on one model; a quarter of them switch to another halfway (/model)
        first, second = rng.choice(MODELS), rng.choice(MODELS) if rng.random() < 0.25 else None
        self.model = first
        for k in range(n - sub):
            if second and k == (n - sub) // 2:
                self.model = second
            clock += rng.randrange(2_000, 40_000)
            lines = self._message(common, clock, sidechain=False, last=k == n - sub - 1)
            out += lines
            mine += [line for line in lines if '"type":"assistant"' in line]
        (folder / f"{session_id}.jsonl").write_text("\n".join(out) + "\n")
        if sub:
            agent = folder / session_id / "subagents" / f"agent-{rng.getrandbits(32):08x}.jsonl"
            agent.parent.mkdir(parents=True, exist_ok=True)
            lines = []
            for _ in range(sub):
                clock += rng.randrange(2_000, 20_000)
                lines += self._message(common, clock, sidechain=True, last=False)
            agent.write_text("\n".join(lines) + "\n")
        self.written.append(mine)
        if len(self.written) > 50:
            self.written.pop(0)

    def _message(self, common: dict[str, Any], clock: int, sidechain: bool, last: bool) -> list[str]:
        rng = self.rng
        self.counter += 1
        model = UNKNOWN_MODEL if self.counter % 997 == 0 else self.model
        long_context = model.startswith("claude-sonnet") and self.counter % 211 == 0
        cache_read = rng.randrange(150_000, 400_000) if long_context else rng.randrange(0, 90_000)
        write = rng.randrange(0, 6_000)
        one_hour = write if self.counter % 7 == 0 else 0
        usage = {
            "input_tokens": rng.randrange(1, 3_000),
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": cache_read,
            "output_tokens": rng.randrange(1, 4_000),
            "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
            "service_tier": "standard",
            "cache_creation": {
                "ephemeral_1h_input_tokens": one_hour,
                "ephemeral_5m_input_tokens": write - one_hour,
            },
        }
        a = self.t["assistant"]
        message = dict(a["message"], id=f"msg_{self.counter:012d}", model=model, usage=usage)
        record = dict(
            a,
            **common,
            message=message,
            requestId=f"req_{self.counter:012d}",
            isSidechain=sidechain,
            uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            timestamp=_iso(clock),
        )
        if self.counter % 10 == 0:
            record["costUSD"] = round(rng.random() / 10, 6)
        lines = []
        if self.counter % 12 == 0:  # streaming: a partial record first, then the final one
            partial = dict(
                record, message=dict(message, usage=dict(usage, output_tokens=1)), timestamp=_iso(clock - 900)
            )
            lines.append(json.dumps(partial, separators=(",", ":")))
        lines.append(json.dumps(record, separators=(",", ":")))
        if self.counter % 1009 == 0:  # an error Claude Code wrote as a message of its own
            error = dict(
                record,
                isApiErrorMessage=True,
                message=dict(message, id=f"err_{self.counter}", model="<synthetic>"),
            )
            lines.append(json.dumps(error, separators=(",", ":")))
        if not last:  # the tool's result, where the bytes are
            size = max(0, self.bytes_per_message - sum(map(len, lines)) - 1_200)
            start = rng.randrange(len(self.padding) - min(size, len(self.padding) - 1))
            content = (self.padding * (size // len(self.padding) + 2))[start : start + size]
            result = dict(
                self.t["tool_result"], **common, uuid=str(uuid.uuid4()), timestamp=_iso(clock + 500)
            )
            result["toolUseResult"] = {"stdout": content, "stderr": "", "interrupted": False}
            lines.append(json.dumps(result, separators=(",", ":")))
        return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dir", type=Path)
    parser.add_argument("--sessions", type=int, default=1500)
    parser.add_argument("--messages", type=int, default=176_000)
    parser.add_argument("--gigabytes", type=float, default=6.7)
    args = parser.parse_args()
    Corpus(args.dir, args.sessions, args.messages, args.gigabytes).make()


if __name__ == "__main__":
    main()
