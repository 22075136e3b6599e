"""The trio side of the relay: starts worker processes, supervises them, and talks to them.

Each worker is ``python -m meet.relay.worker --fd N`` holding one end of a Unix socket pair;
messages are framed by :mod:`meet.relay.channel`. Requests wait for their answer with a
timeout; events are handed to a callback.

Placement is per participant: each one opens on the worker with the fewest participants (of
any room), preferring one that already holds its room, so a big room spreads over every core.
A room held by several workers is piped between them (``pipe.py``): the bridge tells each
worker the others' pipe addresses (``pipe``/``unpipe``) and passes on what each worker's
participants publish (``publications`` events become ``remote`` requests to the others, in
order). Every worker of a room judges its dominant speaker from the same audio; only the
first worker's ``speaker`` events are passed on.

When a worker dies its pending requests fail, the participants it held are reported through
``on_lost`` (so their clients, and only they, reconnect), the other workers of their rooms
stop piping to it, and it is restarted.
"""

from __future__ import annotations

import itertools
import logging
import math
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
STARTUP_GRACE = 5.0  # seconds from start in which placements wait for every worker to be up
RESTART_DELAYS = (0.2, 1.0, 5.0)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
LostHandler = Callable[[dict[str, list[str]]], Awaitable[None]]  # room -> its participants lost


class RelayError(Exception):
    """A relay request failed (the worker said no, timed out, or died)."""


@dataclass
class _Worker:
    index: int
    stream: trio.SocketStream | None = None
    process: trio.Process | None = None
    pending: dict[int, trio.MemorySendChannel[dict[str, Any]]] = field(default_factory=dict)
    rooms: set[str] = field(default_factory=set)
    peers: set[tuple[str, str]] = field(default_factory=set)  # (room, peer) open on it
    pipe: list[Any] | None = None  # [host, port] of its pipe socket (from configure)
    started: bool = False  # has been ready once (a restart does not hold placements back)
    restarts: int = 0  # times the supervisor started it again (after a crash or a failed start)
    ready: trio.Event = field(default_factory=trio.Event)
    send_lock: trio.Lock = field(default_factory=trio.Lock)


class RelayBridge:
    """Requests to, and events from, the relay worker processes."""

    def __init__(self, settings: RtcConfig, on_event: EventHandler, on_lost: LostHandler) -> None:
        self.settings = settings
        self.on_event = on_event
        self.on_lost = on_lost
        self.workers = [_Worker(i) for i in range(settings.worker_count)]
        self.holders: dict[str, list[_Worker]] = {}  # room -> the workers holding it, first first
        self.peers: dict[tuple[str, str], _Worker] = {}  # (room, peer) -> its worker
        self._ids = itertools.count(1)
        self._changed = trio.Event()  # set (and replaced) whenever a worker becomes ready
        self._started_at = -math.inf  # trio time when run() started
        # Pipe orders (announcements, unpipes), sent in order by one task.
        self._orders, self._order_queue = trio.open_memory_channel[tuple[_Worker, dict[str, Any]]](10_000)

    @property
    def placement(self) -> dict[str, _Worker]:
        """room -> the first worker holding it (tests and operators)."""
        return {room: workers[0] for room, workers in self.holders.items() if workers}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep every worker running until cancelled (owned by the root nursery).

        Starting does not wait for the workers: requests wait (bounded) for one to be ready, so
        a relay that cannot start degrades to errors on relay joins, not to a dead server.
        """
        self._started_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_orders)
            for worker in self.workers:
                nursery.start_soon(self._supervise, worker)
            task_status.started()

    async def _supervise(self, worker: _Worker) -> None:
        for attempt in itertools.count():
            try:
                await self._run_worker(worker)
            except* (OSError, ChannelError, RelayError, trio.BrokenResourceError) as group:
                log.error("relay worker %d failed: %s", worker.index, group.exceptions[0])
            lost: dict[str, list[str]] = {}
            for room, peer in sorted(worker.peers):
                lost.setdefault(room, []).append(peer)
            self._forget(worker)
            if lost:
                await self.on_lost(lost)
            delay = RESTART_DELAYS[min(attempt, len(RESTART_DELAYS) - 1)]
            log.warning("restarting relay worker %d in %.1f s", worker.index, delay)
            await trio.sleep(delay)
            worker.restarts += 1

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
                reply = await self._request(worker, {"op": "configure", **self._configuration()})
                worker.pipe = reply.get("pipe")
                worker.ready.set()
                worker.started = True
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
        elif message.get("event") == "publications":
            self._pass_on(worker, message)
        elif message.get("event") == "demand":
            self._pass_back(worker, message)
        elif message.get("event") == "speaker":
            holders = self.holders.get(str(message.get("room")))
            if holders and holders[0] is worker:  # the room's first worker speaks for it
                await self.on_event(message)
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
        for key in worker.peers:
            self.peers.pop(key, None)
        for room in worker.rooms:
            self._drop_holder(room, worker)
        worker.peers.clear()
        worker.rooms.clear()
        worker.stream = None
        worker.pipe = None
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

    async def _ready_workers(self) -> list[_Worker]:
        """The running workers: at least one (waiting for it, bounded), and every one that is
        still starting for the first time (a little longer): else a burst of joins at start-up
        would all land on whichever worker was ready first, and stay there."""
        with trio.move_on_after(REQUEST_TIMEOUT):
            while not any(w.ready.is_set() for w in self.workers):
                await self._changed.wait()
        with trio.move_on_at(self._started_at + STARTUP_GRACE):
            while not all(w.ready.is_set() or w.started for w in self.workers):
                await self._changed.wait()
        ready = [w for w in self.workers if w.ready.is_set()]
        if not ready:
            raise RelayError("no relay worker is running")
        return ready

    async def _place(self, room: str, peer: str) -> _Worker:
        """The worker for a participant opening in ``room``: its own again (a reconnect), else
        the one with the fewest participants, preferring a worker that holds the room."""
        worker = self.peers.get((room, peer))
        if worker is not None:
            return worker
        ready = await self._ready_workers()
        holders = self.holders.setdefault(room, [])
        worker = min(ready, key=lambda w: (len(w.peers), w not in holders, w.index))
        self.peers[room, peer] = worker
        worker.peers.add((room, peer))
        if worker not in holders:
            holders.append(worker)
            worker.rooms.add(room)
            await self._pipe(room, worker, holders)
        return worker

    async def _pipe(self, room: str, new: _Worker, holders: list[_Worker]) -> None:
        """``new`` holds ``room`` too: it and the room's other workers pipe to each other.

        The newcomer learns the others first (its room exists before their announcements of
        what is published reach it)."""
        others = [w for w in holders if w is not new and w.pipe is not None]
        if new.pipe is None or not others:
            return
        for other in others:
            await self._request(new, {"op": "pipe", "room": room, "address": other.pipe})
        for other in others:
            await self._request(other, {"op": "pipe", "room": room, "address": new.pipe})

    def _leave(self, room: str, peer: str) -> None:
        """``peer`` closed: its worker lets the room go once nobody of it is left there."""
        worker = self.peers.pop((room, peer), None)
        if worker is None:
            return
        worker.peers.discard((room, peer))
        if not any(key[0] == room for key in worker.peers):
            worker.rooms.discard(room)
            self._drop_holder(room, worker)

    def _drop_holder(self, room: str, worker: _Worker) -> None:
        """``worker`` no longer holds ``room``: the room's other workers stop piping to it."""
        holders = self.holders.get(room, [])
        if worker in holders:
            holders.remove(worker)
            for other in holders:
                if worker.pipe is not None:
                    self._order(other, {"op": "unpipe", "room": room, "address": worker.pipe})
        if not holders:
            self.holders.pop(room, None)

    def _pass_on(self, worker: _Worker, message: dict[str, Any]) -> None:
        """A worker's announcement of what a participant publishes: to the room's other workers."""
        room = str(message.get("room"))
        request = {
            "op": "remote",
            "room": room,
            "peer": message.get("peer"),
            "address": worker.pipe,
            "publications": message.get("publications", []),
        }
        for other in self.holders.get(room, []):
            if other is not worker:
                self._order(other, request)

    def _pass_back(self, worker: _Worker, message: dict[str, Any]) -> None:
        """A worker's report of the layers its subscribers use of a remote publication: to the
        publisher's worker, which asks the publisher for them and pipes only those (demand.py)."""
        room = str(message.get("room"))
        owner = self.peers.get((room, str(message.get("peer"))))
        if owner is None or owner is worker or worker.pipe is None:
            return  # the publisher left, or moved here (a reconnect): nothing to tell
        request = {
            "op": "demand",
            "room": room,
            "peer": message.get("peer"),
            "publication": message.get("publication"),
            "rids": message.get("rids", []),
            "address": worker.pipe,
        }
        self._order(owner, request)

    def _order(self, worker: _Worker, request: dict[str, Any]) -> None:
        try:
            self._orders.send_nowait((worker, request))
        except trio.WouldBlock:
            log.error("relay pipe orders overflow: %s dropped", request.get("op"))

    async def _send_orders(self) -> None:
        """Send the pipe orders one at a time, in the order they were made."""
        async for worker, request in self._order_queue:
            if not worker.ready.is_set():
                continue  # it died meanwhile: its successor starts without the room
            try:
                await self._request(worker, request)
            except RelayError as exc:
                log.warning("relay %s for room %s failed: %s", request["op"], request.get("room"), exc)

    async def request(self, op: str, room: str, **fields: Any) -> dict[str, Any]:
        """Send one request about a participant of ``room`` to the worker holding it; its reply.

        ``open`` places the participant; a ``close`` of a participant no worker holds (its
        worker died, or it never opened) has nothing to close: it is answered here.
        """
        peer = str(fields.get("peer"))
        if op == "open":
            worker = await self._place(room, peer)
        else:
            found = self.peers.get((room, peer))
            if found is None:
                if op == "close":
                    return {"ok": True}
                raise RelayError(f"peer {peer!r} is not open on the relay")
            worker = found
        try:
            return await self._request(worker, {"op": op, "room": room, **fields})
        finally:
            if op == "close":
                self._leave(room, peer)

    async def stats(self, timeout: float = REQUEST_TIMEOUT) -> list[dict[str, Any]]:
        """The counters of every running worker (participants, packets forwarded, CPU seconds, …:
        the ``stats`` reply, see :mod:`meet.relay.channel`), each with its ``index``, ``pid`` and
        ``restarts``, in worker order.

        The workers are asked at once; one that is not running, dies meanwhile or does not
        answer within ``timeout`` seconds is left out (operators still see the others).
        """
        answers: dict[int, dict[str, Any]] = {}

        async def ask(worker: _Worker) -> None:
            with trio.move_on_after(timeout):
                try:
                    reply = await self._request(worker, {"op": "stats"})
                except RelayError as exc:
                    log.debug("relay worker %d gave no stats: %s", worker.index, exc)
                    return
                counters = {key: value for key, value in reply.items() if key != "id"}
                pid = worker.process.pid if worker.process is not None else None
                answers[worker.index] = {
                    **counters,
                    "index": worker.index,
                    "pid": pid,
                    "restarts": worker.restarts,
                }

        async with trio.open_nursery() as nursery:
            for worker in self.workers:
                if worker.ready.is_set():
                    nursery.start_soon(ask, worker)
        return [answers[index] for index in sorted(answers)]

    def release(self, room: str) -> None:
        """The room emptied: forget whatever placement is left of it (participants whose close
        never came, e.g. a failed join)."""
        for key in [key for key in self.peers if key[0] == room]:
            self._leave(*key)
        self.holders.pop(room, None)

    async def kill_worker(self, index: int) -> None:
        """Kill a worker process (tests and operators): it is restarted like after a crash."""
        process = self.workers[index].process
        if process is not None and process.returncode is None:
            process.kill()
