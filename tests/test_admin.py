"""The admin API behind the admin page: only admins, CSRF on every change, and what it changes is what the
CLI would (a token it makes sends, a person it adds signs in, an alias names a user). In-process, on a real
store and a real access file."""

from __future__ import annotations

import pytest

from ccmetrics.access.store import AccessStore
from ccmetrics.access.tokens import Role

from .in_process import InProcessServer
from .people import ALICE, PASSWORD
from .test_signin import access, bearer, reload, send_usage, sign_in, tokens  # noqa: F401 - fixtures

__all__ = ["access", "tokens"]


def csrf(token: str) -> dict[str, str]:
    return {"x-csrf-token": token}


def test_only_admins_read_or_change_it(in_process: InProcessServer, tokens: dict[str, str]) -> None:
    for role in ("viewer", "ingest"):
        assert in_process.get("/api/admin", headers=bearer(tokens[role])).status_code == 403
    member = in_process.client()
    made = sign_in(member, ALICE)
    refused = member.post(
        "/api/admin/tokens", json={"name": "mine", "role": "admin"}, headers=csrf(made["csrf_token"])
    )
    assert refused.status_code == 403
    assert refused.json() == {"error": "only an admin manages tokens, people and aliases"}
    assert in_process.get("/api/admin").status_code == 401  # nobody signed in
    answer = in_process.get("/api/admin", headers=bearer(tokens["admin"]))
    overview = answer.json()
    assert {t["name"] for t in overview["tokens"]} == set(tokens)
    assert {p["name"] for p in overview["people"]} == {"vera", ALICE, "ada"}
    assert not any(secret in answer.text for secret in tokens.values())  # never a secret
    assert all("password_hash" not in p for p in overview["people"])


def test_an_admins_changes_need_the_csrf_token_and_act_at_once(
    in_process: InProcessServer, tokens: dict[str, str], access: AccessStore
) -> None:
    admin = in_process.client()
    made = sign_in(admin, "ada")
    body = {"name": "laptop", "role": "ingest", "user": "carol@example.com", "expires": "30d"}
    assert admin.post("/api/admin/tokens", json=body).status_code == 403  # no CSRF token
    assert admin.post("/api/admin/tokens", json=body, headers=csrf("wrong")).status_code == 403
    created = admin.post("/api/admin/tokens", json=body, headers=csrf(made["csrf_token"]))
    assert created.status_code == 201, created.text
    secret = created.json()["token"]
    assert "laptop" in {t.name for t in access.tokens()}  # in the file, as `token create` puts it
    reload(in_process)
    send_usage(in_process, secret)  # the new token sends
    carol = admin.get("/api/summary", params={"since": "1d", "filter": "user.email=carol@example.com"})
    assert carol.json()["cost_usd"] > 0  # its user is attached to what it sends

    added = admin.post(
        "/api/admin/people",
        json={"name": "mia", "role": "member", "email": ALICE, "password": PASSWORD},
        headers=csrf(made["csrf_token"]),
    )
    assert added.status_code == 201 and added.json()["email"] == ALICE
    reload(in_process)
    assert sign_in(in_process.client(), "mia")["role"] == "member"

    named = admin.request(
        "PUT", "/api/admin/aliases/user%2F42", json={"name": "Build bot"}, headers=csrf(made["csrf_token"])
    )
    assert named.status_code == 200 and access.aliases() == {"user/42": "Build bot"}

    revoked = admin.request("DELETE", "/api/admin/tokens/laptop", headers=csrf(made["csrf_token"]))
    assert revoked.status_code == 200
    reload(in_process)
    refused = in_process.otlp.post("/v1/metrics", content=b"", headers={"authorization": f"Bearer {secret}"})
    assert refused.status_code == 401
    assert (
        admin.request("DELETE", "/api/admin/people/ada", headers=csrf(made["csrf_token"])).status_code == 400
    )


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/api/admin/tokens", {"name": "t", "role": "root"}, "role is one of ingest, viewer, admin"),
        ("/api/admin/tokens", {"name": "t", "role": "viewer", "expires": "soon"}, None),
        ("/api/admin/tokens", {"name": ["t"], "role": "viewer"}, "name is text"),
        ("/api/admin/tokens", {"name": "admin", "role": "viewer"}, None),  # exists already
        ("/api/admin/people", {"name": "x", "role": "member", "password": PASSWORD}, None),  # no email
        ("/api/admin/people", {"name": "y", "role": "viewer", "password": "short"}, None),
        ("/api/admin/people", {"name": "z" * 100_000, "role": "viewer"}, "the body is too large"),
        ("/api/admin/people", [1, 2], "send a JSON object"),
    ],
)
def test_bad_changes_are_a_400_naming_why_and_change_nothing(
    in_process: InProcessServer,
    tokens: dict[str, str],
    access: AccessStore,
    path: str,
    body: object,
    error: str | None,
) -> None:
    before = (access.tokens(), access.people(), access.aliases())
    answer = in_process.api.post(path, json=body, headers=bearer(tokens["admin"]))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == error if error else answer.json()["error"]
    assert (access.tokens(), access.people(), access.aliases()) == before
    not_json = in_process.api.post(
        path, content=b"{", headers={**bearer(tokens["admin"]), "content-type": "application/json"}
    )
    assert not_json.status_code == 400


def test_an_open_server_lets_the_first_admin_be_added_from_the_page(in_process: InProcessServer) -> None:
    """On loopback with nobody yet, everything is open, the admin page too: the first person closes it."""
    assert in_process.get("/api/admin").json()["people"] == []
    added = in_process.api.post(
        "/api/admin/people", json={"name": "ada", "role": "admin", "password": PASSWORD}
    )
    assert added.status_code == 201
    reload(in_process)
    assert in_process.get("/api/admin").status_code == 401
    assert in_process.get("/admin", follow_redirects=False).headers["location"] == "/signin?next=%2Fadmin"


def test_the_empty_pages_settings_ask_for_a_token_once_exports_need_one(
    in_process: InProcessServer, access: AccessStore
) -> None:
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in in_process.get("/api/config").json()["setup"]["grpc"]
    token = access.create("reader", Role.VIEWER)
    access.create("laptop", Role.INGEST)
    reload(in_process)
    setup = in_process.get("/api/config", headers=bearer(token)).json()["setup"]
    for env in (setup["grpc"], setup["http"]):
        assert env["OTEL_EXPORTER_OTLP_HEADERS"] == "Authorization=Bearer <ingest-token>"
