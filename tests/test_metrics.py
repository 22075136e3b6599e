"""Operator metrics: the relay workers' figures (stats with index, pid, restarts, CPU seconds,
layer switches)."""

from __future__ import annotations

from typing import Any

import trio
from test_relay_layers import run, simulcast, subscriber

from meet.config import config_from_mapping
from meet.relay.bridge import RelayBridge


class Lost:
    def __init__(self) -> None:
        self.event = trio.Event()

    async def on_event(self, message: dict[str, Any]) -> None:
        pass

    async def on_lost(self, lost: dict[str, list[str]]) -> None:
        self.event.set()


async def test_bridge_stats_name_each_worker_and_count_its_restarts() -> None:
    rtc = config_from_mapping({"rtc": {"host_addresses": ["127.0.0.1"], "relay_workers": 1}}, env={}).rtc
    seen = Lost()
    bridge = RelayBridge(rtc, seen.on_event, seen.on_lost)
    (worker,) = bridge.workers
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(bridge.run)
            await bridge.request("open", "room-one", peer="a")
            (stats,) = await bridge.stats()
            assert worker.process is not None
            assert (stats["index"], stats["pid"], stats["restarts"]) == (0, worker.process.pid, 0)
            assert stats["cpu_seconds"] > 0 and stats["layer_switches"] == 0
            assert "id" not in stats
            await bridge.kill_worker(0)
            await seen.event.wait()  # it is down: the figures of the running workers (none)
            assert await bridge.stats() == []
            await worker.ready.wait()
            (stats,) = await bridge.stats()
            assert (stats["pid"], stats["restarts"]) == (worker.process.pid, 1)
            nursery.cancel_scope.cancel()


def test_a_completed_layer_switch_is_counted() -> None:
    def scenario() -> None:
        publication, (low, _mid, high) = simulcast([])
        out, _sent = subscriber(publication.counters)
        out.subscribe(publication, high.source)
        high.send_frame(keyframe=True)
        out.switch(low.source)
        low.send_frame()  # not a keyframe: the switch waits
        assert publication.counters.layer_switches == 0
        low.send_frame(keyframe=True)
        assert publication.counters.layer_switches == 1 and out.source is low.source

    run(scenario)
