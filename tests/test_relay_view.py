"""A subscriber's ``view`` (meet/relay/view.py): only the videos its page shows are forwarded.

Real aiortc publishers through an in-process relay; the subscriber counts the RTP packets it
receives per m-line. Before a view everything flows; a view stops the videos it leaves out
(audio never), a new view brings one back from a keyframe, and bad views change nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from relay_peers import ROOM, Hub, TestPeer, run_hub, until

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
