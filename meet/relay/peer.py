"""One participant's connection with the relay: negotiation, publications and subscriptions.

The contract (``docs/protocol.md``, "Relay negotiation contract"): the client sends the first
offer, the relay answers; from then on the relay sends its own offers when tracks come and go
and never rolls back (a client offer that collides with the relay's is ignored:
``{ignored: true}``). Answers are emitted as ``answer`` events too, so that the one ordered
event stream the server forwards carries them before any relay offer that follows.

Decisions this module makes where the contract leaves room:

- **Publishing.** The relay accepts the client's media on every m-line (its directions always
  include ``recv``). An m-line on which the client sends is a publication; its source is fixed
  when it first sends: audio is ``"audio"``, the first video m-line to send is ``"camera"`` and
  any later one ``"screen"`` (in m-line order when several start together). That is the mesh
  client's rule (first audio/video transceivers carry the microphone and camera). Every audio
  m-line is labelled ``"audio"`` (a second one, e.g. a shared tab's sound, is played like any).
- **Subscribing.** With receive slots (``[rtc] video_slots`` > 0, :mod:`.slots`) the
  connection gets a fixed set of m-lines in the relay's first offer, and publications move in
  and out of them without renegotiating (``assign``: ``tracks`` first, then packets). Without,
  each other participant's live publication gets its own m-line (msid stream id = publisher)
  added by a relay offer; one whose publisher left is renegotiated to not send and reused for
  the next publication of its kind. Slots are m-lines the relay added or that the client
  offered ``recvonly`` (filled in the answer, which saves a round trip); the client's sending
  m-lines are never used, and none is ever removed (aiortc cannot reject an m-line).
  ``tracks`` is authoritative: a mid it does not list carries nothing.
- **Timing.** Forwarding on a slot starts once it is negotiated (the client knows its SSRC) and
  assigned, at the publisher's next keyframe, requested at once.
  ``tracks`` is emitted whenever that mapping changed, after the negotiation (for a client
  offer: just before its answer is returned).
- **Codecs.** Opus and VP8 only (one video codec for every room; H.264 is not offered): each
  negotiation is narrowed to them, and the relay's offers keep the payload types and header
  extension ids the client used first, so a BUNDLE never sees one payload type change meaning.
- **Refusal.** If the client answers a slot without receiving, that publication (with fixed
  slots: that slot) is not offered to it again (no endless m-line growth).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from meet.relay import slots as receive_slots
from meet.relay.bandwidth import Bandwidth
from meet.relay.compat import feedback, forwarding, receiving, reports
from meet.relay.forward import Counters, OutStream, Publication
from meet.relay.numbering import Numbering
from meet.relay.slot import SENDING, ForwardTrack, Slot
from meet.relay.view import View

log = logging.getLogger("meet.relay.peer")

RECEIVING = ("recvonly", "sendrecv")  # directions in which the relay receives


class RequestError(Exception):
    """A request the relay refuses (reported to the server as ``ok: false``)."""


class RoomView(Protocol):
    """What a participant needs from its room."""

    name: str
    counters: Counters
    counts: receive_slots.Counts  # receive slots per connection (video 0: one m-line per publication)
    recent: list[str]  # publishers most recently the dominant speaker, most recent first

    def wanted_publications(self, peer: str) -> list[Publication]: ...

    def loudness(self) -> dict[str, tuple[float, float]]: ...

    def publications_changed(self, by: Participant) -> None: ...

    def announce(self, peer: str) -> None: ...


class Participant:
    """A participant's RTCPeerConnection with the relay."""

    def __init__(
        self,
        room: RoomView,
        peer: str,
        configuration: RTCConfiguration,
        emit: Callable[[dict[str, Any]], None],
    ) -> None:
        self.room, self.peer, self.emit = room, peer, emit
        self.counters = room.counters
        self.pc = RTCPeerConnection(configuration)
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.lock = asyncio.Lock()  # one negotiation step at a time, in request order
        self.slots: dict[RTCRtpTransceiver, Slot] = {}
        self.pubs: dict[RTCRtpTransceiver, Publication] = {}
        self.known: set[RTCRtpTransceiver] = set()
        self.refused: set[Publication] = set()
        self.numbering = Numbering()  # the client's payload types and extension ids, kept
        self.tracks_sent: list[dict[str, Any]] = []
        self.bandwidth = Bandwidth(peer)  # its estimate, its layers, its uplink reports
        self.view = View()  # what its page shows: the videos forwarded to it
        self.closed = False
        self.started = False  # the client's first offer was answered: we may offer from now on
        self._update: asyncio.Task[None] | None = None
        self._again = False
        self._next_report = 0.0  # when its RTCP sender and receiver reports are next due

    # --- requests -------------------------------------------------------------------------------

    async def on_offer(self, sdp: str) -> dict[str, Any]:
        """The client's offer: our answer, or ``ignored`` while our own offer is out."""
        async with self.lock:
            self._check_open()
            if self.pc.signalingState == "have-local-offer":
                return {"ignored": True}
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            forwarding.accept_extensions(self.pc, sdp)  # at once: aiortc reads them in a task
            feedback.accept_transport_cc(self.pc, sdp)
            self.numbering.learn(sdp)
            self._discover()
            forwarding.receive_simulcast(self.pc, self.pubs, sdp)
            self.numbering.restrict(self.pc.getTransceivers())
            self._plan(answering=True)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            self._negotiated()
            answer = forwarding.local_description(self.pc)  # with the simulcast it receives
            # Also as an event, emitted under the lock: it precedes any offer of ours that
            # follows, on the one ordered stream of events the server forwards to the client.
            self.emit({"event": "answer", "room": self.room.name, "peer": self.peer, "sdp": answer})
            self.started = True
        self.schedule_update()
        return {"sdp": answer}

    async def on_answer(self, sdp: str) -> dict[str, Any]:
        """The client's answer to our offer."""
        async with self.lock:
            self._check_open()
            if self.pc.signalingState != "have-local-offer":
                raise RequestError("the relay has no offer waiting for an answer")
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
            forwarding.accept_extensions(self.pc, sdp)
            feedback.accept_transport_cc(self.pc, sdp)
            self.numbering.restrict(self.pc.getTransceivers())
            self._negotiated()
        self.schedule_update()
        return {}

    async def on_candidate(self, candidate: dict[str, Any] | None) -> dict[str, Any]:
        """A trickled ICE candidate (None or an empty one: the end of candidates)."""
        async with self.lock:
            self._check_open()
            try:
                if candidate is None or not candidate.get("candidate"):
                    await self.pc.addIceCandidate(None)
                else:
                    await self.pc.addIceCandidate(forwarding.parse_candidate(candidate))
            except Exception as exc:  # noqa: BLE001 - e.g. a candidate of an offer we ignored
                log.debug("%s: candidate not applied: %s", self.peer, exc)
                return {"applied": False, "reason": str(exc)}
        return {"applied": True}

    async def close(self) -> None:
        """The participant left: stop its publications and subscriptions, close the connection."""
        if self.closed:
            return
        self.closed = True
        for publication in self.pubs.values():
            publication.close()
        for slot in self.slots.values():
            slot.out.detach()
        if self._update is not None:
            self._update.cancel()
        await self.pc.close()

    def publications(self) -> list[Publication]:
        """This participant's live publications, in m-line order."""
        return [publication for publication in self.pubs.values() if publication.live]

    def out_streams(self) -> list[OutStream]:
        return [slot.out for slot in self.slots.values()]

    def link_stats(self) -> dict[str, Any]:
        """This subscriber's estimate and, per subscription, the layer it receives (``stats`` op)."""
        subscriptions = [
            (str(transceiver.mid), slot.publication, slot.out)
            for transceiver, slot in self.slots.items()
            if slot.publication is not None and slot.out.publication is slot.publication
        ]
        return {"peer": self.peer, **self.bandwidth.stats(subscriptions)}

    # --- layers and bandwidth (the worker's pacer calls these) ----------------------------------

    def rebalance(self, now: float) -> None:
        """Choose each shown video's layer within the link's estimate (bandwidth.py); stop the rest."""
        videos = self._subscribed("video")
        for publication, out in videos:
            if not self.view.shows(publication) and not out.paused:
                out.switch(None)  # not on the page: nothing forwarded
        self.bandwidth.rebalance(self.view.arrange(videos), now, self.view.needs, self.view.area)
        self._emit_tracks()  # a video paused or resumed for this link: the client shows it

    def set_view(self, tiles: list[dict[str, Any]], now: float) -> None:
        """The page's ``view``: forward the videos it shows (at once), and only those."""
        try:
            self.view.set(tiles)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        self.assign()
        self.rebalance(now)

    def pace(self, now: float) -> None:
        """Report this publisher's arrivals and, when due, send the RTCP reports of this
        connection; send the padding a probe of the estimate asks for."""
        self._report_uplink(now)
        if now >= self._next_report:
            self._send_reports(now)
        if self.bandwidth.link is not None:  # no estimate, no probe: spare the list every round
            self.bandwidth.pace(self.view.arrange(self._subscribed("video")), now)

    def _send_reports(self, now: float) -> None:
        """RTCP SRs of the slots that forward something and RRs of the publications (every
        0.5–1.5 s, as aiortc's own timer per sender and receiver would, without its wake-ups)."""
        self._next_report = now + reports.interval()
        forwarding.send_reports(
            ((slot.transceiver.sender, slot.out.sender_info()) for slot in self.slots.values()),
            (transceiver.receiver for transceiver in self.pubs),
        )

    def _report_uplink(self, now: float) -> None:
        """Transport-cc feedback on what this participant sent us, or its REMB, when due."""
        transceiver = next(iter(self.pubs), None)
        if transceiver is None:
            return
        fcis = self.bandwidth.uplink.feedback(now)
        if fcis:
            media_ssrc = next((p.layers[0].ssrc for p in self.pubs.values() if p.layers[0].ssrc), 0)
            send = forwarding.feedback_sender(transceiver.receiver)
            for fci in fcis:
                send(fci, media_ssrc)
        rate = self.bandwidth.remb.due(now)
        if rate is not None:
            ssrcs = [layer.ssrc for p in self.pubs.values() for layer in p.layers if layer.ssrc is not None]
            if ssrcs and forwarding.remb_sender(transceiver.receiver)(rate, ssrcs):
                self.counters.remb_sent += 1

    def _subscribed(self, kind: str) -> list[tuple[Publication, OutStream]]:
        """(publication, out stream) of each live subscription of ``kind`` being carried."""
        return [
            (slot.publication, slot.out)
            for slot in self.slots.values()
            if slot.kind == kind
            and slot.publication is not None
            and slot.publication.live
            and slot.out.publication is slot.publication
        ]

    # --- renegotiation --------------------------------------------------------------------------

    def schedule_update(self) -> None:
        """Offer to the client if its subscriptions should change (now, or once stable).

        Never before the client's first offer (the contract: the client offers first), so a
        join does not start with a collision; that first answer covers what exists by then.
        """
        if self.closed or not self.started:
            return
        self._again = True
        if self._update is None:
            self._update = asyncio.ensure_future(self._run_updates())

    async def _run_updates(self) -> None:
        try:
            while self._again and not self.closed:
                self._again = False
                async with self.lock:
                    if not self.closed and self.pc.signalingState == "stable":
                        await self._offer_if_needed()
        except Exception:
            log.exception("%s: renegotiation failed", self.peer)
        finally:
            self._update = None

    async def _offer_if_needed(self) -> None:
        if not self._plan(answering=False):
            return
        offer = await forwarding.create_offer(self.pc)
        sdp = forwarding.rewrite_offer(offer, self.numbering.codec_plan(), self.numbering.extension_plan())
        sdp = feedback.offer_transport_cc(sdp, feedback.transport_cc_id(self.numbering.extension_ids))
        await self.pc.setLocalDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        sdp = forwarding.local_description(self.pc)  # with the simulcast it receives
        self.emit({"event": "offer", "room": self.room.name, "peer": self.peer, "sdp": sdp})

    def _plan(self, answering: bool) -> bool:
        """Match slots to the wanted publications; set directions; whether SDP must change."""
        if self.room.counts.fixed:
            return self._plan_fixed(answering)
        offered = self.room.wanted_publications(self.peer)
        self.refused.intersection_update(offered)  # forget the refusals of tracks that went away
        wanted = [p for p in offered if p not in self.refused]
        for slot in self.slots.values():
            if slot.publication is not None and slot.publication not in wanted:
                self._unassign(slot)
        assigned = {slot.publication for slot in self.slots.values()}
        for publication in wanted:
            if publication in assigned:
                continue
            free = self._free_slot(publication.kind, answering)
            if free is None and not answering:  # an answer cannot add m-lines: offer after it
                free = self._new_slot(publication.kind)
            if free is not None:
                free.publication = publication
                forwarding.set_stream_id(free.transceiver.sender, publication.publisher)
        # A slot reused for another publisher changes its msid: that is renegotiated too.
        return self._set_directions(lambda slot: slot.publication is not None) or any(
            slot.publication is not None and slot.out.publication is not slot.publication
            for slot in self.slots.values()
            if slot.transceiver.currentDirection in SENDING
        )

    def _plan_fixed(self, answering: bool) -> bool:
        """Fixed slots: add the m-lines missing (in offers: an answer cannot); every slot sends."""
        if not answering:
            videos, _ = self._wanted()
            screens = sum(1 for video in videos if video.label == "screen")
            for kind, count in (("audio", self.room.counts.audio), ("video", self.room.counts.video + screens)):
                have = sum(1 for slot in self.slots.values() if slot.kind == kind and not slot.refused)
                for _ in range(count - have):
                    self._new_slot(kind)
        return self._set_directions(lambda slot: not slot.refused)

    def _set_directions(self, sends: Callable[[Slot], bool]) -> bool:
        """Each m-line sends if it is a slot that ``sends``; whether that changes the SDP."""
        changed = False
        for transceiver in self.pc.getTransceivers():
            slot = self.slots.get(transceiver)
            send = slot is not None and sends(slot)
            transceiver.direction = "sendrecv" if send else "recvonly"
            if transceiver.mid is None or (transceiver.currentDirection in SENDING) != send:
                changed = True
        return changed

    def _wanted(self) -> tuple[list[Publication], list[Publication]]:
        """Fixed slots: the others' videos and voices this participant should receive, most wanted first."""
        others = self.room.wanted_publications(self.peer)
        counts = self.room.counts
        videos = [p for p in others if p.kind == "video"]
        voices = [p for p in others if p.kind == "audio"]
        return (
            receive_slots.wanted_videos(self.view, videos, self.room.recent, counts.video),
            receive_slots.wanted_voices(voices, self.room.loudness(), counts.audio),
        )

    def assign(self) -> None:
        """Fixed slots: fill them with what this participant should receive now, without renegotiating.

        A change is announced (``tracks``) before the slot's first packet of its new source;
        a video starts at that source's keyframe (``OutStream``). A screen share beyond the
        slots negotiated adds one: a renegotiation of this participant alone.
        """
        if self.closed or not self.room.counts.fixed:
            return
        changed: list[Slot] = []
        for kind, wanted in zip(("video", "audio"), self._wanted(), strict=True):
            usable = [slot for slot in self.slots.values() if slot.kind == kind and slot.usable]
            filled = receive_slots.fill([slot.publication for slot in usable], wanted)
            for slot, publication in zip(usable, filled, strict=True):
                if publication is not slot.publication:
                    slot.publication = publication
                    changed.append(slot)
            if len(wanted) > len(usable):
                self.schedule_update()  # a screen more than the slots: the next offer adds one
        if not changed:
            return
        self._emit_tracks()
        for slot in changed:
            self._start(slot)

    def _start(self, slot: Slot) -> None:
        """Forward the slot's publication (from its next keyframe, for a video), or nothing."""
        publication = slot.publication
        if publication is None:
            slot.out.unsubscribe()
            return
        shown = publication.kind != "video" or self.view.shows(publication)
        first = self.bandwidth.first_layer(publication, self._subscribed("video"))
        slot.out.subscribe(publication, first if shown else None)

    def _free_slot(self, kind: str, answering: bool) -> Slot | None:
        for slot in self.slots.values():
            if slot.kind != kind or slot.publication is not None or slot.refused:
                continue
            allowed = forwarding.offer_direction(slot.transceiver) in SENDING
            if allowed or (not answering and slot.server_made):
                return slot
        return None

    def _new_slot(self, kind: str) -> Slot:
        track = ForwardTrack(kind)
        transceiver = self.pc.addTransceiver(track, direction="sendrecv")
        self.known.add(transceiver)
        self._add_publication(transceiver)  # the client may send on it too
        slot = self.slots[transceiver] = Slot(transceiver, True, self.counters)
        return slot

    def _unassign(self, slot: Slot) -> None:
        slot.publication = None
        slot.out.unsubscribe()

    # --- after setRemoteDescription / a completed negotiation ----------------------------------

    def _discover(self) -> None:
        """Adopt the m-lines the client's offer added."""
        for transceiver in self.pc.getTransceivers():
            if transceiver in self.known:
                continue
            self.known.add(transceiver)
            self._add_publication(transceiver)
            if forwarding.offer_direction(transceiver) == "sendonly":  # offered recvonly: a slot
                track = ForwardTrack(transceiver.kind)
                transceiver.sender.replaceTrack(track)
                self.slots[transceiver] = Slot(transceiver, False, self.counters)

    def _add_publication(self, transceiver: RTCRtpTransceiver) -> None:
        receiver = transceiver.receiver
        publication = Publication(self.peer, transceiver.kind, forwarding.pli_sender(receiver), self.counters)
        forwarding.hook_receiver(receiver, publication, self.counters)
        self.pubs[transceiver] = publication

    def _negotiated(self) -> None:
        """A negotiation completed: update publications, start/stop forwarding, emit tracks."""
        for transceiver in self.pc.getTransceivers():  # transports are final now (BUNDLE)
            receiving.fast_receive(
                transceiver.receiver.transport, self.bandwidth.uplink.arrived, self.bandwidth.remb.add
            )
        published = False
        for transceiver, publication in self.pubs.items():
            live = transceiver.currentDirection in RECEIVING
            if live and publication.label is None:
                publication.label = self._label(transceiver.kind)
            if live != publication.live:
                published = True
                if live:
                    publication.live = True
                else:
                    publication.close()
        for slot in self.slots.values():
            self._settle(slot)
        self.assign()
        self._emit_tracks()
        if published:
            self.room.publications_changed(self)
        else:  # the same tracks, maybe other encodings: the room's other workers follow
            self.room.announce(self.peer)

    def _settle(self, slot: Slot) -> None:
        """Start or stop forwarding on a slot as just negotiated."""
        if self.room.counts.fixed:
            self._settle_fixed(slot)
            return
        publication = slot.publication
        if publication is None:
            return
        if slot.transceiver.currentDirection not in SENDING:
            log.info(
                "%s refused %s's %s on mid %s",
                self.peer,
                publication.publisher,
                publication.label,
                slot.transceiver.mid,
            )
            slot.refused = True
            self.refused.add(publication)
            self._unassign(slot)
            self._again = True
            return
        slot.configure(self.bandwidth.link_for)
        if publication.live and slot.out.publication is not publication:
            self._start(slot)

    def _settle_fixed(self, slot: Slot) -> None:
        """A fixed slot as just negotiated: configured to send, or refused for good."""
        if slot.transceiver.currentDirection in SENDING:
            slot.configure(self.bandwidth.link_for)
        elif not slot.refused and slot.transceiver.mid is not None:
            log.info("%s refused the receive slot on mid %s", self.peer, slot.transceiver.mid)
            slot.refused = True
            if slot.publication is not None:
                self._unassign(slot)

    def _label(self, kind: str) -> str:
        if kind == "audio":
            return "audio"
        return "screen" if any(p.label == "camera" for p in self.pubs.values()) else "camera"

    def _emit_tracks(self) -> None:
        # Fixed slots are all listed (empty ones too); otherwise only the m-lines carrying something.
        fixed = self.room.counts.fixed
        listed = [slot for slot in self.slots.values() if (slot.usable if fixed else slot.carrying)]
        tracks = [slot.describe(self.view) for slot in listed]
        if tracks != self.tracks_sent:
            self.tracks_sent = tracks
            self.emit({"event": "tracks", "room": self.room.name, "peer": self.peer, "tracks": tracks})

    # --- misc -----------------------------------------------------------------------------------

    def _check_open(self) -> None:
        # aiortc closes the connection by itself once every DTLS transport closed (the client
        # closed its end): requests in flight then are refused, not failed.
        if self.closed or self.pc.signalingState == "closed":
            raise RequestError(f"participant {self.peer} is closed")

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if self.closed or state not in ("failed", "closed"):
            return
        reason = "ICE or DTLS failed" if state == "failed" else "the connection was closed"
        self.emit({"event": "failed", "room": self.room.name, "peer": self.peer, "reason": reason})
