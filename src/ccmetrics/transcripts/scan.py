"""Reading Claude Code's transcripts: the assistant messages of one file, from where the last read stopped.

A transcript (``~/.claude/projects/<project>/<session>.jsonl``, and its subagents' files beside it) is one
JSON record a line. Only assistant records carry usage, and they are a small part of the bytes: the rest is
prompts, tool results and file contents. So only the lines that may be assistant records with usage are
decoded (see ``_lines_with_usage``), into a typed struct that leaves every other field unread.

Pure functions of the file's bytes, run in worker processes: what they return is plain values.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

MARKER = b'"usage":'
CHUNK = 8 << 20  # bytes read at a time: a file is never held whole
SYNTHETIC = "<synthetic>"  # Claude Code's model for messages it made up itself (errors, interruptions)


class _CacheCreation(msgspec.Struct):
    ephemeral_5m_input_tokens: int | None = None
    ephemeral_1h_input_tokens: int | None = None


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation: _CacheCreation | None = None


class _Message(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    usage: _Usage | None = None


class _Record(msgspec.Struct):
    type: str | None = None
    message: _Message | None = None
    requestId: str | None = None  # noqa: N815 - the transcript's own names
    sessionId: str | None = None  # noqa: N815
    timestamp: str | None = None
    isSidechain: bool | None = None  # noqa: N815
    isApiErrorMessage: bool | None = None  # noqa: N815
    cwd: str | None = None
    gitBranch: str | None = None  # noqa: N815
    costUSD: float | None = None  # noqa: N815


_decode = msgspec.json.Decoder(_Record).decode


class Message(NamedTuple):
    """One assistant message's usage, as counted: its final record's (the largest output)."""

    key: int  # message.id and requestId hashed: the same message in two files, or two records, is one
    session_id: str
    model: str
    time_ns: int
    input: int
    output: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int
    cost_usd: float | None  # Claude Code's own, where its version wrote one
    sidechain: bool
    cwd: str
    git_branch: str


HOUR_NS = 3_600_000_000_000
LONG_CONTEXT = (
    200_000  # input tokens (cached ones included) above which Anthropic's long-context prices apply
)

# What the messages of one file add up to, per (session, model, cwd, branch, hour, long context, priced by
# Claude Code): [input, output, cache read, 5-minute cache write, 1-hour cache write, Claude Code's cost,
# messages, first time, last time].
GroupKey = tuple[str, str, str, str, int, bool, bool]
Sums = list[Any]


@dataclass
class FileScan:
    """What one read of a file found."""

    path: str
    size: int
    mtime_ns: int
    offset: int  # where the next read starts: after the last complete line
    messages: list[Message] = field(default_factory=list)
    skipped: int = 0  # assistant records not counted: synthetic, errors, no usage
    bad_lines: int = 0  # lines with the marker that are not JSON (a torn write)


def message_key(message_id: str | None, request_id: str | None, fallback: bytes | memoryview) -> int:
    """A signed 64-bit key (an SQLite integer) for the message; ``fallback`` (the line) when it has no id."""
    if message_id is None:
        raw = bytes(fallback)
    else:
        raw = f"{message_id}\x00{request_id or ''}".encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big", signed=True)


def parse_time(value: str | None) -> int:
    if not value:
        return 0
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return 0
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def scan_file(path: str, offset: int = 0, default_session: str = "") -> FileScan:
    """Read ``path`` from ``offset`` to its last complete line; a last line without its newline is read too
    when it is whole JSON, but the next read starts at it again (a message read twice counts once)."""
    st = os.stat(path)
    scan = FileScan(path, st.st_size, st.st_mtime_ns, offset)
    if st.st_size < offset:  # replaced or truncated: read it again from the start
        offset = scan.offset = 0
    found: dict[int, Message] = {}
    # One buffer, read into again and again: a new one for every chunk would have the kernel find and zero
    # fresh pages for each, which costs as much as the reading itself.
    data = bytearray(min(CHUNK, max(st.st_size - offset, 0) + 1))
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        while True:
            length = f.readinto(data)
            if not length:
                break
            end = data.rfind(b"\n", 0, length) + 1
            if not end:
                if length < len(data):  # the end of the file, without a newline yet
                    last = bytes(data[:length]) + b"\n"
                    _lines_with_usage(last, len(last), scan, found, default_session, final=True)
                    break
                data = bytearray(len(data) * 2)  # a line longer than the buffer: read more of it at once
                f.seek(scan.offset)
                continue
            _lines_with_usage(data, end, scan, found, default_session)
            scan.offset += end
            if end < length:
                f.seek(scan.offset)  # the partial line at the end: read again, whole, with the next chunk
    scan.messages = list(found.values())
    return scan


def _lines_with_usage(
    data: bytes | bytearray,
    end: int,
    scan: FileScan,
    found: dict[int, Message],
    default_session: str,
    final: bool = False,
) -> None:
    """Decode the lines of ``data[:end]`` that may be assistant messages with usage.

    Most bytes are in records of other types (a tool's result holds whole files), and most records name their
    type near their start: when the start of a line shows its top-level ``"type"`` (no object or array opened
    before it, and a quote cannot occur unescaped inside a string) and it is not "assistant", the line is
    skipped at the speed of finding its newline. Other lines are searched for ``"usage":`` first."""
    find = data.find
    view = memoryview(data)
    pos = 0
    while pos < end:
        stop = find(b"\n", pos, end)
        at = find(b'"type":"', pos + 1, min(stop, pos + 512))
        if at > 0 and find(b"{", pos + 1, at) == -1 and find(b"[", pos + 1, at) == -1:
            if not data.startswith(b'assistant"', at + 8):
                pos = stop + 1
                continue
        elif find(MARKER, pos, stop) == -1:
            pos = stop + 1
            continue
        line = view[pos:stop]
        pos = stop + 1
        try:
            record = _decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError):
            if not final:
                scan.bad_lines += 1
            continue
        _count(record, line, found, scan, default_session)


def _count(
    record: _Record, line: memoryview, found: dict[int, Message], scan: FileScan, default_session: str
) -> None:
    message = record.message
    if record.type != "assistant" or message is None or message.usage is None:
        return  # a tool's result that reports usage, a progress record: counted in its own file
    model = message.model or ""
    if model == SYNTHETIC or record.isApiErrorMessage:
        scan.skipped += 1
        return
    usage = message.usage
    cache_write = usage.cache_creation_input_tokens or 0
    split = usage.cache_creation
    one_hour = (split.ephemeral_1h_input_tokens or 0) if split else 0
    if one_hour > cache_write:
        one_hour = cache_write
    key = message_key(message.id, record.requestId, line)
    output = usage.output_tokens or 0
    known = found.get(key)
    if known is not None and known.output >= output:
        return
    found[key] = Message(
        key,
        record.sessionId or default_session,
        model,
        known.time_ns if known else parse_time(record.timestamp),
        usage.input_tokens or 0,
        output,
        usage.cache_read_input_tokens or 0,
        cache_write - one_hour,  # older versions give no breakdown: all of it 5-minute
        one_hour,
        record.costUSD,
        bool(record.isSidechain),
        record.cwd or "",
        record.gitBranch or "",
    )


@dataclass
class FileSummary:
    """A file's scan as a worker hands it back: its messages' keys and what they add up to."""

    path: str
    size: int
    mtime_ns: int
    start: int  # where this read started
    offset: int
    keys: array[int]
    outputs: array[int]
    groups: dict[GroupKey, Sums]
    skipped: int
    bad_lines: int


def summarize(path: str, offset: int, default_session: str) -> FileSummary:
    scan = scan_file(path, offset, default_session)
    start = offset if scan.size >= offset else 0
    return FileSummary(
        path,
        scan.size,
        scan.mtime_ns,
        start,
        scan.offset,
        array("q", [m.key for m in scan.messages]),
        array("q", [m.output for m in scan.messages]),
        add_up(scan.messages),
        scan.skipped,
        scan.bad_lines,
    )


def add_up(messages: list[Message]) -> dict[GroupKey, Sums]:
    groups: dict[GroupKey, Sums] = {}
    for m in messages:
        long = m.input + m.cache_read + m.cache_write_5m + m.cache_write_1h > LONG_CONTEXT
        key = (
            m.session_id,
            m.model,
            m.cwd,
            m.git_branch,
            m.time_ns - m.time_ns % HOUR_NS,
            long,
            m.cost_usd is not None,
        )
        sums = groups.get(key)
        if sums is None:
            groups[key] = [
                m.input,
                m.output,
                m.cache_read,
                m.cache_write_5m,
                m.cache_write_1h,
                m.cost_usd or 0.0,
                1,
                m.time_ns,
                m.time_ns,
            ]
        else:
            sums[0] += m.input
            sums[1] += m.output
            sums[2] += m.cache_read
            sums[3] += m.cache_write_5m
            sums[4] += m.cache_write_1h
            sums[5] += m.cost_usd or 0.0
            sums[6] += 1
            if m.time_ns < sums[7]:
                sums[7] = m.time_ns
            if m.time_ns > sums[8]:
                sums[8] = m.time_ns
    return groups
