"""A meeting link survives sign-up in headless Chromium, and only same-site ``next`` paths are followed."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from browser import TIMEOUT_MS, run_scenario
from conftest import PASSWORD, Outbox, make_room, make_user

from meet.server import RunningServer

pytestmark = pytest.mark.browser

HOSTILE = ["//evil.example", "https://evil.example", "/\\evil.example"]


def sign_up_from_meeting_link(page: Any, url: str, code: str, name: str) -> None:
    """Open the meeting link signed out (the guest form), follow "Sign in" and then "Create an
    account", and sign up as ``name``."""
    page.goto(f"{url}/r/{code}")
    page.click("#guest-signin")
    page.wait_for_url("**/signin?next=*")
    assert parse_qs(urlsplit(page.url).query)["next"] == [f"/r/{code}"]
    page.click("#signup-link")
    page.wait_for_url("**/signup?next=*")
    form = page.locator("#signup-form")
    form.locator("[name=username]").fill(name)
    form.locator("[name=email]").fill(f"{name}@example.org")
    form.locator("[name=password]").fill(PASSWORD)
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/verify?*")


def sign_in(page: Any, login: str) -> None:
    signin = page.locator("#signin-form")
    signin.locator("[name=login]").fill(login)
    signin.locator("[name=password]").fill(PASSWORD)
    signin.locator("button[type=submit]").click()


async def test_meeting_link_survives_signup_with_code(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    host = await make_user(client, outbox, "hana")
    code = await make_room(client, host)

    def scenario(browser: Any) -> dict[str, Any]:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        sign_up_from_meeting_link(page, server.url, code, "gus")
        seen: dict[str, Any] = {"verify_url": page.url, "errors": errors}
        seen["verify_signin_link"] = page.get_attribute(".switch a", "href")

        verify = page.locator("#verify-form")
        verify.locator("[name=code]").fill(outbox.code("gus@example.org"))
        verify.locator("button[type=submit]").click()
        page.wait_for_url("**/signin?*")
        seen["signin_url"] = page.url
        sign_in(page, "gus")
        page.wait_for_url(f"**/r/{code}")
        seen["landed"] = page.url
        return seen

    seen = await run_scenario(scenario)
    assert seen["verify_url"].endswith(f"/verify?email=gus%40example.org&next=%2Fr%2F{code}")
    assert seen["verify_signin_link"] == f"/signin?next=%2Fr%2F{code}"
    assert f"next=%2Fr%2F{code}" in seen["signin_url"]
    assert seen["landed"] == f"{server.url}/r/{code}"
    assert seen["errors"] == []


async def test_meeting_link_survives_signup_with_mailed_link(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    """The mail's one-click link cannot carry ``next``: the browser that signed up remembers it."""
    host = await make_user(client, outbox, "hana")
    code = await make_room(client, host)

    def scenario(browser: Any) -> str:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        sign_up_from_meeting_link(page, server.url, code, "ida")
        page.goto(outbox.link("ida@example.org"))
        page.wait_for_url("**/verify-done?*")
        page.locator("#verify-done-ok a.btn").click()
        page.wait_for_url("**/signin?*")
        sign_in(page, "ida")
        page.wait_for_url(f"**/r/{code}")
        return str(page.url)

    assert await run_scenario(scenario) == f"{server.url}/r/{code}"


async def test_hostile_next_lands_on_dashboard(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    await make_user(client, outbox, "vic")
    cases = ["/r/abc?x=1#y", "/r/abc", "javascript:alert(1)", "/r/a\tb", " /r/abc", *HOSTILE]

    def scenario(browser: Any) -> dict[str, Any]:
        landed: dict[str, Any] = {}
        for raw in HOSTILE:
            context = browser.new_context()  # a fresh cookie jar: signed out each time
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{server.url}/signin?next={quote(raw, safe='')}")
            landed[f"signup-link {raw}"] = page.get_attribute("#signup-link", "href")
            sign_in(page, "vic")
            page.wait_for_url("**/dashboard")
            landed[raw] = page.url
            context.close()
        page = browser.new_page()
        page.goto(f"{server.url}/signin")
        landed["table"] = page.evaluate(
            """async (cases) => {
                const { safeNextPath } = await import("/static/js/urls.js");
                return cases.map((raw) => safeNextPath(raw));
            }""",
            cases,
        )
        return landed

    landed = await run_scenario(scenario)
    for raw in HOSTILE:
        assert landed[raw] == f"{server.url}/dashboard", raw
        assert landed[f"signup-link {raw}"] == "/signup", raw
    assert landed["table"] == ["/r/abc?x=1#y", "/r/abc", None, None, None, None, None, None]
