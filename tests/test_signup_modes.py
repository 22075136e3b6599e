"""Sign-up against a real server: it never rewrites an existing account, answers the same for
new and registered emails (and mails the owner), and follows ``[auth] signup``: open, invite
(single-use invitations bound to one email) or closed."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import PASSWORD, Outbox, make_config
from test_cli import FAST_CONFIG, meet

from meet.clock import FakeClock
from meet.server import RunningServer, open_server

SIGNUP = "/api/auth/signup"
LOGIN = "/api/auth/login"
VICTIM = {"username": "victim", "email": "victim@example.org", "password": PASSWORD}
ATTACKER = {"username": "mallory", "email": "VICTIM@example.org", "password": "mallory's password"}


@pytest.fixture
async def running(tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    auth: dict[str, Any] = getattr(request, "param", {})
    async with open_server(make_config(tmp_path, auth=auth), clock=clock) as server:
        yield server


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(make_config(tmp_path).outbox_dir)


@pytest.fixture
async def c(running: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
        yield client


@pytest.mark.parametrize("running", [{"require_verification": True}, {"require_verification": False}], indirect=True)
async def test_a_second_sign_up_never_takes_over_the_account(
    running: RunningServer, c: httpx.AsyncClient, outbox: Outbox
) -> None:
    assert (await c.post(SIGNUP, json=VICTIM)).status_code == 201
    first_code = outbox.code(VICTIM["email"])
    verification_required = running.services.config.auth.require_verification
    headers: dict[str, str] = {}
    if not verification_required:
        r = await c.post(LOGIN, json={"login": "victim", "password": PASSWORD})
        assert r.status_code == 200
        headers = {"Authorization": f"Bearer {r.json()['token']}"}

    r = await c.post(SIGNUP, json=ATTACKER)
    assert r.status_code == 201, "answered like any sign-up"
    attacker_login = await c.post(LOGIN, json={"login": "mallory", "password": ATTACKER["password"]})
    assert attacker_login.status_code == 401, "no account mallory"
    by_email = await c.post(LOGIN, json={"login": "victim@example.org", "password": ATTACKER["password"]})
    assert by_email.status_code == 401, "the victim's password was not replaced"
    if headers:
        me = await c.get("/api/auth/me", headers=headers)
        assert me.status_code == 200 and me.json()["user"]["username"] == "victim", "the session survives"
    # The owner (still unverified) got a fresh code; with it they verify their own account.
    code = outbox.code(VICTIM["email"])
    assert outbox.last(VICTIM["email"])["Subject"] == f"Your meet code: {code}"
    r = await c.post("/api/auth/verify", json={"email": VICTIM["email"], "code": code})
    assert r.status_code == 200 and r.json()["user"]["username"] == "victim"
    assert code == first_code or (
        await c.post("/api/auth/verify", json={"email": VICTIM["email"], "code": first_code})
    ).status_code == 400
    assert (await c.post(LOGIN, json={"login": "victim", "password": PASSWORD})).status_code == 200


async def test_new_and_registered_emails_get_the_same_answer_and_cost(
    running: RunningServer, c: httpx.AsyncClient, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    passwords = running.services.accounts.passwords
    hashed: list[str] = []
    real_hash = passwords.hash

    async def counting_hash(password: str) -> str:
        hashed.append(password)
        return await real_hash(password)

    monkeypatch.setattr(passwords, "hash", counting_hash)
    await c.post(SIGNUP, json={"username": "owner", "email": "owner@example.org", "password": PASSWORD})
    code = outbox.code("owner@example.org")
    await c.post("/api/auth/verify", json={"email": "owner@example.org", "code": code})
    hashed.clear()

    registered = await c.post(SIGNUP, json={"username": "xena1", "email": "owner@example.org", "password": "pw one two"})
    new = await c.post(SIGNUP, json={"username": "xena2", "email": "fresh@example.org", "password": "pw three four"})
    assert registered.status_code == new.status_code == 201
    assert registered.json() == {"ok": True, "email": "owner@example.org"}
    assert new.json() == {"ok": True, "email": "fresh@example.org"}
    assert registered.headers.keys() == new.headers.keys()
    assert hashed == ["pw one two", "pw three four"], "the password is hashed either way"
    owner_mail = outbox.last("owner@example.org")
    assert owner_mail["Subject"] == "Your meet account already exists"
    assert re.search(r"http://\S+/forgot", owner_mail.get_content())
    assert "code is" in outbox.last("fresh@example.org").get_content()
    # A taken username may still say so: usernames are public.
    r = await c.post(SIGNUP, json={"username": "OWNER", "email": "z@example.org", "password": PASSWORD})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "username_taken")


async def test_open_mode_is_announced(c: httpx.AsyncClient) -> None:
    assert (await c.get("/api/auth/config")).json() == {"signup": "open"}


@pytest.mark.parametrize("running", [{"signup": "closed"}], indirect=True)
async def test_closed_mode_refuses_every_sign_up(c: httpx.AsyncClient, outbox: Outbox) -> None:
    assert (await c.get("/api/auth/config")).json() == {"signup": "closed"}
    for body in (VICTIM, {**VICTIM, "invite": "anything"}):
        r = await c.post(SIGNUP, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "signup_closed")
        assert "closed" in r.json()["error"]["message"]
    assert outbox.messages() == []


@pytest.mark.parametrize("running", [{"signup": "invite", "invite_days": 2}], indirect=True)
async def test_invite_mode_needs_a_live_invitation_for_that_email(
    running: RunningServer, c: httpx.AsyncClient, outbox: Outbox, clock: FakeClock
) -> None:
    assert (await c.get("/api/auth/config")).json() == {"signup": "invite"}
    r = await c.post(SIGNUP, json=VICTIM)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "invitation_required")
    r = await c.post(SIGNUP, json={**VICTIM, "invite": "made-up"})
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["field"]) == (400, "invalid_invitation", "invite")

    accounts = running.services.accounts
    link = await accounts.invite("victim@example.org", running.url, send=True)
    token = re.search(r"[?&]invite=([^&]+)", link)
    assert link.startswith(f"{running.url}/signup?") and token
    assert link in outbox.last("victim@example.org").get_content()
    invite = token.group(1)
    r = await c.post(SIGNUP, json={**VICTIM, "email": "other@example.org", "invite": invite})
    assert r.json()["error"]["code"] == "invalid_invitation", "bound to the invited email"
    r = await c.post(SIGNUP, json={**VICTIM, "invite": invite})
    assert r.status_code == 201, r.text
    r = await c.post("/api/auth/verify", json={"email": VICTIM["email"], "code": outbox.code(VICTIM["email"])})
    assert r.status_code == 200
    r = await c.post(SIGNUP, json={**VICTIM, "username": "again", "invite": invite})
    assert r.json()["error"]["code"] == "invalid_invitation", "single use"

    late = re.search(r"invite=([^&]+)", await accounts.invite("late@example.org", running.url, send=False))
    assert late
    clock.advance(2 * 86400)
    r = await c.post(SIGNUP, json={"username": "late", "email": "late@example.org", "password": PASSWORD,
                                   "invite": late.group(1)})
    assert r.json()["error"]["code"] == "invalid_invitation", "expired"


@pytest.mark.parametrize("running", [{"signup": "invite"}], indirect=True)
async def test_an_invitation_is_used_once_even_by_concurrent_sign_ups(
    running: RunningServer, c: httpx.AsyncClient
) -> None:
    link = await running.services.accounts.invite("zoe@example.org", running.url, send=False)
    invite = link.split("invite=")[1].split("&")[0]
    statuses: Counter[int] = Counter()

    async def sign_up(i: int) -> None:
        body = {"username": f"zoe{i}", "email": "zoe@example.org", "password": PASSWORD, "invite": invite}
        statuses[(await c.post(SIGNUP, json=body)).status_code] += 1

    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(sign_up, i)
    assert statuses == Counter({201: 1, 400: 4})


def test_cli_invite_prints_a_link_that_signs_up_once(tmp_path: Path) -> None:
    config = tmp_path / "meet.toml"
    config.write_text(FAST_CONFIG + '\n[server]\npublic_url = "https://meet.example.org"\n')
    config.write_text(config.read_text().replace("[auth]\n", '[auth]\nsignup = "invite"\n'))
    made = meet(tmp_path, "user", "invite", "Zoe@example.org", "--config", str(config))
    assert made.returncode == 0, made.stderr
    link = made.stdout.strip()
    assert re.fullmatch(r"https://meet\.example\.org/signup\?invite=[\w-]+&email=Zoe%40example\.org", link), link
    assert "single use" in made.stderr and "mailed to Zoe@example.org" in made.stderr
    mail = Outbox(tmp_path / "data" / "outbox").last("Zoe@example.org")
    assert link in mail.get_content()
    bad = meet(tmp_path, "user", "invite", "not-an-email", "--config", str(config))
    assert bad.returncode == 1 and "email address" in bad.stderr and "Traceback" not in bad.stderr
