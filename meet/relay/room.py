"""One room on one relay worker: its participants here, and those of the same room on other workers.

A room may be spread over several workers (``pipe.py``). Here it has its *participants* (their
connections live on this worker) and its *remote publishers* (participants of other workers,
known by the publications announced for them, fed through the pipe). Subscribers take
publications of both alike into their slots; the dominant speaker and the loudest voices are
judged over both, so every worker of a room sees the same room.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from meet.relay import demand, speaker
from meet.relay.peer import Participant
from meet.relay.pipe import Address, Endpoint, Remote, describe
from meet.relay.slots import Counts
from meet.relay.source import Counters, Publication, speech_packets
from meet.relay.speaker import DominantSpeaker

EventSink = Callable[[dict[str, Any]], None]


class RemotePublisher:
    """A participant of another worker: the publications announced for it, fed through the pipe."""

    def __init__(self, peer: str, address: Address, endpoint: Endpoint, counters: Counters) -> None:
        self.peer, self.address = peer, address
        self._endpoint, self._counters = endpoint, counters
        self.pubs: dict[int, Publication] = {}

    def update(self, announced: Sequence[dict[str, Any]]) -> None:
        """Its publications are now ``announced`` (``pipe.describe`` of each): add, relabel, close."""
        listed: set[int] = set()
        for entry in announced:
            pid, kind = int(entry["id"]), str(entry["kind"])
            if kind not in ("audio", "video"):
                raise ValueError(f"publication kind {kind!r}")
            rids = [None if rid is None else str(rid) for rid in entry.get("rids") or [None]]
            publication = self.pubs.get(pid)
            if publication is None:
                send_pli = self._endpoint.keyframe_sender(self.address, pid)
                publication = self.pubs[pid] = Publication(self.peer, kind, send_pli, self._counters)
                publication.live = True
            publication.label = entry.get("label")
            ranked = entry.get("ranked") or rids
            publication.set_rids([str(rid) for rid in ranked if rid])
            self._endpoint.inbound[self.address, pid] = Remote(publication, rids)
            listed.add(pid)
        for pid in [pid for pid in self.pubs if pid not in listed]:
            self._drop(pid)

    def close(self) -> None:
        for pid in list(self.pubs):
            self._drop(pid)

    def publications(self) -> list[Publication]:
        return [publication for publication in self.pubs.values() if publication.live]

    def _drop(self, pid: int) -> None:
        self.pubs.pop(pid).close()
        self._endpoint.inbound.pop((self.address, pid), None)


class Room:
    """The participants of one room on this worker, and its publishers on other workers."""

    def __init__(
        self,
        name: str,
        counters: Counters,
        counts: Counts | None = None,
        pipes: Endpoint | None = None,
        emit: EventSink | None = None,
        hold: float = demand.HOLD,
    ) -> None:
        self.name = name
        self.counters = counters
        self.counts = counts or Counts()
        self.participants: dict[str, Participant] = {}
        self.remote: dict[str, RemotePublisher] = {}
        self.destinations: set[Address] = set()  # the pipe addresses of the room's other workers
        self.pipes = pipes
        self.emit = emit or (lambda message: None)
        self.speaker = DominantSpeaker()
        self.recent: list[str] = []  # publishers most recently the dominant speaker, most recent first
        self._spoken: dict[str, int] = {}  # peer -> its speech packets at the last judgement
        self._judged: float | None = None
        self.requests: demand.Hold[Publication] = demand.Hold(hold)  # asked of the publishers here
        self.reports: demand.Hold[Publication] = demand.Hold(hold)  # told the workers of remote ones
        self.far: dict[Address, dict[Publication, frozenset[str]]] = {}  # used by the other workers

    def publishers(self) -> dict[str, Participant | RemotePublisher]:
        """Everyone in the room who may publish: here, then on other workers."""
        return {**self.participants, **self.remote}

    def judge_speaker(self, now: float) -> str | None:
        """Feed each publisher's speech since the last call to the detector; a new speaker or None."""
        elapsed = speaker.INTERVAL if self._judged is None else now - self._judged
        self._judged = now
        activity: dict[str, float] = {}
        spoken: dict[str, int] = {}
        for peer, publisher in self.publishers().items():
            total = speech_packets(publisher.publications())
            if total is None:
                continue  # publishes no audio: not a candidate
            spoken[peer] = total
            activity[peer] = speaker.activity(max(total - self._spoken.get(peer, total), 0), elapsed)
        self._spoken = spoken
        dominant = self.speaker.update(activity, now)
        present = self.publishers()
        self.recent = [peer for peer in self.recent if peer in present and peer != dominant]
        if dominant is not None:
            self.recent.insert(0, dominant)
        return dominant

    def loudness(self) -> dict[str, tuple[float, float]]:
        """peer → (share of the last second spoken, when last heard speaking)."""
        return self.speaker.loudness()

    def wanted_publications(self, peer: str) -> list[Publication]:
        """Every live publication of the others: here in join then m-line order, then remote ones."""
        return [s for pid, p in self.publishers().items() if pid != peer for s in p.publications()]

    def all_publications(self) -> list[Publication]:
        """Every live publication of the room on this worker, local and remote (for measuring)."""
        return [s for p in self.publishers().values() for s in p.publications()]

    def publications_changed(self, by: Participant | None) -> None:
        """Someone's publications came or went: everyone else's slots follow (or, without fixed
        slots, everyone else renegotiates if needed), and the room's other workers are told."""
        for participant in list(self.participants.values()):
            if participant is not by:
                if self.counts.fixed:
                    participant.assign()
                else:
                    participant.schedule_update()
        if by is not None:
            self.announce(by.peer)

    # --- layers in use (demand.py) --------------------------------------------------------------

    def update_layers(self, now: float) -> None:
        """Ask the publishers here for the layers anyone uses; tell other workers what is used here."""
        used = demand.used(
            (participant.view, slot.publication)
            for participant in self.participants.values()
            for slot in participant.slots.values()
            if slot.publication is not None
        )
        local = [
            (participant.peer, publication)
            for participant in self.participants.values()
            for publication in participant.publications()
            if demand.simulcast(publication)
        ]
        for peer, publication in local:
            every = demand.rids(publication)
            wanted = used.get(publication, frozenset())
            for address in self.destinations:  # a worker that has not reported uses everything
                wanted |= self.far.get(address, {}).get(publication, every)
            requested = self.requests.update(publication, every, wanted, now)
            if requested is not None:
                rids = demand.ranked(publication, requested)
                self.emit(
                    {
                        "event": "layers",
                        "room": self.name,
                        "peer": peer,
                        "source": publication.label,
                        "rids": rids,
                    }
                )
        self.requests.keep(publication for _, publication in local)
        self._report(used, now)

    def _report(self, used: dict[Publication, frozenset[str]], now: float) -> None:
        """What this worker's subscribers use of remote publications, to their workers (``demand``)."""
        remote = [
            (peer, pid, publication)
            for peer, publisher in self.remote.items()
            for pid, publication in publisher.pubs.items()
            if publication.live and demand.simulcast(publication)
        ]
        for peer, pid, publication in remote:
            every = demand.rids(publication)
            reported = self.reports.update(publication, every, used.get(publication, frozenset()), now)
            if reported is not None:
                rids = demand.ranked(publication, reported)
                self.emit(
                    {"event": "demand", "room": self.name, "peer": peer, "publication": pid, "rids": rids}
                )
        self.reports.keep(publication for _, _, publication in remote)

    def set_far(self, address: Address, pid: int, rids: Sequence[str]) -> None:
        """The worker at ``address`` uses only ``rids`` of local publication ``pid``: pipe it only those."""
        if self.pipes is None or address not in self.destinations:
            return
        publication = self.pipes.local.get(pid)
        if publication is None or publication not in self._local_publications():
            return  # ended meanwhile
        uses = self.far.setdefault(address, {})
        before = uses.get(publication, demand.rids(publication))
        uses[publication] = frozenset(rids)
        self.pipes.limit(address, publication, frozenset(rids))
        self.pipes.sync(self.name, self._local_publications(), self.destinations)
        for layer in publication.layers:  # piped again: a subscriber there waits for its keyframe
            if layer.rid in uses[publication] - before:
                layer.request_keyframe()

    # --- pipes ----------------------------------------------------------------------------------

    def announce(self, peer: str) -> None:
        """Tell the room's other workers (through the server) what ``peer`` publishes now."""
        if self.pipes is None or not self.destinations:
            return
        self.pipes.sync(self.name, self._local_publications(), self.destinations)
        participant = self.participants.get(peer)
        publications = participant.publications() if participant is not None else []
        self.emit(
            {
                "event": "publications",
                "room": self.name,
                "peer": peer,
                "publications": [describe(p, self.pipes.id_of(p)) for p in publications],
            }
        )

    def pipe(self, address: Address) -> None:
        """Another worker holds this room too: send it everything published here."""
        self.destinations.add(address)
        for peer in list(self.participants):
            self.announce(peer)

    def unpipe(self, address: Address) -> None:
        """The worker at ``address`` no longer holds this room (it emptied, or died)."""
        self.destinations.discard(address)
        self.far.pop(address, None)
        if self.pipes is not None:
            self.pipes.forget(address, self._local_publications())
            self.pipes.sync(self.name, self._local_publications(), self.destinations)
        for peer in [peer for peer, remote in self.remote.items() if remote.address == address]:
            self.remote.pop(peer).close()
        self.publications_changed(None)

    def set_remote(self, peer: str, address: Address, announced: Sequence[dict[str, Any]]) -> None:
        """What ``peer``, a participant of the worker at ``address``, publishes now."""
        if self.pipes is None or peer in self.participants:
            return  # not ours to feed (a reconnect may briefly have a peer both here and there)
        remote = self.remote.get(peer)
        if remote is None or remote.address != address:
            if remote is not None:
                remote.close()
            remote = self.remote[peer] = RemotePublisher(peer, address, self.pipes, self.counters)
        remote.update(announced)
        if not announced:
            self.remote.pop(peer).close()
        self.publications_changed(None)

    def close_pipes(self) -> None:
        """The room left this worker: stop sending it and drop what came from elsewhere."""
        for remote in self.remote.values():
            remote.close()
        self.remote.clear()
        self.destinations.clear()
        self.far.clear()
        if self.pipes is not None:
            self.pipes.sync(self.name, [], ())

    def _local_publications(self) -> list[Publication]:
        return [s for p in self.participants.values() for s in p.publications()]
