"""``/api/rooms`` and ``/api/calls``: meetings, their chat, history and attendance."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_response, security_scheme, validate_request

from meet.connection import UserRef
from meet.errors import BadRequest
from meet.history import attendance_csv, page_size
from meet.views.auth import Body
from meet.views.context import GUEST_COOKIE, base_url, client_address, require_session, services

blueprint = Blueprint("rooms", __name__, url_prefix="/api")


class CreateRoomBody(Body):
    title: str | None = None
    max_participants: int | None = None


class UpdateRoomBody(Body):
    title: str | None = None
    locked: bool | None = None
    max_participants: int | None = None
    guests: str | None = None  # "off", "lobby" or "open"
    lobby: bool | None = None
    reactions: bool | None = None


class GuestBody(Body):
    name: str


class GuestReply(BaseModel):
    token: str
    expires_at: float
    guest: dict[str, Any]
    ws_url: str


class HostOut(BaseModel):
    id: int
    username: str


class RoomOut(BaseModel):
    code: str
    title: str
    host: HostOut
    created_at: float
    status: str
    ended_at: float | None
    locked: bool
    max_participants: int
    guests: str
    lobby: bool
    reactions: bool


class RoomReply(BaseModel):
    room: RoomOut


class RoomsReply(BaseModel):
    rooms: list[RoomOut]


async def _me() -> UserRef:
    user = (await require_session()).user
    return UserRef(user.id, user.username)


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "²".isdigit() but int("²") fails
        raise BadRequest(f"'{name}' must be a positive integer.", code="invalid_parameter", field=name)
    return int(raw)


def _reply(body: dict[str, Any], status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def ws_url(code: str) -> str:
    """The room's WebSocket address, on the same origin as the page."""
    url = base_url()
    scheme = "wss" if url.startswith("https://") else "ws"
    return f"{scheme}://{url.split('://', 1)[1]}/api/rooms/{code}/ws"


@blueprint.post("/rooms")
@validate_request(CreateRoomBody)
@security_scheme([{"bearer": []}])
@document_response(RoomReply, 201)
async def create_room(data: CreateRoomBody) -> Response:
    """Create a meeting hosted by me."""
    room = await services().rooms.create(await _me(), data.title, data.max_participants)
    return _reply({"room": room.public()}, 201)


@blueprint.get("/rooms")
@security_scheme([{"bearer": []}])
@document_response(RoomsReply)
async def list_rooms() -> Response:
    """Rooms I host, newest first (``limit``, ``before`` = a room's position for paging)."""
    me = await _me()
    size = page_size(_int_arg("limit"))
    rooms = await services().rooms.hosted(me, size, _int_arg("before"))
    return _reply({"rooms": rooms, "next_before": rooms[-1]["id"] if len(rooms) == size else None})


@blueprint.get("/rooms/<code>")
@security_scheme([{"bearer": []}])
async def get_room(code: str) -> Response:
    """A room and who is in it now (``participants_hidden`` with the reason when the room is
    locked and I am not in it, or the host removed me)."""
    me = await _me()
    svc = services().rooms
    return _reply({"room": await svc.describe(await svc.get(code), me)})


@blueprint.post("/rooms/<code>/join")
@security_scheme([{"bearer": []}])
async def join_room(code: str) -> Response:
    """Check that I may enter and get the WebSocket address and ICE servers (``lobby``: I
    will wait in the lobby until a host lets me in)."""
    me = await _me()
    svc = services()
    room = await svc.rooms.get(code)
    waits = await svc.rooms.check_admission(room, me)
    return _reply(
        {
            "room": room.public(),
            "lobby": waits,
            "ws_url": ws_url(room.code),
            "ice_servers": svc.rooms.ice.for_user(me.id),
        }
    )


@blueprint.patch("/rooms/<code>")
@validate_request(UpdateRoomBody)
@security_scheme([{"bearer": []}])
@document_response(RoomReply)
async def update_room(code: str, data: UpdateRoomBody) -> Response:
    """Hosts and co-hosts: change the title, lock, capacity, guests ("off", "lobby", "open"),
    lobby (signed-in people wait too) or reactions."""
    me = await _me()
    changes = data.model_dump(exclude_unset=True)
    if not changes or any(v is None for v in changes.values()):
        raise BadRequest(
            "Send one or more of title, locked, max_participants, guests, lobby and reactions.",
            code="invalid_request",
        )
    svc = services().rooms
    room = await svc.update(await svc.get(code), me, changes)
    return _reply({"room": room.public()})


@blueprint.get("/rooms/<code>/guest")
async def guest_preview(code: str) -> Response:
    """Anyone with the link: the meeting's title, host and whether it takes guests (what the
    signed-out meeting page shows before asking for a name)."""
    room = await services().rooms.get(code)
    return _reply(
        {
            "room": {
                "code": room.code, "title": room.title, "host": {"username": room.host_username},
                "status": "ended" if room.ended else "open", "locked": room.locked, "guests": room.guests,
            }
        }
    )


@blueprint.post("/rooms/<code>/guest")
@validate_request(GuestBody)
@document_response(GuestReply)
async def guest_pass(code: str, data: GuestBody) -> Response:
    """Anyone with the link, no account: a guest pass for this meeting only. The token is a
    bearer credential for the room's WebSocket (also set as the ``meet_guest`` cookie, sent
    only to this room's API paths); no other API accepts it."""
    svc = services()
    room = await svc.rooms.get(code)
    issued = await svc.guests.issue(room, data.name, client_address())
    response = _reply(
        {
            "token": issued.token,
            "expires_at": issued.guest.expires_at,
            "guest": issued.user().public(),
            "ws_url": ws_url(room.code),
        }
    )
    response.set_cookie(
        GUEST_COOKIE,
        issued.token,
        max_age=int(svc.config.rooms.guest_ttl),
        httponly=True,
        samesite="Strict",
        secure=base_url().startswith("https://"),
        path=f"/api/rooms/{room.code}/",
    )
    return response


@blueprint.post("/rooms/<code>/end")
@security_scheme([{"bearer": []}])
@document_response(RoomReply)
async def end_room(code: str) -> Response:
    """Host only: end the meeting for everyone."""
    me = await _me()
    svc = services().rooms
    room = await svc.end(await svc.get(code), me)
    return _reply({"room": room.public()})


@blueprint.get("/rooms/<code>/messages")
@security_scheme([{"bearer": []}])
async def room_messages(code: str) -> Response:
    """Chat, newest first; ``q`` searches the text (all words, last one as a prefix)."""
    me = await _me()
    svc = services()
    room = await svc.rooms.get(code)
    q = request.args.get("q") or None
    body = await svc.history.messages(room, me, _int_arg("limit"), _int_arg("before"), q)
    return _reply(body)


@blueprint.get("/rooms/<code>/attendance")
@security_scheme([{"bearer": []}])
async def room_attendance(code: str) -> Response:
    """Host only: stays and total time of every participant (``?format=csv`` for a spreadsheet)."""
    me = await _me()
    svc = services()
    report = await svc.history.attendance(await svc.rooms.get(code), me)
    fmt = request.args.get("format", "json")
    if fmt == "csv":
        return Response(
            attendance_csv(report),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="attendance-{report["room"]["code"]}.csv"'},
        )
    if fmt != "json":
        raise BadRequest("format is json or csv.", code="invalid_parameter", field="format")
    return _reply(report)


@blueprint.get("/calls")
@security_scheme([{"bearer": []}])
async def calls() -> Response:
    """My call history, newest first: one entry per continuous stay."""
    me = await _me()
    return _reply(await services().history.calls(me, _int_arg("limit"), _int_arg("before")))
