"""Tokens: made by ``ccmetrics token``, kept only as hashes in ``access.db``, checked by the gate, which
notices a change to the file within its check interval."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccmetrics.access.exposure import is_loopback, refusal
from ccmetrics.access.gate import Gate, Refused
from ccmetrics.access.store import AccessStore
from ccmetrics.access.tokens import PREFIX, Role, TokenError, bearer, digest, expiry_ns
from ccmetrics.cli import main

DAY_NS = 86_400 * 1_000_000_000


def cli(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def access(tmp_path: Path) -> Iterator[AccessStore]:
    store = AccessStore(tmp_path / "access.db")
    yield store
    store.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_create_prints_the_token_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    code, out, err = cli(
        tmp_path, "token", "create", "laptop", "--role", "ingest", "--user", "dev@example.com"
    )
    assert code == 0, err
    token = out.strip()
    assert token.startswith(PREFIX) and len(token) > 40
    assert "shown only this once" in err
    files = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("access.db"))
    assert token.encode() not in files and token[len(PREFIX) :].encode() not in files
    assert digest(token) in files  # what is kept instead

    code, out, _ = cli(tmp_path, "token", "list", "--json")
    assert code == 0
    (listed,) = json.loads(out)
    assert listed["name"] == "laptop" and listed["role"] == "ingest" and listed["user"] == "dev@example.com"
    assert listed["team"] is None and listed["expires_ns"] is None and listed["last_used_ns"] is None
    assert token not in out
    code, out, _ = cli(tmp_path, "token", "list")
    assert code == 0 and "laptop" in out and "dev@example.com" in out and "never" in out
    assert token not in out


def test_names_are_unique_and_revoking_an_unknown_name_is_an_error(tmp_path: Path) -> None:
    assert cli(tmp_path, "token", "create", "ci", "--role", "ingest")[0] == 0
    code, _, err = cli(tmp_path, "token", "create", "ci", "--role", "admin")
    assert code == 1 and "exists already" in err
    code, _, err = cli(tmp_path, "token", "revoke", "nope")
    assert code == 1 and "no token named 'nope'" in err
    assert cli(tmp_path, "token", "revoke", "ci") == (0, "Token 'ci' revoked.\n", "")
    assert json.loads(cli(tmp_path, "token", "list", "--json")[1]) == []
    assert cli(tmp_path, "token", "create", "ci", "--role", "ingest")[0] == 0  # the name is free again


def test_revoke_and_list_in_a_data_dir_without_tokens(tmp_path: Path) -> None:
    code, _, err = cli(tmp_path / "empty", "token", "revoke", "x")
    assert code == 1 and "no token named 'x'" in err
    code, out, _ = cli(tmp_path / "empty", "token", "list")
    assert code == 0 and "No tokens" in out
    assert not (tmp_path / "empty").exists()  # looking created nothing


def test_bad_options_are_clear_errors(tmp_path: Path) -> None:
    code, _, err = cli(tmp_path, "token", "create", "x", "--role", "owner")
    assert code == 2 and "'owner' is not one of" in err
    code, _, err = cli(tmp_path, "token", "create", "x", "--role", "ingest", "--expires", "soon")
    assert code == 1 and "cannot read --expires 'soon'" in err
    code, _, err = cli(tmp_path, "token", "create", "x", "--role", "ingest", "--expires", "2001-01-01")
    assert code == 1 and "in the past" in err
    code, _, err = cli(tmp_path, "token", "create", " ", "--role", "ingest")
    assert code == 1 and "name" in err


def test_expiry_is_a_span_from_now_or_a_time() -> None:
    now = 1_800_000_000 * 1_000_000_000
    assert expiry_ns("90d", now) == now + 90 * DAY_NS
    assert expiry_ns("12h", now) == now + DAY_NS // 2
    assert expiry_ns("2w", now) == now + 14 * DAY_NS
    assert expiry_ns(None, now) is None and expiry_ns("never", now) is None
    assert expiry_ns("2030-01-01T00:00:00Z", now) == 1_893_456_000 * 1_000_000_000
    for bad in ("0d", "1000000w", "yesterday"):
        with pytest.raises(TokenError):
            expiry_ns(bad, now)


def test_bearer_header() -> None:
    assert bearer("Bearer ccm_abc") == "ccm_abc"
    assert bearer("bearer   ccm_abc ") == "ccm_abc"
    for header in (None, "", "Basic abc", "Bearer", "Bearer " + "x" * 300, "ccm_abc"):
        assert bearer(header) is None


def test_gate_is_open_until_a_token_exists_then_checks_role_and_expiry(access: AccessStore) -> None:
    clock, wall = Clock(), [1_800_000_000 * 1_000_000_000]
    gate = Gate(access, clock=clock, wall_clock_ns=lambda: wall[0])
    assert gate.admit(None) is None and not gate.required
    writer = AccessStore(access.path)  # another connection, as the CLI is
    ingest = writer.create("ingest", Role.INGEST, user="dev@example.com", team="web")
    admin = writer.create("admin", Role.ADMIN)
    viewer = writer.create("viewer", Role.VIEWER)
    soon = writer.create("soon", Role.INGEST, expires_ns=wall[0] + 10 * 1_000_000_000)
    assert gate.admit(None) is None  # not checked again within a second
    clock.now += 1
    with pytest.raises(Refused) as refused:
        gate.admit(None)
    assert (refused.value.status, str(refused.value)) == (
        401,
        "this server needs a token: send the header Authorization: Bearer <token>",
    )
    principal = gate.admit(f"Bearer {ingest}")
    assert principal is not None and principal.trusted.attributes() == {
        "user.email": "dev@example.com",
        "team.id": "web",
    }
    assert gate.admit(f"Bearer {admin}") is not None and gate.admit(f"Bearer {soon}") is not None
    for header, status in ((f"Bearer {viewer}", 403), ("Bearer ccm_guess", 401), (ingest, 401)):
        with pytest.raises(Refused) as refused:
            gate.admit(header)
        assert refused.value.status == status
    wall[0] += 10 * 1_000_000_000
    with pytest.raises(Refused, match="'soon' has expired"):
        gate.admit(f"Bearer {soon}")

    writer.revoke("ingest")
    clock.now += 1
    with pytest.raises(Refused, match="unknown or was revoked"):
        gate.admit(f"Bearer {ingest}")
    for name in ("admin", "viewer", "soon"):
        writer.revoke(name)
    clock.now += 1
    assert gate.admit(None) is None  # open again on a loopback server
    writer.close()


def test_a_gate_that_is_always_required_stays_closed_without_tokens(access: AccessStore) -> None:
    gate = Gate(access, always_required=True)
    with pytest.raises(Refused):
        gate.admit(None)
    with pytest.raises(Refused):
        gate.admit("Bearer ccm_anything")


def test_last_use_is_written_now_and_then_not_per_request(access: AccessStore) -> None:
    clock = Clock()
    token = access.create("ci", Role.INGEST)
    gate = Gate(access, clock=clock, record_use_every_s=60)
    gate.admit(f"Bearer {token}")
    reader = AccessStore(access.path)
    assert reader.tokens()[0].last_used_ns is None
    clock.now += 61
    gate.admit(f"Bearer {token}")
    assert reader.tokens()[0].last_used_ns is not None
    reader.close()


def test_failed_tokens_are_remembered_nowhere(access: AccessStore) -> None:
    access.create("ci", Role.INGEST)
    gate = Gate(access)
    for n in range(1000):
        with pytest.raises(Refused):
            gate.admit(f"Bearer ccm_wrong{n}")
    assert gate.keyring._used == {} and len(gate.keyring.tokens) == 1


def test_the_file_holds_hashes_with_a_role_constraint(access: AccessStore) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        access.conn.execute(
            "INSERT INTO tokens (name, digest, role, created_ns) VALUES ('x', x'00', 'root', 0)"
        )
    assert (access.path.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.4", False),
        ("myhost", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_refusal_names_what_fixes_it() -> None:
    why = refusal("0.0.0.0", "/data", has_credentials=False, insecure_no_auth=False)
    assert why is not None
    assert "ccmetrics token create NAME --role ingest" in why and "--insecure-no-auth" in why
    assert "ccmetrics user add NAME --role admin" in why
    assert refusal("0.0.0.0", "/data", has_credentials=True, insecure_no_auth=False) is None
    assert refusal("0.0.0.0", "/data", has_credentials=False, insecure_no_auth=True) is None
    assert refusal("127.0.0.1", "/data", has_credentials=False, insecure_no_auth=False) is None
