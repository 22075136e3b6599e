"""Receive slots: the fixed set of m-lines a relay participant receives on, and what fills them.

A browser's SDP used to grow by one m-line per track of everyone else, and every join
renegotiated the whole room. With slots (``[rtc] video_slots``, ``audio_slots``) each
participant's connection has a fixed number of receiving m-lines, negotiated once; the relay
moves publications in and out of them without any renegotiation and says so in ``tracks``
before the first packet (``docs/protocol.md``). Only a screen share the page shows adds a video
m-line, and only to that page's connection.

What fills the slots (this module decides; ``peer.py`` applies it):

- **Video**: the tiles of the page's ``view``, largest first — every screen it shows, and at
  most ``video_slots`` cameras. Before the page sent a view: every screen, then the cameras of
  the most recent dominant speakers, then the others in join order.
- **Audio**: the loudest current speakers — by speech over the last second, then by who spoke
  last (a pause does not empty a slot) — at most ``audio_slots``.

A publication keeps its slot while it stays wanted: a change moves only what has to move, so
a stream is not cut and restarted (and a video not made to wait for a keyframe) for nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

MAX_VIDEO_SLOTS = 25
MAX_AUDIO_SLOTS = 16


@dataclass(frozen=True)
class Counts:
    """How many receive slots of each kind (``video`` 0: no slots, one m-line per publication)."""

    video: int = 9
    audio: int = 3

    def __post_init__(self) -> None:
        if not 0 <= self.video <= MAX_VIDEO_SLOTS:
            raise ValueError(f"video slots must be 0 to {MAX_VIDEO_SLOTS}")
        if not 1 <= self.audio <= MAX_AUDIO_SLOTS:
            raise ValueError(f"audio slots must be 1 to {MAX_AUDIO_SLOTS}")

    @property
    def fixed(self) -> bool:
        """Whether connections have fixed slots (else one m-line per publication of the others)."""
        return self.video > 0


class Candidate(Hashable, Protocol):
    """A publication that may fill a slot (``forward.Publication``)."""

    @property
    def publisher(self) -> str: ...

    @property
    def label(self) -> str | None: ...


class Shows(Protocol):
    """The page's view (``view.View``)."""

    @property
    def tiles(self) -> Mapping[tuple[str, str], object] | None: ...

    def arrange(self, videos: Sequence[tuple[C, None]]) -> list[tuple[C, None]]: ...


C = TypeVar("C", bound=Candidate)
T = TypeVar("T", bound=Hashable)


def wanted_videos(view: Shows, videos: Sequence[C], recent: Sequence[str], cameras: int) -> list[C]:
    """The videos to receive, most wanted first: every screen wanted, at most ``cameras`` cameras.

    ``videos`` are the others' live videos in join order; ``recent`` the publishers most
    recently the dominant speaker, most recent first (used while the page has sent no view).
    """
    if view.tiles is not None:
        ordered = [publication for publication, _ in view.arrange([(v, None) for v in videos])]
    else:
        rank = {publisher: index for index, publisher in enumerate(recent)}
        screens = [v for v in videos if v.label == "screen"]
        others = [v for v in videos if v.label != "screen"]
        ordered = screens + sorted(others, key=lambda v: rank.get(v.publisher, len(rank)))
    chosen: list[C] = []
    for video in ordered:
        if video.label == "screen":
            chosen.append(video)
        elif cameras > 0:
            chosen.append(video)
            cameras -= 1
    return chosen


def wanted_voices(voices: Sequence[C], loudness: Mapping[str, tuple[float, float]], count: int) -> list[C]:
    """The ``count`` loudest of ``voices`` (the others' live audio, join order).

    ``loudness``: publisher → (share of the last second spoken, when last heard speaking);
    someone never heard ranks after everyone heard, in join order.
    """

    def key(voice: C) -> tuple[float, float]:
        spoken, heard = loudness.get(voice.publisher, (0.0, float("-inf")))
        return (-spoken, -heard)

    return sorted(voices, key=key)[:count]


def fill(current: Sequence[T | None], wanted: Sequence[T]) -> list[T | None]:
    """Slots holding ``current`` → slots holding the first ``len(current)`` of ``wanted``.

    What is wanted and already in a slot stays in that slot; what is no longer wanted leaves
    (None); newcomers take the free slots in order of ``wanted``.
    """
    keep = set(wanted[: len(current)])
    result = [item if item in keep else None for item in current]
    placed = {item for item in result if item is not None}
    free = (index for index, item in enumerate(result) if item is None)
    for item in wanted[: len(current)]:
        if item in placed:
            continue
        index = next(free, None)
        if index is None:
            break
        result[index] = item
    return result
