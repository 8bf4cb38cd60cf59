"""Every setting of ccmetrics, declared once.

The CLI derives its flags (``--data-dir``) and environment variables (``CCMETRICS_DATA_DIR``) from this
table, so the two can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from .metrics import DEFAULT_GROUP_KEY, DEFAULT_LABELS

if TYPE_CHECKING:
    from .store.retention import Retention


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    type: type = str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "CCMETRICS_" + self.name.upper()


def default_data_dir() -> str:
    return platformdirs.user_data_dir("ccmetrics", appauthor=False)


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", None, "Where the database lives [default: the platform's user data dir].", Path),
    Setting("host", "127.0.0.1", "Address every listener binds to; loopback keeps the data private.", str),
    Setting("port", 3000, "Port of the web dashboard, JSON API and /metrics.", int),
    Setting(
        "otlp_http_port", 4318, "Port of the OTLP/HTTP receiver (/v1/metrics, /v1/logs, /v1/traces).", int
    ),
    Setting("otlp_grpc_port", 4317, "Port of the OTLP/gRPC receiver.", int),
    Setting("max_body_bytes", 16 * 1024 * 1024, "Largest OTLP request accepted, after decompression.", int),
    Setting("store_prompts", False, "Keep prompt text (only its length is kept otherwise).", bool),
    Setting(
        "max_clock_skew",
        600,
        "Seconds a point or event may be dated ahead of this server's clock; later ones are rejected.",
        int,
    ),
    Setting(
        "new_series_per_minute",
        10_000,
        "New series one client may create per minute (0: no limit); the excess is rejected, as a flood.",
        int,
    ),
    Setting(
        "metrics_labels",
        DEFAULT_LABELS,
        "Attributes that become labels on /metrics (comma-separated); each one multiplies the series.",
        str,
    ),
    Setting(
        "metrics_session_labels", False, "Add a session_id label on /metrics: one series per session.", bool
    ),
    Setting(
        "max_connections",
        10_000,
        "Connections each listener holds at a time; more are closed as they come. The open-file limit is "
        "raised to fit all three listeners, or this lowered to fit it.",
        int,
    ),
    Setting(
        "idle_timeout",
        60,
        "Seconds a connection may stay open without a request (HTTP) or a call (gRPC) before it is closed.",
        int,
    ),
    Setting(
        "header_timeout",
        10,
        "Seconds a client has to send a whole request head, from connecting or from the first byte of a "
        "request (gRPC: the connection preface); slower ones are closed.",
        int,
    ),
    Setting(
        "allowed_hosts",
        "",
        "Host names the dashboard and OTLP/HTTP answer besides the bound address's own (comma-separated); "
        "with a wildcard --host (0.0.0.0, ::) the only ones besides localhost. Others get 421: a guard "
        "against DNS rebinding.",
        str,
    ),
    Setting(
        "insecure_no_auth",
        False,
        "Listen on an address other machines can reach with no token and no person to check by: anyone "
        "who can connect may send data under any name, and read everyone's.",
        bool,
    ),
    Setting(
        "session_lifetime",
        "12h",
        "How long a sign-in lasts before the person signs in again: a span (12h, 7d...).",
        str,
    ),
    Setting(
        "auth_proxy_header",
        "",
        "Single sign-on: the request header (e.g. X-Forwarded-Email) in which a proxy in front of the "
        "dashboard names the signed-in person. Believed only from --trusted-proxies.",
        str,
    ),
    Setting(
        "trusted_proxies",
        "",
        "Addresses (CIDR, comma-separated, e.g. 127.0.0.1/32) of the sign-on proxies whose "
        "--auth-proxy-header (and X-Forwarded-For) are believed.",
        str,
    ),
    Setting(
        "tls_cert",
        None,
        "PEM certificate (chain) to serve: with --tls-key, the dashboard, OTLP/HTTP and OTLP/gRPC speak TLS "
        "only.",
        Path,
    ),
    Setting("tls_key", None, "PEM private key of --tls-cert (not encrypted).", Path),
    Setting(
        "dashboard_range",
        "7d",
        "What the dashboard shows when its link names no range: a span back from now (24h, 7d, 30d, 2w...), "
        "or all.",
        str,
    ),
    Setting(
        "retention",
        "30d",
        "How long raw points, events and spans are kept (a span: 30d, 12w...; or forever). Older ones are "
        "pruned; the totals of the rollups stay.",
        str,
    ),
    Setting(
        "rollup_retention",
        "400d",
        "How long the hourly, daily and weekly sums are kept (at least --retention; forever too): 400 days "
        "compare a month with the same month a year before.",
        str,
    ),
    Setting(
        "dashboard_group_by",
        DEFAULT_GROUP_KEY,
        "The attribute the dashboard's group filter and group leaderboard use when its link names none, "
        "e.g. department.",
        str,
    ),
    Setting(
        "alerts",
        None,
        "A rules file (TOML or YAML) of budgets and alerts to evaluate and notify; see `ccmetrics alerts`.",
        Path,
    ),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


def _retention_ns(flag: str, text: str) -> int | None:
    """A retention setting in ns; None for ``forever``."""
    if text.strip() == "forever":
        return None
    from .store.filters import parse_span  # here: the settings load without the store

    span = parse_span(text)
    if span is None or span <= timedelta(0):
        raise ValueError(f"{flag} {text!r}: give a span such as 30d, 12w or 400d, or forever")
    return int(span.total_seconds()) * 1_000_000_000


def _default(name: str) -> Any:
    return SETTINGS_BY_NAME[name].default


@dataclass(frozen=True)
class Config:
    data_dir: Path = field(default_factory=lambda: Path(default_data_dir()))
    host: str = _default("host")
    port: int = _default("port")
    otlp_http_port: int = _default("otlp_http_port")
    otlp_grpc_port: int = _default("otlp_grpc_port")
    max_body_bytes: int = _default("max_body_bytes")
    store_prompts: bool = _default("store_prompts")
    max_clock_skew: int = _default("max_clock_skew")
    new_series_per_minute: int = _default("new_series_per_minute")
    metrics_labels: str = _default("metrics_labels")
    metrics_session_labels: bool = _default("metrics_session_labels")
    max_connections: int = _default("max_connections")
    idle_timeout: int = _default("idle_timeout")
    header_timeout: int = _default("header_timeout")
    allowed_hosts: str = _default("allowed_hosts")
    insecure_no_auth: bool = _default("insecure_no_auth")
    session_lifetime: str = _default("session_lifetime")
    auth_proxy_header: str = _default("auth_proxy_header")
    trusted_proxies: str = _default("trusted_proxies")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    dashboard_range: str = _default("dashboard_range")
    dashboard_group_by: str = _default("dashboard_group_by")
    alerts: Path | None = None
    retention: str = _default("retention")
    rollup_retention: str = _default("rollup_retention")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ccmetrics.db"

    @property
    def access_path(self) -> Path:
        return self.data_dir / "access.db"  # tokens, people, sign-in sessions: see access/store.py

    @property
    def alerts_state_path(self) -> Path:
        return self.data_dir / "alerts.db"  # alerts, silences, notifications: see alerts/state.py

    def kept(self) -> Retention:
        """--retention and --rollup-retention; raises ValueError, naming the setting, for one that is not a
        span or ``forever``, or rollups kept for less time than the raw data."""
        raw = _retention_ns("--retention", self.retention)
        rollups = _retention_ns("--rollup-retention", self.rollup_retention)
        if rollups is not None and raw is not None and rollups < raw:
            raise ValueError(
                f"--rollup-retention {self.rollup_retention!r} is shorter than "
                f"--retention {self.retention!r}: the totals of a range the raw data still covers "
                "come from the rollups"
            )
        from .store.retention import Retention

        return Retention(raw, rollups)

    @property
    def tls(self) -> bool:
        """Whether every listener serves TLS (a Secure cookie, the https:// of announced URLs)."""
        return self.tls_cert is not None and self.tls_key is not None

    @classmethod
    def from_options(cls, **options: Any) -> Config:
        """Build from CLI options; ``None`` means 'not given', so the table's default applies."""
        values: dict[str, Any] = {}
        for name, value in options.items():
            if name in SETTINGS_BY_NAME and value is not None:
                values[name] = Path(value).expanduser() if SETTINGS_BY_NAME[name].type is Path else value
        return cls(**values)
