"""The People panel of a big room in headless Chromium: search, order, and no one matching.

One real call page (alice, the host) and seven more participants on plain room WebSockets
(wsclient): the room uses the relay, so the page opens no connection to them and the panel is
all that is being tested.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from browser import poll, run_scenario
from conftest import Outbox, login, make_config
from test_browser_call import join, make_users, open_page
from wsclient import join as join_socket

from meet.config import Config
from meet.server import RunningServer

pytestmark = pytest.mark.browser

OTHERS = ("bea", "cyd", "dave", "dana", "fay", "gus", "hal")


@pytest.fixture
def config(tmp_path: Any) -> Config:
    return make_config(
        tmp_path, auth={"mail_max_per_window": 50}, rtc={"relay": "always", "host_addresses": ["127.0.0.1"]}
    )


def rows(page: Any) -> list[str]:
    """The names of the People panel's visible rows, in order."""
    script = "[...document.querySelectorAll('.participant:not([hidden])')].map((r) => r.dataset.name)"
    return list(page.evaluate(script))


async def test_the_people_panel_of_a_big_room_searches_and_puts_raised_hands_first(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    code = await make_users(client, outbox, "alice", *OTHERS)
    base = server.url
    async with AsyncExitStack() as stack:
        sockets = {}
        for name in OTHERS:
            token = await login(client, name)
            sockets[name], _welcome = await stack.enter_async_context(join_socket(base, code, token))
        await sockets["gus"].send({"type": "state", "hand": True})

        def scenario(browser: Any) -> dict[str, Any]:
            page = open_page(browser, base, "alice")
            join(page, base, code)
            page.click("#toggle-participants")
            poll(lambda: len(rows(page)) == 8, 20, "eight people in the panel")
            order = rows(page)
            assert order[:2] == ["alice", "gus"], order  # me (the host), then the raised hand
            assert page.is_visible("#people-search")
            page.fill("#people-search", "DA")
            poll(lambda: rows(page) == ["dave", "dana"], 10, "only the names with 'da'")
            assert page.is_hidden("#people-none")
            page.fill("#people-search", "zoe")
            poll(lambda: rows(page) == [], 10, "no one")
            assert page.inner_text("#people-none") == "No one here matches “zoe”."
            page.fill("#people-search", "")
            poll(lambda: len(rows(page)) == 8, 10, "everyone again")
            return {"errors": page.errors}

        result = await run_scenario(scenario)
    assert result["errors"] == []
