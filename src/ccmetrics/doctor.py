"""``ccmetrics doctor``: proof that telemetry flows, or the exact reason it does not.

Silence is the failure that hurts: telemetry "on", nothing arriving, found out weeks later. So the doctor
(1) resolves each telemetry variable the way Claude Code does (see :mod:`ccmetrics.claude_settings`) and
checks it, (2) sends a real OTLP export with the configured protocol, endpoint and headers, marked as a test
(metric ``ccmetrics.doctor.probe``, event ``ccmetrics.doctor_probe``, resource attribute
``ccmetrics.test=true``: no summary counts it), and asks the server whether it stored it, and (3) shows what
the server has seen, warning about sessions that sent events but no metrics, or the reverse.

Data can flow only when nothing is an error; the exit status says so.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .claude_settings import TELEMETRY_VARS, Source, Variable, effective, read_sources
from .store.status import PROBE_EVENT, PROBE_ID_KEY, PROBE_METRIC, TEST_KEY

OK, INFO, WARN, ERROR = "ok", "info", "warn", "error"
PROTOCOLS = ("grpc", "http/protobuf", "http/json")
DEFAULT_SERVER = "http://127.0.0.1:3000"
TRUTHY = ("1", "true", "yes", "on")
GRPC_PORT, HTTP_PORT = 4317, 4318
SIGNALS = ("metrics", "logs")


@dataclass(frozen=True)
class Finding:
    level: str  # ok | info | warn | error
    check: str
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level, "check": self.check, "message": self.message, "fix": self.fix}


# --- where each signal goes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """Where one signal is exported, as the OpenTelemetry exporter will compute it."""

    signal: str  # metrics | logs
    protocol: str
    url: str  # grpc: http(s)://host:port; http: the full URL including /v1/<signal>
    protocol_source: str  # the variable it came from, or "default"
    endpoint_source: str

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urllib.parse.urlsplit(self.url if "://" in self.url else "http://" + self.url)
        default = 443 if parts.scheme == "https" else (GRPC_PORT if self.protocol == "grpc" else HTTP_PORT)
        return parts.hostname or "localhost", parts.port or default

    @property
    def secure(self) -> bool:
        return self.url.startswith("https://")


def _truthy(value: str) -> bool:
    """A true value, as Claude Code reads its switches."""
    return value.strip().lower() in TRUTHY


def _value(variables: Mapping[str, Variable], name: str) -> str | None:
    var = variables.get(name)
    return var.value if var is not None and var.value not in (None, "") else None


def destination(variables: Mapping[str, Variable], signal: str) -> Destination:
    """Signal-specific variables win over the general ones; the OTel defaults fill in the rest."""
    upper = signal.upper()
    protocol_var = next(
        (
            n
            for n in (f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
            if _value(variables, n)
        ),
        None,
    )
    protocol = (_value(variables, protocol_var) if protocol_var else None) or "http/protobuf"
    signal_endpoint = _value(variables, f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")
    general = _value(variables, "OTEL_EXPORTER_OTLP_ENDPOINT")
    if signal_endpoint:
        return Destination(
            signal,
            protocol,
            signal_endpoint,
            protocol_var or "default",
            f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT",
        )
    base = (general or f"http://localhost:{GRPC_PORT if protocol == 'grpc' else HTTP_PORT}").rstrip("/")
    url = base if protocol == "grpc" else f"{base}/v1/{signal}"
    return Destination(
        signal,
        protocol,
        url,
        protocol_var or "default",
        "OTEL_EXPORTER_OTLP_ENDPOINT" if general else "default",
    )


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """``k=v,k2=v2`` as OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS spell it."""
    pairs = []
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        pairs.append((key.strip(), urllib.parse.unquote(value.strip()) if sep else "\0"))
    return pairs


def headers_of(variables: Mapping[str, Variable]) -> dict[str, str]:
    text = _value(variables, "OTEL_EXPORTER_OTLP_HEADERS") or ""
    return {k: v for k, v in parse_pairs(text) if v != "\0" and k}


def redact(name: str, value: str | None) -> str | None:
    """Header values are secrets; show only their names."""
    if value is None or name != "OTEL_EXPORTER_OTLP_HEADERS":
        return value
    return ",".join(f"{k}=***" for k, _ in parse_pairs(value))


# --- checks on the configuration (pure) -------------------------------------------------------------


def check_sources(sources: list[Source]) -> list[Finding]:
    findings = []
    for source in sources:
        if source.error:
            level = ERROR if source.honored else WARN
            findings.append(
                Finding(
                    level,
                    "settings_file_invalid",
                    f"{source.error}: Claude Code cannot use this file",
                    f"fix the JSON in {source.path}",
                )
            )
        elif not source.honored and set(source.env) & set(TELEMETRY_VARS):
            names = ", ".join(sorted(set(source.env) & set(TELEMETRY_VARS)))
            findings.append(
                Finding(
                    WARN,
                    "ignored_source",
                    f"{source.path} sets {names}, but Claude Code ignores telemetry variables "
                    "in project settings",
                    "run `ccmetrics setup` (user settings) instead",
                )
            )
    return findings


def check_variables(variables: Mapping[str, Variable], backend: str = "ccmetrics") -> list[Finding]:
    """Everything that can be said from the values alone."""
    findings: list[Finding] = []
    add = findings.append
    enabled = _value(variables, "CLAUDE_CODE_ENABLE_TELEMETRY")
    if enabled is None or not _truthy(enabled):
        add(
            Finding(
                ERROR,
                "telemetry_off",
                "telemetry is off: CLAUDE_CODE_ENABLE_TELEMETRY is "
                + (repr(enabled) if enabled else "not set"),
                "run `ccmetrics setup`",
            )
        )
    for name, what in (("OTEL_METRICS_EXPORTER", "metrics"), ("OTEL_LOGS_EXPORTER", "events")):
        value = _value(variables, name)
        exporters = [e.strip().lower() for e in (value or "").split(",")]
        if "otlp" not in exporters:
            add(
                Finding(
                    ERROR,
                    f"{what}_exporter_missing",
                    f"no {what} are exported: {name} is " + (repr(value) if value else "not set"),
                    f"set {name}=otlp",
                )
            )
    for signal in SIGNALS:
        findings += _check_destination(variables, destination(variables, signal))
    attrs = _value(variables, "OTEL_RESOURCE_ATTRIBUTES")
    if attrs is not None:
        for key, value in parse_pairs(attrs):
            if value == "\0" or not key:
                add(
                    Finding(
                        ERROR,
                        "resource_attributes_invalid",
                        f"OTEL_RESOURCE_ATTRIBUTES has {key or '(empty)'!r} without key=value",
                        "write key=value pairs separated by commas",
                    )
                )
            elif any(c.isspace() for c in value) or any(c.isspace() for c in key):
                add(
                    Finding(
                        ERROR,
                        "resource_attributes_spaces",
                        f"OTEL_RESOURCE_ATTRIBUTES: {key}={value!r} has a space, "
                        "which Claude Code cannot parse",
                        "use - or _ instead of spaces",
                    )
                )
    headers = _value(variables, "OTEL_EXPORTER_OTLP_HEADERS")
    if headers is not None and any(v == "\0" or not k for k, v in parse_pairs(headers)):
        add(
            Finding(
                ERROR,
                "headers_invalid",
                "OTEL_EXPORTER_OTLP_HEADERS is not a list of name=value pairs",
                "e.g. Authorization=Bearer TOKEN",
            )
        )
    findings += _check_temporality(
        _value(variables, "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"), backend
    )
    session_id = variables.get("OTEL_METRICS_INCLUDE_SESSION_ID")
    if session_id is not None and session_id.value is not None and not _truthy(session_id.value):
        add(
            Finding(
                WARN,
                "no_session_ids",
                f"OTEL_METRICS_INCLUDE_SESSION_ID={session_id.value!r}: Claude Code leaves session.id off "
                "its metrics and events, so sessions are counted but cannot be told apart (no recent "
                "sessions, no session pages)",
                "remove it: ccmetrics keeps session ids where they cost nothing",
            )
        )
    for name, default_s in (("OTEL_METRIC_EXPORT_INTERVAL", 60), ("OTEL_LOGS_EXPORT_INTERVAL", 5)):
        value = _value(variables, name)
        if value is None:
            if default_s > 10:
                add(
                    Finding(
                        INFO,
                        "interval_default",
                        f"{name} is not set: data arrives every {default_s} s",
                        f"set {name}=10000 for a live dashboard",
                    )
                )
        elif not value.strip().isdigit() or int(value) <= 0:
            add(
                Finding(
                    ERROR,
                    "interval_invalid",
                    f"{name}={value!r} is not a positive number of milliseconds",
                    f"set {name}=10000",
                )
            )
        elif int(value) > 60_000:
            add(
                Finding(
                    WARN,
                    "interval_long",
                    f"{name}={value}: data arrives only every {int(value) // 1000} s",
                    f"set {name}=10000",
                )
            )
    return _unique(findings)


def _check_destination(variables: Mapping[str, Variable], dest: Destination) -> list[Finding]:
    findings = []
    proto_var = dest.protocol_source
    if dest.protocol not in PROTOCOLS:
        hint = (
            "http/protobuf (or http/json)" if dest.protocol == "http" else "grpc, http/protobuf or http/json"
        )
        findings.append(
            Finding(
                ERROR,
                "protocol_invalid",
                f"{proto_var}={dest.protocol!r} is not a protocol the exporter knows; "
                "it falls back to its default or exports nothing",
                f"use {hint}",
            )
        )
    elif proto_var == "default":
        findings.append(
            Finding(
                WARN,
                "protocol_unset",
                f"OTEL_EXPORTER_OTLP_PROTOCOL is not set: {dest.signal} go out as http/protobuf",
                "set OTEL_EXPORTER_OTLP_PROTOCOL=grpc (port 4317) or http/protobuf (port 4318)",
            )
        )
    parts = urllib.parse.urlsplit(dest.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        findings.append(
            Finding(
                ERROR,
                "endpoint_invalid",
                f"{dest.endpoint_source}={dest.url!r} is not an http:// or https:// URL",
                "e.g. http://127.0.0.1:4317",
            )
        )
        return findings
    if dest.endpoint_source == "default":
        findings.append(
            Finding(
                WARN,
                "endpoint_unset",
                f"OTEL_EXPORTER_OTLP_ENDPOINT is not set: {dest.signal} go to {dest.url}",
                "set OTEL_EXPORTER_OTLP_ENDPOINT to your ccmetrics server",
            )
        )
    port = dest.host_port[1]
    if (
        dest.protocol == "grpc"
        and port == HTTP_PORT
        or dest.protocol.startswith("http/")
        and port == GRPC_PORT
    ):
        findings.append(port_mismatch(dest))
    general_path = urllib.parse.urlsplit(_value(variables, "OTEL_EXPORTER_OTLP_ENDPOINT") or "").path
    if (
        dest.protocol.startswith("http/")
        and dest.endpoint_source == "OTEL_EXPORTER_OTLP_ENDPOINT"
        and "/v1/" in general_path
    ):
        findings.append(
            Finding(
                ERROR,
                "endpoint_path",
                f"OTEL_EXPORTER_OTLP_ENDPOINT has a path ({general_path}); the exporter adds "
                f"/v1/{dest.signal} itself, so it posts to {dest.url}",
                "give only scheme, host and port",
            )
        )
    return findings


def port_mismatch(dest: Destination) -> Finding:
    host, port = dest.host_port
    wanted = "grpc" if dest.protocol.startswith("http/") else "http/protobuf"
    return Finding(
        ERROR,
        "port_protocol_mismatch",
        f"{dest.signal}: {dest.protocol} is sent to {host}:{port}, which is the "
        f"{'gRPC' if wanted == 'grpc' else 'OTLP/HTTP'} port",
        f"set OTEL_EXPORTER_OTLP_PROTOCOL={wanted}, or use the "
        f"{'OTLP/HTTP' if wanted == 'grpc' else 'gRPC'} port",
    )


def _check_temporality(value: str | None, backend: str) -> list[Finding]:
    chosen = (value or "delta").strip().lower()
    if chosen not in ("delta", "cumulative", "lowmemory"):
        return [
            Finding(
                ERROR,
                "temporality_invalid",
                f"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE={value!r} is not delta, cumulative "
                "or lowmemory",
                "remove it (delta) or set cumulative",
            )
        ]
    if backend == "stack" and chosen != "cumulative":
        return [
            Finding(
                ERROR,
                "temporality_backend",
                f"metrics are sent as {chosen}{'' if value else ' (the default)'}, but the Prometheus "
                "stack takes cumulative counters only",
                "set OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative",
            )
        ]
    return []


def _unique(findings: list[Finding]) -> list[Finding]:
    seen, result = set(), []
    for finding in findings:
        if (finding.check, finding.message) not in seen:
            seen.add((finding.check, finding.message))
            result.append(finding)
    return result


# --- talking to the server and the endpoint -----------------------------------------------------------


def tcp_reachable(host: str, port: int, timeout: float = 2.0) -> str | None:
    """None when something accepts connections at host:port, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def get_json(url: str, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the user's own server
        return json.loads(response.read())


def authorization(headers: Mapping[str, str]) -> dict[str, str]:
    """The settings' Authorization header, if any: a protected server answers the probe's lookup to the
    token the probe was sent with, and its status to a viewer's or admin's."""
    return {k: v for k, v in headers.items() if k.lower() == "authorization"}


def probe_requests(probe_id: str, now_ns: int | None = None) -> tuple[Any, Any]:
    """The test export: one gauge point and one log record, each carrying the probe id."""
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.logs.v1 import logs_pb2
    from opentelemetry.proto.metrics.v1 import metrics_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2

    now_ns = now_ns or time.time_ns()

    def kv(key: str, value: str | bool) -> common_pb2.KeyValue:
        any_value = (
            common_pb2.AnyValue(bool_value=value)
            if isinstance(value, bool)
            else common_pb2.AnyValue(string_value=value)
        )
        return common_pb2.KeyValue(key=key, value=any_value)

    resource = resource_pb2.Resource(
        attributes=[
            kv("service.name", "ccmetrics-doctor"),
            kv(TEST_KEY, True),
            kv("host.name", socket.gethostname()),
        ]
    )
    scope = common_pb2.InstrumentationScope(name="ccmetrics.doctor")
    point = metrics_pb2.NumberDataPoint(
        time_unix_nano=now_ns, start_time_unix_nano=now_ns, as_int=1, attributes=[kv(PROBE_ID_KEY, probe_id)]
    )
    metric = metrics_pb2.Metric(
        name=PROBE_METRIC,
        unit="1",
        description="ccmetrics doctor test export",
        gauge=metrics_pb2.Gauge(data_points=[point]),
    )
    metrics = metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource, scope_metrics=[metrics_pb2.ScopeMetrics(scope=scope, metrics=[metric])]
            )
        ]
    )
    record = logs_pb2.LogRecord(
        time_unix_nano=now_ns,
        observed_time_unix_nano=now_ns,
        body=common_pb2.AnyValue(string_value=PROBE_EVENT),
        attributes=[kv("event.name", PROBE_EVENT), kv(PROBE_ID_KEY, probe_id)],
    )
    logs = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource, scope_logs=[logs_pb2.ScopeLogs(scope=scope, log_records=[record])]
            )
        ]
    )
    return metrics, logs


class ExportFailed(Exception):
    pass


def send(dest: Destination, request: Any, headers: Mapping[str, str], timeout: float = 5.0) -> None:
    """One OTLP export with the protocol the exporter would use; raises ExportFailed with the reason."""
    if dest.protocol == "grpc":
        _send_grpc(dest, request, headers, timeout)
    elif dest.protocol in ("http/protobuf", "http/json"):
        _send_http(dest, request, headers, timeout)
    else:
        raise ExportFailed(f"{dest.protocol!r} is not an OTLP protocol")


def _send_grpc(dest: Destination, request: Any, headers: Mapping[str, str], timeout: float) -> None:
    import grpc

    host, port = dest.host_port
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    service = "MetricsService" if dest.signal == "metrics" else "LogsService"
    method = f"/opentelemetry.proto.collector.{dest.signal}.v1.{service}/Export"
    channel = (
        grpc.secure_channel(target, grpc.ssl_channel_credentials(_grpc_root_certificates()))
        if dest.secure
        else grpc.insecure_channel(target)
    )
    try:
        call: grpc.UnaryUnaryMultiCallable[Any, bytes] = channel.unary_unary(
            method, request_serializer=lambda m: m.SerializeToString(), response_deserializer=lambda b: b
        )
        call(request, timeout=timeout, metadata=tuple((k.lower(), v) for k, v in headers.items()))
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") and exc.code() else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        raise ExportFailed(f"gRPC {code}: {details}") from None
    finally:
        channel.close()


def _grpc_root_certificates() -> bytes | None:
    """The CAs in ``SSL_CERT_FILE``, which the HTTP checks trust through OpenSSL but gRPC does not read;
    None: gRPC's own roots."""
    path = os.environ.get("SSL_CERT_FILE")
    try:
        return Path(path).read_bytes() if path else None
    except OSError:
        return None


def _send_http(dest: Destination, request: Any, headers: Mapping[str, str], timeout: float) -> None:
    from google.protobuf import json_format

    if dest.protocol == "http/json":
        body, media = json_format.MessageToJson(request, indent=None).encode(), "application/json"
    else:
        body, media = request.SerializeToString(), "application/x-protobuf"
    http_request = urllib.request.Request(
        dest.url, data=body, method="POST", headers={**headers, "Content-Type": media}
    )
    context = ssl.create_default_context() if dest.secure else None
    try:
        with urllib.request.urlopen(http_request, timeout=timeout, context=context) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        raise ExportFailed(f"HTTP {exc.code} {exc.reason} from {dest.url}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: the port does not speak HTTP"
        raise ExportFailed(f"{dest.url}: {reason}") from None


# --- the whole run ------------------------------------------------------------------------------------


@dataclass
class Report:
    variables: list[Variable]
    sources: list[Source]
    findings: list[Finding] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not any(f.level == ERROR for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "variables": [
                {
                    **v.as_dict(),
                    "value": redact(v.name, v.value),
                    "shadowed": [[s, redact(v.name, x)] for s, x in v.shadowed],
                    "ignored": [[s, redact(v.name, x)] for s, x in v.ignored],
                }
                for v in self.variables
            ],
            "sources": [
                {
                    "name": s.name,
                    "path": str(s.path) if s.path else None,
                    "exists": s.exists,
                    "error": s.error,
                }
                for s in self.sources
            ],
            "findings": [f.as_dict() for f in self.findings],
            "probe": self.probe,
            "server": self.server,
            "status": self.status,
        }


def run(
    *,
    server: str = DEFAULT_SERVER,
    backend: str = "ccmetrics",
    home: Path | None = None,
    project_dir: Path | None = None,
    managed_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    probe: bool = True,
    wait_s: float = 10.0,
    read_token: str | None = None,
) -> Report:
    sources = read_sources(home=home, project_dir=project_dir, managed_path=managed_path, environ=environ)
    variables = effective(sources)
    report = Report(list(variables.values()), sources)
    report.findings += check_sources(sources)
    report.findings += check_variables(variables, backend)
    destinations = {signal: destination(variables, signal) for signal in SIGNALS}

    server = server.rstrip("/")
    report.server = {"url": server}
    try:
        health = get_json(f"{server}/api/health")
        report.server.update(reachable=True, version=health.get("version"), otlp=health.get("otlp"))
    except (OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        report.server.update(reachable=False, error=str(reason))
        report.findings.append(
            Finding(
                ERROR,
                "server_unreachable",
                f"the ccmetrics server does not answer at {server} ({reason})",
                "trust the CA of the server's certificate: SSL_CERT_FILE=/path/to/ca.pem ccmetrics doctor"
                if isinstance(reason, ssl.SSLCertVerificationError)
                else "start `ccmetrics serve`, or pass --server URL",
            )
        )
        health = None
    if health:
        report.findings += _check_against_server(destinations, health.get("otlp") or {}, server)

    reachable = {}
    for signal, dest in destinations.items():
        host, port = dest.host_port
        if dest.url.startswith(("http://", "https://")):
            problem = tcp_reachable(host, port)
            reachable[signal] = problem is None
            if problem:
                report.findings.append(
                    Finding(
                        ERROR,
                        "endpoint_unreachable",
                        f"{signal}: nothing accepts connections at {host}:{port} ({problem})",
                        "start `ccmetrics serve`, or fix OTEL_EXPORTER_OTLP_ENDPOINT",
                    )
                )
    if probe:
        report.probe = _probe(
            destinations, headers_of(variables), server if health else None, reachable, wait_s
        )
        report.findings += _probe_findings(report.probe)
    if health:
        try:
            # The status shows every user: a reader's token, else the one the settings send (an admin reads).
            reader = {"Authorization": f"Bearer {read_token}"} if read_token else None
            report.status = get_json(
                f"{server}/api/status", timeout=30, headers=reader or authorization(headers_of(variables))
            )  # every session of a large team: a long timeout
            report.findings += status_findings(report.status)
        except urllib.error.HTTPError as exc:
            if exc.code not in (401, 403):
                report.findings.append(Finding(WARN, "status_unavailable", f"{server}/api/status: {exc}"))
            else:
                report.findings.append(
                    Finding(
                        INFO,
                        "status_needs_reader",
                        "the server's status (what it has seen of every user) is for viewers and admins: "
                        "give doctor a viewer token with --read-token "
                        "(ccmetrics token create NAME --role viewer)",
                    )
                )
        except (OSError, ValueError, http.client.HTTPException) as exc:
            report.findings.append(Finding(WARN, "status_unavailable", f"{server}/api/status: {exc}"))
    report.findings = _unique(report.findings)
    return report


def _check_against_server(
    destinations: Mapping[str, Destination], otlp: Mapping[str, str], server: str
) -> list[Finding]:
    """The server says which port speaks which protocol; a local endpoint on the other one cannot work."""
    ports = {}
    for kind in ("grpc", "http"):  # {"grpc_port": 4317} or {"grpc": "127.0.0.1:4317"}
        text = str(otlp.get(f"{kind}_port") or str(otlp.get(kind) or "").rpartition(":")[2])
        if text.isdigit():
            ports[kind] = int(text)
    server_host = urllib.parse.urlsplit(server).hostname or ""
    local = {"127.0.0.1", "localhost", "::1", "0.0.0.0", server_host}
    findings = []
    for dest in destinations.values():
        host, port = dest.host_port
        if host not in local or dest.protocol not in PROTOCOLS:
            continue
        speaks = "grpc" if port == ports.get("grpc") else ("http" if port == ports.get("http") else None)
        if speaks and (speaks == "grpc") != (dest.protocol == "grpc"):
            findings.append(port_mismatch(dest))
    return findings


def _probe(
    destinations: Mapping[str, Destination],
    headers: Mapping[str, str],
    server: str | None,
    reachable: Mapping[str, bool],
    wait_s: float,
) -> dict[str, Any]:
    probe_id = str(uuid.uuid4())
    requests = dict(zip(SIGNALS, probe_requests(probe_id), strict=True))
    result: dict[str, Any] = {"probe_id": probe_id, "sent": {}, "errors": {}, "stored": None}
    for signal, dest in destinations.items():
        result["sent"][signal] = False
        if not reachable.get(signal, True):
            result["errors"][signal] = "endpoint unreachable"
            continue
        try:
            send(dest, requests[signal], headers)
            result["sent"][signal] = True
        except ExportFailed as exc:
            result["errors"][signal] = str(exc)
    if server is None or not any(result["sent"].values()):
        return result
    deadline = time.monotonic() + wait_s
    while True:
        try:
            answer = get_json(f"{server}/api/probes/{probe_id}", headers=authorization(headers))
        except (OSError, ValueError, http.client.HTTPException) as exc:
            result["lookup_error"] = str(exc)
            return result
        result["stored"] = {"metrics": answer.get("metric", False), "logs": answer.get("event", False)}
        if all(result["stored"][s] for s in SIGNALS if result["sent"][s]) or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def _probe_findings(probe: Mapping[str, Any]) -> list[Finding]:
    findings = []
    for signal in SIGNALS:
        what = "metric" if signal == "metrics" else "event"
        error = probe["errors"].get(signal)
        if error and error != "endpoint unreachable":
            findings.append(
                Finding(
                    ERROR,
                    "probe_failed",
                    f"the test {what} export failed: {error}",
                    "check the endpoint, protocol and OTEL_EXPORTER_OTLP_HEADERS",
                )
            )
        elif probe["sent"].get(signal):
            stored = (probe.get("stored") or {}).get(signal)
            if stored:
                findings.append(
                    Finding(OK, "probe_stored", f"a test {what} was exported and stored by the server")
                )
            elif probe.get("stored") is None:
                findings.append(
                    Finding(
                        ERROR,
                        "probe_unconfirmed",
                        f"a test {what} was exported, but the server could not be asked whether it stored it",
                        "pass --server with the server's API URL",
                    )
                )
            else:
                findings.append(
                    Finding(
                        ERROR,
                        "probe_not_stored",
                        f"a test {what} was accepted, but the server at --server did not store it: "
                        "the endpoint leads somewhere else",
                        "point the endpoint at this server",
                    )
                )
    return findings


def status_findings(status: Mapping[str, Any]) -> list[Finding]:
    findings = []
    unattributed = status.get("without_session") or {}
    if not status.get("sessions") and unattributed.get("last_ns"):
        findings.append(
            Finding(
                INFO, "last_data", f"last Claude Code data: {unattributed['last_seen']}, without session ids"
            )
        )
    elif not status.get("sessions"):
        findings.append(
            Finding(
                INFO,
                "no_sessions",
                "the server has no Claude Code sessions yet",
                "start a Claude Code session; data shows up within one export interval",
            )
        )
    else:
        findings.append(
            Finding(
                INFO,
                "last_data",
                f"last Claude Code data: {status['sessions'][0]['last_seen']} "
                f"({status.get('session_count', 0)} sessions)",
            )
        )
    for key, sent, missing, fix in (
        (
            "sessions_events_only",
            "events",
            "metrics",
            "on that user's machine, check OTEL_METRICS_EXPORTER and the metrics endpoint",
        ),
        (
            "sessions_metrics_only",
            "metrics",
            "events",
            "on that user's machine, check OTEL_LOGS_EXPORTER and the events endpoint",
        ),
    ):
        ids = status.get(key) or []
        if ids:
            shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
            message = f"{len(ids)} session(s) sent {sent} but no {missing}: {shown}"
            findings.append(Finding(WARN, key, message, fix))
    return findings


# --- for people ---------------------------------------------------------------------------------------

_MARK = {OK: "[green]✔[/]", INFO: "[blue]i[/]", WARN: "[yellow]![/]", ERROR: "[red]✘[/]"}


def render(report: Report, console: Any = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if console is None:
        console = Console()
        console = console if console.is_terminal else Console(width=max(console.width, 120))
    table = Table(title="Telemetry variables, as Claude Code sees them", title_justify="left")
    for column in ("variable", "value", "from", "also set (lost or ignored)"):
        table.add_column(column, overflow="fold")
    for var in report.variables:
        if var.value is None and not var.ignored:
            continue
        others = [f"{s}: {redact(var.name, v)}" for s, v in var.shadowed] + [
            f"{s} (ignored): {redact(var.name, v)}" for s, v in var.ignored
        ]
        table.add_row(
            var.name,
            escape(redact(var.name, var.value) or "-"),
            escape(var.source or "not set"),
            escape("\n".join(others)),
        )
    console.print(table)
    console.print()
    for finding in report.findings:
        console.print(f"{_MARK[finding.level]} {escape(finding.message)}")
        if finding.fix and finding.level in (WARN, ERROR):
            console.print(f"    [dim]→ {escape(finding.fix)}[/]")
    if report.status and report.status.get("users"):
        console.print()
        users = Table(title="Last data per user and host", title_justify="left")
        for column in ("user", "host", "last metric", "last event"):
            users.add_column(column, overflow="fold")
        for row in report.status["users"][:20]:
            user = row.get("user_email") or row.get("user_id") or "unknown"
            users.add_row(
                escape(str(user)),
                escape(str(row.get("host") or "-")),
                row["last_metric"] or "-",
                row["last_event"] or "-",
            )
        console.print(users)
        sessions = Table(title="Recent sessions", title_justify="left")
        for column in ("session", "user", "version", "last data", "signals"):
            sessions.add_column(column, overflow="fold")
        for row in report.status["sessions"][:10]:
            signals = row["signals"] if row["signals"] == "both" else f"[yellow]{row['signals']} only[/]"
            sessions.add_row(
                escape(row["session_id"]),
                escape(str(row.get("user_email") or row.get("user_id") or "-")),
                escape(str(row.get("version") or "-")),
                row["last_seen"] or "-",
                signals,
            )
        console.print(sessions)
        versions = ", ".join(str(v["version"] or "unknown") for v in report.status.get("versions", []))
        console.print(f"Claude Code versions seen: {escape(versions or '-')}")
    console.print()
    if report.ok:
        console.print("[bold green]Data can flow: Claude Code's telemetry reaches this ccmetrics server.[/]")
    else:
        console.print(
            "[bold red]Data cannot flow yet: fix the errors above (✘), then run `ccmetrics doctor` again.[/]"
        )
