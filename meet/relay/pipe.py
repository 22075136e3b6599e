"""Pipes: one room over several relay workers, each publisher's packets sent once to each worker.

A big room's participants are spread over the workers (one process, one core each). A worker
receives, decrypts and unpacks a publisher's packets once, as for any room; for each other
worker holding the room, every layer of each local publication gets a :class:`PipeOut` target
that sends the packet on, as it is after SRTP, RTX and header parsing, in one datagram to that
worker's pipe socket (:class:`Endpoint`). There it feeds a *remote* publication (a
``Publication`` like any, with a ``Source`` per layer) that the worker's own subscribers take
into their slots: history for NACKs, keyframe sizes, rates and speech are kept on that side
too. A keyframe request of a remote layer goes back on the pipe to the worker that has the
publisher. This is mediasoup's pipe transport; the seam would carry rooms over several
machines too (the datagrams are plain RTP fields, addressed host:port).

Which publications exist is told through the server (``publications`` events in, ``remote``
requests out, ``bridge.py``); a datagram of a publication not announced yet is dropped, and the
subscriber's keyframe request brings the stream once it is.

Datagrams (network byte order): RTP ``type 0, publication id u32, layer u8, seq u16, timestamp
u32, marker u8, audio level u8 (255: none)`` then the payload; keyframe request ``type 1,
publication id u32, layer u8``; the publisher's latest sender report, sent before the next
packet after it came (subscribers' reports keep lip sync) ``type 2, publication id u32, layer
u8, NTP time u64, RTP timestamp u32, arrival (Unix time, double)`` — arrival in the sending
worker's clock, which is the receiving one's on one machine. A layer is its index in the publication's RIDs sorted (``rids``
of the announcement), a stable name while the publication keeps its encodings.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import struct
import sys
from collections.abc import Callable, Iterable
from typing import Any

from meet.relay.source import Counters, Publication, Source

log = logging.getLogger("meet.relay.pipe")

Address = tuple[str, int]
RTP, KEYFRAME, REPORT = 0, 1, 2
NO_LEVEL = 255
_HEAD = struct.Struct("!BIB")  # every datagram: type, publication id, layer
_RTP = struct.Struct("!HIBB")  # then, for RTP: seq, timestamp, marker, audio level
_REPORT = struct.Struct("!QId")  # or, for a sender report: NTP time, RTP timestamp, arrival
# Linux's SO_RCVBUFFORCE and SO_SNDBUFFORCE (Python's socket module does not name them).
_FORCE = {socket.SO_RCVBUF: 33, socket.SO_SNDBUF: 32}
PIPE_BUFFER = 8 * 1024 * 1024  # bytes of socket buffer each way: ~0.5 s of a 50-person room's video


def ordered_layers(publication: Publication) -> list[Source]:
    """The layers in their pipe order: by RID (a single encoding has one, RID None)."""
    return sorted(publication.layers, key=lambda layer: layer.rid or "")


def describe(publication: Publication, pid: int) -> dict[str, Any]:
    """A local publication as announced to the other workers of its room."""
    return {
        "id": pid,
        "kind": publication.kind,
        "label": publication.label,
        "rids": [layer.rid for layer in ordered_layers(publication)],  # pipe order: layer indexes
        "ranked": [layer.rid for layer in publication.layers],  # low to high, as ranked here
    }


def _enlarge_buffers(sock: Any) -> None:
    """Room for a busy room's bursts (keyframes of every layer at once) while a worker's loop is
    busy: a datagram that finds the buffer full is lost between workers, and no NACK repairs it
    there. Root may exceed net.core.rmem_max/wmem_max (the *FORCE options); others get the cap."""
    forced = _FORCE if sys.platform.startswith("linux") else {}
    for plain in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        for option in (forced.get(plain), plain):
            if option is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, PIPE_BUFFER)
                break
            except OSError:
                continue


class PipeOut:
    """A target of one local layer: sends each of its packets to one other worker."""

    __slots__ = ("_head", "_report", "_report_head", "_send", "address", "source")

    def __init__(
        self, send: Callable[[bytes, Address], None], address: Address, source: Source, pid: int, index: int
    ) -> None:
        self._send, self.address, self.source = send, address, source
        self._head, self._report_head = _HEAD.pack(RTP, pid, index), _HEAD.pack(REPORT, pid, index)
        self._report: tuple[int, int, float] | None = None  # the sender report last passed on

    def forward(
        self,
        seq: int,
        ts: int,
        marker: int,
        payload: bytes,
        level: int | None,
        keyframe: bool,
        abs3: bytes,
        now: float,
    ) -> None:
        report = self.source.sr
        if report is not self._report and report is not None:
            self._report = report
            self._send(self._report_head + _REPORT.pack(*report), self.address)
        fields = _RTP.pack(seq, ts, marker, NO_LEVEL if level is None else level)
        self._send(self._head + fields + payload, self.address)

    def detach(self) -> None:
        """The layer closed (its publication ended): nothing more to send."""
        self.source.targets = [t for t in self.source.targets if t is not self]

    def restart(self) -> None:
        """The publisher restarted the layer's stream: the other side sees it as it comes."""


class Remote:
    """A publication of another worker's participant, fed through the pipe."""

    def __init__(self, publication: Publication, rids: list[str | None]) -> None:
        self.publication, self.rids = publication, rids

    def layer(self, index: int) -> Source | None:
        return self.publication.layer_for_rid(self.rids[index]) if index < len(self.rids) else None


class Endpoint(asyncio.DatagramProtocol):
    """This worker's pipe socket: its local publications out, remote ones in, keyframe requests."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.transport: asyncio.DatagramTransport | None = None
        self.inbound: dict[tuple[Address, int], Remote] = {}  # (sending worker, publication id)
        self.local: dict[int, Publication] = {}  # publication id -> this worker's publication
        self._ids: dict[Publication, int] = {}
        self._next = itertools.count(1)
        self._outs: dict[str, dict[tuple[Address, Source], PipeOut]] = {}  # per room
        self._limits: dict[tuple[Address, Publication], frozenset[str]] = {}  # RIDs a worker uses

    async def open(self, host: str = "127.0.0.1") -> Address:
        """Bind the pipe socket; its address (what the other workers send to)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))
        self.transport = transport
        _enlarge_buffers(transport.get_extra_info("socket"))
        return self.address

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (str(host), int(port))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # --- out -------------------------------------------------------------------------------------

    def id_of(self, publication: Publication) -> int:
        """The pipe id of a local publication (given on first use)."""
        pid = self._ids.get(publication)
        if pid is None:
            pid = self._ids[publication] = next(self._next)
            self.local[pid] = publication
        return pid

    def limit(self, address: Address, publication: Publication, rids: frozenset[str]) -> None:
        """The worker at ``address`` uses only the layers ``rids`` of ``publication`` (``demand.py``):
        the next :meth:`sync` pipes it only those (a single encoding always goes)."""
        self._limits[address, publication] = rids

    def sync(self, room: str, publications: Iterable[Publication], destinations: Iterable[Address]) -> None:
        """Send the layers of ``room``'s local ``publications`` each of ``destinations`` uses (all,
        until it said otherwise), no more."""
        outs = self._outs.setdefault(room, {})
        wanted: set[tuple[Address, Source]] = set()
        for publication in publications:
            pid = self.id_of(publication)
            for index, layer in enumerate(ordered_layers(publication)):
                for address in destinations:
                    limit = self._limits.get((address, publication))
                    if limit is not None and layer.rid is not None and layer.rid not in limit:
                        continue
                    wanted.add((address, layer))
                    if (address, layer) not in outs:
                        out = PipeOut(self._send, address, layer, pid, index)
                        outs[address, layer] = out
                        layer.targets = [*layer.targets, out]
        for key in [key for key in outs if key not in wanted]:
            outs.pop(key).detach()
        if not outs:
            del self._outs[room]
        self._forget_closed()

    def _forget_closed(self) -> None:
        for publication in [p for p in self._ids if not p.live]:
            self.local.pop(self._ids.pop(publication), None)
        for key in [key for key in self._limits if not key[1].live]:
            del self._limits[key]

    def forget(self, address: Address, publications: Iterable[Publication]) -> None:
        """The worker at ``address`` left the room of ``publications``: it no longer limits them."""
        for publication in publications:
            self._limits.pop((address, publication), None)

    def _send(self, data: bytes, address: Address) -> None:
        if self.transport is not None:
            self.transport.sendto(data, address)
            self.counters.piped += 1

    # --- in --------------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """A piped packet or a keyframe request from another worker."""
        if len(data) < _HEAD.size:
            return
        kind, pid, index = _HEAD.unpack_from(data)
        if kind == KEYFRAME:
            publication = self.local.get(pid)
            layers = ordered_layers(publication) if publication is not None else []
            if index < len(layers):
                layers[index].request_keyframe()
            return
        remote = self.inbound.get(((str(addr[0]), int(addr[1])), pid))
        source = remote.layer(index) if remote is not None else None
        if source is None:
            return  # not announced (yet), or no longer
        if kind == RTP and len(data) >= _HEAD.size + _RTP.size:
            seq, ts, marker, level = _RTP.unpack_from(data, _HEAD.size)
            payload = data[_HEAD.size + _RTP.size :]
            source.on_rtp(index, seq, ts, marker, payload, None if level == NO_LEVEL else level)
        elif kind == REPORT and len(data) >= _HEAD.size + _REPORT.size:
            source.sr = _REPORT.unpack_from(data, _HEAD.size)

    def keyframe_sender(self, address: Address, pid: int) -> Callable[[int], bool]:
        """A remote publication's ``send_pli``: the layer (its SSRC here is its pipe index) asks upstream."""

        def send_pli(index: int) -> bool:
            if self.transport is None:
                return False
            self.transport.sendto(_HEAD.pack(KEYFRAME, pid, index), address)
            return True

        return send_pli
