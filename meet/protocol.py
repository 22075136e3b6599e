"""The WebSocket signaling protocol: one small dataclass per message type.

Client frames are parsed and validated here, at the edge (:func:`parse_room_message`,
:func:`parse_user_message`); anything malformed raises :class:`ProtocolError` carrying the
``error`` code sent back. Server messages are built from dataclasses too, so every type on
the wire is listed in :data:`SERVER_MESSAGES` and documented in ``docs/protocol.md``.
No I/O here.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

PROTOCOL_VERSION = 1
MAX_FRAME = 64 * 1024
# `signal` frames carry SDP, which grows with the room in relay mode (Chromium answers ~2.2 KB
# per participant's audio+video): 512 KiB covers a full 50-person relay room with screens.
MAX_SIGNAL_FRAME = 512 * 1024
MAX_CHAT = 2000


class ProtocolError(Exception):
    """A client frame that cannot be accepted; ``code`` goes into the ``error`` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Message:
    """Base of every message: ``type`` names it on the wire."""

    type: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        """The frame as a JSON-ready dict (``None`` fields are left out)."""
        # Shallow on purpose: fields hold JSON-ready values, and asdict's deep copy costs ~3x.
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return {"type": self.type, **{k: v for k, v in body.items() if v is not None}}


# -- client → server (room channel) ---------------------------------------------------


@dataclass(frozen=True)
class Signal(Message):
    """Relay ``data`` (SDP or ICE candidate) to one peer of the room."""

    type: ClassVar[str] = "signal"
    to: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Chat(Message):
    type: ClassVar[str] = "chat"
    text: str

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ProtocolError("invalid_message", "chat text must not be empty")
        if len(self.text) > MAX_CHAT:
            raise ProtocolError("invalid_message", f"chat text is limited to {MAX_CHAT} characters")


@dataclass(frozen=True)
class State(Message):
    """The sender's media state; only the fields present change."""

    type: ClassVar[str] = "state"
    audio: bool | None = None
    video: bool | None = None
    screen: bool | None = None
    hand: bool | None = None

    def changes(self) -> dict[str, bool]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Kick(Message):
    type: ClassVar[str] = "kick"
    peer_id: str


@dataclass(frozen=True)
class Mute(Message):
    type: ClassVar[str] = "mute"
    peer_id: str


@dataclass(frozen=True)
class End(Message):
    type: ClassVar[str] = "end"


@dataclass(frozen=True)
class MuteAll(Message):
    """Host powers: ask everyone but the hosts and co-hosts to mute."""

    type: ClassVar[str] = "mute-all"


@dataclass(frozen=True)
class LowerHand(Message):
    """Host powers: lower someone's raised hand."""

    type: ClassVar[str] = "lower-hand"
    peer_id: str


@dataclass(frozen=True)
class Admit(Message):
    """Host powers: let someone waiting in the lobby in (``id`` from ``knock``)."""

    type: ClassVar[str] = "admit"
    id: str


@dataclass(frozen=True)
class Deny(Message):
    """Host powers: turn someone waiting in the lobby away."""

    type: ClassVar[str] = "deny"
    id: str


@dataclass(frozen=True)
class Promote(Message):
    """Host powers: make a signed-in participant a co-host, or (the host only) the host."""

    type: ClassVar[str] = "promote"
    peer_id: str
    role: str = "cohost"

    def __post_init__(self) -> None:
        if self.role not in ("cohost", "host"):
            raise ProtocolError("invalid_message", "'role' must be \"cohost\" or \"host\"")


@dataclass(frozen=True)
class Demote(Message):
    """Host powers: make a co-host an ordinary participant again."""

    type: ClassVar[str] = "demote"
    peer_id: str


# The reactions people may send: a fixed set, so a reaction is never arbitrary text.
REACTIONS = ("👍", "👏", "❤️", "😂", "😮", "🎉", "🙏", "🤔")


@dataclass(frozen=True)
class React(Message):
    """Send an emoji reaction to everyone (one of ``REACTIONS``)."""

    type: ClassVar[str] = "react"
    emoji: str

    def __post_init__(self) -> None:
        if self.emoji not in REACTIONS:
            raise ProtocolError("invalid_message", f"'emoji' must be one of {' '.join(REACTIONS)}")


MAX_VIEW_TILES = 64  # tiles one `view` may list (a page shows far fewer)
MAX_TILE_SIDE = 16384  # CSS pixels
VIEW_SOURCES = ("camera", "screen")
_TILE_KEYS = frozenset(("peer_id", "source", "width", "height"))


@dataclass(frozen=True)
class ViewTile:
    """One video tile a page shows: whose, which source, at what CSS pixel size."""

    peer_id: str
    source: str
    width: int
    height: int


@dataclass(frozen=True)
class View(Message):
    """Relay rooms: the video tiles this page shows now, so the relay forwards only those."""

    type: ClassVar[str] = "view"
    tiles: list[dict[str, Any]]

    def __post_init__(self) -> None:
        if len(self.tiles) > MAX_VIEW_TILES:
            raise ProtocolError("invalid_message", f"'tiles' lists at most {MAX_VIEW_TILES} tiles")
        for index, tile in enumerate(self.tiles):
            _check_tile(index, tile)

    def entries(self) -> list[ViewTile]:
        """The tiles as typed records (validated on parsing)."""
        return [ViewTile(**tile) for tile in self.tiles]


def _check_tile(index: int, tile: Any) -> None:
    name = f"tiles[{index}]"
    if not isinstance(tile, dict) or set(tile) != _TILE_KEYS:
        raise ProtocolError("invalid_message", f"'{name}' must be an object with peer_id, source, width and height")
    peer_id, source = tile["peer_id"], tile["source"]
    if not isinstance(peer_id, str) or not 0 < len(peer_id) <= 64:
        raise ProtocolError("invalid_message", f"'{name}.peer_id' must be a peer id")
    if source not in VIEW_SOURCES:
        raise ProtocolError("invalid_message", f"'{name}.source' must be \"camera\" or \"screen\"")
    for side in ("width", "height"):
        value = tile[side]
        if type(value) is not int or not 0 <= value <= MAX_TILE_SIDE:
            raise ProtocolError("invalid_message", f"'{name}.{side}' must be an integer from 0 to {MAX_TILE_SIDE}")


@dataclass(frozen=True)
class Ping(Message):
    type: ClassVar[str] = "ping"


@dataclass(frozen=True)
class Pong(Message):
    type: ClassVar[str] = "pong"


# -- client → server (user channel) ---------------------------------------------------


@dataclass(frozen=True)
class Ring(Message):
    """Ring every dashboard of ``user_id`` with an invitation to ``room``."""

    type: ClassVar[str] = "ring"
    user_id: int
    room: str


@dataclass(frozen=True)
class RingAnswer(Message):
    """The callee's answer (client → server); relayed to the caller with ``user_id``."""

    type: ClassVar[str] = "ring-answer"
    ring_id: str
    accepted: bool
    user_id: int | None = None


@dataclass(frozen=True)
class RingCancel(Message):
    """The caller hangs up (client → server); the callee's prompts close (server → client)."""

    type: ClassVar[str] = "ring-cancel"
    ring_id: str


# -- server → client --------------------------------------------------------------------


@dataclass(frozen=True)
class Welcome(Message):
    type: ClassVar[str] = "welcome"
    peer_id: str
    user: dict[str, Any]
    role: str
    room: dict[str, Any]
    peers: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    ice_servers: list[dict[str, Any]]
    mode: str = "mesh"
    speaker: str | None = None  # relay rooms: the dominant speaker's peer id, once there is one
    protocol: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class SignalFrom(Message):
    type: ClassVar[str] = "signal"
    from_: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "from": self.from_, "data": self.data}


@dataclass(frozen=True)
class ChatPosted(Message):
    type: ClassVar[str] = "chat"
    message: dict[str, Any]


@dataclass(frozen=True)
class StateChanged(Message):
    type: ClassVar[str] = "state"
    peer_id: str
    audio: bool
    video: bool
    screen: bool
    hand: bool


@dataclass(frozen=True)
class PeerJoined(Message):
    type: ClassVar[str] = "peer-joined"
    peer: dict[str, Any]


@dataclass(frozen=True)
class PeerLeft(Message):
    type: ClassVar[str] = "peer-left"
    peer_id: str


@dataclass(frozen=True)
class RoomUpdated(Message):
    """Title, lock or capacity changed (by the host)."""

    type: ClassVar[str] = "room-updated"
    room: dict[str, Any]


@dataclass(frozen=True)
class Mode(Message):
    """The room now routes media this way ("relay": one connection with the peer "relay")."""

    type: ClassVar[str] = "mode"
    mode: str


@dataclass(frozen=True)
class Tracks(Message):
    """Relay mode: which publisher and source each m-line (mid) of your connection carries."""

    type: ClassVar[str] = "tracks"
    tracks: list[dict[str, Any]]


@dataclass(frozen=True)
class Speaker(Message):
    """Relay mode: the room's dominant speaker changed (from the audio levels the relay receives)."""

    type: ClassVar[str] = "speaker"
    peer_id: str


@dataclass(frozen=True)
class Layers(Message):
    """Relay mode: send only these simulcast encodings (``rids``, low to high) of ``source``.

    Every other encoding of that track should be paused; ``[]`` pauses the track's video
    entirely (nobody shows it). Until the first one, a publisher sends every encoding.
    """

    type: ClassVar[str] = "layers"
    source: str
    rids: list[str]


@dataclass(frozen=True)
class RoomEnded(Message):
    type: ClassVar[str] = "room-ended"


@dataclass(frozen=True)
class Kicked(Message):
    type: ClassVar[str] = "kicked"


@dataclass(frozen=True)
class MuteRequest(Message):
    """A host asks you to mute (``all``: everyone was asked, by ``mute-all``)."""

    type: ClassVar[str] = "mute-request"
    by: dict[str, Any]
    all: bool | None = None


@dataclass(frozen=True)
class Lobby(Message):
    """You are waiting in the lobby until a host admits you (``welcome`` follows on this
    socket) or denies you (close 4403); sent again whenever ``host_present`` changes."""

    type: ClassVar[str] = "lobby"
    room: dict[str, Any]
    host_present: bool
    timeout: float


@dataclass(frozen=True)
class Knock(Message):
    """To hosts and co-hosts: someone waits in the lobby."""

    type: ClassVar[str] = "knock"
    id: str
    name: str
    guest: bool


@dataclass(frozen=True)
class KnockEnded(Message):
    """To hosts and co-hosts: a knock is no longer waiting."""

    type: ClassVar[str] = "knock-ended"
    id: str
    outcome: str  # KNOCK_OUTCOMES
    by: dict[str, Any] | None = None


KNOCK_OUTCOMES = ("admitted", "denied", "left", "expired", "ended")


@dataclass(frozen=True)
class RoleChanged(Message):
    """Someone's role changed: ``"host"``, ``"cohost"`` or ``"guest"`` (an ordinary participant)."""

    type: ClassVar[str] = "role"
    peer_id: str
    role: str


@dataclass(frozen=True)
class Reaction(Message):
    """Someone sent an emoji reaction (to everyone, the sender included)."""

    type: ClassVar[str] = "reaction"
    peer_id: str
    emoji: str


@dataclass(frozen=True)
class Error(Message):
    type: ClassVar[str] = "error"
    code: str
    message: str


@dataclass(frozen=True)
class Presence(Message):
    type: ClassVar[str] = "presence"
    online: list[dict[str, Any]]


@dataclass(frozen=True)
class Online(Message):
    type: ClassVar[str] = "online"
    user: dict[str, Any]


@dataclass(frozen=True)
class Offline(Message):
    type: ClassVar[str] = "offline"
    user_id: int


@dataclass(frozen=True)
class Ringing(Message):
    """Sent to the caller: the ring is out, with the id answers will carry."""

    type: ClassVar[str] = "ringing"
    ring_id: str
    user_id: int
    room: str


@dataclass(frozen=True)
class IncomingCall(Message):
    type: ClassVar[str] = "incoming-call"
    ring_id: str
    from_: dict[str, Any]
    room: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "ring_id": self.ring_id, "from": self.from_, "room": self.room}


@dataclass(frozen=True)
class RingTimeout(Message):
    type: ClassVar[str] = "ring-timeout"
    ring_id: str
    user_id: int


ROOM_CLIENT_MESSAGES: dict[str, type[Message]] = {
    m.type: m
    for m in (
        Signal, Chat, State, Kick, Mute, End, MuteAll, LowerHand, Admit, Deny, Promote, Demote, React, View, Ping,
        Pong,
    )
}
USER_CLIENT_MESSAGES: dict[str, type[Message]] = {m.type: m for m in (Ring, RingAnswer, RingCancel, Ping, Pong)}
SERVER_MESSAGES: tuple[type[Message], ...] = (
    Welcome, SignalFrom, ChatPosted, StateChanged, PeerJoined, PeerLeft, RoomUpdated, Mode, Tracks, Speaker, Layers,
    RoomEnded,
    Kicked,
    MuteRequest, Lobby, Knock, KnockEnded, RoleChanged, Reaction, Error, Ping, Pong, Presence, Online, Offline,
    Ringing, IncomingCall, RingAnswer, RingCancel, RingTimeout,
)


def _check(value: Any, kind: Any, name: str) -> Any:
    """Validate one field against its annotation (str, bool, int, dict, optional)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        kind = next(o for o in options if o is not type(None))
    base = typing.get_origin(kind) or kind
    ok = isinstance(value, base) and not (base is int and isinstance(value, bool))
    if not ok:
        label = {str: "a string", bool: "true or false", int: "an integer", dict: "an object"}.get(base, str(base))
        raise ProtocolError("invalid_message", f"'{name}' must be {label}")
    if base is str and len(value) > MAX_SIGNAL_FRAME:
        raise ProtocolError("invalid_message", f"'{name}' is too long")
    return value


_Shape = tuple[dict[str, Any], dict[str, "dataclasses.Field[Any]"]]
_SHAPES: dict[type[Message], _Shape] = {}


def _shape(cls: type[Message]) -> _Shape:
    """A message class's field types and fields, worked out once: ``typing.get_type_hints``
    re-evaluates every annotation on each call (~29 of the ~32 µs a frame took to parse)."""
    shape = _SHAPES.get(cls)
    if shape is None:
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        shape = _SHAPES[cls] = (typing.get_type_hints(cls), fields)
    return shape


def _build(cls: type[Message], frame: dict[str, Any]) -> Message:
    hints, fields = _shape(cls)
    kwargs: dict[str, Any] = {}
    for key, value in frame.items():
        if key == "type":
            continue
        if key not in fields:
            raise ProtocolError("invalid_message", f"'{cls.type}' has no field '{key}'")
        kwargs[key] = _check(value, hints[key], key)
    for name, f in fields.items():
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if missing and name not in kwargs:
            raise ProtocolError("invalid_message", f"'{cls.type}' needs '{name}'")
    return cls(**kwargs)


def _parse(raw: str | bytes, table: dict[str, type[Message]]) -> Message:
    if isinstance(raw, bytes):
        raise ProtocolError("invalid_message", "frames must be JSON text, not binary")
    size = max(len(raw), len(raw.encode("utf-8", "surrogatepass")))  # in bytes
    too_large = ProtocolError(
        "frame_too_large",
        f"frames are limited to {MAX_FRAME // 1024} KiB ({MAX_SIGNAL_FRAME // 1024} KiB for 'signal')",
    )
    if size > MAX_SIGNAL_FRAME:
        raise too_large
    try:
        frame = json.loads(raw)
    except ValueError:
        raise (too_large if size > MAX_FRAME else ProtocolError("invalid_json", "the frame is not valid JSON")) from None
    if size > MAX_FRAME and not (isinstance(frame, dict) and frame.get("type") == "signal"):
        raise too_large
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ProtocolError("invalid_message", "a frame is a JSON object with a string 'type'")
    cls = table.get(frame["type"])
    if cls is None:
        raise ProtocolError("unknown_type", f"unknown message type '{frame['type'][:40]}'")
    return _build(cls, frame)


def parse_room_message(raw: str | bytes) -> Message:
    """Parse a frame received on a room's WebSocket."""
    return _parse(raw, ROOM_CLIENT_MESSAGES)


def parse_user_message(raw: str | bytes) -> Message:
    """Parse a frame received on the user (presence/ringing) WebSocket."""
    return _parse(raw, USER_CLIENT_MESSAGES)


def encode(message: Message) -> str:
    """Serialize a server message as one text frame."""
    return json.dumps(message.to_json(), separators=(",", ":"))

