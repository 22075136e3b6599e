"""The relay worker process: rooms of participants, each with one RTCPeerConnection, on asyncio
(as a process, on uvloop's event loop).

:class:`Relay` implements the channel contract of :mod:`meet.relay.channel`: ``handle(request)``
answers one request (``configure``, ``open``, ``offer``, ``answer``, ``candidate``, ``close``,
``view``, ``stats``) and ``on_event`` receives the events (``offer``, ``tracks``, ``failed``, ``speaker``).
It can run in-process (tests drive it directly) or as ``python -m meet.relay.worker --fd N``: the
process entry speaks channel frames on the inherited Unix socket ``N`` and exits when the socket
closes or on SIGTERM/SIGINT, closing every peer connection first.

Requests are handled concurrently, each as soon as it arrives; the requests of one participant
are applied in arrival order (its lock is FIFO). A reply is written right after its handler
returns, so an event a request caused (``tracks`` before an answer) precedes the reply, and a
renegotiation it triggered (``offer``) follows it.

Decisions where the contract is loose: ``open`` of a peer that is already open replaces it (a
reconnect); requests before ``configure`` use host candidates on every interface and no ICE
servers; ``candidate`` never fails the request for a candidate that cannot be applied (the
reply says ``applied: false``), since a client trickles candidates of offers the relay ignored.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import uvloop
from aiortc import RTCConfiguration
from aiortc.exceptions import InvalidStateError

from meet.relay import compat, demand, ice, speaker, uplink
from meet.relay.channel import ChannelError, Decoder, encode
from meet.relay.forward import Counters
from meet.relay.peer import Participant, RequestError
from meet.relay.pipe import Address, Endpoint
from meet.relay.probe import PACE
from meet.relay.room import Room
from meet.relay.slots import Counts

log = logging.getLogger("meet.relay.worker")

EventSink = Callable[[dict[str, Any]], None]
CLOSE_TIMEOUT = 5.0
PACE_INTERVAL = PACE  # seconds between two rounds while a probe runs: what its schedule expects
IDLE_INTERVAL = uplink.INTERVAL  # seconds between two rounds otherwise: the publishers' feedback
ROUND_INTERVAL = speaker.INTERVAL  # seconds between two rounds of layers, speaker and reports


class Relay:
    """Rooms and participants of one worker; the channel operations."""

    def __init__(self, on_event: EventSink) -> None:
        self.on_event = on_event
        self.rooms: dict[str, Room] = {}
        self.counters = Counters()
        self.ice_servers: list[dict[str, Any]] = []
        self.configured = False
        self.counts = Counts()  # receive slots of the connections of rooms opened from now on
        self.layer_hold = demand.HOLD  # seconds a layer no one uses stays requested
        self.pipes = Endpoint(self.counters)  # opened by configure: rooms spread over workers
        self._retired = [0, 0]  # packets, octets of closed subscriptions
        self._pacer: asyncio.TimerHandle | None = None
        self._next_round = 0.0
        self._ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "configure": self._configure,
            "open": self._open,
            "offer": self._offer,
            "answer": self._answer,
            "candidate": self._candidate,
            "close": self._close,
            "view": self._view,
            "pipe": self._pipe,
            "unpipe": self._unpipe,
            "remote": self._remote,
            "demand": self._demand,
            "stats": self._stats,
        }

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """One channel request → its reply (``ok`` true with the op's fields, or an error)."""
        reply_id = request.get("id")
        op = self._ops.get(str(request.get("op")))
        try:
            if op is None:
                raise RequestError(f"unknown op {request.get('op')!r}")
            result = await op(request)
        except (RequestError, InvalidStateError, ValueError, KeyError, TypeError) as exc:
            log.info("request %s refused: %s", request.get("op"), exc)
            return {"id": reply_id, "ok": False, "error": str(exc) or type(exc).__name__}
        except compat.CompatibilityError as exc:  # this aiortc cannot be used: say so loudly, once
            log.error("%s", exc)
            return {"id": reply_id, "ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("request %s failed", request.get("op"))
            return {"id": reply_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"id": reply_id, "ok": True, **result}

    def pace(self, now: float) -> float:
        """One round of the pacer; the seconds until the next one.

        Each round sends the publishers their feedback and the padding probes need, and the RTCP
        reports that are due; every :data:`ROUND_INTERVAL` it also measures the layers, chooses
        each subscriber's and judges the speaker. Rounds come every 10 ms while any link probes,
        else every 50 ms while a publisher needs transport-cc feedback, else at the next full
        round: every wake-up of a loop that also receives costs more than the round itself.
        """
        participants = [p for room in self.rooms.values() for p in room.participants.values()]
        for participant in participants:
            participant.pace(now)
        if now >= self._next_round:
            self._next_round = now + ROUND_INTERVAL
            self._full_round(participants, now)
        if any(participant.bandwidth.probing for participant in participants):
            return PACE_INTERVAL
        if any(participant.bandwidth.uplink.packets for participant in participants):
            return IDLE_INTERVAL  # a publisher numbers its packets: its feedback is due every round
        return max(PACE_INTERVAL, self._next_round - now)

    def _full_round(self, participants: list[Participant], now: float) -> None:
        """Measure the layers, choose each subscriber's, judge each room's speaker."""
        for room in self.rooms.values():
            for publication in room.all_publications():
                publication.measure(now)
        for participant in participants:
            participant.rebalance(now)
        for room in self.rooms.values():
            room.update_layers(now)
            self._judge_speaker(room, now)

    def _judge_speaker(self, room: Room, now: float) -> None:
        dominant = room.judge_speaker(now)
        if dominant is not None:
            log.debug("%s: %s is the dominant speaker", room.name, dominant)
            self.on_event({"event": "speaker", "room": room.name, "peer": dominant})
        if room.counts.fixed:  # the loudest voices fill the audio slots (and, without a view, video)
            for participant in room.participants.values():
                participant.assign()

    def _start_pacer(self, delay: float) -> None:
        """The next round in ``delay`` s: a timer, not a task (no sleep future to settle per round)."""
        self._pacer = asyncio.get_running_loop().call_later(delay, self._pace_round)

    def _pace_round(self) -> None:
        self._pacer = None
        if not self.rooms:
            return  # started again by the next open
        try:
            delay = self.pace(time.time())
        except Exception:  # one participant's surprise must not stop everyone's pacing
            log.exception("pacing failed")
            delay = ROUND_INTERVAL
        self._start_pacer(delay)

    async def close(self) -> None:
        """Close every participant at once (process shutdown)."""
        if self._pacer is not None:
            self._pacer.cancel()
        removals = [
            self._remove(room, peer) for room in list(self.rooms.values()) for peer in list(room.participants)
        ]
        await asyncio.gather(*removals, return_exceptions=True)
        self.rooms.clear()
        self.pipes.close()

    # --- operations -----------------------------------------------------------------------------

    async def _configure(self, request: dict[str, Any]) -> dict[str, Any]:
        compat.check()
        servers = request.get("ice_servers") or []
        if not isinstance(servers, list):
            raise RequestError("ice_servers must be a list")
        self.ice_servers = servers
        self._configuration()  # validates the servers now rather than at the first join
        addresses = [str(a) for a in request.get("host_addresses") or []]
        ports = _port_range(request.get("udp_ports"))
        ice.configure_ice(addresses, ports)
        try:
            self.counts = Counts(int(request.get("video_slots", 9)), int(request.get("audio_slots", 3)))
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        hold = float(request.get("layer_hold", demand.HOLD))
        if not 0 <= hold <= 60:
            raise RequestError("layer_hold must be 0 to 60 seconds")
        self.layer_hold = hold
        if self.pipes.transport is None:
            await self.pipes.open()
        self.configured = True
        return {"pipe": list(self.pipes.address)}

    async def _open(self, request: dict[str, Any]) -> dict[str, Any]:
        room, peer = self._room(request), _text(request, "peer")
        if peer in room.participants:  # a reconnect: start afresh, in the same room (and its pipes)
            await self._remove(room, peer, leave=False)
        room.participants[peer] = Participant(room, peer, self._configuration(), self.on_event)
        if self._pacer is None:  # runs while any room is open
            self._start_pacer(PACE_INTERVAL)
        return {}

    async def _offer(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._participant(request).on_offer(_text(request, "sdp"))

    async def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._participant(request).on_answer(_text(request, "sdp"))

    async def _candidate(self, request: dict[str, Any]) -> dict[str, Any]:
        candidate = request.get("candidate")
        if candidate is not None and not isinstance(candidate, dict):
            raise RequestError("candidate must be an object or null")
        return await self._participant(request).on_candidate(candidate)

    async def _close(self, request: dict[str, Any]) -> dict[str, Any]:
        room = self.rooms.get(_text(request, "room"))
        if room is not None:
            await self._remove(room, _text(request, "peer"))
        return {}

    async def _view(self, request: dict[str, Any]) -> dict[str, Any]:
        tiles = request.get("tiles")
        if not isinstance(tiles, list):
            raise RequestError("view needs a list of tiles")
        self._participant(request).set_view(tiles, time.time())
        return {}

    async def _pipe(self, request: dict[str, Any]) -> dict[str, Any]:
        """Another worker holds this room too: pipe it everything published here."""
        self._room(request).pipe(_address(request))
        return {}

    async def _unpipe(self, request: dict[str, Any]) -> dict[str, Any]:
        """A worker no longer holds this room (emptied or died): stop piping, drop its publishers."""
        room = self.rooms.get(_text(request, "room"))
        if room is not None:
            room.unpipe(_address(request))
        return {}

    async def _remote(self, request: dict[str, Any]) -> dict[str, Any]:
        """What a participant of another worker holding this room publishes now."""
        announced = request.get("publications")
        if not isinstance(announced, list) or not all(isinstance(a, dict) for a in announced):
            raise RequestError("remote needs a list of publications")
        room = self.rooms.get(_text(request, "room"))
        if room is not None:  # else the room left this worker meanwhile: nothing to feed
            room.set_remote(_text(request, "peer"), _address(request), announced)
        return {}

    async def _demand(self, request: dict[str, Any]) -> dict[str, Any]:
        """Another worker's subscribers use only these layers of a publication here (``demand.py``)."""
        rids = request.get("rids")
        if not isinstance(rids, list) or not all(isinstance(rid, str) for rid in rids):
            raise RequestError("demand needs a list of rids")
        room = self.rooms.get(_text(request, "room"))
        if room is not None:  # else the room left this worker meanwhile
            room.set_far(_address(request), int(request["publication"]), rids)
        return {}

    async def _stats(self, request: dict[str, Any]) -> dict[str, Any]:
        participants = [p for room in self.rooms.values() for p in room.participants.values()]
        outs = [out for p in participants for out in p.out_streams()]
        sources = [s for p in participants for s in p.pubs.values()]
        requested = {
            pub: rids for room in self.rooms.values() for pub, rids in room.requests.requested.items()
        }
        return {
            "rooms": len(self.rooms),
            "participants": len(participants),
            "publications": sum(1 for s in sources if s.live),
            "subscriptions": sum(1 for out in outs if out.publication is not None),
            "packets_received": sum(s.packets for s in sources),
            "packets_forwarded": self._retired[0] + sum(out.packets for out in outs),
            "bytes_forwarded": self._retired[1] + sum(out.octets for out in outs),
            "cpu_seconds": time.process_time(),  # of this worker process (user + system)
            "subscribers": [
                {"room": name, **participant.link_stats()}
                for name, room in self.rooms.items()
                for participant in room.participants.values()
            ],
            # per received layer (a simulcast publication has several): what each subscriber
            # could be sent depends on the layer it carries, not on everything received
            "layers": [
                {
                    "publisher": s.publisher,
                    "source": s.label,
                    "rid": layer.rid,
                    "packets": layer.packets,
                    "rate": round(layer.rate),
                    "size": list(layer.size) if layer.size else None,  # of its latest keyframe
                    # asked of the publisher (demand.py): some subscriber of the room uses it
                    "requested": layer.rid is None or layer.rid in requested.get(s, demand.rids(s)),
                }
                for s in sources
                if s.live
                for layer in s.layers
            ],
            **self.counters.as_dict(),
        }

    # --- helpers --------------------------------------------------------------------------------

    def _room(self, request: dict[str, Any]) -> Room:
        name = _text(request, "room")
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(
                name, self.counters, self.counts, self.pipes, self.on_event, self.layer_hold
            )
        return room

    def _participant(self, request: dict[str, Any]) -> Participant:
        room = self.rooms.get(_text(request, "room"))
        participant = room.participants.get(_text(request, "peer")) if room else None
        if participant is None:
            raise RequestError(f"peer {request.get('peer')!r} is not open in room {request.get('room')!r}")
        return participant

    async def _remove(self, room: Room, peer: str, leave: bool = True) -> None:
        """Close ``peer``; the room leaves this worker with its last participant, if ``leave``."""
        participant = room.participants.pop(peer, None)
        if participant is None:
            return
        for out in participant.out_streams():
            self._retired[0] += out.packets
            self._retired[1] += out.octets
        had_publications = bool(participant.publications())
        try:
            await asyncio.wait_for(participant.close(), CLOSE_TIMEOUT)
        except Exception:
            log.exception("closing %s timed out or failed", peer)
        if had_publications:
            room.publications_changed(participant)
        if leave and not room.participants:
            room.close_pipes()
            self.rooms.pop(room.name, None)

    def _configuration(self) -> RTCConfiguration:
        return ice.rtc_configuration(self.ice_servers)  # never aiortc's default public STUN server


def _text(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise RequestError(f"{key!r} must be a non-empty string")
    return value


def _address(request: dict[str, Any]) -> Address:
    """The ``address`` of a pipe request: [host, port] of another worker's pipe socket."""
    value = request.get("address")
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str):
        raise RequestError(f"address must be [host, port], got {value!r}")
    return (value[0], int(value[1]))


def _port_range(value: Any) -> tuple[int, int] | None:
    """``udp_ports`` as sent by the bridge ([low, high] or null), or as configured ("low-high")."""
    if value in (None, "", []):
        return None
    if isinstance(value, str):
        low, _, high = value.partition("-")
        value = [low, high]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise RequestError(f"udp_ports must be [low, high], got {value!r}")
    return int(value[0]), int(value[1])


# --- the process ---------------------------------------------------------------------------------


async def serve(fd: int) -> int:
    """Speak the channel on the Unix socket ``fd`` until it closes or we are told to stop."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)

    def send(message: dict[str, Any]) -> None:
        if not writer.is_closing():
            writer.write(encode(message))

    relay = Relay(on_event=send)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks: set[asyncio.Task[None]] = set()

    async def answer(request: dict[str, Any]) -> None:
        send(await relay.handle(request))  # nothing awaited in between: see the module docstring

    async def read() -> None:
        decoder = Decoder()
        while data := await reader.read(65536):
            for request in decoder.feed(data):
                task = asyncio.ensure_future(answer(request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    reading = asyncio.ensure_future(read())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    if reading.done() and reading.exception() is not None:
        exc = reading.exception()
        log.error("channel failed: %s", exc)
        status = 1 if isinstance(exc, (ChannelError, ValueError)) else 2
    reading.cancel()
    stopping.cancel()
    for task in list(tasks):
        task.cancel()
    await relay.close()
    writer.close()
    return status


class _WorkerTag(logging.Filter):
    """Names the worker process on each line (``relay`` = its pid): its lines share the server's stream."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.relay = os.getpid()
        return True


def _log_to_stderr(level: str, fmt: str) -> None:
    """Log lines to standard error in the server's ``[log] format`` (the server passes it on)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_WorkerTag())
    if fmt == "json":  # the server's JSON lines, with a "relay": pid field
        from meet.logs import MeetJsonFormatter

        handler.setFormatter(MeetJsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("relay[%(relay)s] %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def main(argv: list[str] | None = None) -> int:
    """``python -m meet.relay.worker --fd N``."""
    parser = argparse.ArgumentParser(prog="meet.relay.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="inherited Unix stream socket to the server")
    args = parser.parse_args(argv)
    level = os.environ.get("MEET_RELAY_LOG", "INFO").upper()
    _log_to_stderr(level, os.environ.get("MEET_RELAY_LOG_FORMAT", "text"))
    if level != "DEBUG":  # aioice logs every connectivity check at INFO
        logging.getLogger("aioice").setLevel(logging.WARNING)
    # The ~43,000 objects of aiortc and its dependencies live as long as the process: out of
    # the collector's full passes, which otherwise walk them all (10.7 ms each here, stalling
    # every stream and answer of this worker), as the server does (meet.server).
    gc.collect()
    gc.freeze()
    try:
        # uvloop: the event loop's own round (epoll, ready queue, callbacks) in C. At a few
        # packets per wake-up, that round is a good part of what each packet costs here.
        return uvloop.run(serve(args.fd))
    except KeyboardInterrupt:  # pragma: no cover - SIGINT before the handler is installed
        return 0


if __name__ == "__main__":
    sys.exit(main())
