"""``/api/admin/*``: the administration API (admins only), and the ``/admin`` page.

Signed-out callers get 401, signed-in people who are not admins 403 ``not_admin`` on every
route; the rules live in :mod:`meet.authz`, the work in :mod:`meet.admin`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, Response, jsonify, redirect, render_template
from quart_schema import document_response, security_scheme, validate_querystring, validate_request
from werkzeug.wrappers.response import Response as WerkzeugResponse

from meet.admin import Admin
from meet.errors import BadRequest, Unavailable
from meet.store.accounts import User
from meet.views.auth import Body, UserOut
from meet.views.context import base_url, current_session, require_session, services

blueprint = Blueprint("admin", __name__, url_prefix="/api/admin")
page_blueprint = Blueprint("admin_page", __name__)
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


class PageQuery(BaseModel):
    """``?q=&limit=&offset=``: a substring to search for and the page wanted."""

    model_config = ConfigDict(extra="ignore")
    q: str = Field("", max_length=254)
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=1_000_000_000)


class CreateUserBody(Body):
    username: str
    email: str
    password: str
    admin: bool = False
    verified: bool = True


class ChangeUserBody(Body):
    """Any of: make or unmake admin, disable or enable, mark verified."""

    is_admin: bool | None = None
    disabled: bool | None = None
    verified: bool | None = None


class InviteBody(Body):
    email: str
    send: bool = True  # mail the link as well


class AdminUserOut(UserOut):
    """An account as the public API shows it, and what only administrators see."""

    last_login_at: float | None
    disabled: bool
    disabled_at: float | None


class UsersReply(BaseModel):
    total: int
    limit: int
    offset: int
    users: list[AdminUserOut]


class AdminUserReply(BaseModel):
    user: AdminUserOut


class InviteReply(BaseModel):
    link: str


class ClearedReply(BaseModel):
    cleared: int


class Done(BaseModel):
    ok: bool


class RoomsPage(BaseModel):
    total: int
    limit: int
    offset: int
    live: int
    rooms: list[dict[str, Any]]


class RoomEndedReply(BaseModel):
    room: dict[str, Any]


class RemovedReply(BaseModel):
    removed: dict[str, Any]


class ServerReply(BaseModel):
    version: str
    uptime_s: float
    rooms_live: int
    participants: int
    relay: dict[str, Any]
    database: dict[str, Any]
    mail: dict[str, Any]


class AuditPage(BaseModel):
    total: int
    limit: int
    offset: int
    entries: list[dict[str, Any]]


def _reply(body: dict[str, Any], status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


async def _admin() -> tuple[Admin, User]:
    """The admin service and the signed-in admin; 401 signed out, 403 not an admin."""
    actor = (await require_session()).user
    Admin.allow(actor)
    admin = services().admin
    if admin is None:  # services built without it (never by build_services)
        raise Unavailable("The administration is not available on this server.", code="admin_unavailable")
    return admin, actor


# -- users --------------------------------------------------------------------------------


@blueprint.get("/users")
@security_scheme(BEARER)
@validate_querystring(PageQuery)
@document_response(UsersReply)
async def users(query_args: PageQuery) -> Response:
    """Users whose username or email contains ``q``, by id, a page at a time, with the total."""
    admin, _ = await _admin()
    return _reply(await admin.users(query_args.q, query_args.limit, query_args.offset))


@blueprint.post("/users")
@security_scheme(BEARER)
@validate_request(CreateUserBody)
@document_response(AdminUserReply, 201)
async def create_user(data: CreateUserBody) -> Response:
    """Create an account (verified unless ``verified`` is false; an admin with ``admin``)."""
    admin, actor = await _admin()
    user = await admin.create_user(
        actor, data.username, data.email, data.password, admin=data.admin, verified=data.verified
    )
    return _reply({"user": user.public()}, 201)


@blueprint.get("/users/<int:user_id>")
@security_scheme(BEARER)
@document_response(AdminUserReply)
async def get_user(user_id: int) -> Response:
    """One user with their state."""
    admin, _ = await _admin()
    return _reply({"user": (await admin.user(user_id)).public()})


@blueprint.patch("/users/<int:user_id>")
@security_scheme(BEARER)
@validate_request(ChangeUserBody)
@document_response(AdminUserReply)
async def change_user(user_id: int, data: ChangeUserBody) -> Response:
    """Make or unmake admin, disable (their sessions and sockets end at once) or enable, verify.

    Nobody can unmake or disable themselves (403 ``own_account``).
    """
    admin, actor = await _admin()
    if data.verified is False:
        raise BadRequest("An address cannot be unverified; only 'verified': true.", code="invalid_field", field="verified")
    if data.is_admin is None and data.disabled is None and data.verified is None:
        raise BadRequest("Send is_admin, disabled or verified.", code="missing_field", field="is_admin")
    # Checked before any change, so a refused request changes nothing.
    if data.is_admin is not None:
        Admin.allow(actor, user_id, revoking=not data.is_admin)
    if data.disabled is not None:
        Admin.allow(actor, user_id, revoking=data.disabled)
    user = await admin.user(user_id)
    if data.verified:
        user = await admin.verify(actor, user_id)
    if data.is_admin is not None:
        user = await admin.set_admin(actor, user_id, data.is_admin)
    if data.disabled is not None:
        user = await admin.set_disabled(actor, user_id, data.disabled)
    return _reply({"user": user.public()})


@blueprint.delete("/users/<int:user_id>")
@security_scheme(BEARER)
@document_response(Done)
async def delete_user(user_id: int) -> Response:
    """Delete an account and everything hanging off it (not one's own: 403 ``own_account``)."""
    admin, actor = await _admin()
    await admin.delete(actor, user_id)
    return _reply({"ok": True})


@blueprint.post("/users/<int:user_id>/reset-throttles")
@security_scheme(BEARER)
@document_response(ClearedReply)
async def reset_throttles(user_id: int) -> Response:
    """Lift the user's sign-in lock-out (failed sign-ins, theirs and their addresses')."""
    admin, actor = await _admin()
    return _reply({"cleared": await admin.reset_throttles(actor, user_id)})


@blueprint.post("/invitations")
@security_scheme(BEARER)
@validate_request(InviteBody)
@document_response(InviteReply, 201)
async def invite(data: InviteBody) -> Response:
    """A single-use sign-up link for ``email`` (mailed unless ``send`` is false)."""
    admin, actor = await _admin()
    return _reply({"link": await admin.invite(actor, data.email, base_url(), send=data.send)}, 201)


# -- rooms, the server, the audit log ------------------------------------------------------


@blueprint.get("/rooms")
@security_scheme(BEARER)
@validate_querystring(PageQuery)
@document_response(RoomsPage)
async def rooms(query_args: PageQuery) -> Response:
    """Rooms by code, title or host: live ones first (participants, mode), then the newest."""
    admin, _ = await _admin()
    return _reply(await admin.find_rooms(query_args.q, query_args.limit, query_args.offset))


@blueprint.post("/rooms/<code>/end")
@security_scheme(BEARER)
@document_response(RoomEndedReply)
async def end_room(code: str) -> Response:
    """End a meeting: everyone in it gets ``room-ended`` and close 4410."""
    admin, actor = await _admin()
    return _reply({"room": await admin.end_room(actor, code)})


@blueprint.delete("/rooms/<code>/participants/<peer_id>")
@security_scheme(BEARER)
@document_response(RemovedReply)
async def remove_participant(code: str, peer_id: str) -> Response:
    """Remove someone from a live meeting (``kicked``, close 4403) and keep them out of it."""
    admin, actor = await _admin()
    return _reply({"removed": await admin.remove_participant(actor, code, peer_id[:64])})


@blueprint.get("/server")
@security_scheme(BEARER)
@document_response(ServerReply)
async def server() -> Response:
    """Version, uptime, relay workers (packets/s and CPU % since the last call), database
    size and the mail backend's health."""
    admin, _ = await _admin()
    return _reply(await admin.server())


@blueprint.get("/audit")
@security_scheme(BEARER)
@validate_querystring(PageQuery)
@document_response(AuditPage)
async def audit(query_args: PageQuery) -> Response:
    """Every admin action, newest first: who, what, to what, when."""
    admin, _ = await _admin()
    return _reply(await admin.audit(query_args.limit, query_args.offset))


@page_blueprint.get("/admin")
async def admin_page() -> Response | WerkzeugResponse:
    """The administration page; signed-out visitors sign in first, others are told no (403)."""
    session = await current_session()
    if session is None:
        return redirect("/signin?next=/admin")
    denied = not session.user.is_admin
    html = await render_template("admin.html", page=None if denied else "admin", denied=denied)
    response = Response(html, status=403 if denied else 200, mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response
