"""The administration API end to end: who may call it, each action and its audit row, disabling
(sessions and sockets end at once, sign-in refused), the last admin kept, bad input, CSRF, rooms
(live first, remove a participant, end a meeting) and the server's figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import PASSWORD, Outbox, User, login, make_config, make_room
from wsclient import WS, join

from meet.config import Config
from meet.server import RunningServer

SECRETS = ("password", "token", PASSWORD, "invite=")
POKE_WAIT = 5.0  # far below the 30 s heartbeat: a close within it came from the disable


@pytest.fixture
def config(tmp_path: Path) -> Config:
    # A 30 s heartbeat: a socket closed within seconds was closed by the disable itself.
    auth = {"mail_max_per_window": 50, "login_free_failures": 1, "login_max_failures": 2}
    return make_config(tmp_path, rooms={"ping_interval": 30.0, "idle_timeout": 60.0}, auth=auth)


@pytest.fixture
async def root(server: RunningServer, client: httpx.AsyncClient) -> User:
    """The server's admin, made as ``meet user add --admin`` does."""
    user = await server.services.accounts.add_user("root", "root@example.org", PASSWORD, admin=True)
    return User(user.id, "root", await login(client, "root"))


async def signed_out(ws: WS) -> None:
    """The socket gets ``error`` ``signed_out``, then close 4401."""
    frames, code = await ws.frames_then_close(POKE_WAIT)
    assert code == 4401, (code, frames)
    assert [f["code"] for f in frames if f["type"] == "error"][-1:] == ["signed_out"], frames


async def audit(client: httpx.AsyncClient, root: User) -> list[dict[str, Any]]:
    r = await client.get("/api/admin/audit", headers=root.auth)
    assert r.status_code == 200, r.text
    return r.json()["entries"]  # type: ignore[no-any-return]


def routes(bob: User, carol_id: int, code: str) -> list[tuple[str, str, dict[str, Any] | None, int]]:
    """Every /api/admin route: (method, path, body, the admin's expected status), in an order
    that leaves each one something to act on."""
    return [
        ("GET", "/api/admin/users?q=bo&limit=5", None, 200),
        ("POST", "/api/admin/users", {"username": "dave", "email": "dave@example.org", "password": PASSWORD}, 201),
        ("GET", f"/api/admin/users/{bob.id}", None, 200),
        ("PATCH", f"/api/admin/users/{carol_id}", {"verified": True}, 200),
        ("POST", f"/api/admin/users/{bob.id}/reset-throttles", None, 200),
        ("POST", "/api/admin/invitations", {"email": "erin@example.org", "send": False}, 201),
        ("GET", "/api/admin/rooms?q=stand", None, 200),
        ("DELETE", f"/api/admin/rooms/{code}/participants/nobody", None, 404),  # reached the service
        ("POST", f"/api/admin/rooms/{code}/end", None, 200),
        ("GET", "/api/admin/server", None, 200),
        ("GET", "/api/admin/audit", None, 200),
        ("DELETE", f"/api/admin/users/{carol_id}", None, 200),
    ]


async def test_every_admin_route_is_for_admins_only(
    client: httpx.AsyncClient, root: User, bob: User, carol: User
) -> None:
    code = await make_room(client, bob)
    table = routes(bob, carol.id, code)
    client.cookies.clear()  # the fixtures' sign-ins left a session cookie
    for method, path, body, expected in table:
        anonymous = await client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.json()["error"]["code"] == "unauthorized"
        refused = await client.request(method, path, json=body, headers=bob.auth)
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json()["error"]["code"] == "not_admin"
    assert (await audit(client, root)) == []  # refused calls changed nothing
    for method, path, body, expected in table:
        done = await client.request(method, path, json=body, headers=root.auth)
        assert done.status_code == expected, (method, path, done.text)
    # The OpenAPI document lists every one of them.
    spec = (await client.get("/api/openapi.json")).json()["paths"]
    documented = {(m.upper(), p) for p, ops in spec.items() if p.startswith("/api/admin/") for m in ops}
    assert documented == {
        ("GET", "/api/admin/users"), ("POST", "/api/admin/users"), ("GET", "/api/admin/users/{user_id}"),
        ("PATCH", "/api/admin/users/{user_id}"), ("DELETE", "/api/admin/users/{user_id}"),
        ("POST", "/api/admin/users/{user_id}/reset-throttles"), ("POST", "/api/admin/invitations"),
        ("GET", "/api/admin/rooms"), ("POST", "/api/admin/rooms/{code}/end"),
        ("DELETE", "/api/admin/rooms/{code}/participants/{peer_id}"), ("GET", "/api/admin/server"),
        ("GET", "/api/admin/audit"),
    }


async def test_each_action_writes_its_audit_row(
    client: httpx.AsyncClient, root: User, bob: User, outbox: Outbox
) -> None:
    async def call(method: str, path: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
        r = await client.request(method, path, json=body, headers=root.auth)
        assert r.status_code == status, r.text
        return r.json()

    made = await call(
        "POST", "/api/admin/users",
        {"username": "dave", "email": "dave@example.org", "password": PASSWORD, "verified": False}, 201,
    )
    dave = made["user"]
    assert (dave["verified"], dave["is_admin"], dave["disabled"]) == (False, False, False)
    link = (await call("POST", "/api/admin/invitations", {"email": "erin@example.org"}, 201))["link"]
    assert link.startswith("http://") and "invite=" in link and outbox.link("erin@example.org")
    assert (await call("PATCH", f"/api/admin/users/{dave['id']}", {"verified": True}))["user"]["verified"]
    assert (await call("PATCH", f"/api/admin/users/{bob.id}", {"is_admin": True}))["user"]["is_admin"]
    assert not (await call("PATCH", f"/api/admin/users/{bob.id}", {"is_admin": False}))["user"]["is_admin"]
    assert (await call("PATCH", f"/api/admin/users/{bob.id}", {"disabled": True}))["user"]["disabled"]
    assert not (await call("PATCH", f"/api/admin/users/{bob.id}", {"disabled": False}))["user"]["disabled"]
    assert (await call("POST", f"/api/admin/users/{bob.id}/reset-throttles")) == {"cleared": 0}
    await call("DELETE", f"/api/admin/users/{dave['id']}")
    await call("GET", f"/api/admin/users/{dave['id']}", status=404)

    rows = await audit(client, root)
    assert [row["action"] for row in rows] == [
        "user.delete", "user.reset_throttles", "user.enable", "user.disable", "user.unadmin",
        "user.admin", "user.verify", "user.invite", "user.create",
    ]
    assert all(row["admin"] == {"id": root.id, "username": "root"} and row["at"] > 0 for row in rows)
    assert rows[0]["target"] == f"user:{dave['id']} dave" and rows[2]["target"] == f"user:{bob.id} bob"
    assert rows[7] == {**rows[7], "target": "email:erin@example.org", "detail": {"mailed": True}}
    text = str(rows)
    assert not any(secret in text for secret in SECRETS), text
    listed = (await call("GET", "/api/admin/users?q=example.org&limit=2&offset=1"))
    second = "bob" if bob.id > root.id else "root"  # pytest-trio sets fixtures up concurrently
    assert (listed["total"], [u["username"] for u in listed["users"]]) == (2, [second])
    paged = await call("GET", "/api/admin/audit?limit=2&offset=1")
    assert (paged["total"], [e["action"] for e in paged["entries"]]) == (9, ["user.reset_throttles", "user.enable"])


async def test_disable_ends_sessions_and_sockets_at_once_and_blocks_sign_in(
    client: httpx.AsyncClient, new_client: Any, root: User, bob: User
) -> None:
    code = await make_room(client, bob)
    async with join(str(client.base_url), code, bob.token) as (ws, _):
        r = await client.patch(f"/api/admin/users/{bob.id}", json={"disabled": True}, headers=root.auth)
        assert r.status_code == 200, r.text
        await signed_out(ws)
    assert (await client.get("/api/auth/me", headers=bob.auth)).status_code == 401
    async with new_client() as other:
        wrong = await other.post("/api/auth/login", json={"login": "bob", "password": "not the password"})
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_credentials")
        right = await other.post("/api/auth/login", json={"login": "bob", "password": PASSWORD})
        assert (right.status_code, right.json()["error"]["code"]) == (403, "account_disabled")
        r = await client.patch(f"/api/admin/users/{bob.id}", json={"disabled": False}, headers=root.auth)
        assert r.status_code == 200 and not r.json()["user"]["disabled"]
        # Two failed sign-ins lock bob out from this address; the admin lifts it.
        for _ in range(2):
            await other.post("/api/auth/login", json={"login": "bob", "password": "not the password"})
        locked = await other.post("/api/auth/login", json={"login": "bob", "password": PASSWORD})
        assert locked.status_code == 429, locked.text
        r = await client.post(f"/api/admin/users/{bob.id}/reset-throttles", headers=root.auth)
        assert r.json() == {"cleared": 1}
        assert (await other.post("/api/auth/login", json={"login": "bob", "password": PASSWORD})).status_code == 200


async def test_an_admin_cannot_unmake_disable_or_delete_themselves(client: httpx.AsyncClient, root: User) -> None:
    for method, body in (("PATCH", {"is_admin": False}), ("PATCH", {"disabled": True}), ("DELETE", None)):
        r = await client.request(method, f"/api/admin/users/{root.id}", json=body, headers=root.auth)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "own_account" and "last admin" in r.json()["error"]["message"]
    r = await client.patch(f"/api/admin/users/{root.id}", json={"verified": True, "disabled": True}, headers=root.auth)
    assert r.status_code == 403  # refused whole: nothing of it was done
    me = (await client.get(f"/api/admin/users/{root.id}", headers=root.auth)).json()["user"]
    assert (me["is_admin"], me["disabled"]) == (True, False)
    assert await audit(client, root) == []


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/admin/users", {"username": "dave", "email": "dave@example.org"}, "password"),
        ("POST", "/api/admin/users", {"username": "d!", "email": "d@example.org", "password": PASSWORD}, "username"),
        ("POST", "/api/admin/users", {"username": "dave", "email": "nope", "password": PASSWORD}, "email"),
        ("POST", "/api/admin/users", {"username": "dave", "email": "d@e.org", "password": "x"}, "password"),
        ("POST", "/api/admin/users", {"username": "root", "email": "r2@example.org", "password": PASSWORD}, "username"),
        ("POST", "/api/admin/users", {"username": "dave", "email": "d@e.org", "password": PASSWORD, "admin": "yes"}, "admin"),
        ("PATCH", "/api/admin/users/{me}", {"verified": False}, "verified"),
        ("PATCH", "/api/admin/users/{me}", {}, "is_admin"),
        ("PATCH", "/api/admin/users/{me}", {"role": "god"}, "role"),
        ("POST", "/api/admin/invitations", {"email": "x"}, "email"),
        ("GET", "/api/admin/users?limit=0", None, "limit"),
        ("GET", "/api/admin/rooms?offset=-1", None, "offset"),
        ("GET", "/api/admin/audit?limit=abc", None, "limit"),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field(
    client: httpx.AsyncClient, root: User, method: str, path: str, body: dict[str, Any] | None, field: str
) -> None:
    r = await client.request(method, path.format(me=root.id), json=body, headers=root.auth)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["field"] == field, r.text
    assert await audit(client, root) == []


async def test_unknown_targets_are_404(client: httpx.AsyncClient, root: User) -> None:
    for method, path in (
        ("GET", "/api/admin/users/999"), ("PATCH", "/api/admin/users/999"), ("DELETE", "/api/admin/users/999"),
        ("POST", "/api/admin/users/999/reset-throttles"), ("POST", "/api/admin/rooms/zzz-zzzz-zzz/end"),
    ):
        r = await client.request(method, path, json={"verified": True} if method == "PATCH" else None, headers=root.auth)
        assert r.status_code == 404, (method, path, r.text)


async def test_a_cross_site_request_riding_on_the_cookie_is_refused(
    server: RunningServer, client: httpx.AsyncClient, root: User, bob: User
) -> None:
    await login(client, "root")  # root's session cookie in the jar, as in root's browser
    evil = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    r = await client.patch(f"/api/admin/users/{bob.id}", json={"disabled": True}, headers=evil)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "cross_origin")
    same = {"Origin": server.url}
    r = await client.patch(f"/api/admin/users/{bob.id}", json={"disabled": True}, headers=same)
    assert r.status_code == 200 and r.json()["user"]["disabled"]


async def test_rooms_live_first_remove_a_participant_and_end_a_meeting(
    client: httpx.AsyncClient, root: User, bob: User, carol: User
) -> None:
    quiet = await make_room(client, bob, title="Standup archive")
    code = await make_room(client, bob, title="Standup")
    assert quiet != code
    url = str(client.base_url)
    async with join(url, code, bob.token) as (host_ws, _), join(url, code, carol.token) as (carol_ws, welcome):
        found = (await client.get("/api/admin/rooms?q=standup", headers=root.auth)).json()
        assert (found["total"], found["live"]) == (2, 1)
        live = found["rooms"][0]
        assert (live["code"], live["live"], live["mode"]) == (code, True, "mesh")
        assert sorted(p["user"]["username"] for p in live["participants"]) == ["bob", "carol"]
        assert found["rooms"][1] == {**found["rooms"][1], "code": quiet, "live": False, "participants": []}
        r = await client.delete(f"/api/admin/rooms/{code}/participants/{welcome['peer_id']}", headers=root.auth)
        assert r.status_code == 200 and r.json()["removed"]["username"] == "carol"
        frames, close = await carol_ws.frames_then_close()
        assert close == 4403 and frames[-1]["type"] == "kicked", frames
        again = await client.get(f"/api/rooms/{code}", headers=carol.auth)  # kept out, as by a host
        assert again.json()["room"]["participants_hidden"] == "removed"
        r = await client.post(f"/api/admin/rooms/{code}/end", headers=root.auth)
        assert r.status_code == 200 and r.json()["room"]["status"] == "ended"
        frames, close = await host_ws.frames_then_close()
        assert close == 4410 and any(f["type"] == "room-ended" for f in frames), frames
    rows = await audit(client, root)
    assert [(row["action"], row["target"]) for row in rows] == [("room.end", f"room:{code}"), ("room.remove", f"room:{code}")]
    assert rows[0]["detail"] == {"participants": 1} and rows[1]["detail"]["user"]["username"] == "carol"


async def test_server_figures(server: RunningServer, client: httpx.AsyncClient, root: User) -> None:
    body = (await client.get("/api/admin/server", headers=root.auth)).json()
    assert body["version"] and body["uptime_s"] >= 0
    assert body["database"]["bytes"] > 0 and body["database"]["path"] == str(server.services.store.path)
    assert body["mail"] == {**body["mail"], "backend": "file", "ok": True}
    assert body["relay"] == {"mode": "off", "workers": []}



async def test_the_admin_page_for_admins_only(client: httpx.AsyncClient, root: User, bob: User) -> None:
    client.cookies.clear()
    anonymous = await client.get("/admin")
    assert (anonymous.status_code, anonymous.headers["location"]) == (302, "/signin?next=/admin")
    refused = await client.get("/admin", headers=bob.auth)
    assert refused.status_code == 403 and "Administrators only" in refused.text
    assert "/static/js/pages/admin.js" not in refused.text
    page = await client.get("/admin", headers=root.auth)
    assert page.status_code == 200 and "/static/js/pages/admin.js" in page.text
    for asset in ("/static/js/pages/admin.js", "/static/css/admin.css", *(
        f"/static/js/admin/{name}.js" for name in ("api", "table", "users", "rooms", "server", "audit")
    )):
        assert (await client.get(asset)).status_code == 200, asset


def test_init_says_how_to_make_the_first_admin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from meet.cli import main

    assert main(["init", str(tmp_path / "meet.toml")]) == 0
    out = capsys.readouterr().out
    assert f"meet user add NAME EMAIL --admin --config {tmp_path / 'meet.toml'}" in out and "/admin" in out


async def test_a_session_of_a_disabled_account_is_dead_even_if_not_revoked(
    server: RunningServer, client: httpx.AsyncClient, bob: User
) -> None:
    """A sign-in racing the disable (password checked before, session stored after) leaves a
    session the revocation missed: it still opens nothing, and its sockets close at the next pass."""
    code = await make_room(client, bob)
    async with join(str(client.base_url), code, bob.token) as (ws, _):
        await server.services.store.run(lambda db: db.execute("UPDATE users SET disabled_at = 1 WHERE id = ?", (bob.id,)))
        assert (await client.get("/api/auth/me", headers=bob.auth)).status_code == 401
        await server.services.sessions.check()
        await signed_out(ws)


async def test_the_last_active_admin_is_kept_whoever_asks(server: RunningServer, root: User) -> None:
    """Two admins disabling each other at once both pass the own-account rule; the store refuses
    whatever would leave no active admin."""
    from meet.errors import Conflict
    from meet.store import admin as q

    store, now = server.services.store, server.services.clock.now()
    other = await server.services.accounts.add_user("root2", "root2@example.org", PASSWORD, admin=True)
    await store.run(q.set_disabled, other.id, now)  # root disabled root2 …
    for change in (
        lambda db: q.set_disabled(db, root.id, now),  # … while root2 was disabling root
        lambda db: q.set_flag(db, root.id, "is_admin", False),
        lambda db: q.delete_user_by_id(db, root.id),
    ):
        with pytest.raises(Conflict) as refused:
            await store.run(change)
        assert refused.value.code == "last_admin"
    kept = await store.run(q.admin_user, root.id)
    assert kept.user.is_admin and kept.disabled_at is None
    await store.run(q.set_disabled, other.id, None)  # with root2 active again, root may go
    await store.run(q.set_flag, root.id, "is_admin", False)
