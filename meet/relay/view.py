"""What a subscriber's page shows (its ``view``): the videos the relay forwards it, largest first.

The page lists its video tiles — whose, camera or screen, at what CSS size — whenever its layout
changes (``docs/protocol.md``, ``view``). A video it does not show (another page of a big room's
grid) is not forwarded at all: no bandwidth, no decoding, and no share of the estimate. The
others go to the allocator largest tile first, so when the estimate is short the small
thumbnails give way before the large speaker tile, and each no higher than the layer its tile
has use for (:meth:`View.needs`): a 320-pixel thumbnail gets the low layer of a camera, the large
speaker tile the high one. A subscriber that never sent a view is shown everything, in
subscription order (what every page got before views existed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

# The bounds the server checks a page's view against: the worker checks its channel input by them too.
from meet.protocol import MAX_TILE_SIDE, MAX_VIEW_TILES, VIEW_SOURCES


class Sized(Protocol):
    """A layer whose picture size is known from its keyframes (``source.Source``)."""

    @property
    def size(self) -> tuple[int, int] | None: ...


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
        if not self.publisher or self.source not in VIEW_SOURCES:
            raise ValueError(f"a view tile needs a publisher and a source in {VIEW_SOURCES}")
        if not (0 <= self.width <= MAX_TILE_SIDE and 0 <= self.height <= MAX_TILE_SIDE):
            raise ValueError(f"a view tile is 0 to {MAX_TILE_SIDE} pixels a side")

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
        if len(tiles) > MAX_VIEW_TILES:
            raise ValueError(f"a view lists at most {MAX_VIEW_TILES} tiles")
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

    def needs(self, publication: Shown, layers: Sequence[Sized]) -> int:
        """How many of ``layers`` (low → high) the tile of ``publication`` has use for.

        Up to the first layer that fills the tile (letterboxed, as the page shows a picture of
        another shape) scaled up by at most 4/3; all of them without a view, for a video not
        listed, or while a layer's size is not known yet.
        """
        tile = self.tiles.get((publication.publisher, str(publication.label))) if self.tiles else None
        if tile is None:
            return len(layers)
        for index, layer in enumerate(layers):
            if layer.size is None:
                return len(layers)
            width, height = layer.size
            if 3 * tile.width <= 4 * width or 3 * tile.height <= 4 * height:
                return index + 1
        return len(layers)

    def area(self, publication: Shown) -> float:
        """The area of the tile showing this video (0 before the first view, or not shown)."""
        tile = self.tiles.get((publication.publisher, str(publication.label))) if self.tiles else None
        return 0.0 if tile is None else float(tile.area)

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
