"""``ccmetrics setup``: write the telemetry variables where Claude Code reads them, and take them back out.

Targets: Claude Code's user settings (``~/.claude/settings.json``, key ``"env"``: every shell and IDE launch
sees it), the project's ``.claude/settings.json``, a shell rc file (bash, zsh, fish) or, for admins, a
managed settings file printed for deployment.

Every change is planned first (pure functions: text in, text out), shown as a diff, then applied with a backup
(``<file>.ccmetrics-backup-<timestamp>``) and a manifest next to the file (``<file>.ccmetrics-setup.json``).
The manifest is what makes ``--undo`` exact:

- it remembers whether the file existed, the backup taken before the first change, what we set and the value
  each key had before, and the SHA-256 of the file as we left it;
- if the file is still exactly as we left it, undo restores the first backup byte for byte (or deletes the
  file we created);
- if someone edited it since, undo removes only our keys (restoring values we replaced), keeps their edits,
  and says so.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import os
import re
import shlex
import subprocess
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .claude_settings import SettingsError, managed_settings_path, parse_settings, project_settings_path
from .claude_settings import user_settings_path as _user_settings_path
from .config import SETTINGS_BY_NAME

PROTOCOLS = ("grpc", "http/protobuf", "http/json")
BACKENDS = ("ccmetrics", "stack")
SHELLS = ("bash", "zsh", "fish")
SCOPES = ("user", "project", "shell", "managed")
METRIC_INTERVAL_MS = 10_000
LOGS_INTERVAL_MS = 5_000
BEGIN = "# >>> ccmetrics telemetry >>>"
END = "# <<< ccmetrics telemetry <<<"
_ATTR_KEY = re.compile(r"^[A-Za-z0-9_.\-/]+$")
RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
USER_NAME = "user.name"  # the name the dashboard shows for a user that sends no email (store/people.py)
MAX_USER_NAME = 256
# W3C Baggage's baggage-octets that stay as they are in an OTEL_RESOURCE_ATTRIBUTES value (besides letters,
# digits and _.-~); everything else is percent-encoded, as the OpenTelemetry spec asks, and so are % and =.
_VALUE_SAFE = "!#$&'()*+/:<>?@[]^`{|}"


class SetupError(ValueError):
    """Setup cannot go ahead; nothing was changed."""


# --- what to write ----------------------------------------------------------------------------------


def default_endpoint(protocol: str, host: str = "127.0.0.1") -> str:
    """This machine's ``ccmetrics serve``: the gRPC port for grpc, the OTLP/HTTP port otherwise."""
    port = SETTINGS_BY_NAME["otlp_grpc_port" if protocol == "grpc" else "otlp_http_port"].default
    return f"http://{host}:{port}"


def parse_attr(text: str) -> tuple[str, str]:
    """``key=value`` for OTEL_RESOURCE_ATTRIBUTES; Claude Code cannot parse spaces, so they are refused."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SetupError(f"cannot read attribute {text!r}: use KEY=VALUE, e.g. department=eng")
    if not _ATTR_KEY.match(key):
        raise SetupError(f"attribute key {key!r} may only hold letters, digits and . _ - /")
    if not value:
        raise SetupError(f"attribute {key!r} has an empty value")
    if any(c.isspace() for c in value):
        raise SetupError(f"attribute {key}={value!r} has a space, which Claude Code cannot parse; use - or _")
    if "," in value or "=" in value:
        raise SetupError(f"attribute {key}={value!r} may not contain ',' or '='")
    return key, value


def encode_attribute_value(value: str) -> str:
    """A value as OTEL_RESOURCE_ATTRIBUTES holds it: percent-encoded outside W3C Baggage's baggage-octets
    (spaces, commas, quotes, non-ASCII...), so that every OpenTelemetry SDK reads it back whole."""
    return urllib.parse.quote(value, safe=_VALUE_SAFE)


def check_user_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_USER_NAME or not name.isprintable():
        raise SetupError(f"a user name is 1 to {MAX_USER_NAME} printable characters, not {name!r}")
    return name


def git_user_email(cwd: Path, environ: Mapping[str, str]) -> str | None:
    """``git config user.email`` as git sees it in ``cwd`` (a repository's own setting first); None when git
    or the setting is missing."""
    try:
        found = subprocess.run(
            ["git", "config", "--get", "user.email"],
            cwd=cwd,
            env=dict(environ),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    email = found.stdout.strip()
    return email if found.returncode == 0 and email else None


def merge_resource_attributes(existing: str, ours: str) -> str:
    """``existing`` OTEL_RESOURCE_ATTRIBUTES with ours added: theirs kept as written, in their order, except
    the keys we set, whose values are ours."""
    our_keys = {item.partition("=")[0].strip() for item in ours.split(",")}
    kept = [
        item.strip()
        for item in existing.split(",")
        if item.strip() and item.partition("=")[0].strip() not in our_keys
    ]
    return ",".join([*kept, ours])


def telemetry_env(
    *,
    protocol: str = "grpc",
    endpoint: str | None = None,
    team: str | None = None,
    user_name: str | None = None,
    attrs: tuple[str, ...] | list[str] = (),
    token: str | None = None,
    backend: str = "ccmetrics",
    metric_interval_ms: int = METRIC_INTERVAL_MS,
    logs_interval_ms: int = LOGS_INTERVAL_MS,
) -> dict[str, str]:
    """The variables to write, in the order they are written. ``user_name`` goes into
    OTEL_RESOURCE_ATTRIBUTES as ``user.name``, percent-encoded; an ``--attr user.name=...`` wins over it."""
    if protocol not in PROTOCOLS:
        hint = " (use http/protobuf or http/json)" if protocol == "http" else ""
        raise SetupError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}{hint}")
    if backend not in BACKENDS:
        raise SetupError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    endpoint = endpoint or default_endpoint(protocol)
    if not re.match(r"^https?://[^\s/]+", endpoint):
        raise SetupError(f"endpoint must look like http://host:port, not {endpoint!r}")
    if protocol == "grpc" and endpoint.startswith("https://") and _is_ip_address(_host(endpoint)):
        # Claude Code's gRPC client refuses an IP address as the TLS server name: nothing would arrive.
        raise SetupError(
            f"Claude Code cannot export gRPC over TLS to an IP address ({_host(endpoint)}): use a host name "
            "the server's certificate names, e.g. https://localhost:4317, or --protocol http/protobuf"
        )
    for interval in (metric_interval_ms, logs_interval_ms):
        if interval <= 0:
            raise SetupError("export intervals must be positive numbers of milliseconds")
    env = {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint.rstrip("/"),
        "OTEL_METRIC_EXPORT_INTERVAL": str(metric_interval_ms),
        "OTEL_LOGS_EXPORT_INTERVAL": str(logs_interval_ms),
    }
    if backend == "stack":  # Prometheus takes running totals only
        env["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"] = "cumulative"
    pairs = [parse_attr(f"team.id={team}")] if team is not None else []
    if user_name is not None:
        pairs.append((USER_NAME, encode_attribute_value(check_user_name(user_name))))
    pairs += [parse_attr(a) for a in attrs]
    if pairs:
        env[RESOURCE_ATTRIBUTES] = ",".join(f"{k}={v}" for k, v in dict(pairs).items())
    if token is not None:
        if not token or any(c.isspace() or c == "," for c in token):
            raise SetupError("the token may not be empty or hold spaces or commas")
        env["OTEL_EXPORTER_OTLP_HEADERS"] = f"Authorization=Bearer {token}"
    return env


def _host(endpoint: str) -> str:
    return urllib.parse.urlsplit(endpoint).hostname or ""


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_team_endpoint(endpoint: str) -> None:
    """A managed settings file reaches every developer's machine, where a loopback endpoint is that machine
    itself, not the team's server."""
    host = _host(endpoint)
    loopback = host == "localhost" or host.endswith(".localhost")
    if _is_ip_address(host):
        address = ipaddress.ip_address(host)
        loopback = address.is_loopback or address.is_unspecified
    if loopback:
        raise SetupError(
            f"a managed settings file must name the team's server, not {host} (each developer's own "
            "machine): pass --endpoint with your server's name, e.g. https://ccmetrics.example.com:4317"
        )


# --- JSON settings files ----------------------------------------------------------------------------


def detect_indent(text: str) -> int | str:
    """The indent unit of a JSON document (spaces or a tab); 2 when there is nothing to go by."""
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and stripped[0] in '"}]' and line != stripped:
            lead = line[: len(line) - len(stripped)]
            return "\t" if lead.startswith("\t") else len(lead)
    return 2


def dump_settings(document: Mapping[str, Any], indent: int | str, trailing_newline: bool = True) -> str:
    text = json.dumps(document, indent=indent, ensure_ascii=False)
    return text + "\n" if trailing_newline else text


@dataclass(frozen=True)
class Change:
    key: str
    old: str | None  # None: the key was not there
    new: str | None  # None: the key is removed


def set_env_json(text: str | None, env: Mapping[str, str], path: Path) -> tuple[str, list[Change]]:
    """``text`` with each variable set in its ``"env"`` object: other keys, their order and the indent kept;
    attributes already in its OTEL_RESOURCE_ATTRIBUTES are kept beside ours.

    When every variable already has its value, ``text`` comes back unchanged (byte for byte).
    """
    document = parse_settings(text or "", path)
    current = document.get("env", {})
    if current.get(RESOURCE_ATTRIBUTES) and RESOURCE_ATTRIBUTES in env:  # their own attributes stay
        merged = merge_resource_attributes(str(current[RESOURCE_ATTRIBUTES]), env[RESOURCE_ATTRIBUTES])
        env = {**env, RESOURCE_ATTRIBUTES: merged}
    changes = [Change(k, current.get(k), v) for k, v in env.items() if current.get(k) != v]
    if not changes:
        return text or "", []
    new_env = dict(current)
    new_env.update({c.key: c.new for c in changes})
    document = {**document, "env": new_env}
    indent = detect_indent(text) if text else 2
    trailing = (not text) or text.endswith("\n")
    return dump_settings(document, indent, trailing), changes


def unset_env_json(
    text: str, ours: Mapping[str, str], before: Mapping[str, str | None], drop_env: bool, path: Path
) -> tuple[str, list[Change]]:
    """Take our variables out again: only those still holding our value; replaced values come back."""
    document = parse_settings(text, path)
    env = dict(document.get("env", {}))
    changes = []
    for key, value in ours.items():
        if env.get(key) != value:
            continue  # someone changed it since: theirs now
        old = before.get(key)
        changes.append(Change(key, value, old))
        if old is None:
            del env[key]
        else:
            env[key] = old
    if not changes:
        return text, []
    document = dict(document)
    if env or not drop_env:
        document["env"] = env
    else:
        document.pop("env", None)
    return dump_settings(document, detect_indent(text), text.endswith("\n")), changes


# --- shell rc files ---------------------------------------------------------------------------------


def detect_shell(environ: Mapping[str, str]) -> str:
    """The user's shell from ``$SHELL``, as the original setup script did; bash when unknown."""
    name = Path(environ.get("SHELL", "")).name
    for shell in SHELLS:
        if name.startswith(shell):
            return shell
    return "bash"


def rc_path(shell: str, home: Path, environ: Mapping[str, str]) -> Path:
    if shell == "zsh":
        return Path(environ.get("ZDOTDIR") or home) / ".zshrc"
    if shell == "fish":
        config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
        return config_home / "fish" / "config.fish"
    return home / ".bashrc"


def _fish_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def rc_block(shell: str, env: Mapping[str, str]) -> str:
    if shell == "fish":
        lines = [f"set -gx {k} {_fish_quote(v)}" for k, v in env.items()]
    else:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    return "\n".join([BEGIN, *lines, END]) + "\n"


def _find_block(text: str) -> tuple[int, int] | None:
    start = text.find(BEGIN + "\n")
    if start < 0:
        return None
    end = text.find(END, start)
    if end < 0:
        return None
    end += len(END)
    if text[end : end + 1] == "\n":
        end += 1
    return start, end


def _block_env(block: str) -> dict[str, str]:
    env = {}
    for line in block.splitlines():
        parts = shlex.split(line) if line.startswith(("export ", "set -gx ")) else []
        if parts[:1] == ["export"] and len(parts) == 2:
            key, _, value = parts[1].partition("=")
            env[key] = value
        elif parts[:2] == ["set", "-gx"] and len(parts) == 4:
            env[parts[2]] = parts[3]
    return env


def set_env_rc(text: str | None, shell: str, env: Mapping[str, str]) -> tuple[str, list[Change]]:
    """``text`` with our marked block holding ``env``, replacing an earlier block of ours in place."""
    text = text or ""
    block = rc_block(shell, env)
    found = _find_block(text)
    if found:
        old_block = text[found[0] : found[1]]
        if old_block == block:
            return text, []
        old = _block_env(old_block)
        changes = [Change(k, old.get(k), v) for k, v in env.items() if old.get(k) != v]
        changes += [Change(k, v, None) for k, v in old.items() if k not in env]
        return text[: found[0]] + block + text[found[1] :], changes
    separator = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return text + separator + block, [Change(k, None, v) for k, v in env.items()]


def unset_env_rc(text: str, separator: str) -> tuple[str, list[Change]]:
    found = _find_block(text)
    if not found:
        return text, []
    start, end = found
    if separator and text[start - len(separator) : start] == separator:
        start -= len(separator)
    removed = _block_env(text[found[0] : found[1]])
    return text[:start] + text[end:], [Change(k, v, None) for k, v in removed.items()]


# --- plans: what would change, shown before anything is written -----------------------------------


@dataclass
class Plan:
    path: Path
    kind: str  # json | rc
    before: str | None  # None: the file does not exist
    after: str | None  # None: the file is to be deleted
    changes: list[Change] = field(default_factory=list)
    note: str = ""
    restore_backup: Path | None = None  # undo: copy this file back byte for byte

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        before = (self.before or "").splitlines(keepends=True)
        after = (self.after or "").splitlines(keepends=True)
        label_before = str(self.path) if self.before is not None else "/dev/null"
        label_after = str(self.path) if self.after is not None else "/dev/null"
        lines = difflib.unified_diff(before, after, label_before, label_after)
        return "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "changed": self.changed,
            "changes": [{"key": c.key, "old": c.old, "new": c.new} for c in self.changes],
            "note": self.note,
            "diff": self.diff(),
        }


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".ccmetrics-setup.json")


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(manifest_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise SetupError(f"{path} is not UTF-8 text; nothing was changed") from None


def _sha256(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def plan_json(path: Path, env: Mapping[str, str]) -> Plan:
    before = _read(path)
    try:
        after, changes = set_env_json(before, env, path)
    except SettingsError as exc:
        raise SetupError(f"{exc}. Fix or move the file away first; nothing was changed.") from None
    return Plan(path, "json", before, after if changes else before, changes)


def plan_rc(path: Path, shell: str, env: Mapping[str, str]) -> Plan:
    before = _read(path)
    after, changes = set_env_rc(before, shell, env)
    return Plan(path, "rc", before, after if changes else before, changes)


def plan_undo(path: Path) -> Plan:
    """What ``--undo`` would do to ``path``, from the manifest setup left there."""
    manifest = read_manifest(path)
    if manifest is None:
        raise SetupError(
            f"ccmetrics setup has not changed {path} (no {manifest_path(path).name}); nothing to undo"
        )
    current = _read(path)
    backup = Path(manifest["backup"]) if manifest.get("backup") else None
    pristine = current is not None and _sha256(current) == manifest.get("after_sha256")
    if pristine and not manifest["existed"]:
        return Plan(
            path, manifest["kind"], current, None, _changes_back(manifest), "the file did not exist before"
        )
    if pristine and backup is not None and backup.is_file():
        original = backup.read_bytes().decode("utf-8")
        return Plan(
            path,
            manifest["kind"],
            current,
            original,
            _changes_back(manifest),
            f"restored from {backup.name}",
            restore_backup=backup,
        )
    if current is None:
        return Plan(path, manifest["kind"], None, None, [], "the file is gone; only the manifest is removed")
    note = "the file was edited since setup: only ccmetrics' variables are taken out"
    after: str | None
    if manifest["kind"] == "json":
        try:
            after, changes = unset_env_json(
                current, manifest["set"], manifest["before"], manifest["env_created"], path
            )
        except SettingsError as exc:
            raise SetupError(f"{exc}; nothing was changed") from None
    else:
        after, changes = unset_env_rc(current, manifest.get("separator", ""))
    if not manifest["existed"] and after.strip() in ("", "{}"):
        after, note = None, "the file held nothing else: removed"
    return Plan(path, manifest["kind"], current, after, changes, note)


def _changes_back(manifest: Mapping[str, Any]) -> list[Change]:
    return [Change(k, v, manifest["before"].get(k)) for k, v in manifest["set"].items()]


# --- applying a plan ----------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes, mode: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.ccmetrics-tmp-{os.getpid()}")
    tmp.write_bytes(data)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def backup_path(path: Path, now: float | None = None) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now or time.time()))
    candidate = path.with_name(f"{path.name}.ccmetrics-backup-{stamp}")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.ccmetrics-backup-{stamp}-{n}")
        n += 1
    return candidate


def apply(plan: Plan) -> Path | None:
    """Write ``plan`` (a setup) with a backup of the file as it was; returns the backup's path."""
    if not plan.changed:
        return None
    path = plan.path
    mode = path.stat().st_mode & 0o7777 if path.exists() else None
    backup = None
    if plan.before is not None:
        backup = backup_path(path)
        backup.write_bytes(plan.before.encode("utf-8"))
        if mode is not None:
            os.chmod(backup, mode)
    assert plan.after is not None
    _write_atomic(path, plan.after.encode("utf-8"), mode)
    _update_manifest(plan, backup)
    return backup


def _update_manifest(plan: Plan, backup: Path | None) -> None:
    """Merge this run into the manifest: the first run's 'before' state is what undo returns to."""
    previous = read_manifest(plan.path)
    env_before = parse_settings(plan.before or "", plan.path).get("env", {}) if plan.kind == "json" else {}
    if previous is None:
        manifest: dict[str, Any] = {
            "kind": plan.kind,
            "existed": plan.before is not None,
            "backup": str(backup) if backup else None,
            "env_created": plan.kind == "json" and "env" not in parse_settings(plan.before or "", plan.path),
            "before": {},
            "set": {},
            "separator": "",
        }
        if plan.kind == "rc" and plan.before and _find_block(plan.before) is None:
            manifest["separator"] = plan.after[len(plan.before) :].split(BEGIN)[0] if plan.after else ""
    else:
        manifest = previous
    for change in plan.changes:
        if change.key not in manifest["set"] and change.key not in manifest["before"]:
            manifest["before"][change.key] = env_before.get(change.key)
        if change.new is None:
            manifest["set"].pop(change.key, None)
        else:
            manifest["set"][change.key] = change.new
    manifest["after_sha256"] = _sha256(plan.after)
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    _write_atomic(manifest_path(plan.path), (json.dumps(manifest, indent=2) + "\n").encode(), None)


def apply_undo(plan: Plan) -> None:
    """Carry out an undo plan and drop the manifest; backups stay, for the cautious."""
    path = plan.path
    if plan.restore_backup is not None:
        mode: int | None = plan.restore_backup.stat().st_mode & 0o7777
        _write_atomic(path, plan.restore_backup.read_bytes(), mode)
    elif plan.after is None:
        path.unlink(missing_ok=True)
    elif plan.changed:
        mode = path.stat().st_mode & 0o7777 if path.exists() else None
        backup = backup_path(path)
        if plan.before is not None:
            backup.write_bytes(plan.before.encode("utf-8"))
        _write_atomic(path, plan.after.encode("utf-8"), mode)
    manifest_path(path).unlink(missing_ok=True)


# --- targets ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    scope: str
    path: Path
    kind: str  # json | rc
    shell: str | None = None
    warning: str = ""


def target(
    scope: str,
    *,
    home: Path,
    project_dir: Path,
    environ: Mapping[str, str],
    shell: str | None = None,
    path: Path | None = None,
) -> Target:
    """Which file a scope means on this machine (``path`` overrides it)."""
    if scope == "user":
        return Target(scope, path or _user_settings_path(home, environ), "json")
    if scope == "project":
        warning = (
            "Claude Code 2.1.332 ignores telemetry variables in a project's .claude/settings.json; "
            "prefer the default (user settings) unless your Claude Code honours them"
        )
        return Target(scope, path or project_settings_path(project_dir), "json", warning=warning)
    if scope == "shell":
        shell = shell or detect_shell(environ)
        if shell not in SHELLS:
            raise SetupError(f"shell must be one of {', '.join(SHELLS)}, not {shell!r}")
        warning = (
            "the variables reach only programs started from a new shell (not IDE launches), and any "
            "value in ~/.claude/settings.json overrides them"
        )
        return Target(scope, path or rc_path(shell, home, environ), "rc", shell, warning)
    if scope == "managed":
        return Target(scope, path or managed_settings_path(), "managed")
    raise SetupError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")


def plan_for(tgt: Target, env: Mapping[str, str]) -> Plan:
    if tgt.kind == "rc":
        assert tgt.shell is not None
        return plan_rc(tgt.path, tgt.shell, env)
    return plan_json(tgt.path, env)


def managed_document(env: Mapping[str, str]) -> str:
    """A managed settings file for admins to deploy (it beats every user's own settings)."""
    return dump_settings({"env": dict(env)}, 2)
