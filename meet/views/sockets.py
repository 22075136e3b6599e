"""The WebSocket routes: a room's signaling channel and the user's presence channel.

Both accept first and then refuse with an ``error`` message and a close code, because a
browser cannot read the HTTP status of a refused handshake.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import trio
from quart import Blueprint, websocket

from meet import protocol as p
from meet import wire
from meet.connection import Connection, UserRef
from meet.errors import MeetError, Throttled, Unauthorized
from meet.hypercorn_ws import FrameSink, sink_of
from meet.signaling import ClientLoop, RoomEntry, Socket, user_handlers
from meet.views.context import (
    GUEST_COOKIE,
    Services,
    bearer_token,
    check_same_origin,
    client_address,
    current_session,
    services,
)

blueprint = Blueprint("sockets", __name__, url_prefix="/api")


class _Socket:
    """The accepted WebSocket as :class:`meet.signaling.Socket`: frames in through Quart, ready
    frames out through Hypercorn's stream (:mod:`meet.hypercorn_ws`), or — off Hypercorn —
    one Quart ``send`` per frame."""

    def __init__(self, ws: Any, sink: FrameSink | None) -> None:
        self.ws, self.sink = ws, sink

    async def receive(self) -> str | bytes:
        return await self.ws.receive()  # type: ignore[no-any-return]

    async def write(self, frames: bytes) -> None:
        if self.sink is not None:
            await self.sink.write(frames)
            return
        for text in wire.payloads(frames):
            await self.ws.send(text)

    async def close(self, code: int, reason: str = "") -> None:
        if self.sink is not None and self.sink.held:
            self.sink.abandon()  # half a frame went out: no close frame can follow it
            return
        await self.ws.close(code, reason)


def _socket(conn: Connection) -> Socket:
    """The real websocket behind Quart's context-local proxy; ``conn`` gets its fast path."""
    ws = websocket._get_current_object()  # type: ignore[attr-defined]
    sink = sink_of(ws.scope)
    if sink is not None:
        conn.direct = sink.try_write
    return _Socket(ws, sink)


async def refuse(error: MeetError) -> None:
    """Tell the client with an ``error`` frame, then close with the error's close code.

    The socket may already be closed (the client left): there is nobody left to tell then.
    """
    if isinstance(error, Throttled):
        services().metrics.throttle_hit(error.code)
    with contextlib.suppress(Exception):
        await websocket.send(p.encode(p.Error(code=error.code, message=error.message)))
        await websocket.close(error.ws_close_code, error.message[:120])


async def _identify(room_code: str | None) -> tuple[UserRef, int | None]:
    """Who is connecting: the signed-in user (and their session), or — on a room's socket —
    a guest of that room by its pass (bearer token or the ``meet_guest`` cookie)."""
    session = await current_session()
    if session is not None:
        return UserRef(session.user.id, session.user.username), session.id
    token = bearer_token() or websocket.cookies.get(GUEST_COOKIE)
    if room_code is None or not token:
        raise Unauthorized("Sign in first.", code="unauthorized")
    svc = services()
    return await svc.guests.authenticate(token, await svc.rooms.get(room_code)), None


async def _open_connection(room_code: str | None = None) -> Connection | None:
    """Accept the socket, authenticate and admit it (connection limits); None when refused.

    An admitted connection is registered with the session guard: the caller must
    ``services().sessions.forget`` it when it closes.
    """
    await websocket.accept()
    try:
        check_same_origin()
        user, session_id = await _identify(room_code)
    except MeetError as exc:
        await refuse(exc)
        return None
    settings = services().config.rooms
    conn = Connection(
        user,
        settings.send_queue,
        queue_bytes=settings.send_queue_bytes,
        session_id=session_id,
        address=client_address(),
    )
    try:
        services().sessions.admit(conn)
    except MeetError as exc:
        await refuse(exc)
        return None
    return conn


async def _depart_when_aborted(conn: Connection, depart: Callable[[], Awaitable[None]]) -> None:
    """Leave as soon as the connection is aborted (too slow, silent, shutdown).

    The loop itself may not end yet: Hypercorn shields socket writes, so a writer blocked on a
    client that stopped reading stays blocked until that TCP connection dies. The room (or the
    presence roster) must not wait for that.
    """
    await conn.aborted.wait()
    with trio.CancelScope(shield=True), trio.move_on_after(10):
        await depart()


def _quiet_cancellation(exc: BaseException) -> BaseException:
    """What to raise on: ``exc``, or for a client's close, one bare ``Cancelled`` without a
    traceback.

    A socket closed by its client ends its handler with trio's ``Cancelled`` (in groups, one
    per nursery). Their tracebacks hold the frames of every task of the connection, and Quart
    keeps a group in frames of its own (it re-raises bare ``Cancelled`` at once), so the whole
    connection stayed in reference cycles until the collector's next full pass (~300 objects
    per closed socket; those passes stall every room, see bench/README.md). The cancel scope
    being unwound takes a bare ``Cancelled`` as it takes the group. Real errors are raised as
    they are, tracebacks and all, for the log.
    """
    leaf = exc
    if isinstance(exc, BaseExceptionGroup):
        if exc.split(trio.Cancelled)[1] is not None:
            return exc
        while isinstance(leaf, BaseExceptionGroup):
            leaf.__traceback__ = leaf.__context__ = None
            leaf = leaf.exceptions[0]
    if not isinstance(leaf, trio.Cancelled):
        return exc
    leaf.__traceback__ = None
    leaf.__context__ = None
    return leaf


def _detach_sink() -> None:
    """The socket's FrameSink and its stream refer to each other (through the scope): part."""
    sink = sink_of(cast(dict[str, Any], websocket.scope))  # the scope itself: no copy
    if sink is not None:
        sink.detach()


async def _serve(svc: Services, conn: Connection, kind: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run an admitted connection's channel; then forget it, however it ended."""
    quiet: BaseException | None = None
    try:
        with svc.metrics.websockets.labels(kind).track_inprogress():
            await run()
    except BaseException as exc:
        quiet = _quiet_cancellation(exc)
        if quiet is exc:
            raise
    finally:
        svc.sessions.forget(conn)
        _detach_sink()
    if quiet is not None:
        try:
            raise quiet  # outside the except block: not chained to the group it came from
        finally:
            quiet = None  # this frame is in its traceback: no cycle through the local


@blueprint.websocket("/rooms/<code>/ws")
async def room_socket(code: str) -> None:
    """Join a room (perhaps through its lobby) and exchange signaling messages until leaving."""
    conn = await _open_connection(code)
    if conn is None:
        return
    svc = services()
    await _serve(svc, conn, "room", partial(_run_room, svc, code, conn))


async def _run_room(svc: Services, code: str, conn: Connection) -> None:
    entry = RoomEntry(svc.rooms, code, conn)
    loop = ClientLoop(
        _socket(conn), conn, svc.config.rooms, p.parse_room_message, entry.handle, svc.heartbeat,
        svc.metrics.throttle_hit,
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(entry.enter)
            nursery.start_soon(_depart_when_aborted, conn, entry.leave)
            await loop.run()
            nursery.cancel_scope.cancel()
    finally:
        # The handler may be cancelled by a disconnect; leaving must still be recorded.
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await entry.leave()  # a no-op when already done on abort, or never admitted


@blueprint.websocket("/ws")
async def user_socket() -> None:
    """Presence and ringing for the signed-in user."""
    conn = await _open_connection()
    if conn is None:
        return
    svc = services()
    await _serve(svc, conn, "presence", partial(_run_user, svc, conn))


async def _run_user(svc: Services, conn: Connection) -> None:
    svc.presence.connect(conn)
    loop = ClientLoop(
        _socket(conn), conn, svc.config.rooms, p.parse_user_message,
        user_handlers(svc.presence, svc.rooms, conn), svc.heartbeat, svc.metrics.throttle_hit,
    )

    async def disconnect() -> None:
        svc.presence.disconnect(conn)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_depart_when_aborted, conn, disconnect)
            await loop.run()
            nursery.cancel_scope.cancel()
    finally:
        svc.presence.disconnect(conn)  # a no-op when already done on abort
