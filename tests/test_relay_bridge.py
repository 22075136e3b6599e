"""The trio side of the relay against real worker processes: requests, errors, placement per
participant, and a killed worker being restarted with its participants reported lost."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from meet.config import config_from_mapping
from meet.errors import ConfigError
from meet.relay.bridge import RelayBridge, RelayError


def settings(**rtc: Any) -> Any:
    return config_from_mapping({"rtc": {"host_addresses": ["127.0.0.1"], **rtc}}, env={}).rtc


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lost: list[dict[str, list[str]]] = []
        self.lost_event = trio.Event()

    async def on_event(self, message: dict[str, Any]) -> None:
        self.events.append(message)

    async def on_lost(self, lost: dict[str, list[str]]) -> None:
        self.lost.append(lost)
        self.lost_event.set()


@asynccontextmanager
async def two_workers(ready: bool = True) -> AsyncIterator[tuple[RelayBridge, Recorder]]:
    """A running bridge of two real workers (both up, unless ``ready`` is False), and its recorder."""
    seen = Recorder()
    bridge = RelayBridge(settings(relay_workers=2), seen.on_event, seen.on_lost)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(bridge.run)
            if ready:
                for worker in bridge.workers:
                    await worker.ready.wait()
            yield bridge, seen
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("configured", "expected"), [(0, os.cpu_count() or 1), (1, 1), (3, 3)])
def test_one_worker_per_core_by_default(configured: int, expected: int) -> None:
    bridge = RelayBridge(settings(relay_workers=configured), Recorder().on_event, Recorder().on_lost)
    assert len(bridge.workers) == expected
    assert settings().relay_workers == 0  # the default: every core


def test_a_negative_worker_count_is_refused() -> None:
    with pytest.raises(ConfigError, match="relay_workers"):
        settings(relay_workers=-1)


async def test_requests_reach_the_worker_and_errors_come_back() -> None:
    seen = Recorder()
    bridge = RelayBridge(settings(), seen.on_event, seen.on_lost)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(bridge.run)
            assert (await bridge.request("open", "abc-defg-hij", peer="p1"))["ok"] is True
            (stats,) = [s for s in await bridge.stats() if s["participants"]]
            assert stats["ok"] is True and stats["participants"] == 1
            with pytest.raises(RelayError, match="not open"):
                await bridge.request("answer", "abc-defg-hij", peer="nobody", sdp="v=0")
            with pytest.raises(RelayError, match="unknown op"):
                await bridge.request("teleport", "abc-defg-hij", peer="p1")
            await bridge.request("close", "abc-defg-hij", peer="p1")
            nursery.cancel_scope.cancel()
    assert all(w.process is not None and w.process.returncode is not None for w in bridge.workers)


async def test_rooms_spread_over_workers_and_a_killed_worker_is_restarted() -> None:
    async with two_workers() as (bridge, seen):
        await bridge.request("open", "room-one", peer="a")
        await bridge.request("open", "room-two", peer="b")
        first, second = bridge.placement["room-one"], bridge.placement["room-two"]
        assert first is not second, "rooms go to the least loaded worker"
        old_pid = first.process.pid if first.process else None
        await bridge.kill_worker(first.index)
        await seen.lost_event.wait()
        assert seen.lost == [{"room-one": ["a"]}]
        # Its clients rejoin: the room lands on a running worker.
        assert (await bridge.request("open", "room-one", peer="a"))["ok"] is True
        assert bridge.placement["room-two"] is second, "the other worker kept its room"
        await first.ready.wait()  # the killed one is back, as a new process
        assert first.process is not None and first.process.pid != old_pid
        assert (await bridge.request("open", "room-three", peer="c"))["ok"] is True


async def test_one_room_spreads_over_workers_and_a_dead_one_loses_only_its_participants() -> None:
    async with two_workers() as (bridge, seen):
        for peer in ("a", "b", "c", "d"):
            await bridge.request("open", "big-room", peer=peer)
        on = {peer: bridge.peers["big-room", peer] for peer in "abcd"}
        assert on["a"] is on["c"] and on["b"] is on["d"] and on["a"] is not on["b"], "balanced"
        assert bridge.holders["big-room"] == [on["a"], on["b"]]
        assert all(w.pipe is not None for w in bridge.workers)
        await bridge.kill_worker(on["b"].index)
        await seen.lost_event.wait()
        assert seen.lost == [{"big-room": ["b", "d"]}]
        assert bridge.holders["big-room"] == [on["a"]]
        assert (await bridge.request("close", "big-room", peer="d")) == {"ok": True}  # gone already
        await bridge.request("close", "big-room", peer="a")
        await bridge.request("close", "big-room", peer="c")
        assert "big-room" not in bridge.holders and not bridge.peers


async def test_joins_at_start_up_wait_for_every_worker_and_spread() -> None:
    async with two_workers(ready=False) as (bridge, _seen):
        # A burst of joins before any worker is up: not all on the first one ready.
        async with trio.open_nursery() as joins:
            for peer in "abcd":
                joins.start_soon(lambda p=peer: bridge.request("open", "burst", peer=p))
        placed = [bridge.peers["burst", peer] for peer in "abcd"]
        assert {w.index for w in placed} == {0, 1} and sum(w.index for w in placed) == 2, placed
