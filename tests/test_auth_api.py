"""The account API against a real server: every route's success path and its errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
from conftest import PASSWORD, Outbox, login, make_config, signup_verified

from meet.clock import FakeClock
from meet.server import RunningServer, open_server

SIGNUP = "/api/auth/signup"


async def test_signup_answers_ok_and_mails_code_and_link(client: httpx.AsyncClient, outbox: Outbox) -> None:
    r = await client.post(SIGNUP, json={"username": "alice", "email": "Alice@Example.org", "password": PASSWORD})
    assert r.status_code == 201
    assert r.json() == {"ok": True, "email": "Alice@Example.org"}, "no id: a registered email answers the same"
    mail = outbox.last("Alice@Example.org")
    assert len(outbox.code("Alice@Example.org")) == 6
    assert "/verify?token=" in mail.get_content()
    r = await client.post("/api/auth/verify", json={"email": "alice@example.org", "code": outbox.code("Alice@Example.org")})
    user = r.json()["user"]
    assert {k: user[k] for k in ("username", "email", "verified")} == {
        "username": "alice",
        "email": "Alice@Example.org",
        "verified": True,
    }
    assert isinstance(user["id"], int)
    assert "password_hash" not in user


@pytest.mark.parametrize(
    "body, field, code",
    [
        ({"username": "al", "email": "a@example.org", "password": PASSWORD}, "username", "invalid_username"),
        ({"username": "a" * 33, "email": "a@example.org", "password": PASSWORD}, "username", "invalid_username"),
        ({"username": "al ice", "email": "a@example.org", "password": PASSWORD}, "username", "invalid_username"),
        ({"username": "alice", "email": "not-an-email", "password": PASSWORD}, "email", "invalid_email"),
        ({"username": "alice", "email": "a@example.org", "password": "short"}, "password", "invalid_password"),
        ({"username": "alice", "email": "a@example.org", "password": "x" * 1025}, "password", "invalid_password"),
        ({"username": "alice", "email": "a@example.org"}, "password", "missing_field"),
        ({"username": "alice", "email": "a@example.org", "password": 12345678}, "password", "invalid_field"),
        ({"username": "alice", "email": "a@example.org", "password": PASSWORD, "admin": True}, "admin", "unknown_field"),
    ],
)
async def test_signup_rejects_bad_input_naming_the_field(
    client: httpx.AsyncClient, outbox: Outbox, body: dict[str, object], field: str, code: str
) -> None:
    r = await client.post(SIGNUP, json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["field"], error["code"]) == (field, code)
    assert error["message"]
    assert outbox.messages() == []


async def test_username_is_unique_and_a_registered_email_answers_like_a_new_one(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    await signup_verified(client, outbox)
    r = await client.post(SIGNUP, json={"username": "ALICE", "email": "other@example.org", "password": PASSWORD})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "username_taken")
    taken = await client.post(SIGNUP, json={"username": "bob", "email": "ALICE@example.org", "password": PASSWORD})
    fresh = await client.post(SIGNUP, json={"username": "carl", "email": "CARL@example.org", "password": PASSWORD})
    assert taken.status_code == fresh.status_code == 201
    assert taken.json() == {"ok": True, "email": "ALICE@example.org"}
    assert fresh.json() == {"ok": True, "email": "CARL@example.org"}
    mail = outbox.last("alice@example.org")
    assert mail["Subject"] == "Your meet account already exists"
    assert "/signin" in mail.get_content() and "/forgot" in mail.get_content()
    await login(client, "alice")  # nothing changed
    r = await client.post("/api/auth/login", json={"login": "bob", "password": PASSWORD})
    assert r.status_code == 401, "no account bob was made"


async def test_unverified_owner_gets_a_fresh_code_and_keeps_the_account(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    mail = "carol@example.org"
    r = await client.post(SIGNUP, json={"username": "carol1", "email": mail, "password": PASSWORD})
    assert r.status_code == 201
    old_code = outbox.code(mail)
    r = await client.post(SIGNUP, json={"username": "carol2", "email": mail, "password": "another password"})
    assert r.status_code == 201
    assert "tried to sign up again" in outbox.last(mail).get_content()
    new_code = outbox.code(mail)
    if old_code != new_code:
        r = await client.post("/api/auth/verify", json={"email": mail, "code": old_code})
        assert r.status_code == 400
    r = await client.post("/api/auth/verify", json={"email": mail, "code": new_code})
    assert r.status_code == 200
    assert r.json()["user"]["username"] == "carol1"
    await login(client, "carol1")


async def test_verify_with_wrong_code_burns_after_five_tries(client: httpx.AsyncClient, outbox: Outbox) -> None:
    mail = "dave@example.org"
    await client.post(SIGNUP, json={"username": "dave", "email": mail, "password": PASSWORD})
    code = outbox.code(mail)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        r = await client.post("/api/auth/verify", json={"email": mail, "code": wrong})
        assert (r.status_code, r.json()["error"]["field"]) == (400, "code")
    r = await client.post("/api/auth/verify", json={"email": mail, "code": code})
    assert r.status_code == 400, "the right code must not work once burnt"


async def test_verify_code_expires_after_fifteen_minutes(
    client: httpx.AsyncClient, outbox: Outbox, clock: FakeClock
) -> None:
    mail = "erin@example.org"
    await client.post(SIGNUP, json={"username": "erin", "email": mail, "password": PASSWORD})
    clock.advance(15 * 60 + 1)
    r = await client.post("/api/auth/verify", json={"email": mail, "code": outbox.code(mail)})
    assert r.status_code == 400
    r = await client.post("/api/auth/verify/resend", json={"email": mail})
    assert r.status_code == 202
    r = await client.post("/api/auth/verify", json={"email": mail, "code": outbox.code(mail)})
    assert r.status_code == 200


async def test_verify_rejects_malformed_code(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/auth/verify", json={"email": "x@example.org", "code": "12ab"})
    assert (r.status_code, r.json()["error"]["field"]) == (400, "code")


async def test_verification_link_verifies_once(client: httpx.AsyncClient, outbox: Outbox) -> None:
    mail = "frank@example.org"
    await client.post(SIGNUP, json={"username": "frank", "email": mail, "password": PASSWORD})
    link = outbox.link(mail)
    path = link[link.index("/verify") :]
    r = await client.get(path)
    assert r.status_code == 302
    assert r.headers["location"] == "/verify-done?status=ok"
    assert (await client.post("/api/auth/login", json={"login": "frank", "password": PASSWORD})).status_code == 200
    r = await client.get(path)
    assert r.headers["location"] == "/verify-done?status=invalid"
    r = await client.get("/verify?token=forged.token")
    assert r.headers["location"] == "/verify-done?status=invalid"


async def test_resend_answers_202_whatever_the_email(client: httpx.AsyncClient, outbox: Outbox) -> None:
    await signup_verified(client, outbox)
    before = len(outbox.messages())
    for mail in ("nobody@example.org", "alice@example.org"):
        r = await client.post("/api/auth/verify/resend", json={"email": mail})
        assert r.status_code == 202
    assert len(outbox.messages()) == before, "no mail for unknown or verified addresses"


async def test_login_by_username_or_email_sets_cookie_and_token(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    user = await signup_verified(client, outbox)
    for name in ("alice", "ALICE@example.org"):
        r = await client.post("/api/auth/login", json={"login": name, "password": PASSWORD})
        assert r.status_code == 200
        assert r.json()["user"]["id"] == user["id"]
        assert r.json()["token"]
    cookie = r.headers["set-cookie"]
    assert "meet_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http here; https public_url adds it
    assert (await client.get("/api/auth/me")).json()["user"]["username"] == "alice"


async def test_login_failures_look_the_same(client: httpx.AsyncClient, outbox: Outbox) -> None:
    await signup_verified(client, outbox)
    wrong = await client.post("/api/auth/login", json={"login": "alice", "password": "wrong password"})
    unknown = await client.post("/api/auth/login", json={"login": "zed", "password": "wrong password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_login_refused_until_verified(client: httpx.AsyncClient) -> None:
    await client.post(SIGNUP, json={"username": "gina", "email": "gina@example.org", "password": PASSWORD})
    r = await client.post("/api/auth/login", json={"login": "gina", "password": PASSWORD})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_verified")


async def test_login_of_unverified_allowed_when_verification_not_required(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, auth={"require_verification": False})
    async with open_server(config, clock=clock) as running, httpx.AsyncClient(base_url=running.url) as c:
        await c.post(SIGNUP, json={"username": "gina", "email": "gina@example.org", "password": PASSWORD})
        r = await c.post("/api/auth/login", json={"login": "gina", "password": PASSWORD})
        assert r.status_code == 200
        assert r.json()["user"]["verified"] is False


async def test_login_throttled_per_account(client: httpx.AsyncClient, outbox: Outbox, clock: FakeClock) -> None:
    await signup_verified(client, outbox)
    for _ in range(10):
        r = await client.post("/api/auth/login", json={"login": "alice", "password": "wrong password"})
        if r.status_code == 429:  # the growing delay between failures (tests/test_login_throttle.py)
            clock.advance(int(r.headers["Retry-After"]))
            r = await client.post("/api/auth/login", json={"login": "alice", "password": "wrong password"})
        assert r.status_code == 401
    r = await client.post("/api/auth/login", json={"login": "alice", "password": PASSWORD})
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 901
    clock.advance(15 * 60 + 1)
    await login(client)


async def test_login_throttled_per_client_address(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, auth={"login_max_failures_per_address": 10})
    async with open_server(config, clock=clock) as running, httpx.AsyncClient(base_url=running.url) as c:
        await signup_verified(c, Outbox(config.outbox_dir))
        for i in range(10):
            r = await c.post("/api/auth/login", json={"login": f"user{i}", "password": "wrong password"})
            assert r.status_code == 401
        r = await c.post("/api/auth/login", json={"login": "alice", "password": PASSWORD})
        assert r.status_code == 429


async def test_mail_endpoints_are_throttled(client: httpx.AsyncClient, outbox: Outbox, clock: FakeClock) -> None:
    for _ in range(5):
        assert (await client.post("/api/auth/forgot", json={"email": "x@example.org"})).status_code == 202
    r = await client.post("/api/auth/forgot", json={"email": "x@example.org"})
    assert r.status_code == 429 and "Retry-After" in r.headers
    r = await client.post("/api/auth/verify/resend", json={"email": "y@example.org"})
    assert r.status_code == 429, "the per-address limit covers every mail-sending route"
    clock.advance(15 * 60 + 1)
    assert (await client.post("/api/auth/forgot", json={"email": "x@example.org"})).status_code == 202


async def test_me_requires_a_live_session(client: httpx.AsyncClient, outbox: Outbox) -> None:
    assert (await client.get("/api/auth/me")).status_code == 401
    await signup_verified(client, outbox)
    token = await login(client)
    client.cookies.clear()
    assert (await client.get("/api/auth/me")).status_code == 401
    r = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.json()["user"]["username"] == "alice"
    r = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}x"})
    assert r.status_code == 401


async def test_logout_revokes_only_that_session(
    client: httpx.AsyncClient, outbox: Outbox, server: RunningServer
) -> None:
    await signup_verified(client, outbox)
    other = await login(client)
    await login(client)
    cookie = client.cookies.get("meet_session")
    r = await client.post("/api/auth/logout")
    assert r.status_code == 200
    async with httpx.AsyncClient(base_url=server.url, cookies={"meet_session": cookie}) as replayer:
        replay = await replayer.get("/api/auth/me")
    assert replay.status_code == 401, "a logged-out cookie must be dead server-side"
    r = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 200
    r = await client.post("/api/auth/logout", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 200
    r = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 401
    assert (await client.post("/api/auth/logout")).status_code == 401


async def test_sessions_expire(client: httpx.AsyncClient, outbox: Outbox, clock: FakeClock) -> None:
    await signup_verified(client, outbox)
    token = await login(client)
    auth = {"Authorization": f"Bearer {token}"}
    clock.advance(29 * 86400)
    assert (await client.get("/api/auth/me", headers=auth)).status_code == 200
    clock.advance(2 * 86400)
    assert (await client.get("/api/auth/me", headers=auth)).status_code == 401


async def test_password_reset_flow(client: httpx.AsyncClient, outbox: Outbox) -> None:
    await signup_verified(client, outbox)
    token = await login(client)
    before = len(outbox.messages())
    assert (await client.post("/api/auth/forgot", json={"email": "nobody@example.org"})).status_code == 202
    assert len(outbox.messages()) == before, "no mail for an unknown address"
    assert (await client.post("/api/auth/forgot", json={"email": "alice@example.org"})).status_code == 202
    reset_token = outbox.link("alice@example.org").split("token=", 1)[1]
    r = await client.post("/api/auth/reset", json={"token": reset_token, "password": "a brand new secret"})
    assert r.status_code == 200
    r = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, "a reset signs the user out everywhere"
    r = await client.post("/api/auth/login", json={"login": "alice", "password": PASSWORD})
    assert r.status_code == 401
    await login(client, "alice", "a brand new secret")
    r = await client.post("/api/auth/reset", json={"token": reset_token, "password": "yet another secret"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_token")


async def test_reset_token_expires_and_forgeries_fail(
    client: httpx.AsyncClient, outbox: Outbox, clock: FakeClock
) -> None:
    await signup_verified(client, outbox)
    await client.post("/api/auth/forgot", json={"email": "alice@example.org"})
    reset_token = outbox.link("alice@example.org").split("token=", 1)[1]
    clock.advance(3601)
    r = await client.post("/api/auth/reset", json={"token": reset_token, "password": "a brand new secret"})
    assert r.status_code == 400
    for forged in ("", "abc", reset_token[:-2] + "xx"):
        r = await client.post("/api/auth/reset", json={"token": forged, "password": "a brand new secret"})
        assert (r.status_code, r.json()["error"]["field"]) == (400, "token")
    r = await client.post("/api/auth/reset", json={"token": reset_token, "password": "short"})
    assert (r.status_code, r.json()["error"]["field"]) == (400, "password")
    await login(client)


async def test_cross_site_cookie_requests_are_refused(
    client: httpx.AsyncClient, outbox: Outbox, server: RunningServer
) -> None:
    await signup_verified(client, outbox)
    token = await login(client)
    evil = {"Origin": "http://evil.example"}
    r = await client.post("/api/auth/logout", headers=evil)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "cross_origin")
    r = await client.post("/api/auth/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert (await client.get("/api/auth/me")).status_code == 200, "refused requests change nothing"
    r = await client.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}", **evil})
    assert r.status_code == 200, "bearer clients carry no ambient authority"
    await login(client)
    r = await client.post("/api/auth/logout", headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200


async def test_malformed_requests_get_json_errors(client: httpx.AsyncClient) -> None:
    headers = {"Content-Type": "application/json"}
    r = await client.post(SIGNUP, content=b"{not json", headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_json")
    r = await client.post(SIGNUP, content=b"[1, 2]", headers=headers)
    assert r.status_code == 400
    r = await client.post(SIGNUP, data={"username": "x"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_json")
    r = await client.post(SIGNUP, content=b'{"a": "' + b"x" * 70_000 + b'"}', headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")
    r = await client.get("/api/no/such/route")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    r = await client.get(SIGNUP)
    assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed")
    r = await client.delete("/api/auth/me")
    assert r.status_code == 405


async def test_health_ready_and_openapi(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/health")).json() == {"status": "ok"}
    ready = await client.get("/api/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    spec = (await client.get("/api/openapi.json")).json()
    for path in ("signup", "verify", "verify/resend", "login", "logout", "me", "forgot", "reset"):
        assert f"/api/auth/{path}" in spec["paths"]


async def test_ready_reports_503_when_the_database_is_unusable(server: RunningServer, client: httpx.AsyncClient) -> None:
    await server.services.store.close()
    r = await client.get("/api/ready")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"


async def test_password_is_rehashed_when_parameters_change(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path)
    async with open_server(config, clock=clock) as running, httpx.AsyncClient(base_url=running.url) as c:
        outbox = Outbox(config.outbox_dir)
        await signup_verified(c, outbox)
    db = config.database_path

    def stored_hash() -> str:
        with sqlite3.connect(db) as conn:
            return str(conn.execute("SELECT password_hash FROM users").fetchone()[0])

    assert ",t=1," in stored_hash()
    stronger = make_config(tmp_path, auth={"argon2_time_cost": 2})
    async with open_server(stronger, clock=clock) as running, httpx.AsyncClient(base_url=running.url) as c:
        await login(c)
    assert stored_hash().startswith("$argon2id$") and ",t=2," in stored_hash()


async def test_pages_redirect_by_session(client: httpx.AsyncClient, outbox: Outbox) -> None:
    r = await client.get("/")
    assert (r.status_code, r.headers["location"]) == (302, "/signin")
    r = await client.get("/dashboard")
    assert r.headers["location"] == "/signin?next=/dashboard"
    for page in ("/signin", "/signup", "/verify", "/forgot", "/reset", "/verify-done", "/static/css/app.css"):
        r = await client.get(page)
        assert r.status_code == 200, page
        assert "default-src 'self'" in r.headers["content-security-policy"]
    await signup_verified(client, outbox)
    await login(client)
    assert (await client.get("/")).headers["location"] == "/dashboard"
    assert (await client.get("/dashboard")).status_code == 200
    # Path traversal under /static/ is tested with raw request targets in test_static.py.
    r = await client.get("/no-such-page")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
