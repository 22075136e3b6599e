"""The account pages in headless Chromium: sign up → verify → sign in → dashboard → sign out."""

from __future__ import annotations

from typing import Any

import pytest
from browser import TIMEOUT_MS, run_scenario
from conftest import PASSWORD, Outbox

from meet.server import RunningServer

pytestmark = pytest.mark.browser


async def test_signup_verify_signin_dashboard_signout(server: RunningServer, outbox: Outbox) -> None:
    mail = "walt@example.org"

    def scenario(browser: Any) -> dict[str, Any]:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        page.goto(server.url + "/")
        page.wait_for_url("**/signin")
        page.click("a[href='/signup']")
        page.wait_for_url("**/signup")
        form = page.locator("#signup-form")
        form.locator("[name=username]").fill("walt")
        form.locator("[name=email]").fill(mail)
        form.locator("[name=password]").fill("short")
        form.locator("button[type=submit]").click()
        short_error = page.locator(".field-error:visible, .form-message:visible").first.inner_text()

        form.locator("[name=password]").fill(PASSWORD)
        form.locator("button[type=submit]").click()
        page.wait_for_url("**/verify?email=*")

        verify = page.locator("#verify-form")
        verify.locator("[name=code]").fill(outbox.code(mail))
        verify.locator("button[type=submit]").click()
        page.wait_for_url("**/signin?*")

        signin = page.locator("#signin-form")
        signin.locator("[name=login]").fill("walt")
        signin.locator("[name=password]").fill(PASSWORD)
        signin.locator("button[type=submit]").click()
        page.wait_for_url("**/dashboard")
        page.locator("#user-name").filter(has_text="walt").wait_for()
        shown = {"name": page.inner_text("#user-name"), "email": page.inner_text("#user-email")}

        page.click("#signout")
        page.wait_for_url("**/signin*")
        page.goto(server.url + "/dashboard")
        page.wait_for_url("**/signin?next=/dashboard")
        return {"short_error": short_error, "shown": shown, "errors": errors}

    result = await run_scenario(scenario)
    assert "8" in result["short_error"], "the server's password rule is shown inline"
    assert result["shown"] == {"name": "walt", "email": mail}
    assert result["errors"] == []
