"""The dominant speaker (meet/relay/speaker.py): the detector on timelines, then real aiortc peers.

The detector is fed activity per interval with explicit times (no clock involved). The
worker-level test runs real aiortc publishers through an in-process relay: their tone or
silence reaches the relay as RFC 6464 audio levels, and the relay's ``speaker`` events must
follow who talks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence

import pytest
from relay_peers import Hub, TestPeer, run_hub, until

from meet.relay import ice, speaker
from meet.relay.speaker import INTERVAL, DominantSpeaker, activity


@pytest.fixture(autouse=True)
def _stock_ice() -> Iterator[None]:
    yield
    ice.reset_ice()


def play(
    detector: DominantSpeaker, timeline: Sequence[tuple[float, dict[str, float]]]
) -> list[tuple[float, str]]:
    """Feed ``(seconds, activity per peer)`` segments interval by interval: (time, new speaker) changes."""
    changes: list[tuple[float, str]] = []
    now = 0.0
    for seconds, levels in timeline:
        for _ in range(round(seconds / INTERVAL)):
            now = round(now + INTERVAL, 6)
            new = detector.update(levels, now)
            if new is not None:
                changes.append((now, new))
    return changes


A_TALKS = {"a": 1.0, "b": 0.0, "c": 0.0}
B_TALKS = {"a": 0.0, "b": 1.0, "c": 0.0}
SILENCE = {"a": 0.0, "b": 0.0, "c": 0.0}


@pytest.mark.parametrize(
    ("timeline", "expected"),
    [
        pytest.param([(3, A_TALKS)], [(0.6, "a")], id="the first voice takes over after half a second"),
        pytest.param([(3, A_TALKS), (3, B_TALKS)], [(0.6, "a"), (3.8, "b")], id="a change follows in 0.8 s"),
        pytest.param(
            [(3, A_TALKS), (0.2, {"a": 1.0, "b": 1.0, "c": 0.0}), (3, A_TALKS)],
            [(0.6, "a")],
            id="a 200-ms word over the speaker does not take over",
        ),
        pytest.param(
            [(3, A_TALKS), (1, SILENCE), (0.2, B_TALKS), (3, SILENCE)],
            [(0.6, "a")],
            id="a 200-ms word in a pause does not take over",
        ),
        pytest.param(
            [(0.2, B_TALKS), (0.8, SILENCE)] * 5,
            [],
            id="a short word every second stays under half the window",
        ),
        pytest.param([(3, A_TALKS), (10, SILENCE)], [(0.6, "a")], id="a pause keeps the speaker"),
        pytest.param(
            [(3, A_TALKS), (3, {"a": 1.0, "b": 1.0, "c": 0.0})],
            [(0.6, "a")],
            id="talking over the speaker is not enough to replace it",
        ),
        pytest.param(
            [(3, A_TALKS), (3, {"a": 0.4, "b": 0.9, "c": 0.0})],
            [(0.6, "a"), (4.0, "b")],
            id="clearly more than the speaker is",
        ),
        pytest.param([(5, SILENCE)], [], id="nobody speaks, nobody is the speaker"),
    ],
)
def test_the_detector_follows_sustained_speech_only(
    timeline: list[tuple[float, dict[str, float]]], expected: list[tuple[float, str]]
) -> None:
    assert play(DominantSpeaker(), timeline) == expected


def test_a_speaker_who_leaves_is_forgotten_and_the_next_one_takes_over() -> None:
    detector = DominantSpeaker()
    assert play(detector, [(2, A_TALKS)]) == [(0.6, "a")]
    now = 2.0
    for _ in range(5):  # a left (no activity any more); b talks
        now += INTERVAL
        new = detector.update({"b": 1.0}, now)
        if new is not None:
            break
    assert detector.current == "b" and new == "b"
    detector.remove("b")
    assert detector.current is None


def test_irregular_intervals_count_by_time() -> None:
    """The pacer is late sometimes: an interval of 0.4 s counts twice one of 0.2 s."""
    detector = DominantSpeaker()
    assert detector.update({"a": 1.0}, 0.2) is None  # 0.2 s of speech
    assert detector.update({"a": 1.0}, 0.6) == "a"  # and 0.4 more: 0.6 of the last second


@pytest.mark.parametrize(
    ("packets", "elapsed", "share"),
    [(10, 0.2, 1.0), (5, 0.2, 0.5), (0, 0.2, 0.0), (30, 0.2, 1.0), (3, 0.0, 0.0)],
)
def test_activity_is_the_share_of_time_covered_by_speech_packets(
    packets: int, elapsed: float, share: float
) -> None:
    assert activity(packets, elapsed) == pytest.approx(share)


def _speakers(hub: Hub) -> list[str]:
    return [event["peer"] for event in hub.events if event["event"] == "speaker"]


async def _speaker_after(hub: Hub, count: int, timeout: float, what: str) -> tuple[str, float]:
    """Wait for the ``count``-th speaker event: (its peer, when it came)."""
    await until(lambda: len(_speakers(hub)) >= count, timeout, what)
    return _speakers(hub)[count - 1], time.monotonic()


def test_the_relay_names_the_peer_whose_audio_is_loud(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tones and silence from real aiortc publishers: the speaker follows, a short burst does not."""
    levels: list[int] = []
    stock = speaker.activity

    def recording(packets: int, elapsed: float) -> float:
        levels.append(packets)
        return stock(packets, elapsed)

    async def scenario(hub: Hub) -> None:
        alice, bob = TestPeer(hub, "alice", video=False), TestPeer(hub, "bob", video=False)
        bob.voice.loud = False
        carol = TestPeer(hub, "carol", audio=False, video=False, recvonly=(2, 0))  # only listens
        for peer in (alice, bob, carol):
            await peer.join()
        assert await _speaker_after(hub, 1, 10, "a first speaker") == (
            "alice",
            pytest.approx(time.monotonic(), abs=10),
        )

        alice.voice.loud, bob.voice.loud = False, True
        switched = time.monotonic()
        name, when = await _speaker_after(hub, 2, 10, "bob as the speaker")
        assert name == "bob"
        assert when - switched < 2.0, f"the speaker changed {when - switched:.2f} s after bob started"

        alice.voice.loud = True  # one loud word over bob
        await asyncio.sleep(0.2)  # the stimulus lasts 200 ms (not a wait for state)
        alice.voice.loud = False
        quiet_until = time.monotonic() + 1.5
        while time.monotonic() < quiet_until:
            assert _speakers(hub) == ["alice", "bob"], "a 200-ms word took over"
            await asyncio.sleep(0.05)
        assert "carol" not in _speakers(hub)
        assert any(levels), "no speech packets counted"

    monkeypatch.setattr(speaker, "activity", recording)
    run_hub(scenario)


def test_events_carry_the_room() -> None:
    async def scenario(hub: Hub) -> None:
        alice = TestPeer(hub, "alice", video=False)
        await alice.join()
        await until(lambda: bool(_speakers(hub)), 10, "a speaker event")
        (event,) = [e for e in hub.events if e["event"] == "speaker"]
        assert event == {"event": "speaker", "room": "room-1", "peer": "alice"}

    run_hub(scenario)
