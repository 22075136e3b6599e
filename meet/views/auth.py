"""``/api/auth/*``: the JSON account API (exact routes relied upon by outside clients)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_response, security_scheme, validate_request

from meet.views.context import (
    SESSION_COOKIE,
    base_url,
    client_address,
    require_session,
    services,
)

blueprint = Blueprint("auth", __name__, url_prefix="/api/auth")


class Body(BaseModel):
    """Request bodies: exact types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class SignupBody(Body):
    username: str
    email: str
    password: str
    invite: str | None = None  # the token of an invitation link (``[auth] signup = "invite"``)


class VerifyBody(Body):
    email: str
    code: str


class EmailBody(Body):
    email: str


class LoginBody(Body):
    login: str
    password: str


class ResetBody(Body):
    token: str
    password: str


class UserOut(BaseModel):
    id: int
    username: str
    email: str
    verified: bool
    is_admin: bool
    created_at: float


class UserReply(BaseModel):
    user: UserOut


class LoginReply(BaseModel):
    user: UserOut
    token: str


class Accepted(BaseModel):
    ok: bool


class SignupReply(BaseModel):
    """The same whether the address was new or registered already (no account enumeration)."""

    ok: bool
    email: str


class AuthSettings(BaseModel):
    signup: str


def _reply(body: dict[str, Any], status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


@blueprint.get("/config")
@document_response(AuthSettings)
async def auth_config() -> Response:
    """What the sign-up page needs to know: ``signup`` is "open", "invite" or "closed"."""
    return _reply({"signup": services().config.auth.signup})


@blueprint.post("/signup")
@validate_request(SignupBody)
@document_response(SignupReply, 201)
async def signup(data: SignupBody) -> Response:
    """Create an account and mail a verification code and link.

    The reply is the same when the email is registered already: then the owner gets a mail
    instead (and an unverified owner a fresh code), and nothing changes.
    """
    email = await services().accounts.signup(
        data.username, data.email, data.password, client_address(), base_url(), data.invite
    )
    return _reply({"ok": True, "email": email}, 201)


@blueprint.post("/verify")
@validate_request(VerifyBody)
@document_response(UserReply)
async def verify(data: VerifyBody) -> Response:
    """Verify an email address with the 6-digit code from the mail."""
    user = await services().accounts.verify_code(data.email, data.code)
    return _reply({"user": user.public()})


@blueprint.post("/verify/resend")
@validate_request(EmailBody)
@document_response(Accepted, 202)
async def resend(data: EmailBody) -> Response:
    """Send a new code if the address belongs to an unverified account (always 202)."""
    await services().accounts.resend(data.email, client_address(), base_url())
    return _reply({"ok": True}, 202)


@blueprint.post("/login")
@validate_request(LoginBody)
@document_response(LoginReply)
async def login(data: LoginBody) -> Response:
    """Sign in with email or username; returns a bearer token and sets the session cookie."""
    svc = services()
    user, token = await svc.accounts.login(
        data.login, data.password, client_address(), request.headers.get("User-Agent", "")
    )
    response = _reply({"user": user.public(), "token": token})
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=svc.config.auth.session_days * 86400,
        httponly=True,
        samesite="Lax",
        secure=base_url().startswith("https://"),
        path="/",
    )
    return response


@blueprint.post("/logout")
@security_scheme([{"bearer": []}])
@document_response(Accepted)
async def logout() -> Response:
    """Revoke the current session (cookie or bearer token)."""
    session = await require_session()
    await services().accounts.logout(session)
    response = _reply({"ok": True})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@blueprint.get("/me")
@security_scheme([{"bearer": []}])
@document_response(UserReply)
async def me() -> Response:
    """The signed-in user."""
    session = await require_session()
    return _reply({"user": session.user.public()})


@blueprint.post("/forgot")
@validate_request(EmailBody)
@document_response(Accepted, 202)
async def forgot(data: EmailBody) -> Response:
    """Mail a password-reset link if the account exists (always 202)."""
    await services().accounts.forgot(data.email, client_address(), base_url())
    return _reply({"ok": True}, 202)


@blueprint.post("/reset")
@validate_request(ResetBody)
@document_response(Accepted)
async def reset(data: ResetBody) -> Response:
    """Choose a new password with the token from the reset mail."""
    await services().accounts.reset(data.token, data.password)
    return _reply({"ok": True})
