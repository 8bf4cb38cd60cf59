"""The HTTP listeners (the dashboard and API, OTLP/HTTP): how many connections each holds, and how long a
client may take to send a request head.

uvicorn closes a connection left idle after a response (``timeout_keep_alive``, our ``--idle-timeout``), but
nothing closes one that sends nothing at all, or a request head a byte at a time, and nothing bounds how many
it holds: its ``limit_concurrency`` answers 503 to *requests* beyond the limit, counted over the whole server,
so a socket that never sends one is never refused; ``h11_max_incomplete_event_size`` bounds the size of a
head, not the time it takes. Some thousands of idle sockets exhaust the process's open files. No setting or
hook of uvicorn's gives either guarantee, so :class:`GuardedHttp` adds both to uvicorn's own HTTP/1.1
protocol, given to uvicorn as its ``http`` setting (a protocol class): a small subclass instead of a proxy in
front of uvicorn or a patched uvicorn. It reads nothing of uvicorn's and keeps its own state. It extends four
methods, each after uvicorn's own: the asyncio protocol's ``connection_made`` and ``connection_lost``, and
the httptools parser's callbacks ``on_message_begin`` (the first byte of a request) and
``on_headers_complete`` (the whole head).

One uvicorn server serves both listeners, so the connections are counted by the local port they came to.
The gRPC listener has the same bounds from gRPC core's own settings (``otlp/grpc.py``).

Under TLS the class is given the plain TCP connection, not uvicorn: had uvicorn's ``ssl`` setting wrapped
the sockets, asyncio would hand a connection over only after its handshake, and a client that connects and
never completes one would be neither counted nor timed. So each connection is counted and its deadline
set as it is accepted; the handshake (``loop.start_tls``) runs under that deadline, and uvicorn's protocol
starts on the TLS transport once it is done. A connection beyond the limit is closed without an answer:
nothing can be said to a TLS client before a handshake, and exporters retry a dropped connection too.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("ccmetrics")

LISTENERS = 3  # the dashboard, OTLP/HTTP and OTLP/gRPC
# Open files that are not connections: the database and its WAL and shared memory (per reader), the event
# loop's and gRPC's own descriptors, the listening sockets, logs; measured at about 30, with room to spare.
RESERVED_FILES = 128

_MESSAGE = b"too many connections: this server accepts --max-connections at a time; try again shortly\n"
_TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nretry-after: 2\r\nconnection: close\r\n\r\n%s" % (len(_MESSAGE), _MESSAGE)
)


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools, what its ``auto`` picks) with a limit on the connections of
    each listener and a deadline for each request head: ``header_timeout`` seconds from the moment the
    connection opens, or from the first byte of a later request on it, until the head is in. Between requests
    uvicorn's keep-alive timeout applies. :func:`guarded_http` makes the class with its settings."""

    max_connections: ClassVar[int]
    header_timeout: ClassVar[float]
    open_connections: ClassVar[dict[int, int]]  # by local port
    tls: ClassVar[ssl.SSLContext | None]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._guard_transport = transport  # the TCP connection, which a deadline closes, TLS or not
        self._guard_deadline: asyncio.TimerHandle | None = None
        self._guard_port: int | None = None
        self._guard_started = self.tls is None  # whether uvicorn's protocol has the connection
        if self.tls is None:
            super().connection_made(transport)
        port = transport.get_extra_info("sockname")[1]
        if self.open_connections.get(port, 0) >= self.max_connections:
            # Closed as soon as it is accepted, so the process never runs out of files; 503 with
            # Retry-After is what OTLP exporters retry, and a request already sent reads it as its answer.
            if self.tls is None:
                transport.write(_TOO_MANY)
            transport.close()
            return
        self._guard_port = port
        self.open_connections[port] = self.open_connections.get(port, 0) + 1
        self._expect_head()  # from the moment it connects: under TLS, the handshake is part of the head
        if self.tls is not None:
            self._guard_early = bytearray()
            loop = asyncio.get_running_loop()
            self._guard_handshake = loop.create_task(self._handshake(self.tls))
            # Runs right after the task's first step, in which start_tls puts its TLS protocol on the
            # connection, and before that protocol starts the handshake.
            loop.call_soon(self._hand_over_early_bytes)

    def data_received(self, data: bytes) -> None:
        if self._guard_started:
            super().data_received(data)
        else:
            # The client's first handshake bytes, read before start_tls took the connection over (uvloop
            # starts reading as a connection is made, whatever connection_made does): kept for it.
            self._guard_early += data
            self._guard_transport.pause_reading()

    def _hand_over_early_bytes(self) -> None:
        data, self._guard_early = bytes(self._guard_early), bytearray()
        if not data or self._guard_transport.is_closing():
            return
        tls_protocol: Any = self._guard_transport.get_protocol()
        if tls_protocol is self or not hasattr(tls_protocol, "buffer_updated"):
            self._guard_transport.close()  # start_tls did not take over as expected: never guess
            return
        # asyncio's and uvloop's TLS protocols are buffered protocols: what they are given before their
        # connection_made waits in their incoming buffer for the handshake.
        while data:
            buffer = memoryview(tls_protocol.get_buffer(len(data)))
            size = min(len(buffer), len(data))
            buffer[:size] = data[:size]
            tls_protocol.buffer_updated(size)
            data = data[size:]

    async def _handshake(self, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls_transport = await loop.start_tls(
                self._guard_transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self.header_timeout,
            )
        except asyncio.CancelledError:  # the server is stopping
            self._release()
            raise
        except (OSError, RuntimeError):  # a failed or timed-out handshake; the deadline or client closed it
            self._release()  # start_tls has closed it; nothing else will say it is gone
            return
        if tls_transport is None:  # the connection closed as the handshake finished
            self._release()
            return
        self._guard_started = True
        super().connection_made(tls_transport)  # type: ignore[arg-type]

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._guard_deadline is None:
            self._expect_head()  # the first byte of a later request

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._cancel_deadline()  # the head is in: from here on the request is the application's

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if self._guard_started:
            super().connection_lost(exc)

    def _release(self) -> None:
        self._cancel_deadline()
        if self._guard_port is not None:
            self.open_connections[self._guard_port] -= 1
            self._guard_port = None

    def _expect_head(self) -> None:
        loop = asyncio.get_running_loop()
        self._guard_deadline = loop.call_later(self.header_timeout, self._guard_transport.close)

    def _cancel_deadline(self) -> None:
        if self._guard_deadline is not None:
            self._guard_deadline.cancel()
            self._guard_deadline = None


def guarded_http(
    max_connections: int, header_timeout: float, tls: ssl.SSLContext | None = None
) -> type[GuardedHttp]:
    """The protocol class for uvicorn's ``http`` setting, with connections counted by listener; with
    ``tls``, each connection's handshake runs under the guards before uvicorn sees it."""
    settings = {
        "max_connections": max_connections,
        "header_timeout": header_timeout,
        "open_connections": {},
        "tls": tls,
    }
    return type("GuardedHttp", (GuardedHttp,), settings)


def fit_open_files(max_connections: int) -> int:
    """Raise the soft limit on open files, up to the hard limit, until every listener can hold
    ``max_connections``; when the hard limit is too low for that, the per-listener limit that fits."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to raise
        return max_connections
    need = LISTENERS * max_connections + RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return max_connections
    raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    except (ValueError, OSError):  # macOS caps it below an unlimited hard limit
        pass
    if soft >= need:
        return max_connections
    fitted = max(1, (soft - RESERVED_FILES) // LISTENERS)
    log.warning(
        "the open-file limit (%d) is too low for --max-connections %d on each of %d listeners: "
        "each one takes %d; raise the limit (ulimit -n) to allow more",
        soft,
        max_connections,
        LISTENERS,
        fitted,
    )
    return fitted
