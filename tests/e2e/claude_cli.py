"""Helpers to run the real Claude Code CLI (print mode and interactive under tmux) with OTLP telemetry on."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

GRPC_ENCODING_HINT = "x-ccmetrics-e2e-grpc-encoding"  # must match otlp_tee.GRPC_ENCODING_HINT
CLAUDE_VERSION = "2.1.332"
DEFAULT_CLAUDE_DIR = Path.home() / ".cache" / "ccmetrics" / f"claude-code-{CLAUDE_VERSION}"
_BINARY_IN_DIR = Path("node_modules/@anthropic-ai/claude-code-linux-x64/claude")
FAKE_API_KEY = "sk-ant-api03-fake-key-for-ccmetrics-e2e-tests-0000000000"
INSTALL_HINT = (
    f"npm install --prefix ~/.cache/ccmetrics/claude-code-{CLAUDE_VERSION} "
    f"@anthropic-ai/claude-code@{CLAUDE_VERSION}"
)


def claude_dir() -> Path:
    return Path(os.environ.get("CCMETRICS_CLAUDE_DIR") or DEFAULT_CLAUDE_DIR).expanduser()


def find_claude() -> tuple[Path | None, str]:
    """Return (binary, "") when the pinned CLI is usable, else (None, reason)."""
    binary = claude_dir() / _BINARY_IN_DIR
    if not binary.is_file():
        return (
            None,
            f"Claude Code CLI not found at {binary} (set CCMETRICS_CLAUDE_DIR or run: {INSTALL_HINT})",
        )
    if not os.access(binary, os.X_OK):
        return None, f"{binary} is not executable"
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"{binary} --version failed: {err!r}"
    if CLAUDE_VERSION not in out.stdout:
        return None, f"{binary} --version printed {out.stdout.strip()!r}, expected {CLAUDE_VERSION}"
    return binary, ""


# ---------------------------------------------------------------------------------------- fixtures


def make_home(root: Path, name: str, project_dirs: list[Path] = ()) -> Path:  # type: ignore[assignment]
    """A throw-away HOME for one simulated user, with onboarding and the trust dialog already done."""
    home = root / f"home-{name}"
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    trust_projects(home, project_dirs)
    return home


def trust_projects(home: Path, project_dirs: list[Path]) -> None:
    cfg_path = home / ".claude.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    cfg.update({"hasCompletedOnboarding": True, "theme": "dark"})
    # Interactive mode asks once whether to use ANTHROPIC_API_KEY; pre-approve ours (last 20 characters).
    responses = cfg.setdefault("customApiKeyResponses", {"approved": [], "rejected": []})
    if FAKE_API_KEY[-20:] not in responses.setdefault("approved", []):
        responses["approved"].append(FAKE_API_KEY[-20:])
    projects = cfg.setdefault("projects", {})
    for d in project_dirs:
        projects.setdefault(str(Path(d).resolve()), {}).update(
            {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True}
        )
    cfg_path.write_text(json.dumps(cfg, indent=2))


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """A git repository with one initial commit (so `git commit` in a session has a parent)."""
    path.mkdir(parents=True, exist_ok=True)
    files = files if files is not None else {"README.md": "# demo\n"}
    for rel, content in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(content)
    git = ["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "initial"], cwd=path, check=True)
    return path.resolve()


@dataclass
class Telemetry:
    endpoint: str  # e.g. http://127.0.0.1:4318 (http/*) or http://127.0.0.1:4317 (grpc)
    protocol: str = "http/protobuf"  # grpc | http/protobuf | http/json
    temporality: str = "delta"  # delta | cumulative
    gzip: bool = False
    resource_attributes: dict[str, str] = field(default_factory=dict)
    interval_ms: int = 1000
    headers: str | None = None  # OTEL_EXPORTER_OTLP_HEADERS

    def env(self) -> dict[str, str]:
        env = {
            "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": self.protocol,
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_METRIC_EXPORT_INTERVAL": str(self.interval_ms),
            "OTEL_LOGS_EXPORT_INTERVAL": str(self.interval_ms),
        }
        if self.temporality == "cumulative":
            env["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"] = "cumulative"
        elif self.temporality != "delta":
            raise ValueError(self.temporality)
        if self.gzip:
            env["OTEL_EXPORTER_OTLP_COMPRESSION"] = "gzip"
        if self.resource_attributes:
            env["OTEL_RESOURCE_ATTRIBUTES"] = ",".join(
                f"{k}={v}" for k, v in self.resource_attributes.items()
            )
        headers = [self.headers] if self.headers else []
        if self.gzip and self.protocol == "grpc":
            # Lets the tee know (gRPC hides grpc-encoding from it) so it can forward gzip-compressed too.
            headers.append(f"{GRPC_ENCODING_HINT}=gzip")
        if headers:
            env["OTEL_EXPORTER_OTLP_HEADERS"] = ",".join(headers)
        return env


def cli_env(
    home: Path, api_base_url: str, telemetry: Telemetry | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A clean environment: nothing inherited that could point the CLI anywhere but loopback; ``extra`` is
    added as given (e.g. NODE_EXTRA_CA_CERTS)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "USER": "root",
        "SHELL": "/bin/bash",
        "ANTHROPIC_BASE_URL": api_base_url,
        "ANTHROPIC_API_KEY": FAKE_API_KEY,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "DISABLE_AUTOUPDATER": "1",
        # Without this the CLI resolves outside hosts (feature flags, error reporting); with it the only
        # connections are to ANTHROPIC_BASE_URL and the OTLP endpoint (checked with strace).  OTel export
        # and the events/metrics it carries are unaffected.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
    }
    if telemetry is not None:
        env.update(telemetry.env())
    env.update(extra or {})
    return env


@dataclass
class RunResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float


def run_print(
    binary: Path,
    *,
    home: Path,
    cwd: Path,
    prompt: str,
    api_base_url: str,
    telemetry: Telemetry | None,
    extra_args: list[str] = (),  # type: ignore[assignment]
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 90,
) -> RunResult:
    """`claude -p PROMPT` in print mode; returns when the CLI has exited (it flushes telemetry on exit)."""
    args = [str(binary), "-p", prompt, *extra_args]
    t0 = time.monotonic()
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=cli_env(home, api_base_url, telemetry, extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return RunResult(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)


# ------------------------------------------------------------------------------------- interactive


class Tmux:
    """One detached session on a private tmux server socket (never the user's own tmux server)."""

    SOCKET = "ccmetrics-e2e"

    def __init__(self, session: str) -> None:
        self.session = session

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.SOCKET, *args], capture_output=True, text=True, check=check)

    def capture(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session, check=False).stdout

    def alive(self) -> bool:
        return self.run("has-session", "-t", self.session, check=False).returncode == 0

    def send_text(self, text: str) -> None:
        self.run("send-keys", "-t", self.session, "-l", text)

    def send_key(self, key: str) -> None:
        self.run("send-keys", "-t", self.session, key)

    def wait_for(self, predicate, timeout: float, what: str) -> str:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if predicate(screen):
                return screen
            if not self.alive():
                raise RuntimeError(f"tmux session ended while waiting for {what}; last screen:\n{screen}")
            time.sleep(0.2)
        raise TimeoutError(f"timed out waiting for {what}; last screen:\n{screen}")

    def kill(self) -> None:
        self.run("kill-session", "-t", self.session, check=False)


@dataclass
class InteractiveResult:
    duration_s: float
    screens: list[str]
    exited: bool
    permissions_given: int = 0  # permission questions answered "Yes"


PERMISSION_QUESTION = "Do you want to"  # "Do you want to create notes.md?", then "❯ 1. Yes"


def run_interactive(
    binary: Path,
    *,
    home: Path,
    cwd: Path,
    prompt: str,
    answer_marker: str,
    api_base_url: str,
    telemetry: Telemetry | None,
    extra_args: list[str] = (),  # type: ignore[assignment]
    extra_env: Mapping[str, str] | None = None,
    think_time_s: float = 1.5,
    permission_after_s: float | None = None,
    timeout: float = 90,
) -> InteractiveResult:
    """Run the CLI in a detached tmux pane: wait for the prompt box, type PROMPT (pausing a little so the
    CLI accrues *user* active time), wait until ``answer_marker`` appears, then `/exit` and wait for the
    process to leave (it flushes telemetry on exit). With ``permission_after_s``, each permission question
    the CLI asks meanwhile is answered with its first choice (Yes) after that many seconds."""
    session = f"ccm-{uuid.uuid4().hex[:8]}"
    tmux = Tmux(session)
    env = cli_env(home, api_base_url, telemetry, extra_env)
    # tmux passes the server's environment, not ours: spell the environment out on the command line.
    done_flag = home / f".{session}.exited"
    cmd = " ".join(
        [
            "env",
            "-i",
            *(shlex.quote(f"{k}={v}") for k, v in env.items()),
            shlex.quote(str(binary)),
            *(shlex.quote(a) for a in extra_args),
            ";",
            "touch",
            shlex.quote(str(done_flag)),
        ]
    )
    screens: list[str] = []
    t0 = time.monotonic()
    if shutil.which("tmux") is None:
        raise RuntimeError("tmux is not installed")
    tmux.run(
        "-f", "/dev/null", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", "-c", str(cwd), cmd
    )
    try:
        deadline = t0 + timeout
        # Ready when the input box shows (the CLI draws a "> " / "❯" prompt line).
        screens.append(
            tmux.wait_for(
                lambda s: "❯" in s or "\n> " in s or "? for shortcuts" in s,
                timeout=min(30, deadline - time.monotonic()),
                what="the input prompt",
            )
        )
        time.sleep(think_time_s / 2)
        for chunk in _chunks(prompt, 4):
            tmux.send_text(chunk)
            time.sleep(0.08)
        screens.append(tmux.wait_for(lambda s: prompt in s, timeout=10, what="the typed prompt to show"))
        time.sleep(think_time_s / 2)
        tmux.send_key("Enter")
        given = 0
        while True:
            screens.append(
                tmux.wait_for(
                    lambda s: (
                        answer_marker in s or (permission_after_s is not None and PERMISSION_QUESTION in s)
                    ),
                    timeout=max(1, deadline - time.monotonic()),
                    what=f"the answer {answer_marker!r}",
                )
            )
            if answer_marker in screens[-1]:
                break
            time.sleep(permission_after_s or 0)
            tmux.send_key("Enter")
            given += 1
            tmux.wait_for(lambda s: PERMISSION_QUESTION not in s, timeout=10, what="the question to close")
        time.sleep(0.5)
        tmux.send_text("/exit")
        time.sleep(0.3)
        tmux.send_key("Enter")
        end = time.monotonic() + max(1, min(30, deadline - time.monotonic()))
        while time.monotonic() < end and not done_flag.exists():
            time.sleep(0.2)
        exited = done_flag.exists()
        if not exited:
            screens.append(tmux.capture())
        return InteractiveResult(time.monotonic() - t0, screens, exited, given)
    finally:
        tmux.kill()


def _chunks(s: str, n: int) -> list[str]:
    return [s[i : i + n] for i in range(0, len(s), n)]
