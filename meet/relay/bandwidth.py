"""One participant's bandwidth: what it can receive, which layers it gets, what it is told it sends.

:class:`Bandwidth` belongs to a ``peer.Participant`` and holds:

- ``link``: the estimate of what the participant's connection carries towards it
  (``bwe.Link``), made when transport-wide cc is first negotiated on the connection (a client
  that never reports arrivals keeps every video at its best layer, as before estimates);
- ``uplink``: the arrivals of what the participant sends, reported back to it (``uplink.Uplink``),
  or, from a client that does not number its packets, the REMB estimate of its uplink (``remb.Remb``).

The worker's pacer calls :meth:`Bandwidth.rebalance` every 200 ms (choose each video's layer with
``allocate``, and ask the link to probe when a higher rate would help) and :meth:`Bandwidth.pace`
every 10 ms (the padding a probe needs now, resent as RTX on the videos). A subscription is a
(publication, out stream) pair: this module does not know m-lines or aiortc's transceivers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from meet.relay.allocate import Allocation, allocate, nominal
from meet.relay.bwe import Link
from meet.relay.compat import feedback
from meet.relay.forward import OutStream, Publication, Source
from meet.relay.remb import Remb
from meet.relay.uplink import Uplink

log = logging.getLogger("meet.relay.bandwidth")

Subscription = tuple[Publication, OutStream]
#: How many of a video's selectable layers (low → high) the subscriber's page has use for.
Needs = Callable[[Publication, Sequence[Source]], int]
Sizes = Callable[[Publication], float]  # a video's tile area on the page (view.View.area)


class LinkControl(Protocol):
    """A subscriber connection's bandwidth estimate (``meet.relay.bwe.Link``)."""

    @property
    def estimate(self) -> float: ...

    @property
    def probing(self) -> bool: ...

    def sent(self, size: int, now: float) -> int: ...

    def probe(self, target_bps: float, now: float) -> None: ...

    def padding(self, now: float) -> int: ...

    def stats(self) -> dict[str, Any]: ...

    def on_feedback(self, fci: bytes, now: float) -> bool: ...


class Bandwidth:
    """A participant's estimate, layer choices and uplink reports."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.link: LinkControl | None = None  # the connection's bandwidth estimate, once negotiated
        self.uplink = Uplink()  # what we tell the client about what it sends us
        self.remb = Remb()  # the same, for a client that does not number its packets (REMB)

    def link_for(self, dtls: Any) -> LinkControl:
        """The connection's estimate (made now if need be), fed by its transport-cc feedback."""
        link = self.link
        if link is None:
            link = self.link = Link(name=self.peer)

        def on_feedback(fci: bytes, now: float) -> None:
            link.on_feedback(fci, now)

        feedback.on_transport_feedback(dtls, on_feedback)  # again after each negotiation: idempotent
        return link

    def rebalance(
        self, videos: Sequence[Subscription], now: float, needs: Needs | None = None, sizes: Sizes | None = None
    ) -> None:
        """Choose each video's layer within the link's estimate; probe for more when it helps.

        Audio takes nothing from it (see :meth:`video_budget`). ``needs`` caps each video at the layers its tile has use for (``view.View.needs``);
        ``sizes`` gives the larger tiles their lowest layer first when not all fit (``view.View.area``).
        """
        if not videos:
            return
        budget = self.video_budget()
        allocation = self._allocation(videos, budget, needs, sizes)
        for (publication, out), index in zip(videos, allocation.layers, strict=True):
            layers = selectable(publication)
            chosen = None if index is None else layers[index]
            if chosen is not (out.target or out.source) or (chosen is None) != out.paused:
                log.debug(
                    "%s: %s's %s to %s (video budget %.0f kbit/s)",
                    self.peer,
                    publication.publisher,
                    publication.label,
                    "paused" if chosen is None else chosen.rid or "its one layer",
                    budget / 1000,
                )
            out.switch(chosen)
        if self.link is not None and allocation.probe is not None and not _awaiting_keyframe(videos):
            self.link.probe(allocation.probe, now)

    @property
    def probing(self) -> bool:
        """Whether the link is probing: the pacer then comes back every 10 ms."""
        return self.link is not None and self.link.probing

    def pace(self, videos: Sequence[Subscription], now: float) -> None:
        """Send the padding a probe of the estimate asks for now, on the videos (as RTX)."""
        if self.link is None:
            return
        wanted = self.link.padding(now)
        for _publication, out in videos:
            if wanted <= 0:
                break
            wanted -= out.pad(wanted, now)

    def first_layer(self, publication: Publication, videos: Sequence[Subscription]) -> Source:
        """The layer a new subscription starts on: what the estimate allows next to the others."""
        layers = selectable(publication)
        if publication.kind != "video" or len(layers) == 1:
            return layers[-1]
        budget = self.video_budget()
        room = budget - self._allocation(videos, budget).used
        rates = [layer.rate or nominal(len(layers), i) for i, layer in enumerate(layers)]
        fitting = [i for i, rate in enumerate(rates) if rate <= room]
        return layers[fitting[-1]] if fitting else layers[0]

    def video_budget(self) -> float:
        """What the videos may take: the link's whole estimate.

        The estimate is made of the packets that carry transport-cc, and the relay negotiates
        it on video m-lines only (``compat.feedback``, as browsers do for what they send): the
        rate acknowledged, the rates probes measure, are the room left for video beside the
        audio, which flows whatever the estimate says (it is never chosen away). Taking the
        audio off again counted it twice: behind a 400 kbit/s token bucket, the low layer no
        longer fitted beside two Opus streams and every video paused.
        """
        if self.link is None:
            return math.inf  # no estimate negotiated: every video at its best layer
        return self.link.estimate

    def stats(self, subscriptions: Sequence[tuple[str, Publication, OutStream]]) -> dict[str, Any]:
        """The estimate and, per subscription (mid, publication, out), the layer it receives."""
        link = self.link
        return {
            "estimate": None if link is None else round(link.estimate),
            "link": None if link is None else link.stats(),
            "subscriptions": [subscription_stats(mid, pub, out) for mid, pub, out in subscriptions],
        }

    def _allocation(
        self, videos: Sequence[Subscription], budget: float, needs: Needs | None = None, sizes: Sizes | None = None
    ) -> Allocation:
        rates: list[list[float]] = []
        current: list[int | None] = []
        for publication, out in videos:
            layers = selectable(publication)
            usable = layers[: max(1, needs(publication, layers))] if needs is not None else layers
            rates.append([layer.rate or nominal(len(layers), i) for i, layer in enumerate(usable)])
            held = out.target or out.source
            current.append(usable.index(held) if held in usable else None)
        areas = [sizes(publication) for publication, _out in videos] if sizes is not None else None
        return allocate(budget, rates, current, areas)


def selectable(publication: Publication) -> list[Source]:
    """The layers a subscriber may be given, low → high: those sending (all before measuring)."""
    active = [layer for layer in publication.layers if publication.active(layer)]
    return active or list(publication.layers)


def subscription_stats(mid: str, publication: Publication, out: OutStream) -> dict[str, Any]:
    """One subscription's part of ``stats``: the layer carried, the one switched to, the choice."""

    def name(layer: Source | None) -> str | None:
        if layer is None:
            return None
        return layer.rid or "single"

    return {
        "mid": mid,
        "publisher": publication.publisher,
        "source": publication.label,
        "kind": publication.kind,
        "layer": name(out.source),
        "target": name(out.target),
        "paused": out.paused,
        "layers": [
            {"rid": name(layer), "rate": round(layer.rate), "active": publication.active(layer)}
            for layer in publication.layers
        ],
        "switches": out.switches,
        "packets": out.packets,
        "padding": out.padding,
    }


def _awaiting_keyframe(videos: Sequence[Subscription]) -> bool:
    """Whether a video of this subscriber waits for a keyframe (switching layers, or starting).

    No probe then: a probe overfills a narrow link on purpose, and the keyframe it would cost is
    the one the frozen picture waits for. Behind a 400 kbit/s bucket, probes every few seconds
    lost the low layer's keyframe again and again: the picture stayed frozen for 17-18 s.
    """
    return any(not out.paused and (out.waiting or out.target is not None) for _publication, out in videos)
