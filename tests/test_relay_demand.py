"""Layers nobody uses are paused at the publisher (meet/relay/demand.py, "dynacast").

The policy on tables (what a set of pages uses, the hold-down before a layer is dropped); a room
spread over two workers with stand-in participants (what a worker reports, what the worker of
the publisher asks of it and pipes); then a real simulcast publisher and subscriber through an
in-process relay: the subscriber's tile size decides which encodings the publisher is asked
for, and a layer asked for again comes back to the subscriber.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from relay_peers import ROOM, Hub, TestPeer, run_hub, until
from simulcast_publisher import SimulcastPublisher

from meet.config import config_from_mapping
from meet.relay import demand, ice
from meet.relay.bridge import RelayBridge
from meet.relay.pipe import Endpoint
from meet.relay.room import Room
from meet.relay.source import Counters, Publication
from meet.relay.view import View
from meet.relay.worker import Relay


@pytest.fixture(autouse=True)
def _stock_ice() -> Iterator[None]:
    yield
    ice.reset_ice()


SIZES = {"q": (240, 135), "h": (480, 270), "f": (960, 540)}  # the call page's three layers


def camera(publisher: str, sizes: dict[str, tuple[int, int] | None] | None = None) -> Publication:
    """A live three-layer camera whose layers' keyframe sizes are known (or not)."""
    publication = Publication(publisher, "video", lambda ssrc: True, Counters())
    publication.set_rids(["q", "h", "f"])
    publication.live, publication.label = True, "camera"
    for layer in publication.layers:
        layer.size = (sizes or SIZES).get(str(layer.rid))
    return publication


@dataclass(frozen=True)
class Layer:
    rid: str | None
    size: tuple[int, int] | None


@dataclass(eq=False)
class Video:
    """A publication as the policy sees it (``source.Publication``)."""

    publisher: str
    layers: list[Layer]
    label: str = "camera"
    kind: str = "video"


def video(publisher: str, sizes: dict[str, tuple[int, int] | None] | None = None) -> Video:
    return Video(publisher, [Layer(rid, (sizes or SIZES).get(rid)) for rid in ("q", "h", "f")])


def page(*tiles: tuple[str, int, int]) -> View:
    view = View()
    view.set([{"publisher": who, "source": "camera", "width": w, "height": h} for who, w, h in tiles])
    return view


# --- the policy ------------------------------------------------------------------------------------


def test_a_video_uses_its_layers_up_to_the_largest_tile_that_shows_it() -> None:
    alice, bob, carol = video("alice"), video("bob"), video("carol", {"q": None, "h": (480, 270)})
    screen = Video("alice", [Layer(None, (1280, 720))], label="screen")  # one encoding
    used = demand.used(
        [
            (page(("alice", 320, 180), ("bob", 320, 180)), alice),
            (page(("alice", 320, 180), ("bob", 320, 180)), bob),
            (page(("alice", 960, 540)), alice),  # a larger tile elsewhere: alice's top layer too
            (page(("bob", 320, 180)), alice),  # in a slot but not on the page: no use
            (page(("carol", 320, 180)), carol),  # a layer of unknown size: every layer
            (View(), screen),
        ]
    )
    assert used == {alice: {"q", "h", "f"}, bob: {"q"}, carol: {"q", "h", "f"}}
    assert demand.ranked(alice, {"f", "q"}) == ["q", "f"]


def test_layers_are_taken_by_picture_size_not_by_rate() -> None:
    """A publisher ramping up may send its top layer slower than a lower one: the rate ranking
    (``Publication.measure``) then puts it first, but a large tile still uses every layer."""
    ramping = video("dave")
    ramping.layers.reverse()  # ranked f, h, q by their rates for now
    assert demand.used([(page(("dave", 960, 540)), ramping)]) == {ramping: {"q", "h", "f"}}
    assert demand.used([(page(("dave", 320, 180)), ramping)]) == {ramping: {"q"}}
    assert demand.ranked(ramping, {"f", "q"}) == ["q", "f"]


def test_a_layer_is_asked_for_at_once_and_dropped_only_after_the_hold() -> None:
    hold: demand.Hold[str] = demand.Hold(3.0)
    every = frozenset({"q", "h", "f"})
    assert hold.update("alice", every, frozenset({"q"}), 0.0) is None, "every layer until the hold passed"
    assert hold.update("alice", every, frozenset({"q"}), 2.9) is None
    assert hold.update("alice", every, frozenset({"q"}), 3.0) == {"q"}
    assert hold.update("alice", every, frozenset({"q", "f"}), 3.1) == {"q", "f"}, "a use counts at once"
    assert hold.update("alice", every, frozenset({"q"}), 4.0) is None
    assert hold.update("alice", every, frozenset({"q", "f"}), 6.5) is None, "used again within the hold"
    assert hold.update("alice", every, frozenset(), 7.0) is None
    assert hold.update("alice", every, frozenset(), 10.0) == frozenset(), "nobody uses it: nothing sent"
    hold.keep([])
    assert hold.requested == {}


# --- one room over two workers (stand-in participants) ---------------------------------------------


@dataclass
class Slot:
    publication: Publication | None


@dataclass
class Member:
    """What a room needs of a participant for demand: its page, slots and publications."""

    peer: str
    view: View = field(default_factory=View)
    slots: dict[int, Slot] = field(default_factory=dict)
    pubs: list[Publication] = field(default_factory=list)

    def publications(self) -> list[Publication]:
        return self.pubs

    def assign(self) -> None:
        """Its slots would follow a change of publications: they are set by hand here."""


def test_a_worker_reports_what_it_uses_and_the_publishers_worker_asks_for_and_pipes_only_that() -> None:
    async def scenario() -> None:
        counters = Counters()
        here, there = Endpoint(counters), Endpoint(counters)
        here_address, there_address = await here.open(), await there.open()
        here_events: list[dict[str, Any]] = []
        there_events: list[dict[str, Any]] = []
        room_here = Room(ROOM, counters, pipes=here, emit=here_events.append, hold=1.0)
        room_there = Room(ROOM, counters, pipes=there, emit=there_events.append, hold=1.0)
        alice = Member("alice", pubs=[camera("alice")])
        room_here.participants["alice"] = alice  # type: ignore[assignment]
        room_here.pipe(there_address)
        room_there.pipe(here_address)
        (announced,) = [e for e in here_events if e["event"] == "publications"]
        room_there.set_remote("alice", here_address, announced["publications"])
        (mirror,) = room_there.remote["alice"].publications()
        for layer in mirror.layers:
            layer.size = SIZES[str(layer.rid)]
        dave = Member("dave", view=page(("alice", 320, 180)), slots={0: Slot(mirror)})
        room_there.participants["dave"] = dave  # type: ignore[assignment]
        source = alice.pubs[0]

        def piped() -> set[str]:
            return {str(layer.rid) for layer in source.layers if layer.targets}

        assert piped() == {"q", "h", "f"}, "before any report: everything"
        for now in (0.0, 0.5):
            room_there.update_layers(now)
            room_here.update_layers(now)
        assert not [e for e in there_events if e["event"] == "demand"], "within the hold"
        room_there.update_layers(1.0)
        (report,) = [e for e in there_events if e["event"] == "demand"]
        assert report == {
            "event": "demand",
            "room": ROOM,
            "peer": "alice",
            "publication": announced["publications"][0]["id"],
            "rids": ["q"],
        }
        room_here.set_far(there_address, report["publication"], report["rids"])  # what the bridge passes back
        assert piped() == {"q"}
        room_here.update_layers(1.0)
        room_here.update_layers(2.0)
        layers = [e for e in here_events if e["event"] == "layers"]
        assert layers == [
            {"event": "layers", "room": ROOM, "peer": "alice", "source": "camera", "rids": ["q"]}
        ]

        dave.view = page(("alice", 960, 540))  # the large tile now
        room_there.update_layers(2.1)
        report = [e for e in there_events if e["event"] == "demand"][-1]
        assert report["rids"] == ["q", "h", "f"], "reported at once"
        asked = source.counters.keyframe_requests
        room_here.set_far(there_address, report["publication"], report["rids"])
        room_here.update_layers(2.1)
        assert piped() == {"q", "h", "f"}
        assert source.counters.keyframe_requests == asked + 2, "the layers piped again start at a keyframe"
        assert [e for e in here_events if e["event"] == "layers"][-1]["rids"] == ["q", "h", "f"]

        room_here.unpipe(there_address)  # that worker left the room: its uses go with it
        assert room_here.far == {}
        here.close()
        there.close()

    asyncio.run(scenario())


# --- a real publisher and subscriber through the relay ---------------------------------------------


def layers_events(hub: Hub, peer: str) -> list[list[str]]:
    return [e["rids"] for e in hub.events if e["event"] == "layers" and e["peer"] == peer]


async def requested(hub: Hub, publisher: str) -> dict[str, bool]:
    stats = await hub.stats()
    return {
        str(layer["rid"]): layer["requested"]
        for layer in stats["layers"]
        if layer["publisher"] == publisher and layer["source"] == "camera"
    }


def test_the_publisher_is_asked_only_for_the_layers_its_subscribers_show() -> None:
    async def scenario(hub: Hub) -> None:
        await hub.relay.handle(
            {"id": 9, "op": "configure", "host_addresses": ["127.0.0.1"], "layer_hold": 0.5}
        )
        alice = SimulcastPublisher(hub, "alice")
        alice.obey_layers = True
        dave = TestPeer(hub, "dave", audio=False, video=False, recvonly=(1, 1))
        await alice.join()
        await dave.join()
        await until(lambda: bool(dave.mids_of("alice")), 10, "alice in dave's slots")
        (mid,) = [m for m in dave.mids_of("alice") if dave.tracks[m]["source"] == "camera"]
        await until(lambda: dave.decoded_since(mid, 0) > 0, 20, "alice decoded at dave")
        assert layers_events(hub, "alice") == [], "shown without a view: every layer is used"

        # A thumbnail (80x60 is the low layer's size): only "q" is asked of alice.
        await hub.request(
            "view",
            peer="dave",
            tiles=[{"publisher": "alice", "source": "camera", "width": 100, "height": 75}],
        )
        await until(lambda: layers_events(hub, "alice") == [["q"]], 10, "alice asked for q only")
        assert alice.paused == {"h", "f"}
        assert await requested(hub, "alice") == {"q": True, "h": False, "f": False}
        assert not [e for e in hub.events if e["event"] == "layers" and e["peer"] != "alice"]

        # The large tile: every layer at once, and dave gets the top one again.
        f_layer = alice.layer("f")
        sent = f_layer.seq
        asked = time.time()
        await hub.request(
            "view",
            peer="dave",
            tiles=[{"publisher": "alice", "source": "camera", "width": 320, "height": 240}],
        )
        await until(
            lambda: layers_events(hub, "alice")[-1] == ["q", "h", "f"], 5, "alice asked for every layer"
        )
        assert time.time() - asked < 1.0, "a layer that is used is asked for at once (not held)"
        await until(lambda: f_layer.seq != sent, 5, "alice sends f again")

        async def carried() -> str | None:
            (mine,) = [s for s in (await hub.stats())["subscribers"] if s["peer"] == "dave"]
            return next(s["layer"] for s in mine["subscriptions"] if s["kind"] == "video")

        for _ in range(200):
            if await carried() == "f":
                break
            await asyncio.sleep(0.05)
        assert await carried() == "f", "dave is switched to the top layer once it flows again"
        start = time.time()
        await until(lambda: dave.decoded_since(mid, start) >= 5, 20, "dave decodes the top layer")

        # Nobody shows alice: her camera is not asked for at all (her audio is not concerned).
        await hub.request("view", peer="dave", tiles=[])
        await until(lambda: layers_events(hub, "alice")[-1] == [], 10, "alice asked for nothing")
        assert alice.paused == {"q", "h", "f"}

    run_hub(scenario, timeout=90)


# --- the pacer's wake-ups --------------------------------------------------------------------------


@dataclass
class Uplink:
    packets: int = 0


@dataclass
class Bandwidth:
    probing: bool = False
    uplink: Uplink = field(default_factory=Uplink)


@dataclass
class Paced(Member):
    """A participant as the pacer sees it."""

    bandwidth: Bandwidth = field(default_factory=Bandwidth)

    def pace(self, now: float) -> None: ...

    def rebalance(self, now: float) -> None: ...


@pytest.mark.parametrize(
    ("probing", "numbered", "wait"),
    [
        (True, 0, 0.01),  # a probe: every 10 ms
        (False, 500, 0.05),  # a publisher numbers its packets (transport-cc): feedback every 50 ms
        (False, 0, 0.2),  # nothing to pace or report: the next full round (not 50 ms)
    ],
)
def test_the_pacer_wakes_only_as_often_as_its_work_needs(probing: bool, numbered: int, wait: float) -> None:
    async def scenario() -> float:
        relay = Relay(on_event=lambda message: None)
        room = relay._room({"room": ROOM})
        room.participants["alice"] = Paced("alice", bandwidth=Bandwidth(probing, Uplink(numbered)))  # type: ignore[assignment]
        return relay.pace(100.0)

    assert asyncio.run(scenario()) == pytest.approx(wait)


async def test_the_bridge_passes_a_workers_report_back_to_the_publishers_worker() -> None:
    """A ``demand`` event becomes a ``demand`` request to the worker holding the publisher (its
    pipe id travels as ``publication``: ``id`` is the channel's request/reply number)."""

    async def nothing(message: Any) -> None: ...

    rtc = config_from_mapping({"rtc": {"host_addresses": ["127.0.0.1"], "relay_workers": 2}}, env={}).rtc
    bridge = RelayBridge(rtc, nothing, nothing)
    owner, other = bridge.workers
    owner.pipe, other.pipe = ["127.0.0.1", 4001], ["127.0.0.1", 4002]
    bridge.peers[ROOM, "alice"] = owner
    report = {"event": "demand", "room": ROOM, "peer": "alice", "publication": 7, "rids": ["l"]}
    await bridge._dispatch(other, report)
    await bridge._dispatch(owner, {**report, "peer": "alice"})  # its own publisher: nothing to pass
    await bridge._dispatch(other, {**report, "peer": "gone"})  # a publisher that left
    worker, request = bridge._order_queue.receive_nowait()
    assert worker is owner
    assert request == {
        "op": "demand",
        "room": ROOM,
        "peer": "alice",
        "publication": 7,
        "rids": ["l"],
        "address": ["127.0.0.1", 4002],
    }
    with pytest.raises(trio.WouldBlock):
        bridge._order_queue.receive_nowait()
