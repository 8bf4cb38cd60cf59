"""``deploy/ccmetrics.service``: the systemd unit the README's team recipe installs.

Its content is checked here line by line (a user of its own, the state directory as the data directory, the
hardening), and ``systemd-analyze verify`` checks it as systemd reads it: any warning fails, since systemd
ignores a misspelt key and starts the service without that protection.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import IN_CI

UNIT = Path(__file__).resolve().parent.parent / "deploy" / "ccmetrics.service"


def unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """``[Section]`` -> its ``Key=value`` lines in order (a key may repeat, as systemd allows)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"a setting before any section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a Key=value line: {line!r}"
        current.append((key, value))
    return sections


def test_the_unit_runs_serve_as_its_own_user_in_its_state_directory_hardened():
    sections = unit_sections(UNIT.read_text())
    assert set(sections) == {"Unit", "Service", "Install"}
    service = dict(sections["Service"])
    assert service["ExecStart"].split()[1:] == ["serve", "--data-dir", "${STATE_DIRECTORY}"]
    assert service["DynamicUser"] == "yes" and "User" not in service  # a user of its own, never root
    assert service["StateDirectory"] == "ccmetrics"
    assert service["EnvironmentFile"] == "-/etc/ccmetrics/ccmetrics.env"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }.items():
        assert service.get(key) == value, key
    # Room for --max-connections on all three listeners, so serve need not lower it.
    assert int(service["LimitNOFILE"]) >= 3 * 10_000 + 128
    assert dict(sections["Install"])["WantedBy"] == "multi-user.target"


def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(tmp_path: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if IN_CI:
            pytest.fail("CI=true and systemd-analyze is required (Debian package: systemd)")
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    # The unit as installed, with ExecStart pointing at this environment's ccmetrics, which verify checks.
    ccmetrics = Path(sys.executable).parent / "ccmetrics"
    assert ccmetrics.is_file()
    unit = tmp_path / "ccmetrics.service"
    unit.write_text(UNIT.read_text().replace("/opt/ccmetrics/bin/ccmetrics", str(ccmetrics)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).strip() == ""
