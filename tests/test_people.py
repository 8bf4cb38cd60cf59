"""Names, not hashes: a user is shown by its email, else its user.name, else the alias an admin set, else the
first characters of its user.id; filters, keys and /metrics labels keep the id."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccmetrics.access.aliases import AliasBook
from ccmetrics.access.store import AccessStore, AliasError
from ccmetrics.cli import main
from ccmetrics.store.people import NameSource, People, Sent, resolve, short_id

from .conftest import Export, ServerProcess
from .in_process import InProcessServer
from .otlp_builders import sum_request

ALICE = "a1" * 32  # sends user.email
BOB = "b2" * 32  # sends user.name (ccmetrics setup's, from git config user.email)
CAROL = "c3" * 32  # sends neither: an admin gave her an alias
DAVE = "d4" * 32  # sends neither and has no alias
ERIN = "e5" * 32  # her ingest token's user became her user.email, though she sends a user.name


# --- the order, alone ---------------------------------------------------------------------------------


def test_the_email_comes_first_then_the_user_name_then_the_alias_then_the_short_id() -> None:
    both = Sent(email="a@example.com", user_name="Alice")
    assert resolve(ALICE, both, "Al") == resolve(ALICE, both, None)
    assert resolve(ALICE, both, "Al").text == "a@example.com"
    assert resolve(ALICE, both, "Al").source is NameSource.EMAIL
    assert resolve(BOB, Sent(user_name="bob@example.com"), "Bobby").source is NameSource.USER_NAME
    assert resolve(CAROL, Sent(), "Carol").text == "Carol"
    assert resolve(CAROL, Sent(), "Carol").source is NameSource.ALIAS
    assert resolve(DAVE, Sent(), None).text == "d4d4d4d4d4…"
    assert resolve(DAVE, Sent(), None).source is NameSource.SHORT_ID


def test_a_short_id_is_the_first_ten_characters_unless_the_id_is_short_already() -> None:
    assert short_id(ALICE) == "a1a1a1a1a1…"
    assert short_id("tiny") == "tiny"
    assert short_id("x" * 12) == "x" * 12
    assert short_id("x" * 13) == "x" * 10 + "…"


# --- the aliases in access.db -------------------------------------------------------------------------


def test_aliases_are_set_replaced_and_removed(tmp_path: Path) -> None:
    access = AccessStore(tmp_path / "access.db")
    access.set_alias(CAROL, "  Carol  ")
    access.set_alias(DAVE, "Dave")
    access.set_alias(DAVE, "David")
    assert access.aliases() == {CAROL: "Carol", DAVE: "David"}
    access.remove_alias(DAVE)
    assert access.aliases() == {CAROL: "Carol"}
    with pytest.raises(AliasError, match="has no alias"):
        access.remove_alias(DAVE)
    for user_id, name in (("", "x"), (CAROL, ""), (CAROL, "a\nb"), (CAROL, "x" * 257)):
        with pytest.raises(AliasError):
            access.set_alias(user_id, name)
    access.close()


def test_the_alias_book_rereads_the_file_only_when_it_changed(tmp_path: Path) -> None:
    path = tmp_path / "access.db"
    now = [0.0]
    book = AliasBook(path, clock=lambda: now[0])
    assert book.current() == {}  # no file yet: no aliases, and no file made
    assert not path.exists()
    cli = AccessStore(path)  # the CLI, another connection
    cli.set_alias(CAROL, "Carol")
    assert book.current() == {}  # asked again only after a second
    now[0] += 1.0
    assert book.current() == {CAROL: "Carol"}
    held = book.current()
    now[0] += 1.0
    assert book.current() is held  # nothing changed: the same copy, not read again
    cli.set_alias(CAROL, "Caroline")
    now[0] += 1.0
    assert book.current() == {CAROL: "Caroline"}
    cli.close()
    book.close()


# --- the API, in-process --------------------------------------------------------------------------------


def send_team(server: InProcessServer | ServerProcess) -> None:
    """A session each: cost, sessions and tokens, with what each user's Claude Code sends about them."""
    now = time.time_ns()
    users = {
        ALICE: ({"user.email": "alice@example.com"}, 4.0),
        BOB: ({"user.name": "bob@example.com"}, 3.0),
        CAROL: ({}, 2.0),
        DAVE: ({}, 1.0),
    }
    for user_id, (resource, cost) in users.items():
        point_attrs = {"user.id": user_id, "session.id": f"session-{user_id[:2]}", "model": "claude-x"}
        for name, unit, value in (
            ("claude_code.cost.usage", "USD", cost),
            ("claude_code.session.count", "", 1),
        ):
            request = sum_request(
                name,
                [(now - 60 * 10**9, now - 10**9, value, point_attrs)],
                unit=unit,
                resource={"service.name": "claude-code", **resource},
            )
            body = request.SerializeToString()
            response = server.send(Export("/v1/metrics", "application/x-protobuf", None, body))
            assert response.status_code == 200, response.text


def alias(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["user", *args, "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def team(tmp_path: Path):
    data_dir = tmp_path / "team"
    alias(data_dir, "alias", CAROL, "Carol")
    server = InProcessServer(data_dir)
    send_team(server)
    yield server
    server.close()


def leaderboard(server: InProcessServer, **params: str) -> list[dict]:
    rows: list[dict] = server.get_json("/api/panels/leaderboard_users", **params)["data"]["rows"]
    return rows


def test_the_leaderboard_shows_names_and_keeps_the_ids(team: InProcessServer) -> None:
    rows = leaderboard(team, since="1h")
    assert [(row["key"], row["name"]) for row in rows] == [
        (ALICE, "alice@example.com"),
        (BOB, "bob@example.com"),
        (CAROL, "Carol"),
        (DAVE, "d4d4d4d4d4…"),
    ]
    # Filtering by a row's key, the id, gives that user alone.
    only = leaderboard(team, since="1h", filter=f"user.id={CAROL}")
    assert [(row["key"], row["name"], row["cost_usd"]) for row in only] == [(CAROL, "Carol", 2.0)]


def test_the_filter_choices_show_names_and_take_ids(team: InProcessServer) -> None:
    users = team.get_json("/api/filters")["users"]
    assert {u["id"]: u["name"] for u in users} == {
        ALICE: "alice@example.com",
        BOB: "bob@example.com",
        CAROL: "Carol",
        DAVE: "d4d4d4d4d4…",
    }
    # A search finds a user by any of its names, the alias and user.name included.
    assert [u["id"] for u in team.get_json("/api/filters", q="caro")["users"]] == [CAROL]
    assert [u["id"] for u in team.get_json("/api/filters", q="bob@")["users"]] == [BOB]
    assert [u["id"] for u in team.get_json("/api/filters", q="d4d4")["users"]] == [DAVE]
    values = team.get_json("/api/filters", key="user.id")
    assert values["names"] == {u["id"]: u["name"] for u in users}
    choices = team.get_json("/api/dashboard", since="1h", group_by="user.id")["choices"]
    assert {u["id"]: u["name"] for u in choices["filters"]["users"]} == values["names"]
    assert choices["group"]["names"] == values["names"]


def test_the_session_page_summary_and_recent_sessions_show_names(team: InProcessServer) -> None:
    session = team.get_json(f"/api/sessions/session-{CAROL[:2]}")
    assert session["session"]["user_id"] == CAROL
    assert session["session"]["user_name"] == "Carol"
    assert [(u["user_id"], u["user_name"]) for u in session["summary"]["by_user"]] == [(CAROL, "Carol")]
    by_user = team.summary(since="1h")["by_user"]
    assert [u["user_name"] for u in by_user] == [
        "alice@example.com",
        "bob@example.com",
        "Carol",
        "d4d4d4d4d4…",
    ]
    recent = team.get_json("/api/panels/recent_sessions", since="1h")["data"]["rows"]
    assert {row["user"] for row in recent} == {"alice@example.com", "bob@example.com", "Carol", "d4d4d4d4d4…"}


def test_csv_shows_names_and_keeps_its_guard(team: InProcessServer, tmp_path: Path) -> None:
    alias(tmp_path / "team", "alias", DAVE, "=HYPERLINK(1)")
    time.sleep(1.1)  # the server reads the aliases again once a second
    response = team.get("/api/panels/leaderboard_users", params={"format": "csv", "since": "1h"})
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    assert [row[0] for row in rows] == [
        "User",
        "alice@example.com",
        "bob@example.com",
        "Carol",
        "'=HYPERLINK(1)",
    ]
    assert not any(ALICE in cell for row in rows for cell in row)


def test_metrics_keep_the_id_label_and_name_users_in_an_info_metric(team: InProcessServer) -> None:
    text = team.get("/metrics").text
    assert f'user_id="{CAROL}"' in text
    info = sorted(line for line in text.splitlines() if line.startswith("ccmetrics_user_info{"))
    assert info == [
        f'ccmetrics_user_info{{user_id="{ALICE}",user_name="alice@example.com"}} 1.0',
        f'ccmetrics_user_info{{user_id="{BOB}",user_name="bob@example.com"}} 1.0',
        f'ccmetrics_user_info{{user_id="{CAROL}",user_name="Carol"}} 1.0',
        f'ccmetrics_user_info{{user_id="{DAVE}",user_name="d4d4d4d4d4…"}} 1.0',
    ]
    for line in text.splitlines():  # no counter carries a name: a name that changes would split it
        if line.startswith("claude_code_"):
            assert "user_name" not in line


def test_the_email_an_ingest_token_vouches_for_comes_before_the_user_name(
    in_process: InProcessServer,
) -> None:
    from ccmetrics.otlp.decode import Signal
    from ccmetrics.otlp.normalize import to_batch
    from ccmetrics.records import TrustedAttributes

    now = time.time_ns()
    request = sum_request(
        "claude_code.session.count",
        [(now - 10**9, now, 1, {"user.id": ERIN, "session.id": "erin"})],
        resource={"service.name": "claude-code", "user.name": "erin-from-git"},
    )
    batch = to_batch(Signal.METRICS, request, trusted=TrustedAttributes(user_email="erin@example.com"))
    in_process.write(batch)  # as the receiver stores what a token bound to erin@example.com sent
    assert People(in_process.store.reader()).name(ERIN) == "erin@example.com"
    rows = leaderboard(in_process, since="1h")
    assert [(row["key"], row["name"]) for row in rows] == [(ERIN, "erin@example.com")]


# --- the CLI ----------------------------------------------------------------------------------------------


def test_the_cli_sets_lists_and_removes_aliases(tmp_path: Path) -> None:
    assert "No aliases" in alias(tmp_path, "aliases")
    assert "Carol" in alias(tmp_path, "alias", CAROL, "Carol")
    assert alias(tmp_path, "aliases").split() == ["USER.ID", "NAME", CAROL, "Carol"]
    assert '"name": "Carol"' in alias(tmp_path, "aliases", "--json")
    assert "removed" in alias(tmp_path, "alias", CAROL, "--remove")
    result = CliRunner().invoke(main, ["user", "alias", CAROL, "--remove", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0 and "has no alias" in result.output
    result = CliRunner().invoke(main, ["user", "alias", CAROL, "--data-dir", str(tmp_path)])
    assert result.exit_code != 0 and "NAME or --remove" in result.output


def test_a_running_server_shows_a_new_alias_within_seconds(start_server) -> None:
    server: ServerProcess = start_server()
    send_team(server)

    def name_of_dave() -> str:
        response = server.get("/api/panels/leaderboard_users", params={"since": "1h"})
        return {row["key"]: row["name"] for row in response.json()["data"]["rows"]}[DAVE]

    assert name_of_dave() == "d4d4d4d4d4…"
    command = [sys.executable, "-m", "ccmetrics", "user", "alias", DAVE, "Dave"]
    command += ["--data-dir", str(server.data_dir)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + 10
    while name_of_dave() != "Dave":
        assert time.monotonic() < deadline, "the server did not see the alias"
        time.sleep(0.2)
    assert server.process is not None and server.process.poll() is None  # the same process, not restarted
