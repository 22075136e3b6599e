"""The sign-up page in headless Chromium under each ``[auth] signup`` mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser import TIMEOUT_MS, run_scenario
from conftest import PASSWORD, Outbox, make_config

from meet.clock import FakeClock
from meet.server import open_server

pytestmark = pytest.mark.browser


async def test_signup_page_in_invite_and_closed_modes(tmp_path: Path, clock: FakeClock) -> None:
    invite_config = make_config(tmp_path / "invite", auth={"signup": "invite"})
    closed_config = make_config(tmp_path / "closed", auth={"signup": "closed"})
    async with open_server(invite_config, clock=clock) as invited, open_server(closed_config, clock=clock) as closed:
        link = await invited.services.accounts.invite("ivy@example.org", invited.url, send=False)

        def scenario(browser: Any) -> dict[str, Any]:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            seen: dict[str, Any] = {"errors": errors}

            page.goto(closed.url + "/signup")
            page.locator("#signup-form").wait_for(state="hidden")
            seen["closed"] = page.inner_text("#main .card-lede")

            page.goto(invited.url + "/signup")
            page.locator("#main .card-lede").filter(has_text="invitation only").wait_for()
            form = page.locator("#signup-form")
            form.locator("[name=username]").fill("ivy")
            form.locator("[name=email]").fill("ivy@example.org")
            form.locator("[name=password]").fill(PASSWORD)
            form.locator("button[type=submit]").click()
            seen["no_invite"] = page.locator(".form-message:visible").inner_text()

            page.goto(link)
            page.locator("#main .card-lede").filter(has_text="invited").wait_for()
            seen["prefilled"] = form.locator("[name=email]").input_value()
            form.locator("[name=username]").fill("ivy")
            form.locator("[name=password]").fill(PASSWORD)
            form.locator("button[type=submit]").click()
            page.wait_for_url("**/verify?email=*")
            seen["verify_url"] = page.url
            return seen

        seen = await run_scenario(scenario)
    assert "closed" in seen["closed"]
    assert "invitation" in seen["no_invite"]
    assert seen["prefilled"] == "ivy@example.org"
    assert seen["verify_url"].endswith("/verify?email=ivy%40example.org")
    assert seen["errors"] == []
    assert Outbox(invite_config.outbox_dir).code("ivy@example.org")
