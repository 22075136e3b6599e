"""The account pages in headless Chromium: sign-up names every bad field at once, and the
"Forgot password?" link carries the email typed on the sign-in page."""

from __future__ import annotations

from typing import Any

import pytest
from browser import TIMEOUT_MS, run_scenario

from meet.server import RunningServer

pytestmark = pytest.mark.browser

FIELD_ERRORS_JS = """() => Object.fromEntries([...document.querySelectorAll('#signup-form .field')].map((f) => [
  f.querySelector('input').name,
  {error: f.querySelector('.field-error').textContent, invalid: f.querySelector('input').getAttribute('aria-invalid')},
]))"""


def new_page(browser: Any) -> Any:
    page = browser.new_context().new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    return page


async def test_signup_shows_every_bad_field_and_forgot_keeps_the_sign_in_email(server: RunningServer) -> None:
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        page = new_page(browser)
        signups: list[str] = []
        page.on("request", lambda r: signups.append(r.url) if r.url.endswith("/api/auth/signup") else None)
        page.goto(f"{base}/signup")
        page.fill("#signup-username", "a")
        page.fill("#signup-email", "not-an-email")
        page.fill("#signup-password", "short")
        page.click("#signup-form button[type=submit]")
        page.wait_for_selector("#signup-password[aria-invalid=true]")
        bad = page.evaluate(FIELD_ERRORS_JS)
        focused = page.evaluate("document.activeElement.name")
        # Fixing one field clears only its own message.
        page.fill("#signup-email", "ann@example.org")
        after_edit = page.evaluate(FIELD_ERRORS_JS)

        page.goto(f"{base}/signin")
        page.fill("#signin-login", "ann@example.org")
        page.click("#forgot-link")
        page.wait_for_url("**/forgot**")
        forgot_email = page.input_value("#forgot-email")
        # ... and "Back to sign in" carries it back.
        page.click("#back-to-signin")
        page.wait_for_url("**/signin**")
        signin_login = page.input_value("#signin-login")
        # A username is not an email address: nothing to carry.
        page.goto(f"{base}/signin")
        page.fill("#signin-login", "ann")
        page.click("#forgot-link")
        page.wait_for_url("**/forgot**")
        return {
            "bad": bad,
            "focused": focused,
            "after_edit": after_edit,
            "signups": signups,
            "forgot_email": forgot_email,
            "signin_login": signin_login,
            "forgot_from_username": page.input_value("#forgot-email"),
            "errors": page.errors,
        }

    result = await run_scenario(scenario)
    bad = result["bad"]
    assert "3–32 characters" in bad["username"]["error"]
    assert "email address" in bad["email"]["error"]
    assert "8 to 1024" in bad["password"]["error"]
    assert all(field["invalid"] == "true" for field in bad.values())
    assert result["focused"] == "username"
    assert result["signups"] == []  # nothing was sent while fields were bad
    assert result["after_edit"]["email"]["error"] == ""
    assert result["after_edit"]["password"]["error"]
    assert result["forgot_email"] == "ann@example.org"
    assert result["signin_login"] == "ann@example.org"
    assert result["forgot_from_username"] == ""
    assert result["errors"] == []
