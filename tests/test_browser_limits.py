"""A meeting page refused for too many open connections says so and stops trying (headless
Chromium): the refusal (4429 after `too_many_connections`) would repeat until a tab closes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import open_page, poll, run_scenario
from conftest import PASSWORD, Outbox, make_config
from test_browser_call import make_users

from meet.config import Config
from meet.server import RunningServer

pytestmark = pytest.mark.browser


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, auth={"mail_max_per_window": 50}, rooms={"max_connections_per_user": 1})


async def test_too_many_connections_is_final_and_explained(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    code = await make_users(client, outbox, "alice")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        dashboard = open_page(browser, base, "alice", PASSWORD)
        dashboard.goto(f"{base}/dashboard")  # its presence channel is alice's one connection
        poll(lambda: dashboard.inner_text("#presence-status") == "", what="the presence channel open")
        page = open_page(browser, base, "alice", PASSWORD)
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.goto(f"{base}/r/{code}")
        page.wait_for_selector("#join-button:not([disabled])")
        page.click("#join-button")
        page.wait_for_selector("#join-error:not([hidden])")
        return {
            "title": page.inner_text("#join-error-title"),
            "retry": page.is_visible("#join-retry"),
            "status": page.evaluate("window.meetCall.client.status"),
            "sockets": len(sockets),
            "errors": dashboard.errors + page.errors,
        }

    result = await run_scenario(scenario)
    assert result["title"] == "Too many meetings open"
    assert result["retry"] is True  # "Try again", once a tab is closed
    assert (result["status"], result["sockets"]) == ("closed", 1), "no automatic retries"
    assert result["errors"] == []
