"""People sign in; the dashboard, the API, ``/api/live`` and ``/metrics`` need a reader once any token or
person exists; a member sees only their own data; CSRF and throttling. In-process (the dashboard app through
httpx's ASGI transport, on a real store and a real access file), and the CLI against a real data dir."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccmetrics.access.people import WebRole
from ccmetrics.access.store import AccessStore
from ccmetrics.access.throttle import Throttle
from ccmetrics.access.tokens import Role
from ccmetrics.cli import main
from ccmetrics.web.auth import local_path

from .in_process import Client, InProcessServer
from .people import ALICE, BOB, PASSWORD, TOTAL_COST, USAGE, exports

RANGE = {"since": "1d"}


def send_usage(server: InProcessServer, token: str | None = None) -> None:
    headers = {"content-type": "application/x-protobuf"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    for path, body in exports():
        assert server.otlp.post(path, content=body, headers=headers).status_code == 200


@pytest.fixture
def access(in_process: InProcessServer) -> Iterator[AccessStore]:
    """The access file of the in-process server, written as the CLI does, through a connection of its own."""
    access = AccessStore(in_process.store.path.parent / "access.db")
    yield access
    access.close()


def reload(server: InProcessServer) -> None:
    """What the server does within a second of a change by the CLI, done now."""
    keyring = server.gate.keyring
    keyring._next_check = 0.0
    keyring.refresh()


@pytest.fixture
def tokens(in_process: InProcessServer, access: AccessStore) -> dict[str, str]:
    send_usage(in_process)  # while ingest is open
    made = {role.value: access.create(role.value, role) for role in Role}
    access.add_person("vera", WebRole.VIEWER, password=PASSWORD)
    access.add_person(ALICE, WebRole.MEMBER, password=PASSWORD)
    access.add_person("ada", WebRole.ADMIN, password=PASSWORD)
    reload(in_process)
    return made


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def sign_in(client: Client, name: str, password: str = PASSWORD, **headers: str) -> dict:
    response = client.post("/api/signin", json={"name": name, "password": password}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def cost(client: Client, *filters: str, **headers: str) -> float:
    response = client.get("/api/summary", params={**RANGE, "filter": list(filters)}, headers=headers)
    assert response.status_code == 200, response.text
    return float(response.json()["cost_usd"])


def test_without_tokens_or_people_everything_is_open_on_loopback(in_process: InProcessServer) -> None:
    send_usage(in_process)
    assert cost(in_process.api) == TOTAL_COST
    assert in_process.get("/metrics").status_code == 200
    me = in_process.get("/api/me").json()
    assert me["auth"] is False and me["via"] == "open" and me["sees"] == "all"


def test_without_a_reader_the_api_is_a_401_and_a_page_a_redirect_to_sign_in(
    in_process: InProcessServer, tokens: dict[str, str]
) -> None:
    for path in (
        "/api/summary",
        "/api/dashboard",
        "/api/live",
        "/metrics",
        "/api/status",
        "/api/me",
        "/api/config",
    ):
        answer = in_process.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"] == "Bearer"
        assert "sign in" in answer.json()["error"]
    page = in_process.get("/session/s1?since=7d")
    assert page.status_code == 303
    assert page.headers["location"] == "/signin?next=%2Fsession%2Fs1%3Fsince%3D7d"
    assert in_process.get("/").headers["location"] == "/signin?next=%2F"
    assert in_process.get("/alerts").headers["location"] == "/signin?next=%2Falerts"
    assert in_process.get("/api/alerts").status_code == 401
    # What signing in needs stays open.
    assert in_process.get("/api/health").status_code == 200
    signin = in_process.get("/signin")
    assert signin.status_code == 200 and "default-src 'self'" in signin.headers["content-security-policy"]
    assert in_process.get("/static/signin.js").status_code == 200
    assert in_process.get("/static/style.css").status_code == 200
    assert in_process.get("/favicon.ico").status_code == 204
    assert in_process.get("/static/dashboard.js").status_code == 401


def test_tokens_viewer_and_admin_read_an_ingest_token_reads_nothing(
    in_process: InProcessServer, tokens: dict[str, str]
) -> None:
    for role in ("viewer", "admin"):
        assert cost(in_process.api, **bearer(tokens[role])) == TOTAL_COST
        assert in_process.get("/metrics", headers=bearer(tokens[role])).status_code == 200
        assert in_process.get("/api/status", headers=bearer(tokens[role])).status_code == 200
        me = in_process.get("/api/me", headers=bearer(tokens[role])).json()
        assert (me["role"], me["via"], me["csrf_token"]) == (role, "token", None)
    refused = in_process.get("/api/summary", headers=bearer(tokens["ingest"]))
    assert refused.status_code == 403
    assert refused.json() == {"error": "the token 'ingest' is an ingest token: it may send data, not read it"}
    assert in_process.get("/metrics", headers=bearer(tokens["ingest"])).status_code == 403
    # doctor asks whether its probe landed with the token it sent it with.
    probe = in_process.get(f"/api/probes/{uuid.uuid4()}", headers=bearer(tokens["ingest"]))
    assert probe.status_code == 200 and probe.json()["stored"] is False
    for wrong in ("ccm_wrong", "", tokens["viewer"] + "x"):
        assert in_process.get("/api/summary", headers=bearer(wrong)).status_code == 401


def test_sign_in_sets_a_session_cookie_and_me_names_the_person(
    in_process: InProcessServer, tokens: dict[str, str]
) -> None:
    response = in_process.api.post("/api/signin", json={"name": "vera", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["role"]) == ("vera", "viewer") and len(body["csrf_token"]) >= 32
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("ccmetrics_session=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path=/", "samesite=lax", "max-age=43200"} <= flags
    assert "secure" not in flags
    value = cookie.split(";")[0].partition("=")[2]
    files = b"".join(p.read_bytes() for p in in_process.store.path.parent.glob("access.db*"))
    assert value.encode() not in files  # only its SHA-256 is kept

    assert cost(in_process.api) == TOTAL_COST
    me = in_process.get("/api/me").json()
    assert me == {
        "auth": True,
        "name": "vera",
        "role": "viewer",
        "email": None,
        "via": "session",
        "csrf_token": body["csrf_token"],
        "sees": "all",
    }
    assert in_process.get("/").status_code == 200


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(
    in_process: InProcessServer, tokens: dict[str, str]
) -> None:
    wrong = in_process.api.post("/api/signin", json={"name": "vera", "password": "not it at all"})
    unknown = in_process.api.post("/api/signin", json={"name": "nobody", "password": "not it at all"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "wrong name or password"}
    assert "set-cookie" not in wrong.headers
    bad = in_process.api.post("/api/signin", content=b"name=vera", headers={"content-type": "text/plain"})
    assert bad.status_code == 400


def test_a_member_sees_only_their_own_data_whatever_they_ask(
    in_process: InProcessServer, tokens: dict[str, str]
) -> None:
    alice, bob = USAGE
    sign_in(in_process.api, ALICE)
    me = in_process.get("/api/me").json()
    assert (me["role"], me["email"], me["sees"]) == ("member", ALICE, "own")
    assert cost(in_process.api) == alice.cost
    assert cost(in_process.api, f"user.email={BOB}") == 0  # a filter cannot widen it
    assert cost(in_process.api, "team.id=web") == alice.cost

    dashboard = in_process.get_json("/api/dashboard", **RANGE)
    assert dashboard["panels"]["cost"]["value"] == alice.cost
    assert dashboard["panels"]["sessions"]["value"] == len(alice.sessions)
    emails = {user["email"] for user in dashboard["choices"]["filters"]["users"]}
    assert emails == {ALICE}
    assert in_process.get_json("/api/filters", q="bob")["users"] == []
    assert in_process.get_json("/api/filters", key="user.email")["values"] == [ALICE]
    assert in_process.get_json("/api/panels/cost", **RANGE)["data"]["value"] == alice.cost
    csv = in_process.get("/api/panels/leaderboard_users", params={**RANGE, "format": "csv"}).text
    assert ALICE in csv and BOB not in csv

    # Another person's session, and their events, show nothing of theirs.
    theirs = in_process.get_json(f"/api/sessions/{bob.session}")
    assert theirs["summary"]["cost_usd"] == 0 and theirs["session"] is None and theirs["timeline"] == []
    assert in_process.get_json("/api/events", session=bob.session)["events"] == []
    own = in_process.get_json(f"/api/sessions/{alice.session}")
    assert own["summary"]["cost_usd"] == alice.cost and own["timeline"]
    events = in_process.get_json("/api/events", **RANGE)["events"]
    assert events and {e["attributes"]["user.email"] for e in events} == {ALICE}

    for path in ("/metrics", "/api/status"):
        assert in_process.get(path).status_code == 403

    # A viewer, in another browser, sees everyone's.
    viewer = in_process.client()
    sign_in(viewer, "vera")
    assert cost(viewer) == TOTAL_COST and cost(viewer, f"user.email={BOB}") == bob.cost
    assert len(viewer.get("/api/events", params={"session": bob.session}).json()["events"]) == 1


def test_state_changing_requests_need_the_sessions_csrf_token_and_this_origin(
    in_process: InProcessServer, tokens: dict[str, str]
) -> None:
    csrf = sign_in(in_process.api, "vera")["csrf_token"]
    cookie = in_process.api._client.cookies["ccmetrics_session"]
    missing = in_process.api.post("/api/signout")
    assert missing.status_code == 403 and "X-CSRF-Token" in missing.json()["error"]
    assert in_process.api.post("/api/signout", headers={"x-csrf-token": "guess"}).status_code == 403
    foreign = in_process.api.post(
        "/api/signout", headers={"x-csrf-token": csrf, "origin": "https://evil.example"}
    )
    assert foreign.status_code == 403 and "another site" in foreign.json()["error"]
    assert cost(in_process.api) == TOTAL_COST  # still signed in

    out = in_process.api.post(
        "/api/signout", headers={"x-csrf-token": csrf, "origin": "http://127.0.0.1:3000"}
    )
    assert out.status_code == 200 and out.json() == {"signed_out": True}
    assert 'ccmetrics_session=""' in out.headers["set-cookie"]
    # The old cookie no longer works, even sent again by hand: the session is gone from the server.
    other = in_process.client()
    assert other.get("/api/summary", headers={"cookie": f"ccmetrics_session={cookie}"}).status_code == 401
    access = AccessStore(in_process.store.path.parent / "access.db")
    assert access.sessions() == {}
    access.close()


def test_bearer_requests_need_no_csrf_token(in_process: InProcessServer, tokens: dict[str, str]) -> None:
    answer = in_process.api.post("/api/signout", headers=bearer(tokens["viewer"]))
    assert answer.status_code == 200 and answer.json() == {"signed_out": False}


def test_sign_in_from_another_site_is_refused(in_process: InProcessServer, tokens: dict[str, str]) -> None:
    for header in ({"origin": "https://evil.example"}, {"referer": "https://evil.example/login"}):
        answer = in_process.api.post(
            "/api/signin", json={"name": "vera", "password": PASSWORD}, headers=header
        )
        assert answer.status_code == 403
    sign_in(in_process.api, "vera", origin="http://127.0.0.1:3000")


def test_a_form_sign_in_goes_to_a_local_next_only(
    in_process: InProcessServer, tokens: dict[str, str]
) -> None:
    form = {"name": "vera", "password": PASSWORD, "next": "/session/s1?since=7d"}
    answer = in_process.api.post("/api/signin", data=form)
    assert answer.status_code == 303 and answer.headers["location"] == "/session/s1?since=7d"
    answer = in_process.client().post("/api/signin", data={**form, "next": "//evil.example/x"})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    failed = in_process.client().post("/api/signin", data={**form, "password": "wrong password"})
    assert failed.status_code == 303 and failed.headers["location"].startswith("/signin?error=1")


@pytest.mark.parametrize(
    ("target", "went"),
    [
        ("/", "/"),
        ("/session/a?x=1", "/session/a?x=1"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/\r\nLocation: x", "/"),
        (None, "/"),
    ],
)
def test_next_is_a_local_path(target: str | None, went: str) -> None:
    assert local_path(target) == went


def test_failed_sign_ins_are_throttled(in_process: InProcessServer, tokens: dict[str, str]) -> None:
    for _ in range(5):
        answer = in_process.api.post("/api/signin", json={"name": "vera", "password": "wrong password"})
        assert answer.status_code == 401
    throttled = in_process.api.post("/api/signin", json={"name": "vera", "password": PASSWORD})
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["retry-after"]) <= 15 * 60
    # The same address is held back for another name too.
    other = in_process.api.post("/api/signin", json={"name": "ada", "password": PASSWORD})
    assert other.status_code == 429


def test_the_throttle_forgets_after_its_window_and_holds_a_bounded_memory() -> None:
    now = [0.0]
    throttle = Throttle(max_failures=3, window_s=60, remembered=100, clock=lambda: now[0])
    for _ in range(3):
        throttle.failed("name:x", "address:1")
    assert throttle.wait_s("name:x") == 60 and throttle.wait_s("address:1") == 60
    assert throttle.wait_s("name:y", "address:2") == 0
    now[0] = 59.5
    assert throttle.wait_s("name:x") == 1
    now[0] = 60.0
    assert throttle.wait_s("name:x", "address:1") == 0
    for n in range(100_000):
        throttle.failed(f"name:{n}", f"address:{n}")
    assert len(throttle._failures) <= 200


def test_under_tls_the_cookie_is_secure_and_host_only(tmp_path: Path) -> None:
    server = InProcessServer(
        tmp_path / "tls",
        base_url="https://127.0.0.1:3000",
        tls_cert=tmp_path / "cert.pem",
        tls_key=tmp_path / "key.pem",
    )
    try:
        access = AccessStore(tmp_path / "tls" / "access.db")
        access.add_person("vera", WebRole.VIEWER, password=PASSWORD)
        access.close()
        reload(server)
        response = server.api.post("/api/signin", json={"name": "vera", "password": PASSWORD})
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("__Host-ccmetrics_session=")
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"secure", "httponly", "path=/", "samesite=lax"} <= flags
        assert not any(flag.startswith("domain") for flag in flags)
        assert server.get("/api/me").json()["name"] == "vera"
    finally:
        server.close()


def test_removing_a_person_or_changing_their_password_ends_their_sessions(
    in_process: InProcessServer, access: AccessStore, tokens: dict[str, str]
) -> None:
    vera, ada = in_process.client(), in_process.client()
    sign_in(vera, "vera")
    sign_in(ada, "ada")
    access.set_password("vera", "a new password")
    reload(in_process)
    assert vera.get("/api/summary").status_code == 401
    assert cost(ada) == TOTAL_COST
    access.remove_person("ada")
    reload(in_process)
    assert ada.get("/api/summary").status_code == 401
    sign_in(vera, "vera", "a new password")
    assert cost(vera) == TOTAL_COST


# --- the CLI ------------------------------------------------------------------------------------------------


def cli(data_dir: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_user_commands(tmp_path: Path) -> None:
    code, out, err = cli(
        tmp_path, "user", "add", ALICE, "--role", "member", "--password-stdin", stdin=PASSWORD
    )
    assert code == 0, err
    assert f"sees the data of {ALICE} only" in out
    code, _, err = cli(tmp_path, "user", "add", "bob", "--role", "member", "--password-stdin", stdin=PASSWORD)
    assert code == 1 and "give it with --email" in err
    code, _, err = cli(
        tmp_path, "user", "add", "bob", "--role", "member", "--email", BOB, "--password-stdin", stdin=PASSWORD
    )
    assert code == 0, err
    code, _, err = cli(tmp_path, "user", "add", "sso", "--role", "viewer", "--no-password")
    assert code == 0, err
    code, _, err = cli(tmp_path, "user", "add", "short", "--role", "viewer", "--password-stdin", stdin="abc")
    assert code == 1 and "at least 8 characters" in err
    code, _, err = cli(tmp_path, "user", "add", ALICE, "--role", "admin", "--password-stdin", stdin=PASSWORD)
    assert code == 1 and "exists already" in err
    # Asked twice, hidden.
    code, out, err = cli(tmp_path, "user", "add", "ada", "--role", "admin", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 0, err
    assert PASSWORD not in out + err

    code, out, _ = cli(tmp_path, "user", "list", "--json")
    listed = {p["name"]: p for p in json.loads(out)}
    assert listed[ALICE]["role"] == "member" and listed[ALICE]["email"] == ALICE
    assert listed["bob"]["email"] == BOB and listed["sso"]["has_password"] is False
    assert listed["ada"]["has_password"] is True
    assert "hash" not in out and "argon2" not in out
    code, out, _ = cli(tmp_path, "user", "list")
    assert code == 0 and "proxy" in out and "password" in out

    access = AccessStore(tmp_path / "access.db")
    stored = access.password_hash("ada")
    assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored
    assert access.has_credentials()
    access.close()

    assert cli(tmp_path, "user", "passwd", "ada", "--password-stdin", stdin="another password")[0] == 0
    code, _, err = cli(tmp_path, "user", "passwd", "nobody", "--password-stdin", stdin="another password")
    assert code == 1 and "no person named 'nobody'" in err
    assert cli(tmp_path, "user", "remove", "bob")[0] == 0
    code, _, err = cli(tmp_path, "user", "remove", "bob")
    assert code == 1 and "no person named 'bob'" in err
    assert "bob" not in cli(tmp_path, "user", "list")[1]


def test_people_count_as_credentials_and_the_file_constrains_roles(tmp_path: Path) -> None:
    access = AccessStore(tmp_path / "access.db")
    assert not access.has_credentials()
    access.add_person("vera", WebRole.VIEWER)
    assert access.has_credentials()
    import sqlite3

    with pytest.raises(sqlite3.IntegrityError):
        access.conn.execute("INSERT INTO users (name, role, created_ns) VALUES ('x', 'root', 0)")
    with pytest.raises(sqlite3.IntegrityError):  # a member always has an email
        access.conn.execute("INSERT INTO users (name, role, created_ns) VALUES ('x', 'member', 0)")
    access.close()


def test_signing_in_does_not_hold_up_the_event_loop(
    in_process: InProcessServer, tokens: dict[str, str]
) -> None:
    """A sign-in verifies its password on a thread: the health check answers meanwhile."""
    import asyncio

    import httpx

    async def both() -> float:
        transport = httpx.ASGITransport(app=in_process.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:3000") as client:
            signing_in = asyncio.ensure_future(
                client.post("/api/signin", json={"name": "vera", "password": "wrong password"})
            )
            await asyncio.sleep(0.005)
            started = time.perf_counter()
            assert (await client.get("/api/health")).status_code == 200
            took = time.perf_counter() - started
            assert not signing_in.done()
            assert (await signing_in).status_code == 401
            return took

    assert in_process._loop.run_until_complete(both()) < 0.02
