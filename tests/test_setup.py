"""``ccmetrics setup``: real files in temporary HOMEs, through the real command."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccmetrics import setup as s
from ccmetrics.claude_settings import TELEMETRY_VARS
from ccmetrics.cli import main

EXISTING = (
    '{\n    "model": "opus",\n    "permissions": {\n        "allow": ["Bash(git:*)"]\n    },\n'
    '    "env": {\n        "FOO": "bär"\n    }\n}\n'
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def ccm(
    home: Path,
    *args: str,
    shell: str = "/bin/bash",
    input: str | None = None,  # noqa: A002
    cwd: Path | None = None,
):
    """The command, run in ``cwd`` (the home by default: no repository, so git knows only the home's
    .gitconfig, where setup finds the user.email it adds as user.name)."""
    env = {
        "HOME": str(home),
        "SHELL": shell,
        "CLAUDE_CONFIG_DIR": None,
        "ZDOTDIR": None,
        "XDG_CONFIG_HOME": None,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": None,
        **dict.fromkeys(TELEMETRY_VARS),
    }
    with contextlib.chdir(cwd or home):
        return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)


def settings(home: Path) -> Path:
    return home / ".claude" / "settings.json"


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".ccmetrics-backup-*"))


# --- Claude Code's settings file --------------------------------------------------------------------------


def test_no_settings_file_is_created_and_undo_deletes_it(home: Path) -> None:
    result = ccm(home, "setup", "--yes")
    assert result.exit_code == 0, result.output
    env = json.loads(settings(home).read_text())["env"]
    assert env == {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
        "OTEL_METRIC_EXPORT_INTERVAL": "10000",
        "OTEL_LOGS_EXPORT_INTERVAL": "5000",
    }
    assert backups(settings(home)) == []  # nothing to back up

    assert ccm(home, "setup", "--undo", "--yes").exit_code == 0
    assert not settings(home).exists()
    assert not s.manifest_path(settings(home)).exists()


def test_existing_file_keeps_other_keys_order_and_indent_and_undo_is_byte_exact(home: Path) -> None:
    settings(home).parent.mkdir()
    settings(home).write_text(EXISTING, encoding="utf-8")
    result = ccm(home, "setup", "--team", "platform", "--attr", "department=eng", "--yes")
    assert result.exit_code == 0, result.output
    assert '+        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",' in result.output  # the diff was shown
    text = settings(home).read_text(encoding="utf-8")
    document = json.loads(text)
    assert list(document) == ["model", "permissions", "env"]
    assert document["permissions"] == {"allow": ["Bash(git:*)"]}
    assert list(document["env"])[0] == "FOO" and document["env"]["FOO"] == "bär"
    assert document["env"]["OTEL_RESOURCE_ATTRIBUTES"] == "team.id=platform,department=eng"
    assert '\n    "model": "opus",' in text and "bär" in text and text.endswith("}\n")
    [backup] = backups(settings(home))
    assert backup.read_text(encoding="utf-8") == EXISTING

    assert ccm(home, "setup", "--undo", "--yes").exit_code == 0
    assert settings(home).read_bytes() == EXISTING.encode()


def test_running_twice_changes_nothing(home: Path) -> None:
    settings(home).parent.mkdir()
    settings(home).write_text(EXISTING)
    assert ccm(home, "setup", "--yes").exit_code == 0
    first = settings(home).read_bytes()
    manifest = s.manifest_path(settings(home)).read_bytes()
    second = ccm(home, "setup", "--yes")
    assert second.exit_code == 0 and "nothing to change" in second.output
    assert settings(home).read_bytes() == first
    assert s.manifest_path(settings(home)).read_bytes() == manifest
    assert len(backups(settings(home))) == 1


def test_a_replaced_value_comes_back_on_undo(home: Path) -> None:
    original = '{"env": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "X": "1"}}'
    settings(home).parent.mkdir()
    settings(home).write_text(original)
    assert ccm(home, "setup", "--yes").exit_code == 0
    assert (
        json.loads(settings(home).read_text())["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        == "http://127.0.0.1:4317"
    )
    assert (
        ccm(home, "setup", "--protocol", "http/protobuf", "--yes").exit_code == 0
    )  # a second, different run
    assert (
        json.loads(settings(home).read_text())["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        == "http://127.0.0.1:4318"
    )
    assert ccm(home, "setup", "--undo", "--yes").exit_code == 0
    assert settings(home).read_text() == original


def test_undo_after_the_user_edited_the_file_removes_only_ours(home: Path) -> None:
    settings(home).parent.mkdir()
    settings(home).write_text('{\n  "env": {\n    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://old:4317"\n  }\n}\n')
    assert ccm(home, "setup", "--yes").exit_code == 0
    document = json.loads(settings(home).read_text())
    document["theme"] = "light"  # the user's own edit, after setup
    document["env"]["OTEL_LOGS_EXPORT_INTERVAL"] = "2000"  # and a change to one of our values: now theirs
    settings(home).write_text(json.dumps(document, indent=2) + "\n")
    result = ccm(home, "setup", "--undo", "--yes")
    assert result.exit_code == 0 and "edited since setup" in result.output
    assert json.loads(settings(home).read_text()) == {
        "env": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://old:4317", "OTEL_LOGS_EXPORT_INTERVAL": "2000"},
        "theme": "light",
    }


@pytest.mark.parametrize(
    "content, why",
    [
        ('{"model": "opus",\n  "env": {', "not valid JSON (line 2"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"env": "CLAUDE_CODE_ENABLE_TELEMETRY=1"}', '"env" must be an object'),
    ],
)
def test_a_settings_file_that_cannot_be_parsed_is_never_overwritten(
    home: Path, content: str, why: str
) -> None:
    settings(home).parent.mkdir()
    settings(home).write_text(content)
    result = ccm(home, "setup", "--yes")
    assert result.exit_code == 1
    assert why in result.output and "nothing was changed" in result.output
    assert settings(home).read_text() == content
    assert backups(settings(home)) == [] and not s.manifest_path(settings(home)).exists()


def test_dry_run_and_declining_write_nothing(home: Path) -> None:
    dry = ccm(home, "setup", "--dry-run")
    assert dry.exit_code == 0 and "Dry run" in dry.output and "CLAUDE_CODE_ENABLE_TELEMETRY" in dry.output
    assert not settings(home).exists()
    declined = ccm(home, "setup", input="n\n")
    assert declined.exit_code == 1 and "nothing was written" in declined.output
    assert not settings(home).exists()
    accepted = ccm(home, "setup", input="y\n")
    assert accepted.exit_code == 0 and settings(home).exists()


def test_json_plan(home: Path) -> None:
    result = ccm(home, "setup", "--dry-run", "--json")
    plan = json.loads(result.output)
    assert plan["changed"] and plan["dry_run"] and plan["path"] == str(settings(home))
    assert {"key": "OTEL_EXPORTER_OTLP_PROTOCOL", "old": None, "new": "grpc"} in plan["changes"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--attr", "team.name=Platform Team"], "has a space"),
        (["--team", "data science"], "has a space"),
        (["--attr", "novalue"], "use KEY=VALUE"),
        (["--protocol", "http"], "use http/protobuf or http/json"),
        (["--endpoint", "127.0.0.1:4317"], "endpoint must look like http://host:port"),
        (["--token", "a b"], "may not be empty or hold spaces"),
    ],
)
def test_bad_values_are_refused(home: Path, args: list[str], message: str) -> None:
    result = ccm(home, "setup", "--yes", *args)
    assert result.exit_code == 1 and message in result.output
    assert not settings(home).exists()


def test_stack_backend_token_and_http_protocol(home: Path) -> None:
    result = ccm(
        home, "setup", "--yes", "--backend", "stack", "--protocol", "http/protobuf", "--token", "s3cret"
    )
    assert result.exit_code == 0, result.output
    env = json.loads(settings(home).read_text())["env"]
    assert env["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"] == "cumulative"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == "Authorization=Bearer s3cret"


def test_claude_config_dir_moves_the_user_file(home: Path, tmp_path: Path) -> None:
    config_dir = tmp_path / "claude-config"
    env = {"HOME": str(home), "CLAUDE_CONFIG_DIR": str(config_dir), **dict.fromkeys(TELEMETRY_VARS)}
    result = CliRunner().invoke(main, ["setup", "--yes"], env=env)
    assert result.exit_code == 0, result.output
    assert (config_dir / "settings.json").exists() and not settings(home).exists()


def test_project_scope_writes_the_project_file_and_says_it_may_be_ignored(home: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    result = ccm(home, "setup", "--scope", "project", "--project-dir", str(project), "--yes")
    assert result.exit_code == 0
    assert "ignores telemetry variables" in result.output
    assert (
        json.loads((project / ".claude" / "settings.json").read_text())["env"]["OTEL_LOGS_EXPORTER"] == "otlp"
    )


def test_managed_scope_prints_a_document_and_writes_nothing(home: Path) -> None:
    endpoint = "https://ccmetrics.example.com:4317"
    result = ccm(home, "setup", "--scope", "managed", "--team", "platform", "--endpoint", endpoint)
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["env"]["OTEL_RESOURCE_ATTRIBUTES"] == "team.id=platform"
    assert document["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint
    assert "managed-settings.json" in result.stderr
    assert not (home / ".claude").exists()


@pytest.mark.parametrize(
    "endpoint",
    [None, "http://127.0.0.1:4317", "https://localhost:4317", "http://[::1]:4317", "http://0.0.0.0:4317"],
)
def test_managed_scope_refuses_a_loopback_endpoint(home: Path, endpoint: str | None) -> None:
    """Deployed to every developer's machine, a loopback endpoint would be each machine itself."""
    args = ["--endpoint", endpoint] if endpoint else []
    result = ccm(home, "setup", "--scope", "managed", *args)
    assert result.exit_code == 1
    assert "a managed settings file must name the team's server" in result.output
    assert "Traceback" not in result.output and "{" not in result.stdout


@pytest.mark.parametrize("protocol, port", [("grpc", 4317), ("http/protobuf", 4318), ("http/json", 4318)])
def test_an_https_endpoint_is_written_as_given(home: Path, protocol: str, port: int) -> None:
    """Claude Code's exporters use TLS for an https:// endpoint, for gRPC as for HTTP."""
    endpoint = f"https://ccmetrics.example.com:{port}"
    result = ccm(home, "setup", "--yes", "--protocol", protocol, "--endpoint", endpoint + "/")
    assert result.exit_code == 0, result.output
    env = json.loads(settings(home).read_text())["env"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == protocol


@pytest.mark.parametrize(
    "endpoint", ["https://127.0.0.1:4317", "https://[::1]:4317", "https://10.0.0.5:4317"]
)
def test_grpc_over_tls_to_an_ip_address_is_refused(home: Path, endpoint: str) -> None:
    """Claude Code's gRPC client will not send an IP address as the TLS server name (found with the real
    CLI: tests/e2e/test_tls_real_client.py); HTTP over TLS to the same address works."""
    result = ccm(home, "setup", "--yes", "--protocol", "grpc", "--endpoint", endpoint)
    assert result.exit_code == 1
    assert "cannot export gRPC over TLS to an IP address" in result.output
    assert not settings(home).exists()
    assert ccm(home, "setup", "--yes", "--protocol", "http/protobuf", "--endpoint", endpoint).exit_code == 0


# --- shell rc files ---------------------------------------------------------------------------------------

RC_BEFORE = "# my rc\nalias ll='ls -l'\nexport EDITOR=vim"  # no final newline on purpose


@pytest.mark.parametrize(
    "shell, rc, line",
    [
        ("/bin/bash", ".bashrc", "export OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
        ("/usr/bin/zsh", ".zshrc", "export OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
        ("/usr/local/bin/fish", ".config/fish/config.fish", "set -gx OTEL_EXPORTER_OTLP_PROTOCOL 'grpc'"),
    ],
)
def test_shell_rc_detected_idempotent_and_undone_byte_for_byte(
    home: Path, shell: str, rc: str, line: str
) -> None:
    path = home / rc
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RC_BEFORE)
    result = ccm(home, "setup", "--scope", "shell", "--team", "platform", "--yes", shell=shell)
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert text.startswith(RC_BEFORE + "\n") and s.BEGIN in text and s.END in text and line in text
    assert (
        ccm(home, "setup", "--scope", "shell", "--team", "platform", "--yes", shell=shell).output.count(
            "nothing to change"
        )
        == 1
    )
    assert path.read_text() == text
    assert ccm(home, "setup", "--scope", "shell", "--undo", "--yes", shell=shell).exit_code == 0
    assert path.read_bytes() == RC_BEFORE.encode()


def test_shell_rc_created_and_undo_deletes(home: Path) -> None:
    assert ccm(home, "setup", "--scope", "shell", "--shell", "zsh", "--yes").exit_code == 0
    assert (home / ".zshrc").exists()
    assert ccm(home, "setup", "--scope", "shell", "--shell", "zsh", "--undo", "--yes").exit_code == 0
    assert not (home / ".zshrc").exists()


def test_shell_rc_undo_after_edits_keeps_theirs(home: Path) -> None:
    (home / ".bashrc").write_text("A=1\n")
    assert ccm(home, "setup", "--scope", "shell", "--yes").exit_code == 0
    with (home / ".bashrc").open("a") as f:
        f.write("B=2\n")
    assert ccm(home, "setup", "--scope", "shell", "--undo", "--yes").exit_code == 0
    assert (home / ".bashrc").read_text() == "A=1\nB=2\n"


@pytest.mark.parametrize(
    "shell, rc", [("bash", ".bashrc"), ("zsh", ".zshrc"), ("fish", ".config/fish/config.fish")]
)
def test_shell_rc_block_is_valid_shell(home: Path, shell: str, rc: str) -> None:
    """The block setup writes is sourced by the real shell and sets the values, quoting included."""
    binary = shutil.which(shell)
    if binary is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {shell} is required")
        pytest.skip(f"{shell} is not installed")
    assert (
        ccm(home, "setup", "--scope", "shell", "--shell", shell, "--token", "t0k'en", "--yes").exit_code == 0
    )
    echo = 'echo "$OTEL_EXPORTER_OTLP_HEADERS|$OTEL_EXPORTER_OTLP_ENDPOINT|$CLAUDE_CODE_ENABLE_TELEMETRY"'
    out = subprocess.run(
        [binary, "-c", f"source {home / rc}; {echo}"],
        capture_output=True,
        text=True,
        check=True,
        env={"HOME": str(home), "PATH": os.environ["PATH"]},
    )
    assert out.stdout.strip() == "Authorization=Bearer t0k'en|http://127.0.0.1:4317|1"


# --- the pure parts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, indent",
    [
        ('{\n  "a": 1\n}', 2),
        ('{\n    "a": 1\n}', 4),
        ('{\n\t"a": 1\n}', "\t"),
        ('{"a": 1}', 2),
    ],
)
def test_detect_indent(text: str, indent: int | str) -> None:
    assert s.detect_indent(text) == indent


def test_set_env_json_is_a_no_op_when_everything_is_set() -> None:
    text = '{"env":{"A":"1"}}'  # compact, no newline: left exactly as it is
    assert s.set_env_json(text, {"A": "1"}, Path("x")) == (text, [])


def test_detect_shell() -> None:
    assert s.detect_shell({"SHELL": "/usr/bin/zsh"}) == "zsh"
    assert s.detect_shell({"SHELL": "/opt/homebrew/bin/fish"}) == "fish"
    assert s.detect_shell({}) == "bash"


# --- user.name: the name the dashboard shows for a user that sends no email ------------------------------


def git_email(home: Path, email: str, repo: Path | None = None) -> None:
    """``git config user.email`` in the home's .gitconfig, or in a repository of its own."""
    where = ["-C", str(repo), "config", "--local"] if repo else ["config", "--global"]
    if repo:
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", *where, "user.email", email], check=True, env=env)


def attributes(home: Path) -> str | None:
    value: str | None = json.loads(settings(home).read_text())["env"].get("OTEL_RESOURCE_ATTRIBUTES")
    return value


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_git_email_becomes_user_name_and_setup_says_so(home: Path) -> None:
    git_email(home, "dev@example.com")
    result = ccm(home, "setup", "--yes", "--team", "platform")
    assert result.exit_code == 0, result.output
    assert attributes(home) == "team.id=platform,user.name=dev@example.com"
    assert "user.name=dev@example.com (from git config user.email)" in result.output
    again = ccm(home, "setup", "--yes", "--team", "platform")
    assert "nothing to change" in again.output


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_repository_s_own_git_email_counts(home: Path, tmp_path: Path) -> None:
    git_email(home, "home@example.com")
    git_email(home, "work@example.com", repo=tmp_path / "repo")
    result = ccm(home, "setup", "--yes", cwd=tmp_path / "repo")
    assert result.exit_code == 0, result.output
    assert attributes(home) == "user.name=work@example.com"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_no_user_name_and_an_explicit_one(home: Path) -> None:
    git_email(home, "dev@example.com")
    result = ccm(home, "setup", "--yes", "--no-user-name")
    assert result.exit_code == 0, result.output
    assert attributes(home) is None
    assert "none added (--no-user-name)" in result.output
    result = ccm(home, "setup", "--yes", "--user-name", "Zoë Doe, Ops=1%")
    assert result.exit_code == 0, result.output
    value = attributes(home)
    assert value == "user.name=Zo%C3%AB%20Doe%2C%20Ops%3D1%25"
    assert urllib.parse.unquote(value.partition("=")[2]) == "Zoë Doe, Ops=1%"
    clash = ccm(home, "setup", "--user-name", "x", "--no-user-name")
    assert clash.exit_code != 0


def test_without_a_git_email_setup_says_how_to_give_a_name(home: Path) -> None:
    result = ccm(home, "setup", "--yes")
    assert result.exit_code == 0, result.output
    assert attributes(home) is None
    assert "--user-name NAME gives one" in result.output


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_attributes_already_there_are_kept_and_come_back_on_undo(home: Path) -> None:
    git_email(home, "dev@example.com")
    settings(home).parent.mkdir()
    theirs = {"env": {"OTEL_RESOURCE_ATTRIBUTES": "department=eng,cost_center=42,user.name=old"}}
    settings(home).write_text(json.dumps(theirs, indent=2) + "\n")
    result = ccm(home, "setup", "--yes", "--team", "platform")
    assert result.exit_code == 0, result.output
    assert attributes(home) == "department=eng,cost_center=42,team.id=platform,user.name=dev@example.com"
    assert "nothing to change" in ccm(home, "setup", "--yes", "--team", "platform").output
    assert ccm(home, "setup", "--undo", "--yes").exit_code == 0
    assert json.loads(settings(home).read_text()) == theirs


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_managed_file_names_nobody(home: Path) -> None:
    git_email(home, "admin@example.com")
    endpoint = "https://ccmetrics.example.com:4317"
    result = ccm(home, "setup", "--scope", "managed", "--endpoint", endpoint, "--json")
    assert result.exit_code == 0, result.output
    assert "user.name" not in result.output
    refused = ccm(home, "setup", "--scope", "managed", "--endpoint", endpoint, "--user-name", "x")
    assert refused.exit_code != 0


def test_values_are_percent_encoded_outside_baggage_octets() -> None:
    baggage_octets = {chr(c) for c in (0x21, *range(0x23, 0x2C), *range(0x2D, 0x3B), *range(0x3C, 0x5C))}
    baggage_octets |= {chr(c) for c in range(0x5D, 0x7F)}
    for value in ("a b", "a,b", 'a"b', "a;b", "a\\b", "é", "100%", "k=v", "dev+tag@example.com"):
        encoded = s.encode_attribute_value(value)
        assert set(encoded) <= baggage_octets - {"=", ","}, encoded
        assert urllib.parse.unquote(encoded) == value
    assert s.encode_attribute_value("dev+tag@example.com") == "dev+tag@example.com"
    assert s.merge_resource_attributes("a=1, b=2,,", "b=3,c=4") == "a=1,b=3,c=4"
