"""OTLP/gRPC receiver: the Metrics, Logs and Trace services of opentelemetry-proto on ``grpc.aio``.

Requests reach the handlers as raw bytes and are parsed here, so a malformed message is answered with
INVALID_ARGUMENT (a client error the exporter must not retry) instead of grpc's generic INTERNAL.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from ..access.gate import Refused
from .decode import PROTOBUF, DecodeError, Signal
from .receiver import ExportFailed, Receiver

log = logging.getLogger(__name__)

_REFUSED = {401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED}
_SERVICES = {
    Signal.METRICS: metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name,
    Signal.LOGS: logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name,
    Signal.TRACES: trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name,
}


def _handler(receiver: Receiver, signal: Signal) -> Callable[..., Awaitable[bytes]]:
    async def export(raw: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        try:
            principal = receiver.admit(_authorization(context))
            response = await receiver.export(
                signal,
                raw,
                PROTOBUF,
                source=_peer_host(context.peer()),
                trusted=principal.trusted if principal is not None else None,
            )
        except Refused as exc:
            await context.abort(_REFUSED[exc.status], exc.message)
        except DecodeError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        except ExportFailed as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return response.SerializeToString()

    return export


def _authorization(context: grpc.aio.ServicerContext[bytes, bytes]) -> str | None:
    """The ``authorization`` metadata (gRPC's keys are lower case), as OTEL_EXPORTER_OTLP_HEADERS sends it."""
    # (key, value) pairs; typed differently across the grpc stubs' versions this project allows.
    metadata: Any = context.invocation_metadata() or ()
    for key, value in metadata:
        if key == "authorization":
            return value if isinstance(value, str) else None
    return None


def _peer_host(peer: str) -> str:
    """``ipv4:127.0.0.1:5000`` or ``ipv6:[::1]:5000`` without the port: who sent it, across connections."""
    address = peer.partition(":")[2]
    return address.rpartition(":")[0].strip("[]") or address


async def start(
    receiver: Receiver,
    host: str,
    port: int,
    *,
    max_connections: int,
    idle_timeout: int,
    header_timeout: int,
    credentials: grpc.ServerCredentials | None = None,
) -> grpc.aio.Server:
    """The receiver listening on host:port; with ``credentials``, TLS only. The handshake timeout below
    covers the TLS handshake too."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", receiver.intake.max_body_bytes),
            ("grpc.so_reuseport", 0),  # a port already taken must fail loudly, not be shared
            # gRPC core's own bounds on connections (see listeners.py for the HTTP ones): beyond the limit a
            # connection is closed as it is accepted; one that has not sent the HTTP/2 preface within the
            # header timeout is closed; one without a call for the idle timeout is sent GOAWAY and closed
            # (a client reconnects when it next exports).
            ("grpc.max_allowed_incoming_connections", max_connections),
            ("grpc.server_handshake_timeout_ms", header_timeout * 1000),
            ("grpc.max_connection_idle_ms", idle_timeout * 1000),
            # A call that is started and never finished keeps its connection from being idle: every
            # connection is asked to go away after ten minutes, and closed once its calls have had the idle
            # timeout to finish. Exporters open a new one.
            ("grpc.max_connection_age_ms", 600_000),
            ("grpc.max_connection_age_grace_ms", idle_timeout * 1000),
        ]
    )
    for signal, service in _SERVICES.items():
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
            _handler(receiver, signal)
        )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {"Export": handler}),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = (
            server.add_secure_port(address, credentials)
            if credentials is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {address}: the port is in use or the address is wrong")
    await server.start()
    return server
