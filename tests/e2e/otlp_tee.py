"""A recording OTLP proxy (``OtlpTee``) and a do-nothing OTLP receiver (``OtlpStub``).

The tee sits between the Claude Code CLI and the OTLP receiver under test.  It forwards every OTLP/HTTP
request (any path) and every OTLP/gRPC Export call unchanged, hands the upstream answer back to the
CLI, and records the raw request body, its Content-Type / Content-Encoding and what upstream answered.
:mod:`ground_truth` decodes those recordings independently of the code under test.

The stub answers OTLP/HTTP with 200 and an empty ``Export*ServiceResponse`` and OTLP/gRPC with OK; it is
useful to exercise the CLI side without a real receiver.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx

GRPC_METHODS = {
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export": "metrics",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export": "logs",
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export": "traces",
}
# Header the harness adds (through OTEL_EXPORTER_OTLP_HEADERS) when the CLI compresses gRPC with gzip.
GRPC_ENCODING_HINT = "x-ccmetrics-e2e-grpc-encoding"
HTTP_PATHS = {"/v1/metrics": "metrics", "/v1/logs": "logs", "/v1/traces": "traces"}

_HOP_BY_HOP = {
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-connection",
    "accept-encoding",
}


@dataclass
class Recorded:
    """One OTLP request as the CLI sent it and as upstream answered it."""

    seq: int
    transport: str  # "http" | "grpc"
    path: str  # HTTP path or gRPC method
    signal: str | None  # "metrics" | "logs" | "traces" | None (unknown path)
    content_type: str | None
    content_encoding: str | None  # HTTP Content-Encoding; for gRPC the encoding the harness announced
    body: bytes  # HTTP: the raw body (still compressed). gRPC: the serialized request message.
    status: int | str  # HTTP status code, or the gRPC status code name ("OK", "UNAVAILABLE", ...)
    received_at: float
    response_body: bytes = b""

    @property
    def acknowledged(self) -> bool:
        if self.transport == "http":
            return isinstance(self.status, int) and 200 <= self.status < 300
        return self.status == "OK"


# --------------------------------------------------------------------------------------------- tee


class OtlpTee:
    def __init__(self, upstream_http: str, upstream_grpc: str | None) -> None:
        """``upstream_http``: base URL such as ``http://127.0.0.1:4318``;
        ``upstream_grpc``: ``127.0.0.1:4317``."""
        self.upstream_http = upstream_http.rstrip("/")
        self.upstream_grpc = upstream_grpc
        self.records: list[Recorded] = []
        self._lock = threading.Lock()
        self._seq = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._grpc_server: grpc.Server | None = None
        self._channel: grpc.Channel | None = None
        self._client = httpx.Client(timeout=30.0)
        self.http_port = 0
        self.grpc_port = 0

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def _add(self, **kw: Any) -> Recorded:
        with self._lock:
            rec = Recorded(seq=self._seq, received_at=time.time(), **kw)
            self._seq += 1
            self.records.append(rec)
            return rec

    def wait_until_quiet(self, quiet_s: float = 1.5, timeout: float = 20) -> list[Recorded]:
        """The CLI flushes on exit; give straggling exports a moment and return once nothing new arrives."""
        deadline = time.monotonic() + timeout
        last, last_change = len(self.snapshot()), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            n = len(self.snapshot())
            if n != last:
                last, last_change = n, time.monotonic()
            elif time.monotonic() - last_change >= quiet_s:
                break
        return self.snapshot()

    def snapshot(self) -> list[Recorded]:
        with self._lock:
            return list(self.records)

    def clear(self) -> None:
        with self._lock:
            self.records.clear()

    # -- lifecycle
    def start(self) -> OtlpTee:
        tee = self

        class Handler(_TeeHandler):
            owner = tee

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.http_port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, name="otlp-tee-http", daemon=True).start()

        if self.upstream_grpc:
            self._channel = grpc.insecure_channel(self.upstream_grpc)
            self._grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
            self._grpc_server.add_generic_rpc_handlers((_TeeGrpcHandler(self),))
            self.grpc_port = self._grpc_server.add_insecure_port("127.0.0.1:0")
            self._grpc_server.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=1).wait()
            self._grpc_server = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self._client.close()

    def __enter__(self) -> OtlpTee:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- gRPC forwarding
    def forward_grpc(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        md = list(context.invocation_metadata() or ())
        # grpc hides the request's grpc-encoding from handlers, so the CLI's gzip cannot be seen here.  The
        # harness therefore announces it in a header of its own (see claude_cli.Telemetry) and the tee
        # forwards the call gzip-compressed too.
        encoding = next((v for k, v in md if k in ("grpc-encoding", GRPC_ENCODING_HINT)), None)
        fwd_md = [
            (k, v)
            for k, v in md
            if not k.startswith(":")
            and not k.startswith("grpc-")
            and k != GRPC_ENCODING_HINT
            and k not in ("user-agent", "te", "content-type")
        ]
        compression = grpc.Compression.Gzip if encoding == "gzip" else None
        assert self._channel is not None
        call = self._channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            response = call(request, metadata=fwd_md or None, timeout=30, compression=compression)
        except grpc.RpcError as err:
            code = err.code()  # type: ignore[attr-defined]
            self._add(
                transport="grpc",
                path=method,
                signal=GRPC_METHODS.get(method),
                content_type="application/grpc",
                content_encoding=encoding,
                body=request,
                status=code.name,
            )
            context.abort(code, err.details() or "")  # type: ignore[attr-defined]
            raise  # unreachable: abort raises
        self._add(
            transport="grpc",
            path=method,
            signal=GRPC_METHODS.get(method),
            content_type="application/grpc",
            content_encoding=encoding,
            body=request,
            status="OK",
            response_body=response,
        )
        return response


class _TeeHandler(BaseHTTPRequestHandler):
    owner: OtlpTee
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        path = self.path.split("?", 1)[0]
        try:
            resp = self.owner._client.post(
                self.owner.upstream_http + self.path, content=body, headers=headers
            )
            status, rbody = resp.status_code, resp.content
            rheaders = [
                (k, v)
                for k, v in resp.headers.multi_items()
                if k.lower() not in _HOP_BY_HOP and k.lower() != "content-encoding"
            ]
        except httpx.HTTPError as err:
            status, rbody, rheaders = (
                502,
                f"tee: upstream error {err!r}".encode(),
                [("content-type", "text/plain")],
            )
        self.owner._add(
            transport="http",
            path=path,
            signal=HTTP_PATHS.get(path),
            content_type=self.headers.get("content-type"),
            content_encoding=self.headers.get("content-encoding"),
            body=body,
            status=status,
            response_body=rbody,
        )
        self.send_response(status)
        for k, v in rheaders:
            self.send_header(k, v)
        self.send_header("content-length", str(len(rbody)))
        self.end_headers()
        self.wfile.write(rbody)


class _TeeGrpcHandler(grpc.GenericRpcHandler):
    def __init__(self, tee: OtlpTee) -> None:
        self.tee = tee

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method not in GRPC_METHODS:
            return None

        def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
            return self.tee.forward_grpc(method, request, context)

        return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=None, response_serializer=None)


# -------------------------------------------------------------------------------------------- stub


class OtlpStub:
    """Minimal OTLP receiver: accepts everything, returns empty Export*ServiceResponse / OK."""

    def __init__(self) -> None:
        self.http_port = 0
        self.grpc_port = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._grpc_server: grpc.Server | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> OtlpStub:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _StubHandler)
        self._httpd.daemon_threads = True
        self.http_port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, name="otlp-stub-http", daemon=True).start()
        self._grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._grpc_server.add_generic_rpc_handlers((_StubGrpcHandler(),))
        self.grpc_port = self._grpc_server.add_insecure_port("127.0.0.1:0")
        self._grpc_server.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=1).wait()
            self._grpc_server = None

    def __enter__(self) -> OtlpStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        ctype = self.headers.get("content-type") or "application/x-protobuf"
        body = b"{}" if "json" in ctype else b""  # an empty Export*ServiceResponse
        self.send_response(200)
        self.send_header("content-type", "application/json" if "json" in ctype else "application/x-protobuf")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _StubGrpcHandler(grpc.GenericRpcHandler):
    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method not in GRPC_METHODS:
            return None
        return grpc.unary_unary_rpc_method_handler(
            lambda req, ctx: b"", request_deserializer=None, response_serializer=None
        )
