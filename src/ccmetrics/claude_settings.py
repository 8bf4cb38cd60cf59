"""Where Claude Code finds its telemetry variables, and which value wins: what ``setup`` and ``doctor`` share.

Claude Code reads an ``"env"`` object from its settings files and applies it on top of the process
environment. Facts about Claude Code 2.1.332, checked by running the real CLI against two ccmetrics servers
(print mode, and interactive mode for the project file):

- A variable in the user file (``~/.claude/settings.json``, or ``$CLAUDE_CONFIG_DIR/settings.json``) beats
  the same variable in the process environment, key by key: a variable the file does not set still comes
  from the environment. ``CLAUDE_CODE_ENABLE_TELEMETRY=0`` in the file turns off telemetry that the shell
  turned on.
- ``--settings '{"env": ...}'`` on the command line beats the user file.
- The project files (``.claude/settings.json`` and ``.claude/settings.local.json``) do apply their ``env`` to
  other variables (``ANTHROPIC_BASE_URL``, for example). They do not apply it to telemetry: neither
  ``CLAUDE_CODE_ENABLE_TELEMETRY`` nor ``OTEL_*`` from those files changed where, or whether, the CLI
  exported. They are listed here, so that a value someone put there is reported as ignored instead of
  silently missing.

Assumed from Claude Code's documentation, not checked (checking it means writing to ``/etc``): managed
settings (``/etc/claude-code/managed-settings.json`` on Linux, ``/Library/Application Support/ClaudeCode/``
on macOS) beat every other source.

So the effective order, highest first, is: managed file > command line > user file > process environment.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TELEMETRY_VARS: tuple[str, ...] = (
    "CLAUDE_CODE_ENABLE_TELEMETRY",
    "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_LOGS_EXPORT_INTERVAL",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_METRICS_INCLUDE_SESSION_ID",
)

# Sources, highest precedence first. ``honored`` is False where Claude Code ignores telemetry variables.
MANAGED, USER, LOCAL, PROJECT, ENVIRONMENT = "managed", "user", "local", "project", "environment"
HONORED_ORDER = (MANAGED, USER, ENVIRONMENT)


def managed_settings_path() -> Path:
    if sys.platform == "darwin":
        return Path("/Library/Application Support/ClaudeCode/managed-settings.json")
    return Path("/etc/claude-code/managed-settings.json")


def user_settings_path(home: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """``$CLAUDE_CONFIG_DIR/settings.json`` when set, else ``~/.claude/settings.json``."""
    environ = os.environ if environ is None else environ
    config_dir = environ.get("CLAUDE_CONFIG_DIR")
    if config_dir:
        return Path(config_dir).expanduser() / "settings.json"
    return (home or Path.home()) / ".claude" / "settings.json"


def project_settings_path(project_dir: Path) -> Path:
    return project_dir / ".claude" / "settings.json"


def local_settings_path(project_dir: Path) -> Path:
    return project_dir / ".claude" / "settings.local.json"


class SettingsError(ValueError):
    """A settings file exists but cannot be used as one; the message says where and why."""


def parse_settings(text: str, path: Path) -> dict[str, Any]:
    """The settings object of ``text``; refuses anything Claude Code itself could not read as settings."""
    try:
        document = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(document, dict):
        raise SettingsError(f"{path} must hold a JSON object, not {type(document).__name__}")
    env = document.get("env", {})
    if not isinstance(env, dict):
        raise SettingsError(f'{path}: "env" must be an object of strings, not {type(env).__name__}')
    return document


@dataclass(frozen=True)
class Source:
    """One place a variable can come from, and what it holds."""

    name: str
    path: Path | None
    env: dict[str, str] = field(default_factory=dict)
    exists: bool = False
    error: str | None = None

    @property
    def honored(self) -> bool:
        return self.name in HONORED_ORDER

    @property
    def label(self) -> str:
        return f"{self.name} ({self.path})" if self.path else self.name


def read_source(name: str, path: Path) -> Source:
    if not path.is_file():
        return Source(name, path)
    try:
        document = parse_settings(path.read_text(encoding="utf-8"), path)
    except (SettingsError, OSError, UnicodeDecodeError) as exc:
        return Source(name, path, exists=True, error=str(exc))
    env = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in document.get("env", {}).items()}
    return Source(name, path, env, exists=True)


def read_sources(
    *,
    home: Path | None = None,
    project_dir: Path | None = None,
    managed_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[Source]:
    """Every source, highest precedence first (the ignored project files after the honored ones)."""
    environ = os.environ if environ is None else environ
    project_dir = project_dir or Path.cwd()
    user_path = user_settings_path(home, environ)
    sources = [
        read_source(MANAGED, managed_path or managed_settings_path()),
        read_source(USER, user_path),
        Source(ENVIRONMENT, None, {k: v for k, v in environ.items() if k in TELEMETRY_VARS}, exists=True),
    ]
    for name, path in (
        (LOCAL, local_settings_path(project_dir)),
        (PROJECT, project_settings_path(project_dir)),
    ):
        if path.resolve() != user_path.resolve():  # in the home folder, the project file is the user file
            sources.append(read_source(name, path))
    return sources


@dataclass(frozen=True)
class Variable:
    """A telemetry variable as Claude Code will see it, and any value set where Claude Code ignores it."""

    name: str
    value: str | None
    source: str | None  # the label of the winning source; None when unset
    shadowed: tuple[tuple[str, str], ...] = ()  # (source label, value) of honored sources that lost
    ignored: tuple[tuple[str, str], ...] = ()  # (source label, value) of sources Claude Code ignores

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "source": self.source,
            "shadowed": [list(s) for s in self.shadowed],
            "ignored": [list(s) for s in self.ignored],
        }


def effective(sources: list[Source]) -> dict[str, Variable]:
    """Resolve each telemetry variable: the first honored source that sets it wins."""
    result = {}
    for name in TELEMETRY_VARS:
        honored = [(s.label, s.env[name]) for s in sources if s.honored and name in s.env]
        ignored = tuple((s.label, s.env[name]) for s in sources if not s.honored and name in s.env)
        value, source = honored[0][1::-1] if honored else (None, None)
        result[name] = Variable(name, value, source, tuple(honored[1:]), ignored)
    return result
