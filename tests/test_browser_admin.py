"""The admin page in headless Chromium: sign in as the admin (sent back to /admin), see the users,
disable one — their open room socket ends — and read the audit row."""

from __future__ import annotations

from typing import Any

import pytest
from browser import TIMEOUT_MS, run_scenario
from conftest import PASSWORD, User, make_room
from wsclient import join

from meet.server import RunningServer

pytestmark = pytest.mark.browser


async def test_admin_disables_a_user_and_sees_the_audit_row(
    server: RunningServer, client: Any, bob: User
) -> None:
    await server.services.accounts.add_user("root", "root@example.org", PASSWORD, admin=True)
    code = await make_room(client, bob)

    def scenario(browser: Any) -> dict[str, Any]:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/admin")
        page.wait_for_url("**/signin?next=/admin")
        page.fill("#signin-form [name=login]", "root")
        page.fill("#signin-form [name=password]", PASSWORD)
        page.click("#signin-form button[type=submit]")
        page.wait_for_url("**/admin")
        page.locator("#main[data-ready=true]").wait_for()
        users = page.locator("#users tbody tr").all_inner_texts()
        bob_row = page.locator("#users tr[data-username=bob]")
        bob_row.get_by_role("button", name="Disable").click()
        bob_row.get_by_text("disabled", exact=True).wait_for()
        page.locator("#audit tr[data-action='user.disable']").wait_for()
        audit = page.locator("#audit tbody tr").first.inner_text()
        version = page.locator("#server-facts dd").first.inner_text()
        return {"users": users, "audit": audit, "version": version, "errors": errors}

    async with join(server.url, code, bob.token) as (ws, _):
        result = await run_scenario(scenario)
        frames, close = await ws.frames_then_close()
    assert close == 4401, frames
    assert any("bob" in row for row in result["users"]) and any("root" in row for row in result["users"])
    assert "root" in result["audit"] and "user.disable" in result["audit"] and f"user:{bob.id} bob" in result["audit"]
    assert result["version"] and result["errors"] == []
