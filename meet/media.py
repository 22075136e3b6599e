"""How a room's media flows: peer to peer (mesh) or through the server relay (SFU).

Rooms start in mesh. With ``[rtc] relay = "auto"`` a join that would exceed ``mesh_limit``
switches the room to relay for as long as it is live: everyone gets ``mode {mode: "relay"}``,
closes their mesh connections and negotiates one connection with the peer id ``"relay"``.
``"always"`` starts rooms in relay; ``"off"`` caps rooms at ``mesh_limit``.

This module only sends messages: the relay itself is reached through :class:`MediaRelay`
(implemented by ``meet.relay.bridge``), so rooms logic never sees aiortc or asyncio.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol

from meet import protocol as p
from meet.clock import Clock, SystemClock
from meet.config import RtcConfig
from meet.live import LiveRoom, Participant
from meet.throttle import Busy, Throttle

log = logging.getLogger("meet.media")

RELAY_PEER = "relay"
CLOSE_SERVICE_RESTART = 1012
MAX_SDP = p.MAX_SIGNAL_FRAME - 1024  # what fits in a `signal` frame
_MEDIA_LINE = re.compile(r"^m=(\w+) (\d+)")
_DIRECTIONS = {"a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"}
_SOURCES = ("camera", "screen")
_RID = re.compile(r"[A-Za-z0-9]{1,16}")  # RFC 8851 rid-id, bounded
_MAX_RIDS = 8


class MediaRelay(Protocol):
    """What the rooms need from the relay bridge."""

    async def request(self, op: str, room: str, **fields: Any) -> dict[str, Any]: ...

    def release(self, room: str) -> None: ...


class RelayFailure(Exception):
    """The relay could not do what was asked (it refused, timed out or is restarting)."""


class MediaRouter:
    """Mesh/relay decisions and relay signaling for live rooms."""

    def __init__(
        self, settings: RtcConfig, relay: MediaRelay | None = None, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self.relay = relay
        # offer_burst offers within offer_burst / offer_rate seconds: offer_rate per second sustained.
        self.offers = Throttle(
            settings.offer_burst, settings.offer_burst / settings.offer_rate, clock or SystemClock(), 10_000
        )

    def initial_mode(self) -> str:
        return "relay" if self.settings.relay == "always" and self.relay is not None else "mesh"

    def capacity(self, max_participants: int) -> int:
        """Connections a room may hold: with the relay off, mesh_limit caps it."""
        if self.settings.relay == "off":
            return min(max_participants, self.settings.mesh_limit)
        return max_participants

    async def on_join(self, live: LiveRoom, peer_id: str) -> None:
        """Before ``welcome``: switch the room to relay if needed, and open the newcomer on it."""
        crowded = len(live.peers) + len(live.joining) > self.settings.mesh_limit
        if live.mode == "mesh" and crowded and self.settings.relay == "auto" and self.relay is not None:
            await self._switch_to_relay(live, peer_id)
        if live.mode == "relay":
            await self._call("open", live, peer_id)

    async def _switch_to_relay(self, live: LiveRoom, joiner: str) -> None:
        live.mode = "relay"
        log.info("room %s switches to the relay (%d participants)", live.room.code, len(live.peers) + 1)
        # Everyone present, and everyone else still joining: they decided "mesh" already, and
        # their welcome (built later) will say "relay".
        others = [*live.peers, *(peer_id for peer_id in live.joining if peer_id != joiner)]
        for other in others:
            await self._call("open", live, other)
        live.broadcast(p.Mode(mode="relay"))

    async def on_leave(self, live: LiveRoom, peer: Participant, emptied: bool) -> None:
        """``peer`` left: close it on the relay; free the room there once nobody is left."""
        await self.abandon(live, peer.peer_id, release=emptied)

    async def abandon(self, live: LiveRoom, peer_id: str, release: bool) -> None:
        """Close ``peer_id`` on the relay (it left, or its join failed after ``on_join``)."""
        self.offers.reset(peer_id)
        if live.mode != "relay" or self.relay is None:
            return
        try:
            await self._call("close", live, peer_id)
        except RelayFailure as exc:
            log.warning("relay close of %s failed: %s", peer_id, exc)
        if release:
            self.relay.release(live.room.code)

    async def signal(self, live: LiveRoom, peer: Participant, data: dict[str, Any]) -> None:
        """A ``signal {to: "relay"}`` from a participant: SDP or ICE for its relay connection."""
        if live.mode != "relay":
            raise p.ProtocolError("unknown_peer", "this room does not use the relay")
        try:
            if "description" in data:
                await self._description(live, peer, data["description"])
            elif "candidate" in data:
                candidate = data["candidate"]
                if candidate is not None and not isinstance(candidate, dict):
                    raise p.ProtocolError("invalid_message", "'candidate' must be an object or null")
                await self._call("candidate", live, peer.peer_id, candidate=candidate)
            else:
                raise p.ProtocolError("invalid_message", "relay signals carry 'description' or 'candidate'")
        except RelayFailure as exc:
            raise p.ProtocolError("relay_error", str(exc)) from None

    async def view(self, live: LiveRoom, peer: Participant, message: p.View) -> None:
        """A page's ``view``: in relay rooms the relay forwards it only the videos listed.

        Tiles of peers not in the room (any more), or of the sender itself, are left out; mesh
        rooms have nothing to do (each browser sends to each other directly).
        """
        if live.mode != "relay":
            return
        tiles = [
            {"publisher": t.peer_id, "source": t.source, "width": t.width, "height": t.height}
            for t in message.entries()
            if t.peer_id in live.peers and t.peer_id != peer.peer_id
        ]
        try:
            await self._call("view", live, peer.peer_id, tiles=tiles)
        except RelayFailure as exc:
            raise p.ProtocolError("relay_error", str(exc)) from None

    async def _description(self, live: LiveRoom, peer: Participant, description: Any) -> None:
        if not isinstance(description, dict) or description.get("type") not in ("offer", "answer"):
            raise p.ProtocolError("invalid_message", "'description' needs type offer or answer")
        sdp = description.get("sdp")
        if not isinstance(sdp, str) or not 0 < len(sdp) <= MAX_SDP:
            raise p.ProtocolError("invalid_message", "'description.sdp' must be a non-empty string")
        if description["type"] == "answer":
            await self._call("answer", live, peer.peer_id, sdp=sdp)
            return
        self._admit_offer(peer.peer_id, sdp)
        # The answer reaches the client as an ``answer`` event (see _deliver), in order with the
        # relay's own offers; on glare (``ignored``) there is none and the browser rolls back.
        await self._call("offer", live, peer.peer_id, sdp=sdp)

    def _admit_offer(self, peer_id: str, sdp: str) -> None:
        """Refuse an offer over the participant's offer rate or publication cap (never forwarded).

        Each offer the relay takes can renegotiate everyone else in the room, and each published
        track is forwarded to everyone: both are bounded per participant.
        """
        try:
            self.offers.acquire([peer_id])
        except Busy as busy:
            raise p.ProtocolError(
                "rate_limited", f"too many offers to the relay: try again in {busy.retry_after:.1f} s"
            ) from None
        published, cap = sending_media_sections(sdp), self.settings.max_publications
        if published > cap:
            raise p.ProtocolError(
                "too_many_publications",
                f"this offer publishes {published} tracks; at most {cap} are allowed",
            )

    async def _call(self, op: str, live: LiveRoom, peer_id: str, **fields: Any) -> dict[str, Any]:
        if self.relay is None:
            raise RelayFailure("the relay is not running")
        try:
            return await self.relay.request(op, live.room.code, peer=peer_id, **fields)
        except Exception as exc:  # the bridge's RelayError, kept out of this module's imports
            raise RelayFailure(str(exc)) from exc

    def event(self, live: LiveRoom | None, message: dict[str, Any]) -> None:
        """An event from the relay about one participant of ``live`` (to it, or about it: ``speaker``).

        Every event follows the participant's first offer (the relay never speaks first), so
        the participant is in ``live.peers`` by then, or already gone.
        """
        peer = live.peers.get(str(message.get("peer"))) if live is not None else None
        if peer is None or live is None:
            return
        if message.get("event") == "speaker":  # about the room, not to the peer it names
            if live.mode == "relay" and live.speaker != peer.peer_id:
                live.speaker = peer.peer_id
                live.broadcast(p.Speaker(peer_id=peer.peer_id))
            return
        self._deliver(live, peer, message)

    def _deliver(self, live: LiveRoom, peer: Participant, message: dict[str, Any]) -> None:
        kind = message.get("event")
        if kind == "layers":
            self._layers(live, peer, message)
        elif kind in ("offer", "answer"):
            description = {"description": {"type": kind, "sdp": message["sdp"]}}
            peer.conn.send(p.SignalFrom(from_=RELAY_PEER, data=description))
        elif kind == "tracks":
            peer.conn.send(p.Tracks(tracks=list(message.get("tracks", []))))
        elif kind == "failed":
            peer.conn.send(p.Error(code="relay_failed", message=str(message.get("reason", "media failed"))))

    def _layers(self, live: LiveRoom, peer: Participant, message: dict[str, Any]) -> None:
        """The relay's choice of simulcast encodings for ``peer``'s publication: to that publisher.

        Only an optimisation (the publisher saves encoding and upload), so an event the relay
        got wrong is logged and dropped rather than passed on to the browser.
        """
        source, value = message.get("source"), message.get("rids")
        rids: list[str] = [rid for rid in value if isinstance(rid, str)] if isinstance(value, list) else []
        valid = (
            live.mode == "relay"
            and source in _SOURCES
            and isinstance(value, list)
            and len(rids) == len(value) <= _MAX_RIDS
            and all(_RID.fullmatch(rid) for rid in rids)
            and len(set(rids)) == len(rids)
        )
        if not valid:
            log.warning("relay layers event dropped (room in %s mode): %.200r", live.mode, message)
            return
        peer.conn.send(p.Layers(source=str(source), rids=rids))

    async def ended(self, live: LiveRoom) -> None:
        """The meeting ended: free everything the relay held for it."""
        if live.mode != "relay" or self.relay is None:
            return
        for peer_id in list(live.peers):
            try:
                await self._call("close", live, peer_id)
            except RelayFailure as exc:
                log.warning("relay close of %s failed: %s", peer_id, exc)
        if not live.joining:  # else the last join to fail releases it (Rooms._abandon)
            self.relay.release(live.room.code)

    def lost(self, live: LiveRoom, peer_ids: list[str]) -> None:
        """The worker holding these participants of ``live`` died: they reconnect (1012) and land
        on a running worker; the others of the room, on other workers, stay."""
        for peer in [live.peers[peer_id] for peer_id in peer_ids if peer_id in live.peers]:
            peer.conn.send(p.Error(code="relay_restart", message="the media relay restarted; reconnecting"))
            peer.conn.finish(CLOSE_SERVICE_RESTART, "media relay restarted")


def sending_media_sections(sdp: str) -> int:
    """How many audio/video m-sections of ``sdp`` send media (sendrecv or sendonly, not disabled).

    A media section without a direction attribute takes the session's (default sendrecv); one
    with port 0 is disabled unless it is ``bundle-only``.
    """
    session_direction, count = "a=sendrecv", 0
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line.strip())
    for line in sections[0]:
        if line in _DIRECTIONS:
            session_direction = line
    for section in sections[1:]:
        match = _MEDIA_LINE.match(section[0])
        if match is None or match[1] not in ("audio", "video"):
            continue
        if match[2] == "0" and "a=bundle-only" not in section:
            continue
        direction = next((line for line in section if line in _DIRECTIONS), session_direction)
        count += direction in ("a=sendrecv", "a=sendonly")
    return count
