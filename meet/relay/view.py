"""What a subscriber's page shows (its ``view``): the videos the relay forwards it, largest first.

The page lists its video tiles — whose, camera or screen, at what CSS size — whenever its layout
changes (``docs/protocol.md``, ``view``). A video it does not show (another page of a big room's
grid) is not forwarded at all: no bandwidth, no decoding, and no share of the estimate. The
others go to the allocator largest tile first, so when the estimate is short the small
thumbnails give way before the large speaker tile. A subscriber that never sent a view is
shown everything, in subscription order (what every page got before views existed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

SOURCES = ("camera", "screen")
MAX_TILES = 64
MAX_SIDE = 16384


class Shown(Protocol):
    """What a view looks a video up by (``forward.Publication``)."""

    @property
    def publisher(self) -> str: ...

    @property
    def label(self) -> str | None: ...


S = TypeVar("S", bound=Shown)
T = TypeVar("T")


@dataclass(frozen=True)
class Tile:
    """One tile of a page: a publisher's camera or screen, at ``width`` × ``height`` CSS pixels."""

    publisher: str
    source: str
    width: int
    height: int

    def __post_init__(self) -> None:
        if not self.publisher or self.source not in SOURCES:
            raise ValueError(f"a view tile needs a publisher and a source in {SOURCES}")
        if not (0 <= self.width <= MAX_SIDE and 0 <= self.height <= MAX_SIDE):
            raise ValueError(f"a view tile is 0 to {MAX_SIDE} pixels a side")

    @property
    def area(self) -> int:
        return self.width * self.height


class View:
    """One subscriber's latest view (None until its page sent one: everything is shown)."""

    def __init__(self) -> None:
        self.tiles: dict[tuple[str, str], Tile] | None = None

    def set(self, tiles: Sequence[Mapping[str, Any]]) -> None:
        """Replace the view with ``tiles`` (``publisher``, ``source``, ``width``, ``height`` each).

        Raises ValueError, and keeps the previous view, when a tile is malformed.
        """
        if len(tiles) > MAX_TILES:
            raise ValueError(f"a view lists at most {MAX_TILES} tiles")
        parsed: dict[tuple[str, str], Tile] = {}
        for tile in tiles:
            try:
                entry = Tile(
                    str(tile["publisher"]), str(tile["source"]), int(tile["width"]), int(tile["height"])
                )
            except (KeyError, TypeError) as exc:
                raise ValueError(f"malformed view tile {tile!r}") from exc
            parsed[entry.publisher, entry.source] = entry
        self.tiles = parsed

    def shows(self, publication: Shown) -> bool:
        """Whether the page shows this video (always, before its first view)."""
        return self.tiles is None or (publication.publisher, str(publication.label)) in self.tiles

    def arrange(self, videos: Sequence[tuple[S, T]]) -> list[tuple[S, T]]:
        """The (publication, …) pairs the page shows, largest tile first (stable otherwise)."""
        tiles = self.tiles
        if tiles is None:
            return list(videos)
        shown = [(pub, other) for pub, other in videos if (pub.publisher, str(pub.label)) in tiles]
        return sorted(shown, key=lambda pair: -tiles[pair[0].publisher, str(pair[0].label)].area)
