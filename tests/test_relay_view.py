"""A subscriber's ``view`` (meet/relay/view.py): only the videos its page shows are forwarded.

Real aiortc publishers through an in-process relay; the subscriber counts the RTP packets it
receives per m-line. Before a view everything flows; a view stops the videos it leaves out
(audio never), a new view brings one back from a keyframe, and bad views change nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from relay_peers import ROOM, Hub, TestPeer, run_hub, until
from simulcast_publisher import SimulcastPublisher

from meet.relay import ice
from meet.relay.view import Tile, View


@pytest.fixture(autouse=True)
def _stock_ice() -> Iterator[None]:
    yield
    ice.reset_ice()


def tile(publisher: str, width: int = 640, height: int = 360, source: str = "camera") -> dict[str, Any]:
    return {"publisher": publisher, "source": source, "width": width, "height": height}


class Named:
    def __init__(self, publisher: str, label: str) -> None:
        self.publisher, self.label = publisher, label


def test_a_view_shows_what_it_lists_largest_first() -> None:
    view = View()
    videos = [(Named("a", "camera"), 1), (Named("b", "camera"), 2), (Named("b", "screen"), 3)]
    assert view.arrange(videos) == videos and all(view.shows(v) for v, _ in videos)  # no view yet
    view.set([tile("a", 320, 180), tile("b", 1280, 720, "screen")])
    assert [n for _, n in view.arrange(videos)] == [3, 1]
    assert not view.shows(videos[1][0])


class Layer:
    def __init__(self, size: tuple[int, int] | None) -> None:
        self.size = size


CHROME = [Layer((240, 135)), Layer((480, 270)), Layer((960, 540))]  # the call page's three layers


@pytest.mark.parametrize(
    ("width", "height", "needed"),
    [
        (320, 180, 1),  # a thumbnail: the low layer (240 wide, scaled up by 4/3 at most)
        (640, 360, 2),
        (960, 540, 3),  # the large speaker tile
        (1920, 1080, 3),
        (180, 320, 1),  # a portrait tile on a phone: the picture is letterboxed to 180 wide
        (0, 0, 1),  # not laid out (yet)
    ],
)
def test_a_tile_needs_the_layers_up_to_the_first_that_fills_it(width: int, height: int, needed: int) -> None:
    view = View()
    alice = Named("alice", "camera")
    assert view.needs(alice, CHROME) == 3  # no view: no cap
    view.set([tile("alice", width, height)])
    assert view.needs(alice, CHROME) == needed
    assert view.needs(Named("bob", "camera"), CHROME) == 3  # not listed: not capped (not forwarded either)
    assert view.needs(alice, [Layer((240, 135)), Layer(None), Layer((960, 540))]) == (1 if needed == 1 else 3)


@pytest.mark.parametrize(
    "tiles",
    [
        [{"publisher": "a", "source": "camera", "width": 10}],
        [tile("a", source="face")],
        [tile("a", width=-1)],
        [tile("a", height=20000)],
        [tile("")],
        [tile("a")] * 65,
        [{"publisher": "a", "source": "camera", "width": "wide", "height": 3}],
    ],
    ids=["missing-height", "bad-source", "negative", "too-tall", "no-publisher", "too-many", "not-a-number"],
)
def test_a_bad_view_is_refused_and_the_previous_one_stays(tiles: list[dict[str, Any]]) -> None:
    view = View()
    view.set([tile("a")])
    with pytest.raises(ValueError):
        view.set(tiles)
    assert view.tiles == {("a", "camera"): Tile("a", "camera", 640, 360)}


def test_only_the_videos_in_view_are_forwarded() -> None:
    async def scenario(hub: Hub) -> None:
        publishers = [TestPeer(hub, name, shade=60 * i) for i, name in enumerate(("alice", "bob", "carol"))]
        dave = TestPeer(hub, "dave", audio=False, video=False, recvonly=(3, 3))
        for peer in (*publishers, dave):
            await peer.join()
        await until(lambda: all(dave.mids_of(p.peer) for p in publishers), 10, "dave's tracks")
        cams = {p.peer: dave.mids_of(p.peer)[0] for p in publishers}
        for name, mid in cams.items():
            await until(lambda m=mid: dave.decoded_since(m, 0) > 0, 20, f"{name} decoded at dave")

        def packets() -> dict[str, int]:
            return {mid: dave.rtp_count[mid] for mid in cams.values()}

        async def audio_sent() -> dict[str, int]:
            """Audio packets the relay sent dave, per publisher (its stats)."""
            (mine,) = [s for s in (await hub.stats())["subscribers"] if s["peer"] == "dave"]
            return {s["publisher"]: s["packets"] for s in mine["subscriptions"] if s["kind"] == "audio"}

        async def flowing(mids: list[str], stopped: list[str], what: str) -> None:
            """``mids`` get 40 more packets each while ``stopped`` get at most a few in flight;
            every microphone keeps flowing."""
            start, audio = packets(), await audio_sent()
            await until(lambda: all(dave.rtp_count[m] >= start[m] + 40 for m in mids), 20, what)
            assert all(dave.rtp_count[m] <= start[m] + 5 for m in stopped), (packets(), start)
            after = await audio_sent()
            assert len(after) == 3 and all(after[p] >= audio[p] + 20 for p in after), (audio, after)

        assert (await hub.request("view", peer="dave", tiles=[tile("alice")]))["ok"]
        await flowing([cams["alice"]], [cams["bob"], cams["carol"]], "alice's camera only")
        assert dave.tracks_events[-1] and not any(t["paused"] for t in dave.tracks_events[-1])  # not "too slow"

        reply = await hub.request("view", peer="dave", tiles=[tile("bob", 320, 180), tile("alice", 960, 540)])
        assert reply["ok"]
        since = time.time()
        await until(lambda: dave.decoded_since(cams["bob"], since) > 0, 10, "bob's camera back, decodable")
        await flowing([cams["alice"], cams["bob"]], [cams["carol"]], "alice and bob, not carol")

        for bad in ("not a list", [tile("carol", source="face")]):
            refused = await hub.relay.handle({"id": 9, "op": "view", "room": ROOM, "peer": "dave", "tiles": bad})
            assert refused["ok"] is False and refused["error"], refused
        await flowing([cams["alice"], cams["bob"]], [cams["carol"]], "the previous view kept")

    run_hub(scenario, timeout=90)


def test_a_small_tile_gets_the_low_layer_and_a_large_one_the_high_layer() -> None:
    """A simulcast publisher (80x60, 160x120, 320x240) and a subscriber without an estimate
    (all layers fit): its view's tile size alone picks the layer."""

    async def scenario(hub: Hub) -> None:
        alice = SimulcastPublisher(hub, "alice")
        bob = TestPeer(hub, "bob", audio=False, video=False, recvonly=(1, 1))
        await alice.join()
        await bob.join()
        await until(lambda: bool(bob.mids_of("alice")), 10, "alice's camera at bob")

        async def layer() -> str | None:
            (mine,) = [s for s in (await hub.stats())["subscribers"] if s["peer"] == "bob"]
            (camera,) = [x for x in mine["subscriptions"] if x["kind"] == "video"]
            return camera["layer"] if camera["target"] is None else None  # settled on a layer

        async def settles_on(rid: str) -> None:
            deadline = time.monotonic() + 15
            while await layer() != rid:
                assert time.monotonic() < deadline, f"bob never settled on {rid}: {await layer()}"
                await asyncio.sleep(0.05)

        await settles_on("f")  # no view: the top layer
        await hub.request("view", peer="bob", tiles=[tile("alice", 100, 75)])
        await settles_on("q")
        await hub.request("view", peer="bob", tiles=[tile("alice", 320, 240)])
        await settles_on("f")
        await hub.request("view", peer="bob", tiles=[tile("alice", 200, 150)])
        await settles_on("h")

    run_hub(scenario)
