"""The call page's stage in headless Chromium, at a phone (390×844) and a laptop (1366×768)
size: my camera as a small draggable picture-in-picture, one row of controls with a real "More"
menu, the People count, a camera strip of whole tiles, the remote person large in a two-person
call, the presenter's "You are presenting" card, pinning, notices kept off the video, and the
camera-off avatar colour that every page agrees on."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from browser import open_page as browser_page
from browser import poll, run_scenario
from conftest import PASSWORD, Outbox
from test_browser_call import assert_video_flowing, chat_texts, join, make_users

from meet.config import Config
from meet.server import RunningServer

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 768}

# Boxes (viewport coordinates) of what the checks compare.
BOXES_JS = """() => {
  const box = (el) => { const b = el.getBoundingClientRect(); return {x: b.x, y: b.y, w: b.width, h: b.height}; };
  const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  const tiles = [...document.querySelectorAll('#stage .tile')];
  return {
    local: tiles.filter((t) => t.matches('.local:not(.screen)')).map(box)[0] || null,
    remote: tiles.filter((t) => t.matches(':not(.local):not(.screen)')).map(box),
    tiles: tiles.map(box),
    toasts: [...document.querySelectorAll('#toasts .toast')].map(box),
    controls: [...document.querySelectorAll('.controls .ctl')].filter(visible).map((b) => ({id: b.id, ...box(b)})),
    bar: box(document.querySelector('.controls')),
    stage: box(document.querySelector('#stage')),
  };
}"""


@pytest.fixture
def config(tmp_path: Any) -> Config:
    from conftest import make_config

    return make_config(tmp_path, auth={"mail_max_per_window": 50})


def open_page(browser: Any, base: str, name: str, viewport: dict[str, int]) -> Any:
    """A signed-in page of the given size in its own browser context (own cookies)."""
    return browser_page(browser, base, name, PASSWORD, viewport=viewport, has_touch=False)


def boxes(page: Any) -> dict[str, Any]:
    return page.evaluate(BOXES_JS)  # type: ignore[no-any-return]


def intersects(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def toasts_clear_of_tiles(page: Any) -> None:
    """Every notice on screen stays off every video tile (once the stage has laid itself out
    again: a notice row may shrink it, and the tiles follow in the next frame)."""

    def overlaps() -> list[Any]:
        now = boxes(page)
        assert now["toasts"], "no notice to check"
        return [(t, tile) for t in now["toasts"] for tile in now["tiles"] if intersects(t, tile)]

    last: list[Any] = []

    def clear() -> bool:
        last[:] = overlaps()
        return not last

    try:
        poll(clear, timeout=3, what="notices clear of the tiles")
    except AssertionError:
        raise AssertionError(f"notices over tiles: {last}") from None


def remote_video_shown(page: Any, peer: str) -> bool:
    return bool(
        page.evaluate(
            '(p) => { const v = document.querySelector(`.tile:not(.screen)[data-peer-id="${p}"] video`);'
            " return !!v && v.videoWidth > 0; }",
            peer,
        )
    )


def avatar_colour(page: Any, selector: str) -> str:
    return str(
        page.evaluate(
            "(s) => getComputedStyle(document.querySelector(s + ' .tile-avatar span')).backgroundColor",
            selector,
        )
    )


def drag(page: Any, box: dict[str, float], dx: float, dy: float) -> None:
    x, y = box["x"] + box["w"] / 2, box["y"] + box["h"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx / 2, y + dy / 2, steps=4)
    page.mouse.move(x + dx, y + dy, steps=4)
    page.mouse.up()


async def test_phone_pip_one_control_row_more_menu_strip_and_notices(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    code = await make_users(client, outbox, "alice", "bob")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        alice, bob = open_page(browser, base, "alice", PHONE), open_page(browser, base, "bob", PHONE)
        a = join(alice, base, code)
        b = join(bob, base, code)
        poll(lambda: remote_video_shown(alice, b), what="bob's video on alice's phone")
        alice.wait_for_selector(".tile.local.pip")

        # The self-view is a small picture-in-picture, the remote person the large tile.
        first = poll(lambda: (now := boxes(alice))["local"] and now["remote"] and now, what="tile boxes")
        [remote] = first["remote"]
        assert first["local"]["w"] < 0.4 * remote["w"], first

        # It drags, and stays whole inside the stage (the viewport, above the control row).
        drag(alice, first["local"], -250, -400)
        moved = boxes(alice)
        pip, stage = moved["local"], moved["stage"]
        assert abs(pip["x"] - first["local"]["x"]) > 50 and abs(pip["y"] - first["local"]["y"]) > 50, (
            first,
            moved,
        )
        assert pip["x"] >= stage["x"] and pip["x"] + pip["w"] <= stage["x"] + stage["w"] <= PHONE["width"], (
            moved
        )
        assert pip["y"] >= stage["y"] and pip["y"] + pip["h"] <= moved["bar"]["y"], moved
        drag(alice, pip, 900, 900)  # flung past the corner: held inside
        flung = boxes(alice)["local"]
        assert flung["x"] + flung["w"] <= PHONE["width"] and flung["y"] + flung["h"] <= moved["bar"]["y"], (
            flung
        )

        # One row of controls, none past the screen's edge; the People count shows.
        controls = moved["controls"]
        ids = [c["id"] for c in controls]
        assert {"toggle-mic", "toggle-camera", "more-actions", "leave"} <= set(ids), ids
        assert max(c["y"] for c in controls) - min(c["y"] for c in controls) < 2, controls
        assert all(c["x"] >= 0 and c["x"] + c["w"] <= PHONE["width"] for c in controls), controls
        count = alice.locator("#people-badge")
        assert count.is_visible() and count.inner_text() == "2"
        assert count.bounding_box()["width"] > 4

        # The rest is in a real menu.
        more = alice.locator("#more-actions")
        assert (
            more.get_attribute("aria-haspopup") == "menu" and more.get_attribute("aria-expanded") == "false"
        )
        more.click()
        assert more.get_attribute("aria-expanded") == "true"
        menu = alice.locator("#more-menu[role=menu]")
        assert menu.is_visible()
        items = alice.evaluate(
            "[...document.querySelectorAll('#more-menu .more-item')].map((i) => ({role: i.getAttribute('role'),"
            " label: i.textContent.trim(), focused: i === document.activeElement}))"
        )
        labels = [i["label"] for i in items]
        assert {"Present", "Raise hand", "Copy link"} <= set(labels), items
        assert all(i["role"] in ("menuitem", "menuitemcheckbox") for i in items) and items[0]["focused"], (
            items
        )
        alice.keyboard.press("ArrowDown")
        alice.keyboard.press("Escape")
        assert not menu.is_visible() and more.get_attribute("aria-expanded") == "false"
        assert alice.evaluate("document.activeElement.id") == "more-actions"
        more.click()
        alice.locator("#more-menu .more-item", has_text="Raise hand").click()
        assert not menu.is_visible()
        poll(
            lambda: bob.evaluate(
                f"document.querySelector('.tile[data-peer-id=\"{a}\"]').classList.contains('hand')"
            ),
            what="alice's hand on bob's page",
        )

        # Notices (bob sees "alice raised their hand") stay off the video.
        bob.wait_for_selector("#toasts .toast")
        toasts_clear_of_tiles(bob)

        # A presentation: the camera strip under the screen shows whole tiles only.
        bob.click("#more-actions")
        bob.locator("#more-menu .more-item", has_text="Present").click()
        alice.wait_for_selector(f'.tile.screen[data-peer-id="{b}"] video')

        def strip_whole() -> Any:
            info = alice.evaluate(
                """() => {
                  const strip = document.querySelector('#tiles').getBoundingClientRect();
                  return [...document.querySelectorAll('#tiles .tile')].map((t) => {
                    const r = t.getBoundingClientRect();
                    return r.left >= strip.left - 1 && r.right <= strip.right + 1 && r.top >= strip.top - 1
                      && r.bottom <= strip.bottom + 1 && r.width > 40;
                  });
                }"""
            )
            return len(info) == 2 and all(info) and info

        poll(strip_whole, what="two whole tiles in the camera strip")
        return {"errors": alice.errors + bob.errors}

    result = await run_scenario(scenario)
    assert result["errors"] == []


async def test_laptop_two_people_presenting_pin_notices_and_avatar_colour(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    code = await make_users(client, outbox, "alice", "bob")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        alice, bob = open_page(browser, base, "alice", LAPTOP), open_page(browser, base, "bob", LAPTOP)
        a = join(alice, base, code)
        b = join(bob, base, code)
        poll(lambda: remote_video_shown(alice, b) and remote_video_shown(bob, a), what="video both ways")

        # Two people: the other one large, in their camera's shape (not cropped), me small.
        def sized() -> Any:
            now = boxes(alice)
            return (
                now["local"]
                and len(now["remote"]) == 1
                and now["remote"][0]["w"] > 2 * now["local"]["w"]
                and now
            )

        poll(sized, what="the remote tile larger than the self view")
        shape = alice.evaluate(
            f"(() => {{ const t = document.querySelector('.tile[data-peer-id=\"{b}\"]'); const v = t.querySelector('video');"
            " return {tile: t.clientWidth / t.clientHeight, video: v.videoWidth / v.videoHeight,"
            " fit: getComputedStyle(v).objectFit}; })()"
        )
        assert shape["fit"] == "contain" or abs(shape["tile"] / shape["video"] - 1) < 0.12, shape

        # Notices ("bob joined") sit off the video; chat notices stop while the chat is open.
        alice.wait_for_selector("#toasts .toast")
        toasts_clear_of_tiles(alice)
        bob.click("#toggle-chat")
        bob.fill("#chat-input", "first note")
        bob.press("#chat-input", "Enter")
        alice.wait_for_selector("#toasts .toast-chat")
        toasts_clear_of_tiles(alice)
        assert len(boxes(alice)["toasts"]) <= 2
        alice.click("#toggle-chat")
        assert alice.locator("#toasts .toast-chat").count() == 0  # what it said is in the open chat
        bob.fill("#chat-input", "second note")
        bob.press("#chat-input", "Enter")
        poll(lambda: "second note" in chat_texts(alice), what="the second message in alice's chat")
        assert alice.locator("#toasts .toast-chat").count() == 0
        alice.click("#toggle-chat")
        bob.click("#toggle-chat")

        # The camera-off avatar of a person has one colour on every page.
        alice.click("#toggle-camera")
        bob.wait_for_selector(f'.tile.camera-off[data-peer-id="{a}"]')
        alice.wait_for_selector(".tile.local.camera-off")
        mine, theirs = (
            avatar_colour(alice, ".tile.local:not(.screen)"),
            avatar_colour(bob, f'.tile[data-peer-id="{a}"]'),
        )
        assert mine == theirs, (mine, theirs)
        alice.click("#toggle-camera")

        # The presenter sees a card, not their own screen; the other page decodes the screen.
        bob.click("#toggle-screen")
        alice.wait_for_selector(f'.tile.screen[data-peer-id="{b}"] video')
        assert_video_flowing(alice, [b], streams=2)
        card = bob.locator(".tile.screen.local .presenting-card")
        card.wait_for()
        assert "You are presenting" in card.inner_text()
        assert bob.locator(".tile.screen.local video").count() == 0
        assert bob.evaluate(
            "[...document.querySelectorAll('video')].every((v) => !v.srcObject"
            " || v.srcObject.getVideoTracks().every((t) => t.label.indexOf('screen') === -1 && !t.getSettings().displaySurface))"
        )

        # Pinning bob's camera makes it the large tile (over his screen); unpinning gives it back.
        cam = f'.tile:not(.screen)[data-peer-id="{b}"]'
        screen = f'.tile.screen[data-peer-id="{b}"]'
        alice.hover(cam)
        alice.click(f"{cam} .tile-pin")
        assert alice.get_attribute(f"{cam} .tile-pin", "aria-pressed") == "true"

        def width(sel: str) -> float:
            return float(
                alice.evaluate("(s) => document.querySelector(s).getBoundingClientRect().width", sel)
            )

        poll(lambda: width(cam) > 2 * width(screen), what="the pinned camera large, the screen small")
        alice.click(f"{cam} .tile-pin")
        poll(lambda: width(screen) > 2 * width(cam), what="the screen large again after unpinning")

        # Stop presenting from the card: the screen goes away on the other page.
        bob.click(".presenting-card .presenting-stop")
        poll(lambda: alice.query_selector(screen) is None, what="the screen tile gone")

        # Pinning someone who leaves unpins: the stage goes back to the grid.
        alice.hover(cam)
        alice.click(f"{cam} .tile-pin")
        poll(
            lambda: alice.evaluate("document.querySelector('#stage').dataset.layout") == "spotlight",
            what="spotlight",
        )
        bob.click("#leave")
        poll(lambda: alice.query_selector(cam) is None, what="bob's tile removed")
        layout = alice.evaluate(
            "[document.querySelector('#stage').dataset.layout, document.querySelectorAll('.tile.pinned').length]"
        )
        assert layout == ["grid", 0], layout
        return {"errors": alice.errors + bob.errors}

    result = await run_scenario(scenario)
    assert result["errors"] == []


async def test_people_panel_remove_is_quiet_and_avatars_match_tiles(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    code = await make_users(client, outbox, "alice", "bob")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        alice, bob = open_page(browser, base, "alice", LAPTOP), open_page(browser, base, "bob", LAPTOP)
        join(alice, base, code)
        b = join(bob, base, code)
        alice.click("#toggle-participants")
        row = f'.participant[data-peer-id="{b}"]'
        alice.wait_for_selector(f"{row} .kick")
        style = "(s) => { const c = getComputedStyle(document.querySelector(s)); return [c.backgroundColor, c.color]; }"
        kick, mute = alice.evaluate(style, f"{row} .kick"), alice.evaluate(style, f"{row} .ask-mute")
        alice.hover(f"{row} .kick")

        def reddish() -> Any:  # after the colour transition
            now = alice.evaluate(style, f"{row} .kick")
            r, g, _ = (int(v) for v in now[0][now[0].index("(") + 1 : now[0].index(")")].split(",")[:3])
            return r > 150 and r > 2 * g and now

        hovered = poll(reddish, timeout=3, what="the danger colour on hover")
        row_avatar = alice.evaluate(
            "(s) => getComputedStyle(document.querySelector(s)).backgroundColor", f"{row} .avatar"
        )
        bob.click("#toggle-camera")
        alice.wait_for_selector(f'.tile.camera-off[data-peer-id="{b}"]')
        tile_avatar = avatar_colour(alice, f'.tile[data-peer-id="{b}"]')
        return {
            "kick": kick,
            "mute": mute,
            "hovered": hovered,
            "row": row_avatar,
            "tile": tile_avatar,
            "errors": alice.errors + bob.errors,
        }

    result = await run_scenario(scenario)
    assert result["kick"] == result["mute"], result  # "Remove" looks like the other actions at rest
    assert result["hovered"] != result["kick"], result  # and turns to danger on hover
    assert result["row"] == result["tile"], result  # one colour per person, in the panel too
    assert result["errors"] == []
