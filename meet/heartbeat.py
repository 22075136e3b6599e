"""The heartbeat of every open WebSocket, kept by one task for the whole server.

Each client is pinged every ``ping_interval`` and ended (close 4408) once nothing has come from
it for ``idle_timeout``. One task walks every client a few times per ``ping_interval`` instead
of each connection sleeping in a task of its own: a task per connection costs ~2 KiB and a
timer, and the walk is a few µs per client per tick. A ping or a timeout comes at most one tick
late, never early.
"""

from __future__ import annotations

from typing import Protocol

import trio

from meet.config import RoomsConfig

TICKS_PER_INTERVAL = 4
MAX_TICK = 1.0  # seconds


class Beating(Protocol):
    def beat(self, now: float) -> None:
        """Ping if one is due, end the client if it went silent."""


class Heartbeat:
    """The clients to ping, and the task that pings them."""

    def __init__(self, settings: RoomsConfig) -> None:
        self.tick = min(MAX_TICK, settings.ping_interval / TICKS_PER_INTERVAL, settings.idle_timeout / 2)
        self.clients: set[Beating] = set()
        self._arrived = trio.Event()  # the task sleeps on it while nobody is connected

    def watch(self, client: Beating) -> None:
        self.clients.add(client)
        self._arrived.set()

    def forget(self, client: Beating) -> None:
        self.clients.discard(client)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Beat every client each tick, until cancelled."""
        task_status.started()
        while True:
            if not self.clients:
                self._arrived = trio.Event()
                await self._arrived.wait()
            await trio.sleep(self.tick)
            now = trio.current_time()
            for client in list(self.clients):
                client.beat(now)
