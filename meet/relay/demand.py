"""Which simulcast layers anyone uses: publishers pause the encodings nobody needs (dynacast).

A browser in a relay room sends its camera as three encodings. In a big room most cameras are on
nobody's page and a thumbnail needs only the lowest layer, yet each publisher would encode and
upload all three and the relay receive and decrypt them all — its most expensive half. So the
relay works out, per simulcast publication, the layers some subscriber of the room has use for,
and the publisher is told (``layers``, ``docs/protocol.md``) to send only those (LiveKit calls
this dynacast; Jitsi sends senders video constraints).

A subscriber uses a layer of a video it receives (a slot carries it, and its page shows it) up to
the first layer that fills its tile (``view.View.needs``, the cap of the layer choice too): the
lower layers stay wanted as well, so the bandwidth allocator can still step down under
congestion. A room spread over several workers adds up what each worker's subscribers use: each
worker reports what it uses of the publications of the others (``demand`` events), and the
worker of the publisher sends the union to it — and pipes to each worker only what that worker
uses (``pipe.Endpoint.limit``).

A layer that becomes wanted is asked for at once; one no longer wanted is dropped only after
:data:`HOLD` seconds without use, so a page flip, a speaker change or a resized window does not
make publishers stop and restart encodings (each restart costs a keyframe).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

HOLD = 3.0  # seconds a layer stays requested after its last use

K = TypeVar("K", bound=Hashable)


class Layer(Protocol):
    """A simulcast layer (``source.Source``): its RID and the size of its latest keyframe."""

    @property
    def rid(self) -> str | None: ...

    @property
    def size(self) -> tuple[int, int] | None: ...


class Video(Hashable, Protocol):
    """A publication (``source.Publication``): its layers, ranked low → high."""

    @property
    def kind(self) -> str: ...

    @property
    def layers(self) -> Sequence[Layer]: ...

    @property
    def publisher(self) -> str: ...

    @property
    def label(self) -> str | None: ...


V = TypeVar("V", bound=Video)


class Page(Protocol):
    """A subscriber's view (``view.View``)."""

    def shows(self, publication: Video) -> bool: ...

    def needs(self, publication: Video, layers: Sequence[Layer]) -> int: ...


def simulcast(publication: Video) -> bool:
    """Whether ``publication`` is a video with several layers (the only ones with layers to pause)."""
    return publication.kind == "video" and len(publication.layers) > 1


def rids(publication: Video) -> frozenset[str]:
    """Every layer's RID."""
    return frozenset(layer.rid for layer in publication.layers if layer.rid)


def used(received: Iterable[tuple[Page, V]]) -> dict[V, frozenset[str]]:
    """The layers used of each simulcast video, from (subscriber's page, video it receives) pairs."""
    result: dict[V, frozenset[str]] = {}
    for page, publication in received:
        if not simulcast(publication) or not page.shows(publication):
            continue
        layers = by_size(publication.layers)
        wanted = frozenset(
            layer.rid for layer in layers[: max(1, page.needs(publication, layers))] if layer.rid
        )
        result[publication] = result.get(publication, frozenset()) | wanted
    return result


def by_size(layers: Sequence[Layer]) -> list[Layer]:
    """The layers smallest picture first, once every size is known (else as ranked).

    Not the rate ranking: while a publisher ramps up, its top layer may for a while send less
    than a lower one (seen: 180 kbit/s for the top layer, 417 for the low one). Ranked by rate,
    the large tile's needs then stopped at the top layer, and every lower one was paused at the
    publisher — a subscriber whose link later narrowed had nothing it could receive.
    """
    if any(layer.size is None for layer in layers):
        return list(layers)
    return sorted(layers, key=lambda layer: layer.size[0] * layer.size[1] if layer.size else 0)


def ranked(publication: Video, chosen: Iterable[str]) -> list[str]:
    """``chosen`` RIDs low → high (what ``layers`` lists)."""
    keep = set(chosen)
    return [str(layer.rid) for layer in by_size(publication.layers) if layer.rid in keep]


class Hold(Generic[K]):
    """The layers requested per key: a use adds a layer at once, disuse drops it after ``hold`` s."""

    def __init__(self, hold: float = HOLD) -> None:
        self.hold = hold
        self.requested: dict[K, frozenset[str]] = {}
        self._unused: dict[K, dict[str, float]] = {}  # key -> RID -> unused since

    def update(
        self, key: K, every: frozenset[str], wanted: frozenset[str], now: float
    ) -> frozenset[str] | None:
        """``wanted`` of ``every`` layer is in use now: the new request, or None if unchanged.

        A key seen for the first time starts with ``every`` layer requested (what a publisher
        sends before it is told anything).
        """
        before = self.requested.get(key, every) & every
        unused = self._unused.setdefault(key, {})
        for rid in wanted:
            unused.pop(rid, None)
        for rid in list(unused):
            if rid not in before:
                del unused[rid]
        dropped = set()
        for rid in before - wanted:
            since = unused.setdefault(rid, now)
            if now - since >= self.hold:
                dropped.add(rid)
                del unused[rid]
        after = (before | (wanted & every)) - dropped
        self.requested[key] = after
        return after if after != before else None

    def keep(self, keys: Iterable[K]) -> None:
        """Forget every key not in ``keys`` (publications that ended)."""
        live = set(keys)
        for table in (self.requested, self._unused):
            for key in [key for key in table if key not in live]:
                del table[key]
