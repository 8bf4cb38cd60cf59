"""Signing in, roles, CSRF and the admin page in a real browser (Playwright driving Debian's Chromium) against
a real ``ccmetrics serve``, with people and tokens made by the real CLI and two people's data sent with an
ingest token; and sign-on through a trusted proxy, over real sockets."""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from .browser import shot, wait_stat
from .conftest import ServerProcess
from .otlp_builders import SECOND, sum_request
from .people import ALICE, BOB, PASSWORD, TOTAL_COST, USAGE, exports

DASHBOARD = "/?range=24h"
SUMMARY = "/api/summary?since=1d"
COOKIE = "ccmetrics_session"
TOKEN_SHAPE = re.compile(r"ccm_[A-Za-z0-9_-]{43}")


def ccmetrics(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    """The real CLI, in a process of its own, on ``data_dir``; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "ccmetrics", *args, "--data-dir", str(data_dir)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def add_person(data_dir: Path, name: str, role: str, *options: str) -> None:
    ccmetrics(data_dir, "user", "add", name, "--role", role, *options, "--password-stdin", stdin=PASSWORD)


def token_names(data_dir: Path) -> set[str]:
    return {token["name"] for token in json.loads(ccmetrics(data_dir, "token", "list", "--json"))}


def export(server: ServerProcess, path: str, body: bytes, token: str) -> int:
    """One OTLP/HTTP export with ``token``; the status it got."""
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"}
    return httpx.post(server.otlp_http + path, content=body, headers=headers, timeout=10).status_code


def poll(check: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """``check()`` until it gives something true, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or check}")
        time.sleep(0.05)


@dataclass
class Team:
    """A running server that needs sign-in, with three people (a viewer, a member, an admin), an ingest
    token, and the data of ALICE and BOB."""

    server: ServerProcess
    ingest: str

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir


@pytest.fixture
def team(start_server: Callable[..., ServerProcess], tmp_path: Path) -> Team:
    return start_team(start_server, tmp_path / "team")


def start_team(start_server: Callable[..., ServerProcess], data_dir: Path, *serve_args: str) -> Team:
    data_dir.mkdir(parents=True)
    ingest = ccmetrics(data_dir, "token", "create", "ingest", "--role", "ingest").strip()
    add_person(data_dir, "vera", "viewer")
    add_person(data_dir, ALICE, "member")
    add_person(data_dir, "ada", "admin")
    server = start_server(data_dir, *serve_args)
    for path, body in exports():
        assert export(server, path, body, ingest) == 200
    return Team(server, ingest)


def sign_in(page: Any, server: ServerProcess, name: str, target: str = DASHBOARD) -> None:
    """Ask for ``target``, be sent to the sign-in page, sign in there, and land on ``target``."""
    page.goto(server.url + target)
    page.wait_for_url(f"{server.url}/signin?**")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url(server.url + target)
    page.wait_for_selector("#who")


def fetch(page: Any, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> dict:
    """A fetch from the page, as its own scripts make them (same origin, its cookies): status and body."""
    return page.evaluate(
        """async ([path, method, headers]) => {
            const response = await fetch(path, { method, headers });
            const text = await response.text();
            let body = null;
            try { body = JSON.parse(text); } catch (e) { body = text; }
            return { status: response.status, body };
        }""",
        [path, method, headers or {}],
    )


def user_choices(page: Any) -> dict[str, str]:
    """The dashboard's user filter: each user's shown name, and the user.id it filters by."""
    options = page.locator("#user option").evaluate_all("os => os.map(o => [o.textContent, o.value])")
    return {text: value for text, value in options if value}


# --- 1. signing in and out ----------------------------------------------------------------------------------


def test_sign_in_goes_where_asked_and_sign_out_ends_the_session(team: Team, page: Any) -> None:
    server = team.server
    page.goto(server.url + DASHBOARD)
    page.wait_for_url(f"{server.url}/signin?next={quote(DASHBOARD, safe='')}")
    assert page.locator("#signin").is_visible() and page.locator("#signin-error").is_hidden()
    assert page.locator("#who").count() == 0 and page.locator("#admin-link").count() == 0
    shot(page, "signin")

    # A wrong password: the page says so and stays.
    page.fill("#name", "vera")
    page.fill("#password", "not the password")
    page.click("#submit")
    page.wait_for_selector("#signin-error:not([hidden])")
    assert page.locator("#signin-error").inner_text() == "Wrong name or password."
    assert page.url.startswith(f"{server.url}/signin?") and page.input_value("#password") == ""
    assert not [c for c in page.context.cookies() if c["name"] == COOKIE]
    shot(page, "signin-wrong-password")

    # The right one: to the page asked for, query string and all.
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url(server.url + DASHBOARD)
    wait_stat(page, "cost", f"${TOTAL_COST:.4f}")
    assert set(user_choices(page)) == {ALICE, BOB}
    page.wait_for_selector("#who")
    assert page.locator("#who").text_content() == "vera · viewer"
    (cookie,) = [c for c in page.context.cookies() if c["name"] == COOKIE]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    assert page.evaluate("document.cookie") == ""  # out of the page's scripts' reach
    shot(page, "dashboard-signed-in")

    # Sign out: back to the sign-in page, and the old cookie, sent again by hand, opens nothing.
    old = {COOKIE: cookie["value"]}
    assert httpx.get(server.url + SUMMARY, cookies=old, timeout=10).status_code == 200
    page.click("#signout")
    page.wait_for_url(f"{server.url}/signin**")
    page.wait_for_selector("#signin")
    assert not [c for c in page.context.cookies() if c["name"] == COOKIE]
    assert httpx.get(server.url + SUMMARY, cookies=old, timeout=10).status_code == 401
    page.goto(server.url + DASHBOARD)
    page.wait_for_url(f"{server.url}/signin?**")

    # A session's page asked for while signed out is where signing in leads.
    bob = USAGE[1]
    sign_in(page, server, "vera", f"/session/{bob.session}?range=24h")
    page.wait_for_selector("#timeline li[data-event]")
    assert page.locator("#session-id").inner_text() == bob.session
    events = page.locator("#timeline li").evaluate_all("els => els.map(e => e.dataset.event)")
    assert events == ["api_request"]
    assert page.errors == []


# --- 2. roles -----------------------------------------------------------------------------------------------


def test_a_member_sees_their_own_numbers_and_a_viewer_everyones(team: Team, new_page: Any) -> None:
    server = team.server
    alice, bob = USAGE
    member = new_page()
    sign_in(member, server, ALICE)
    wait_stat(member, "cost", f"${alice.cost:.4f}")
    assert member.locator("#who").text_content() == f"{ALICE} · member"
    assert list(user_choices(member)) == [ALICE]
    assert ALICE in member.locator('[data-panel="leaderboard_users"] tbody').inner_text()
    assert BOB not in member.locator("body").inner_text()
    # The API from the page says the same, whatever it is asked.
    assert fetch(member, SUMMARY)["body"]["cost_usd"] == alice.cost
    theirs = fetch(member, f"{SUMMARY}&filter={quote(f'user.email={BOB}')}")
    assert theirs["status"] == 200 and theirs["body"]["cost_usd"] == 0
    assert fetch(member, "/api/filters?q=bob")["body"]["users"] == []
    assert fetch(member, "/metrics")["status"] == 403
    assert fetch(member, "/api/admin")["status"] == 403
    assert member.locator("#admin-link").count() == 0
    # Bob's session, opened by its URL, shows nothing of his.
    member.goto(f"{server.url}/session/{bob.session}?range=24h")
    member.wait_for_selector("#facts > *")
    assert member.locator("#timeline li[data-event]").count() == 0
    assert f"${bob.cost:.4f}" not in member.locator("main").inner_text()
    member.goto(f"{server.url}/session/{alice.session}?range=24h")
    member.wait_for_selector("#timeline li[data-event]")
    assert f"${alice.cost:.4f}" in member.locator("main").inner_text()

    viewer = new_page()
    sign_in(viewer, server, "vera")
    wait_stat(viewer, "cost", f"${TOTAL_COST:.4f}")
    assert set(user_choices(viewer)) == {ALICE, BOB}
    viewer.select_option("#user", user_choices(viewer)[BOB])
    wait_stat(viewer, "cost", f"${bob.cost:.4f}")
    assert fetch(viewer, "/metrics")["status"] == 200
    assert viewer.locator("#admin-link").count() == 0

    # /admin is an admin's: a viewer who opens it is told so, and shown no tables or forms.
    viewer.goto(server.url + "/admin")
    viewer.wait_for_selector("#admin-error:not([hidden])")
    assert "only an admin" in viewer.locator("#admin-error").inner_text()
    assert viewer.locator("table").evaluate_all("ts => ts.filter(t => t.checkVisibility()).length") == 0
    assert viewer.locator("form").evaluate_all("fs => fs.filter(f => f.checkVisibility()).length") == 0
    assert viewer.locator("#admin-link").count() == 0
    assert member.errors == [] and viewer.errors == []


# --- 3. CSRF ------------------------------------------------------------------------------------------------


class OtherSite:
    """A second web server on another port of this machine: another origin, serving the pages it is given."""

    def __init__(self) -> None:
        pages: dict[str, bytes] = {}
        self.pages = pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                body = pages.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def auto_submit(self, path: str, action: str, fields: dict[str, str]) -> str:
        """A page that posts a form to ``action`` as soon as it loads; its URL."""
        inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
        script = "<script>document.forms[0].submit()</script>"
        html = f'<form method="post" action="{action}">{inputs}</form>{script}'
        self.pages[path] = html.encode()
        return self.url + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def other_site() -> Iterator[OtherSite]:
    site = OtherSite()
    yield site
    site.close()


def test_changes_need_the_csrf_token_and_a_form_elsewhere_changes_nothing(
    team: Team, new_page: Any, other_site: OtherSite
) -> None:
    server = team.server
    admin = new_page()
    sign_in(admin, server, "ada")
    before = token_names(team.data_dir)
    assert before == {"ingest"}

    # From the signed-in page itself, without X-CSRF-Token: refused, and nothing changes.
    json_headers = {"Content-Type": "application/json"}
    for path, headers in (("/api/signout", {}), ("/api/admin/tokens", json_headers)):
        refused = fetch(admin, path, "POST", headers)
        assert refused["status"] == 403, path
        assert "X-CSRF-Token" in refused["body"]["error"]
    assert fetch(admin, "/api/me")["body"]["name"] == "ada"  # still signed in

    # A form on another origin, posting with the admin's cookie (127.0.0.1 on another port is the same site,
    # so Chromium sends the SameSite=Lax cookie along): refused as coming from elsewhere.
    evil = other_site.auto_submit(
        "/token", f"{server.url}/api/admin/tokens", {"name": "evil", "role": "admin"}
    )
    with admin.expect_response(f"{server.url}/api/admin/tokens") as answer:
        admin.goto(evil)
    assert answer.value.status == 403
    assert "another site" in answer.value.json()["error"]
    assert answer.value.request.headers["origin"] == other_site.url

    # Login CSRF: a form elsewhere cannot sign this browser in, as anyone.
    stranger = new_page()
    evil = other_site.auto_submit(
        "/signin", f"{server.url}/api/signin", {"name": "ada", "password": PASSWORD, "next": "/admin"}
    )
    with stranger.expect_response(f"{server.url}/api/signin") as answer:
        stranger.goto(evil)
    assert answer.value.status == 403
    assert not [c for c in stranger.context.cookies() if c["name"] == COOKIE]
    stranger.goto(server.url + "/admin")
    stranger.wait_for_url(f"{server.url}/signin?next=%2Fadmin")

    assert token_names(team.data_dir) == before
    admin.goto(server.url + DASHBOARD)
    assert fetch(admin, "/api/me")["body"]["name"] == "ada"  # still signed in

    # With the session's token, from the page's own origin, the same sign-out goes through.
    csrf = fetch(admin, "/api/me")["body"]["csrf_token"]
    out = fetch(admin, "/api/signout", "POST", {"X-CSRF-Token": csrf})
    assert out["status"] == 200 and out["body"] == {"signed_out": True}
    assert fetch(admin, "/api/me")["status"] == 401


# --- 4. the admin page --------------------------------------------------------------------------------------

BOT_ID = "b07" * 21 + "b"  # a user.id whose data names no email and no user.name


def bot_export(now_ns: int) -> bytes:
    point = (now_ns - SECOND, now_ns, 0.5, {"user.id": BOT_ID, "session.id": "bot-1", "model": "m"})
    return sum_request("claude_code.cost.usage", [point], unit="USD").SerializeToString()


def test_the_admin_page_makes_tokens_people_and_names_that_work(team: Team, new_page: Any) -> None:
    server = team.server
    admin = new_page(accept_dialogs=True)
    sign_in(admin, server, "ada")
    admin.click("#admin-link")
    admin.wait_for_url(server.url + "/admin")
    admin.wait_for_selector("#tokens tbody tr")
    assert admin.locator("#who").text_content() == "ada · admin"

    # A new ingest token, shown once, that really sends.
    admin.fill("#token-form [name=name]", "laptop")
    admin.select_option("#token-form [name=role]", "ingest")
    admin.click("#token-form button[type=submit]")
    admin.wait_for_selector("#new-token:not([hidden])")
    secret = admin.locator("#new-token-secret").inner_text()
    assert TOKEN_SHAPE.fullmatch(secret), secret
    assert admin.locator("#new-token-name").inner_text() == "laptop"
    row = admin.locator("#tokens tbody tr", has_text="laptop")
    assert row.count() == 1 and "ingest" in row.inner_text()
    assert "laptop" in token_names(team.data_dir)
    bot = bot_export(time.time_ns())
    poll(lambda: export(server, "/v1/metrics", bot, secret) == 200, what="the new token is accepted")
    assert export(server, "/v1/metrics", bot, "ccm_" + "A" * 43) == 401

    # A member added on the page signs in, in another browser, and is who the page said.
    admin.fill("#person-form [name=name]", "carol")
    admin.select_option("#person-form [name=role]", "member")
    admin.fill("#person-form [name=email]", "carol@example.com")
    admin.fill("#person-form [name=password]", PASSWORD)
    admin.click("#person-form button[type=submit]")
    admin.wait_for_selector("#people tbody tr:has-text('carol')")
    assert admin.locator("#admin-error").is_hidden()
    carol = new_page()
    sign_in(carol, server, "carol")
    assert carol.locator("#who").text_content() == "carol · member"
    me = fetch(carol, "/api/me")["body"]
    assert (me["role"], me["email"], me["sees"]) == ("member", "carol@example.com", "own")

    # A name for the bot's user.id: the dashboard's leaderboard and user filter show it.
    admin.fill("#alias-form [name=user_id]", BOT_ID)
    admin.fill("#alias-form [name=name]", "Build Bot")
    admin.click("#alias-form button[type=submit]")
    admin.wait_for_selector("#aliases tbody tr:has-text('Build Bot')")
    assert admin.locator("#new-token").is_visible()
    shot(admin, "admin")
    poll(
        lambda: any(u["name"] == "Build Bot" for u in fetch(admin, "/api/filters")["body"]["users"]),
        what="the server names the bot",
    )
    admin.goto(server.url + DASHBOARD)
    wait_stat(admin, "cost", f"${TOTAL_COST + 0.5:.4f}")
    board = admin.locator('[data-panel="leaderboard_users"] tbody').inner_text()
    assert "Build Bot" in board and BOT_ID[:10] not in board
    assert user_choices(admin)["Build Bot"] == BOT_ID

    # The secret was shown once: the admin page, opened again, does not have it.
    admin.goto(server.url + "/admin")
    admin.wait_for_selector("#tokens tbody tr:has-text('laptop')")
    assert admin.locator("#new-token").is_hidden() and secret not in admin.content()

    # Revoked from the page (its confirm() accepted): the token is refused within seconds.
    admin.locator("#tokens tbody tr", has_text="laptop").locator("button.remove").click()
    admin.wait_for_selector("#tokens tbody tr:has-text('laptop')", state="detached")
    assert admin.dialogs == ["Revoke laptop?"]
    assert "laptop" not in token_names(team.data_dir)
    poll(lambda: export(server, "/v1/metrics", bot, secret) == 401, what="the revoked token is refused")
    assert export(server, "/v1/metrics", bot, team.ingest) == 200
    assert admin.errors == [] and carol.errors == []


# --- 5. sign-on through a trusted proxy ---------------------------------------------------------------------

PROXY_HEADER = "X-Forwarded-Email"


def summary(server: ServerProcess, *filters: str, **headers: str) -> httpx.Response:
    params: dict[str, Any] = {"since": "1d", "filter": list(filters)}
    return httpx.get(server.url + "/api/summary", params=params, headers=headers, timeout=10)


def test_a_trusted_proxy_names_the_person_an_untrusted_one_is_ignored(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "sso"
    team = start_team(
        start_server, data_dir, "--auth-proxy-header", PROXY_HEADER, "--trusted-proxies", "127.0.0.1/32"
    )
    ccmetrics(
        data_dir, "user", "add", "viv", "--role", "viewer", "--email", "viv@example.com", "--no-password"
    )
    server = team.server
    alice = USAGE[0]

    # A viewer without a password, named by the proxy (by email), reads everything.
    viv = {PROXY_HEADER: "viv@example.com"}
    # Until the server has read the new person (within a second or two), the proxy's name is a stranger's.
    poll(
        lambda: httpx.get(server.url + "/api/me", headers=viv, timeout=10).json().get("role") == "viewer",
        what="the proxy's viewer known",
    )
    answer = summary(server, **viv)
    assert answer.json()["cost_usd"] == TOTAL_COST
    me = httpx.get(server.url + "/api/me", headers=viv, timeout=10).json()
    assert (me["name"], me["role"], me["via"], me["sees"]) == ("viv", "viewer", "proxy", "all")
    assert httpx.get(server.url + "/metrics", headers=viv, timeout=10).status_code == 200

    # An email the proxy knows and this server does not: their own data only.
    stranger = {PROXY_HEADER: ALICE}
    me = httpx.get(server.url + "/api/me", headers=stranger, timeout=10).json()
    assert (me["name"], me["role"], me["via"], me["sees"]) == (ALICE, "member", "proxy", "own")
    assert summary(server, **stranger).json()["cost_usd"] == alice.cost
    assert summary(server, f"user.email={BOB}", **stranger).json()["cost_usd"] == 0
    assert httpx.get(server.url + "/metrics", headers=stranger, timeout=10).status_code == 403

    # Past the proxy, without the header: nobody.
    assert summary(server).status_code == 401
    assert summary(server, **{PROXY_HEADER: ""}).status_code == 401
    redirect = httpx.get(server.url + "/", timeout=10)
    assert redirect.status_code == 303 and redirect.headers["location"].startswith("/signin?")
    # The proxy's people change nothing without the CSRF token /api/me gives them.
    assert httpx.post(server.url + "/api/signout", headers=viv, timeout=10).status_code == 403

    # Where 127.0.0.1 is not a trusted proxy, the header is anyone's to write, and is ignored.
    server.stop()
    viewer = ccmetrics(data_dir, "token", "create", "reader", "--role", "viewer").strip()
    untrusting = start_server(
        data_dir, "--auth-proxy-header", PROXY_HEADER, "--trusted-proxies", "10.0.0.0/8"
    )
    assert summary(untrusting, **viv).status_code == 401
    assert summary(untrusting, **stranger).status_code == 401
    assert httpx.get(untrusting.url + "/api/me", headers=viv, timeout=10).status_code == 401
    reader = {"Authorization": f"Bearer {viewer}"}
    assert summary(untrusting, **reader).json()["cost_usd"] == TOTAL_COST  # the data is there
