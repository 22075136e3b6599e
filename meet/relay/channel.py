"""The message format between the trio server and a relay worker process.

Each message is a JSON object framed by a 4-byte big-endian length, sent over a Unix
socket pair. Pure functions, no I/O: both sides (trio and asyncio) use them.

Requests (server → worker) carry ``id`` and ``op``; the worker answers each with
``{"id", "ok": true, ...}`` or ``{"id", "ok": false, "error": "..."}``:

- ``configure {ice_servers, host_addresses, udp_ports, video_slots, audio_slots, layer_hold}`` →
  ``{pipe: [host, port]}`` (the worker's pipe socket) — once, before anything else.
- ``open {room, peer}`` — a participant joins the relay room.
- ``offer {room, peer, sdp}`` → ``{sdp}`` (the answer, also emitted as an ``answer`` event), or
  ``{ignored: true}`` when the worker has its own offer outstanding (glare: the server is the
  impolite side and never rolls back).
- ``answer {room, peer, sdp}`` — the participant's answer to a worker offer.
- ``candidate {room, peer, candidate}`` — a trickled ICE candidate from the browser (or null).
- ``close {room, peer}`` — the participant left.
- ``view {room, peer, tiles: [{publisher, source, width, height}]}`` — the videos the participant's
  page shows (``meet.relay.view``): only those are forwarded to it, largest first.
- ``pipe {room, address}`` — another worker at pipe ``address`` holds the room too: send it
  every packet published here (``meet.relay.pipe``) and announce what is published.
- ``unpipe {room, address}`` — that worker no longer holds the room (emptied, or died).
- ``remote {room, peer, address, publications}`` — what ``peer``, a participant of the worker
  at ``address``, publishes now (its ``publications`` event, passed on; ``[]``: nothing).
- ``demand {room, peer, publication, rids, address}`` — the worker at ``address`` uses only ``rids`` of
  ``peer``'s publication ``publication`` (its ``demand`` event, passed back): pipe it only those, and ask
  the publisher for no less (``meet.relay.demand``).
- ``stats {}`` → ``{rooms, participants, publications, subscriptions, packets_received,
  packets_forwarded, bytes_forwarded, cpu_seconds, subscribers, layers}`` and the relay-wide
  counters (``Counters``: ``nacks_received``, ``retransmitted``, ``plis_sent``, ``layer_switches``,
  ``piped``, …); ``cpu_seconds`` is the worker process's CPU time (user + system). The bridge
  adds ``index``, ``pid`` and ``restarts`` to each worker's reply (``RelayBridge.stats``).

Events (worker → server) carry ``event`` and no ``id``:

- ``answer {room, peer, sdp}`` — the answer to a participant's offer, emitted before the reply
  and before any later ``offer`` event: the server forwards events, not replies, to the client,
  so that answers and offers reach it in the order the worker made them.
- ``offer {room, peer, sdp}`` — the worker renegotiates (tracks came or went). Never before the
  participant's first offer was answered.
- ``tracks {room, peer, tracks: [{mid, publisher, source, paused}]}`` — which publisher (peer
  id) and source ("audio" | "camera" | "screen") each of the subscriber's m-lines carries
  (null and null: an empty receive slot).
- ``failed {room, peer, reason}`` — the participant's connection failed.
- ``speaker {room, peer}`` — ``peer`` became the room's dominant speaker (``meet.relay.speaker``).
- ``publications {room, peer, publications: [{id, kind, label, rids, ranked}]}`` — what a
  participant of this worker publishes, for the room's other workers (only while it has some).
- ``layers {room, peer, source, rids}`` — the simulcast encodings (RIDs, low → high) anyone in the
  room uses of ``peer``'s ``source``: the publisher should send those only (``[]``: none). Only
  when that changes; before the first, every encoding is used (``meet.relay.demand``).
- ``demand {room, peer, publication, rids}`` — the layers this worker's subscribers use of the publication
  ``publication`` (its pipe id) of ``peer``, a participant of another worker (for that worker: ``demand`` request).
"""

from __future__ import annotations

import json
import struct
from typing import Any

HEADER = struct.Struct("!I")
MAX_MESSAGE = 4 * 1024 * 1024


class ChannelError(Exception):
    """The peer sent something that is not a channel message."""


def encode(message: dict[str, Any]) -> bytes:
    """One framed message."""
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE:
        raise ChannelError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE}")
    return HEADER.pack(len(body)) + body


class Decoder:
    """Reassembles framed messages from a byte stream."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add received bytes; return the complete messages they finish."""
        self._buffer += data
        messages = []
        while len(self._buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buffer)
            if size > MAX_MESSAGE:
                raise ChannelError(f"announced message of {size} bytes exceeds {MAX_MESSAGE}")
            if len(self._buffer) < HEADER.size + size:
                break
            body = bytes(self._buffer[HEADER.size : HEADER.size + size])
            del self._buffer[: HEADER.size + size]
            message = json.loads(body)
            if not isinstance(message, dict):
                raise ChannelError("a channel message must be a JSON object")
            messages.append(message)
        return messages
