"""A big room in headless Chromium: the paged grid, the page's `view`, the People panel.

One real call page (alice, the host) and ten more participants on plain room WebSockets
(wsclient): the room uses the relay, so the page opens no connection to them; each still has
a camera tile (their camera off) and a row in the People panel.
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

OTHERS = ("bea", "cyd", "dave", "dana", "fay", "gus", "hal", "ivy", "jon", "kim")


@pytest.fixture
def config(tmp_path: Any) -> Config:
    return make_config(
        tmp_path, auth={"mail_max_per_window": 50}, rtc={"relay": "always", "host_addresses": ["127.0.0.1"]}
    )


def rows(page: Any) -> list[str]:
    """The names of the People panel's visible rows, in order."""
    script = "[...document.querySelectorAll('.participant:not([hidden])')].map((r) => r.dataset.name)"
    return list(page.evaluate(script))


def shown_tiles(page: Any) -> list[str]:
    """The camera tiles shown on the grid page: peer ids, and "me" for my own."""
    script = "[...document.querySelectorAll('#tiles .tile:not([hidden])')].map((t) => t.dataset.peerId || 'me')"
    return list(page.evaluate(script))


def viewed(views: list[list[dict[str, Any]]]) -> list[str]:
    """The peers of the last `view` the server got (each tile a camera with a size)."""
    if not views:
        return []
    assert all(t["source"] == "camera" and t["width"] > 0 and t["height"] > 0 for t in views[-1]), views[-1]
    return sorted(t["peer_id"] for t in views[-1])


def pages_of_the_grid(page: Any, views: list[list[dict[str, Any]]]) -> None:
    """Nine tiles a page on a desktop, four on a phone; the pager turns them; the page's `view`
    lists the other people's tiles it shows, and only those."""
    poll(lambda: page.inner_text("#page-label") == "1 / 2", 10, "two pages of the grid")
    first = shown_tiles(page)
    assert len(first) == 9 and first[0] == "me", first
    poll(lambda: viewed(views) == sorted(first[1:]), 10, "a view of the first page")
    assert page.is_disabled("#page-prev") and page.is_enabled("#page-next")
    page.click("#page-next")
    poll(lambda: page.inner_text("#page-label") == "2 / 2", 10, "the second page")
    second = shown_tiles(page)
    assert len(second) == 2 and not set(first) & set(second), second
    poll(lambda: viewed(views) == sorted(second), 10, "a view of the second page")
    assert page.is_enabled("#page-prev") and page.is_disabled("#page-next")
    page.set_viewport_size({"width": 390, "height": 780})  # a phone: my camera floats
    poll(lambda: page.inner_text("#page-label") == "2 / 3", 10, "pages of four on a phone")
    remote = [t for t in shown_tiles(page) if t != "me"]
    assert len(remote) == 4, remote
    poll(lambda: viewed(views) == sorted(remote), 10, "a view of the phone page")
    page.click("#page-prev")
    poll(lambda: page.inner_text("#page-label") == "1 / 3", 10, "the first phone page")


VISIBLE_IN_STRIP_JS = """() => {
  const box = document.querySelector('#tiles').getBoundingClientRect();
  return [...document.querySelectorAll('#tiles .tile:not([hidden])')].filter((t) => {
    const r = t.getBoundingClientRect();
    return r.bottom > box.top + 1 && r.top < box.bottom - 1 && r.right > box.left + 1 && r.left < box.right - 1;
  }).map((t) => t.dataset.peerId || 'me');
}"""


def strip_in_view(page: Any, views: list[list[dict[str, Any]]]) -> None:
    """Speaker view: the view lists the large tile and the strip tiles in sight, not those
    scrolled away; scrolling the strip changes it."""
    page.set_viewport_size({"width": 1280, "height": 720})
    page.click("#toggle-speaker-view")
    main = poll(lambda: page.evaluate("[...document.querySelectorAll('#screens .tile')].map((t) => t.dataset.peerId)"))

    def expected() -> list[str]:
        return sorted([*main, *(t for t in page.evaluate(VISIBLE_IN_STRIP_JS) if t != "me")])

    poll(lambda: viewed(views) == expected(), 10, "a view of the large tile and the strip in sight")
    assert 1 < len(viewed(views)) < len(OTHERS), viewed(views)
    before = viewed(views)
    page.evaluate("document.querySelector('#tiles').scrollTop = 1e6")
    poll(lambda: viewed(views) == expected() and viewed(views) != before, 10, "the view after scrolling the strip")
    page.click("#toggle-speaker-view")


async def test_a_big_room_pages_its_grid_sends_its_view_and_searches_its_people(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = await make_users(client, outbox, "alice", *OTHERS)
    base = server.url
    media = server.services.rooms.media
    views: list[list[dict[str, Any]]] = []  # the tiles of each `view` the server got
    stock_view = media.view

    async def recording(live: Any, peer: Any, message: Any) -> None:
        views.append(message.tiles)
        await stock_view(live, peer, message)

    monkeypatch.setattr(media, "view", recording)
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
            poll(lambda: len(rows(page)) == 11, 20, "eleven people in the panel")
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
            poll(lambda: len(rows(page)) == 11, 10, "everyone again")
            page.click("#toggle-participants")
            pages_of_the_grid(page, views)
            strip_in_view(page, views)
            return {"errors": page.errors}

        # Caught here and raised below, outside the ten sockets' nurseries: pytest would show a
        # failure nested ten exception groups deep (deeper than it prints).
        try:
            result = await run_scenario(scenario)
        except AssertionError as exc:
            result = {"failure": exc}
    if "failure" in result:
        raise result["failure"]
    assert result["errors"] == []
