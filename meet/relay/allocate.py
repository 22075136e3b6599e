"""Which layer of each video a subscriber receives, from its bandwidth estimate.

A subscriber's connection has one estimate of what it can receive (``bwe.Link``). Audio is
never chosen away, and is outside the estimate (it carries no transport-cc: see
``Bandwidth.video_budget``). The estimate is shared among the videos it subscribes to, as
Jitsi and LiveKit do:

1. every video gets its lowest layer, in order, while the budget allows; a video that does not
   fit is paused (nothing sent) — a video goes before any audio suffers;
2. then the videos move up one layer at a time, round robin, while the budget allows.

Until views report their sizes (a later issue), every tile counts the same and the order is the
subscription order. Two margins keep a choice from flapping: a layer the subscriber already
receives needs only its rate, any other (higher, or lower after a drop) :data:`UP_MARGIN` times it;
and when not every video fits, those already flowing keep their place. When a video could move
up if only the estimate were higher, :func:`allocate` names the rate to probe for — what every
video at its top layer would take — so the estimate can grow past what is being sent
(``bwe.Link.probe``, which doubles at most per probe).

A layer's rate is measured by its source (``Publication.measure``); a layer with no measurement
yet counts at a nominal rate for its rank (:func:`nominal`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

UP_MARGIN = 1.2  # a higher layer is chosen only with this much headroom over its rate
NOMINAL = {1: (800_000.0,), 2: (250_000.0, 1_000_000.0), 3: (150_000.0, 500_000.0, 1_500_000.0)}


@dataclass(frozen=True)
class Allocation:
    """The layer index chosen for each video (None: paused) and the rate worth probing for."""

    layers: tuple[int | None, ...]
    used: float  # bps the chosen layers take
    probe: float | None  # bps the estimate would need for the next step up (None: nothing to gain)


def nominal(count: int, index: int) -> float:
    """The rate assumed for layer ``index`` of ``count`` before it has been measured."""
    rates = NOMINAL.get(count, NOMINAL[3])
    return rates[min(index, len(rates) - 1)]


def allocate(
    budget: float,
    videos: Sequence[Sequence[float]],
    current: Sequence[int | None],
    sizes: Sequence[float] | None = None,
) -> Allocation:
    """Choose one layer per video (rates low → high per video) within ``budget`` bps.

    ``current`` is what each video receives now (index, or None when paused or new): staying
    needs the layer's rate, moving to another layer :data:`UP_MARGIN` times its rate.
    ``sizes`` (each video's tile area; all equal when not given) says who gets a lowest layer
    first when not all fit: the larger tiles, then, among equal ones, those flowing now.
    """
    chosen: list[int | None] = [None] * len(videos)
    used = 0.0

    def cost(i: int, layer: int) -> float:
        # Only the layer a video holds keeps it at its bare rate: any other, higher or lower,
        # needs the headroom, or a link that just narrowed would step down one layer at a time.
        return videos[i][layer] * (1.0 if layer == current[i] else UP_MARGIN)

    # Larger tiles first; among equal ones those flowing now: when only some fit, the ones
    # already shown keep their place rather than trading it with a paused one at every change
    # of the estimate — but a thumbnail that kept flowing through a drop never holds off the
    # large tile (a pinned speaker) that happened to be paused at that moment.
    area = sizes or [0.0] * len(videos)
    for i in sorted(range(len(videos)), key=lambda i: (-area[i], current[i] is None)):
        rates = videos[i]
        if rates and used + cost(i, 0) <= budget:
            chosen[i] = 0
            used += rates[0]
    moved = True
    while moved:  # round robin, one layer per video per round
        moved = False
        for i, rates in enumerate(videos):
            layer = chosen[i]
            if layer is None or layer + 1 >= len(rates):
                continue
            if used - rates[layer] + cost(i, layer + 1) <= budget:
                chosen[i] = layer + 1
                used += rates[layer + 1] - rates[layer]
                moved = True
    return Allocation(tuple(chosen), used, _probe(videos, chosen, used))


def _probe(videos: Sequence[Sequence[float]], chosen: Sequence[int | None], used: float) -> float | None:
    """The budget that would give every video its top layer, if that is more than is used.

    Probing for the whole of it (the link caps each probe at twice its estimate) finds a
    recovered link in a few doublings rather than one layer at a time.
    """
    if all(
        layer is not None and layer + 1 >= len(rates)
        for rates, layer in zip(videos, chosen, strict=True)
        if rates
    ):
        return None
    return sum(rates[-1] * UP_MARGIN for rates in videos if rates)
