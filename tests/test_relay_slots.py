"""Receive slots (meet/relay/slots.py): the policy on tables, then real aiortc peers through a relay.

A connection has a fixed set of receive m-lines (``[rtc] video_slots``, ``audio_slots``); the
relay fills them from the page's ``view`` (largest tile first) and the loudest voices, and
announces each change with ``tracks`` instead of renegotiating.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from relay_peers import Hub, TestPeer, run_hub, until
from test_relay_worker import matching_pictures

from meet.relay import ice
from meet.relay.slots import Counts, fill, wanted_videos, wanted_voices
from meet.relay.view import View


@pytest.fixture(autouse=True)
def _stock_ice() -> Iterator[None]:
    yield
    ice.reset_ice()


# --- the policy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pub:
    publisher: str
    label: str


@pytest.mark.parametrize(
    ("current", "wanted", "expected"),
    [
        pytest.param(
            [None, None, None], ["a", "b"], ["a", "b", None], id="newcomers take free slots in order"
        ),
        pytest.param(["a", "b", "c"], ["c", "a"], ["a", None, "c"], id="the wanted stay where they are"),
        pytest.param(["a", "b"], ["c", "b", "a"], ["c", "b"], id="only the most wanted fit"),
        pytest.param(["a", "b"], ["d", "c"], ["d", "c"], id="everything changes"),
        pytest.param([], ["a"], [], id="no slots, nothing received"),
    ],
)
def test_fill_moves_only_what_has_to_move(
    current: list[str | None], wanted: list[str], expected: list[str | None]
) -> None:
    assert fill(current, wanted) == expected


def _view(tiles: list[tuple[str, str, int, int]] | None) -> View:
    view = View()
    if tiles is not None:
        view.set([{"publisher": p, "source": s, "width": w, "height": h} for p, s, w, h in tiles])
    return view


CAMERAS = [Pub(name, "camera") for name in "abcdef"]
SCREEN = Pub("c", "screen")


@pytest.mark.parametrize(
    ("tiles", "recent", "cameras", "expected"),
    [
        pytest.param(None, [], 9, ["c:screen", *"abcdef"], id="no view: screens, then join order"),
        pytest.param(
            None, ["e", "b"], 3, ["c:screen", "e", "b", "a"], id="no view: the recent speakers first"
        ),
        pytest.param(
            [("b", "camera", 320, 180), ("f", "camera", 960, 540)],
            [],
            9,
            ["f", "b"],
            id="the view, largest first",
        ),
        pytest.param(
            [("a", "camera", 320, 180), ("b", "camera", 640, 360), ("d", "camera", 320, 180)],
            [],
            2,
            ["b", "a"],
            id="at most video_slots cameras",
        ),
        pytest.param(
            [("a", "camera", 320, 180), ("c", "screen", 1280, 720), ("b", "camera", 320, 180)],
            [],
            2,
            ["c:screen", "a", "b"],
            id="a screen in view is one slot more",
        ),
        pytest.param([("z", "camera", 320, 180)], ["a"], 9, [], id="tiles of no publication show nothing"),
    ],
)
def test_wanted_videos(
    tiles: list[tuple[str, str, int, int]] | None, recent: list[str], cameras: int, expected: list[str]
) -> None:
    chosen = wanted_videos(_view(tiles), [*CAMERAS[:2], SCREEN, *CAMERAS[2:]], recent, cameras)
    assert [v.publisher if v.label == "camera" else f"{v.publisher}:screen" for v in chosen] == expected


def test_wanted_voices_are_the_loudest_then_the_last_heard() -> None:
    voices = [Pub(name, "audio") for name in "abcde"]
    loudness = {"a": (0.0, 5.0), "b": (0.9, 9.0), "c": (0.0, 8.0), "d": (0.4, 9.0)}
    assert [v.publisher for v in wanted_voices(voices, loudness, 3)] == ["b", "d", "c"]
    assert [v.publisher for v in wanted_voices(voices, {}, 2)] == ["a", "b"]  # nobody heard: join order


@pytest.mark.parametrize(("video", "audio"), [(-1, 3), (26, 3), (9, 0), (9, 17)])
def test_slot_counts_are_bounded(video: int, audio: int) -> None:
    with pytest.raises(ValueError, match="slots must be"):
        Counts(video, audio)


# --- through a relay -------------------------------------------------------------------------------


def sections(peer: TestPeer) -> dict[str, int]:
    """How many audio and video m-lines the peer's connection has."""
    kinds = [t.kind for t in peer.pc.getTransceivers() if t.mid is not None]
    return {kind: kinds.count(kind) for kind in ("audio", "video")}


def mids(peer: TestPeer) -> dict[str, str]:
    """mid -> kind of each negotiated m-line of the peer's connection."""
    return {str(t.mid): t.kind for t in peer.pc.getTransceivers() if t.mid is not None}


def cameras_at(peer: TestPeer) -> dict[str, str]:
    """publisher -> mid of its camera, from the peer's latest ``tracks``."""
    return {t["publisher"]: mid for mid, t in peer.tracks.items() if t["source"] == "camera"}


def test_a_subscriber_receives_only_its_view_in_fixed_slots_and_a_join_does_not_renegotiate_it() -> None:
    async def scenario(hub: Hub) -> None:
        # Small cameras, and publishers that show no video themselves: seven aiortc peers and the
        # relay share one process here, and decoding everyone everywhere would only slow it down.
        publishers = [TestPeer(hub, f"p{i}", shade=40 * i, size=(160, 120), fps=15) for i in range(6)]
        for publisher in publishers:
            await publisher.join()
            await hub.request("view", peer=publisher.peer, tiles=[])
        viewer = TestPeer(hub, "viewer", audio=False, video=False, recvonly=(1, 1))
        await viewer.join()
        # Without a view the cameras of everyone (6 < 9 slots); the slots come in one relay offer.
        await until(lambda: len(cameras_at(viewer)) == 6, 20, "every camera in the viewer's slots")
        assert viewer.offers_applied == 1
        assert sections(viewer) == {"audio": 3, "video": 9}
        assert len(viewer.tracks_events[-1]) == 12, "tracks lists every slot, the empty ones too"

        p1, p2, p4 = publishers[1], publishers[2], publishers[4]
        await hub.request("view", peer="viewer", tiles=[tile(p1, 640, 360), tile(p4, 320, 180)])
        await until(lambda: set(cameras_at(viewer)) == {"p1", "p4"}, 5, "only the two cameras in view")
        shown = {name: cameras_at(viewer)[name] for name in ("p1", "p4")}
        start = time.time()
        await until(
            lambda: all(viewer.decoded_since(mid, start) >= 20 for mid in shown.values()),
            30,
            "20 frames of each",
        )
        before = dict(viewer.rtp_count)
        await until(lambda: all(viewer.decoded_since(mid, start) >= 30 for mid in shown.values()), 30, "more")
        idle = [mid for mid in viewer.rtp_count if mid not in shown.values()]
        assert all(viewer.rtp_count[mid] == before.get(mid, 0) for mid in idle), (
            "a slot out of view carries nothing"
        )
        carried = {t["mid"] for event in viewer.tracks_events for t in event if t["publisher"] is not None}
        never = {mid for mid, kind in mids(viewer).items() if kind == "video" and mid not in carried}
        assert len(never) == 3 and not never & {r[0] for r in viewer.reports}, "an empty slot reports nothing"
        for name, mid in shown.items():
            equal, different = matching_pictures(viewer, mid, hub.peers[name])
            assert equal >= 20 and different == 0, (name, equal, different)

        # A new view: p2 in place of p4. The relay asks p2 for a keyframe at once and starts the
        # slot at it. aiortc's encoder sends keyframes only when asked (its GOP is 3,000
        # frames), so without that request the viewer would never decode p2 here. Waited for by
        # frames, not timed: unloaded it takes about 0.1 s (a loaded machine made the viewer,
        # in this one busy process, lose a keyframe or two: the relay then asks again).
        asked = time.time()
        await hub.request("view", peer="viewer", tiles=[tile(p1, 640, 360), tile(p2, 320, 180)])
        await until(lambda: "p2" in cameras_at(viewer), 5, "p2 in a slot")
        mid = cameras_at(viewer)["p2"]
        await until(lambda: viewer.first_frame_after(mid, asked) is not None, 20, "p2's first frame")

        # A seventh participant: the viewer is not renegotiated, and does not show it.
        events = len(viewer.tracks_events)
        await TestPeer(hub, "p6", shade=250, size=(160, 120), fps=15).join()
        await until(lambda: hub.peers["p6"].offers_applied >= 1, 10, "p6 got its slots")
        await until(
            lambda: viewer.offers_applied == 1 and len(cameras_at(hub.peers["p6"])) == 6, 10, "p6's view"
        )
        assert viewer.offers_applied == 1 and sections(viewer) == {"audio": 3, "video": 9}
        assert set(cameras_at(viewer)) == {"p1", "p2"}
        assert all(
            {"p1", "p2"} >= {t["publisher"] for t in e if t["source"] == "camera"}
            for e in viewer.tracks_events[events:]
        )

    run_hub(scenario, timeout=120)


def tile(peer: TestPeer, width: int, height: int) -> dict[str, object]:
    return {"publisher": peer.peer, "source": "camera", "width": width, "height": height}


def test_audio_slots_carry_the_loudest_voices() -> None:
    async def scenario(hub: Hub) -> None:
        speakers = [TestPeer(hub, f"s{i}", video=False) for i in range(5)]
        for i, speaker in enumerate(speakers):
            speaker.voice.loud = i >= 2  # three talk, two are silent
            await speaker.join()
        listener = TestPeer(hub, "listener", audio=False, video=False, recvonly=(1, 0))
        await listener.join()

        def voices() -> set[str]:
            return {t["publisher"] for t in listener.tracks.values() if t["source"] == "audio"}

        await until(lambda: voices() == {"s2", "s3", "s4"}, 10, "the three talkers in the audio slots")
        assert sections(listener)["audio"] == 3
        # The talkers fall silent and s0 starts: s0 takes a slot within two seconds.
        for i, speaker in enumerate(speakers):
            speaker.voice.loud = i == 0
        changed = time.time()
        await until(lambda: "s0" in voices(), 5, "s0 in an audio slot")
        assert time.time() - changed < 2.0
        assert len(voices()) == 3

    run_hub(scenario, timeout=60)
