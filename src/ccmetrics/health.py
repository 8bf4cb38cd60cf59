"""``ccmetrics health``: is each piece up?

The embedded server, or a stack's Collector, Prometheus, Loki, Grafana.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import httpx

# What each service answers when it is ready to work (not merely listening).
PROBES = {
    "ccmetrics": "/api/health",
    "collector": "/",  # the health_check extension, port 13133
    "prometheus": "/-/ready",
    "loki": "/ready",
    "grafana": "/api/health",
}
STACK_DEFAULTS = {
    "collector": "http://localhost:13133",
    "prometheus": "http://localhost:9090",
    "loki": "http://localhost:3100",
    "grafana": "http://localhost:3000",
}


@dataclass(frozen=True)
class Check:
    service: str
    url: str
    ok: bool
    detail: str
    ms: float | None = None


def probe(service: str, base_url: str, timeout: float = 3.0) -> Check:
    url = base_url.rstrip("/") + PROBES[service]
    started = time.monotonic()
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as exc:
        return Check(service, url, False, _reason(exc))
    ms = (time.monotonic() - started) * 1000
    text = response.text.strip().splitlines()[0][:80] if response.text.strip() else ""
    ok = response.status_code == 200
    return Check(
        service, url, ok, f"HTTP {response.status_code}" + (f": {text}" if text and not ok else ""), ms
    )


def _reason(exc: httpx.HTTPError) -> str:
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return "its TLS certificate is not trusted (SSL_CERT_FILE=/path/to/ca.pem trusts a private CA)"
    if isinstance(exc, httpx.ConnectError):
        return "not reachable (nothing listens there?)"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__


def run(targets: dict[str, str], timeout: float = 3.0) -> list[Check]:
    return [probe(service, url, timeout) for service, url in targets.items()]


def all_ok(checks: Iterable[Check]) -> bool:
    checks = list(checks)
    return bool(checks) and all(c.ok for c in checks)


def as_dicts(checks: Iterable[Check]) -> list[dict]:
    return [asdict(c) for c in checks]


def render(checks: list[Check]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ccmetrics health")
    for column in ("service", "status", "url", "detail", "time"):
        table.add_column(column)
    for c in checks:
        status = "[green]up[/green]" if c.ok else "[red]DOWN[/red]"
        table.add_row(c.service, status, c.url, c.detail, f"{c.ms:.0f} ms" if c.ms is not None else "")
    Console().print(table)
