"""The trio side of the relay: starts worker processes, supervises them, and talks to them.

Each worker is ``python -m meet.relay.worker --fd N`` holding one end of a Unix socket pair;
messages are framed by :mod:`meet.relay.channel`. Requests wait for their answer with a
timeout; events are handed to a callback. A room is placed on the least loaded worker and
stays there. When a worker dies its pending requests fail, the rooms it held are reported
through ``on_lost`` (so their clients can be told to reconnect), and it is restarted.
"""

from __future__ import annotations

import itertools
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from meet.config import RtcConfig
from meet.relay.channel import ChannelError, Decoder, encode

log = logging.getLogger("meet.relay")

REQUEST_TIMEOUT = 15.0
RESTART_DELAYS = (0.2, 1.0, 5.0)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
LostHandler = Callable[[list[str]], Awaitable[None]]


class RelayError(Exception):
    """A relay request failed (the worker said no, timed out, or died)."""


@dataclass
class _Worker:
    index: int
    stream: trio.SocketStream | None = None
    process: trio.Process | None = None
    pending: dict[int, trio.MemorySendChannel[dict[str, Any]]] = field(default_factory=dict)
    rooms: set[str] = field(default_factory=set)
    ready: trio.Event = field(default_factory=trio.Event)
    send_lock: trio.Lock = field(default_factory=trio.Lock)


class RelayBridge:
    """Requests to, and events from, the relay worker processes."""

    def __init__(self, settings: RtcConfig, on_event: EventHandler, on_lost: LostHandler) -> None:
        self.settings = settings
        self.on_event = on_event
        self.on_lost = on_lost
        self.workers = [_Worker(i) for i in range(settings.worker_count)]
        self.placement: dict[str, _Worker] = {}
        self._ids = itertools.count(1)
        self._changed = trio.Event()  # set (and replaced) whenever a worker becomes ready

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep every worker running until cancelled (owned by the root nursery).

        Starting does not wait for the workers: requests wait (bounded) for one to be ready, so
        a relay that cannot start degrades to errors on relay joins, not to a dead server.
        """
        async with trio.open_nursery() as nursery:
            for worker in self.workers:
                nursery.start_soon(self._supervise, worker)
            task_status.started()

    async def _supervise(self, worker: _Worker) -> None:
        for attempt in itertools.count():
            try:
                await self._run_worker(worker)
            except* (OSError, ChannelError, RelayError, trio.BrokenResourceError) as group:
                log.error("relay worker %d failed: %s", worker.index, group.exceptions[0])
            lost = sorted(worker.rooms)
            self._forget(worker)
            if lost:
                await self.on_lost(lost)
            delay = RESTART_DELAYS[min(attempt, len(RESTART_DELAYS) - 1)]
            log.warning("restarting relay worker %d in %.1f s", worker.index, delay)
            await trio.sleep(delay)

    async def _run_worker(self, worker: _Worker) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            command = [sys.executable, "-m", "meet.relay.worker", "--fd", str(child.fileno())]
            worker.process = await trio.lowlevel.open_process(command, pass_fds=(child.fileno(),))
        finally:
            child.close()
        worker.stream = trio.SocketStream(trio.socket.from_stdlib_socket(parent))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, worker)
                await self._request(worker, {"op": "configure", **self._configuration()})
                worker.ready.set()
                self._changed.set()
                self._changed = trio.Event()
                log.info("relay worker %d running (pid %d)", worker.index, worker.process.pid)
        finally:
            # Also when cancelled (server shutdown): requests still waiting for this worker fail
            # now instead of at their timeout (leaves in flight would hold the shutdown).
            self._fail_pending(worker)
            with trio.CancelScope(shield=True):
                await self._stop_process(worker)

    def _configuration(self) -> dict[str, Any]:
        return {
            "ice_servers": [server.as_json() for server in self.settings.ice_servers],
            "host_addresses": list(self.settings.host_addresses),
            "udp_ports": list(self.settings.port_range) if self.settings.port_range else None,
            "video_slots": self.settings.video_slots,
            "audio_slots": self.settings.audio_slots,
        }

    async def _read(self, worker: _Worker) -> None:
        assert worker.stream is not None
        decoder = Decoder()
        while data := await worker.stream.receive_some(65536):
            for message in decoder.feed(data):
                await self._dispatch(worker, message)
        raise RelayError("the worker closed its channel")

    async def _dispatch(self, worker: _Worker, message: dict[str, Any]) -> None:
        if "id" in message:
            reply_to = worker.pending.pop(message["id"], None)
            if reply_to is not None:
                reply_to.send_nowait(message)
        elif "event" in message:
            await self.on_event(message)

    async def _stop_process(self, worker: _Worker) -> None:
        if worker.stream is not None:
            await worker.stream.aclose()
        process = worker.process
        if process is not None and process.returncode is None:
            process.terminate()
            with trio.move_on_after(3):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()

    def _fail_pending(self, worker: _Worker) -> None:
        for reply_to in worker.pending.values():
            reply_to.send_nowait({"ok": False, "error": "the relay worker stopped"})
        worker.pending.clear()

    def _forget(self, worker: _Worker) -> None:
        self._fail_pending(worker)
        for room in worker.rooms:
            self.placement.pop(room, None)
        worker.rooms.clear()
        worker.stream = None
        worker.ready = trio.Event()

    async def _request(self, worker: _Worker, message: dict[str, Any]) -> dict[str, Any]:
        if worker.stream is None:
            raise RelayError("the relay worker is not running")
        request_id = next(self._ids)
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        worker.pending[request_id] = send
        try:
            async with worker.send_lock:
                await worker.stream.send_all(encode({"id": request_id, **message}))
            with trio.fail_after(REQUEST_TIMEOUT):
                reply = await receive.receive()
        except trio.TooSlowError:
            raise RelayError(f"the relay worker did not answer {message['op']!r} in time") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise RelayError("the relay worker stopped") from None
        finally:
            worker.pending.pop(request_id, None)
        if not reply.get("ok"):
            raise RelayError(str(reply.get("error", "the relay refused the request")))
        return reply

    async def _worker_for(self, room: str) -> _Worker:
        """The worker holding ``room``, placing it on the least loaded ready one if new."""
        worker = self.placement.get(room)
        if worker is not None:
            return worker
        with trio.move_on_after(REQUEST_TIMEOUT):
            while not any(w.ready.is_set() for w in self.workers):
                await self._changed.wait()
        ready = [w for w in self.workers if w.ready.is_set()]
        if not ready:
            raise RelayError("no relay worker is running")
        worker = min(ready, key=lambda w: len(w.rooms))
        self.placement[room] = worker
        worker.rooms.add(room)
        return worker

    async def request(self, op: str, room: str, **fields: Any) -> dict[str, Any]:
        """Send one request about ``room`` to the worker holding it; its reply.

        A ``close`` in a room no worker holds (released, or its worker died) has nothing to
        close: it is answered here rather than placing the room again.
        """
        if op == "close" and room not in self.placement:
            return {"ok": True}
        return await self._request(await self._worker_for(room), {"op": op, "room": room, **fields})

    async def stats(self) -> list[dict[str, Any]]:
        """The counters of every running worker (participants, packets forwarded, …)."""
        running = [w for w in self.workers if w.ready.is_set()]
        return [await self._request(worker, {"op": "stats"}) for worker in running]

    def release(self, room: str) -> None:
        """Forget a room's placement once its last participant left."""
        worker = self.placement.pop(room, None)
        if worker is not None:
            worker.rooms.discard(room)

    async def kill_worker(self, index: int) -> None:
        """Kill a worker process (tests and operators): it is restarted like after a crash."""
        process = self.workers[index].process
        if process is not None and process.returncode is None:
            process.kill()
