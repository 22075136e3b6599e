"""The QuartTrio application: wiring, the same-origin check, security headers, and the one
place where errors become HTTP responses."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from quart import Response, current_app, g, has_websocket_context, jsonify, request, websocket
from quart_schema import QuartSchema, RequestSchemaValidationError
from quart_trio import QuartTrio
from quart_trio.wrappers import TrioRequest
from werkzeug.exceptions import HTTPException

from meet import __version__
from meet.accounts import Accounts, Session
from meet.clock import Clock
from meet.config import Config
from meet.errors import BadRequest, Forbidden, MeetError, Unauthorized
from meet.history import History
from meet.presence import Presence
from meet.rooms import Rooms
from meet.store import Store

log = logging.getLogger("meet.app")

MAX_BODY = 64 * 1024
SESSION_COOKIE = "meet_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
    "connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@dataclass(frozen=True)
class Services:
    """Everything the views need, built once by the server."""

    config: Config
    store: Store
    accounts: Accounts
    rooms: Rooms
    history: History
    presence: Presence
    clock: Clock


class MeetRequest(TrioRequest):
    """Malformed JSON is a named client error, not a bare 400 page."""

    def on_json_loading_failed(self, error: Exception) -> Any:
        raise BadRequest("The request body is not valid JSON.", code="invalid_json")

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        try:
            return await super().get_json(force, silent, cache)
        except UnicodeDecodeError:  # the body is decoded as UTF-8 before parsing
            if silent:
                return None
            raise BadRequest("The request body is not valid JSON.", code="invalid_json") from None


def services() -> Services:
    """The services of the running app (inside a request)."""
    return current_app.extensions["meet"]  # type: ignore[no-any-return]


def incoming() -> Any:
    """The current HTTP request or WebSocket handshake."""
    return websocket if has_websocket_context() else request


def base_url() -> str:
    """Where people reach this server: ``public_url``, else this request's own origin."""
    public = services().config.server.public_url
    return public.rstrip("/") if public else str(incoming().host_url).rstrip("/")


def client_address() -> str:
    return str(incoming().remote_addr or "unknown")


async def current_session() -> Session | None:
    """The session behind the bearer token or the cookie (cached per request)."""
    if "session" not in g:
        token = bearer_token() or incoming().cookies.get(SESSION_COOKIE)
        g.session = await services().accounts.authenticate(token) if token else None
    return g.session  # type: ignore[no-any-return]


async def require_session() -> Session:
    session = await current_session()
    if session is None:
        raise Unauthorized("Sign in first.", code="unauthorized")
    return session


def bearer_token() -> str | None:
    scheme, _, token = incoming().headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def check_same_origin() -> None:
    """Refuse cross-site requests riding on the cookie; bearer clients carry no ambient authority.

    Applies to state-changing HTTP requests and to every WebSocket handshake (a WebSocket is
    not covered by the browser's same-origin policy).
    """
    if bearer_token() is not None:
        return
    headers = incoming().headers
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise Forbidden("Cross-site requests are not allowed.", code="cross_origin")
    origin = headers.get("Origin")
    if origin is not None and origin.rstrip("/") != _origin_of(base_url()):
        raise Forbidden("Cross-site requests are not allowed.", code="cross_origin")


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    # A WebSocket handshake's own URL is ws(s)://, but the page's Origin is http(s)://.
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


def _error_response(error: MeetError) -> Response:
    response = jsonify(error.as_json())
    response.status_code = error.status
    response.headers.update(error.headers())
    return response


def _validation_error(error: RequestSchemaValidationError) -> MeetError:
    """Name the first offending field of a pydantic validation failure."""
    cause = error.validation_error
    if not isinstance(cause, ValidationError) or not cause.errors():
        return BadRequest("The request body does not match what this route expects.", code="invalid_request")
    first = cause.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    kind = first["type"]
    if field is None:
        return BadRequest("Send a JSON object (Content-Type: application/json).", code="invalid_json")
    if kind == "missing":
        return BadRequest(f"'{field}' is required.", code="missing_field", field=field)
    if kind == "extra_forbidden":
        return BadRequest(f"'{field}' is not a known field.", code="unknown_field", field=field)
    return BadRequest(f"'{field}' has the wrong type or value: {first['msg']}.", code="invalid_field", field=field)


def _register_error_handlers(app: QuartTrio) -> None:
    @app.errorhandler(MeetError)
    async def meet_error(error: MeetError) -> Response:
        return _error_response(error)

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(error: RequestSchemaValidationError) -> Response:
        return _error_response(_validation_error(error))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Any:
        status = error.code or 500
        if not request.path.startswith("/api/") and status in (404, 405):
            return await _html_error(status, error.description or "")
        message = error.description or "Request failed."
        if status == 413:
            message = f"The request body is larger than {MAX_BODY // 1024} KiB."
        return _error_response(_http_meet_error(status, message))

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(MeetError("Something went wrong on the server."))


def _http_meet_error(status: int, message: str) -> MeetError:
    error = MeetError(message, code=HTTP_CODES.get(status, "http_error"))
    error.status = status
    return error


async def _html_error(status: int, description: str) -> Response:
    title = "Page not found" if status == 404 else "Method not allowed"
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>meet</title>"
        "<link rel=stylesheet href=/static/css/app.css>"
        f"<main class=page-error><h1>{title}</h1><p><a href=/>Go to meet</a></p></main></html>"
    )
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def create_app(svc: Services) -> QuartTrio:
    """Build the application around already-running services."""
    from meet.views import auth, health, pages, rooms, sockets

    app = QuartTrio("meet", static_folder=None)  # web/ is served by views.pages
    app.request_class = MeetRequest
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["BODY_TIMEOUT"] = 30
    app.extensions["meet"] = svc
    QuartSchema(
        app,
        openapi_path="/api/openapi.json",
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,
        info={"title": "meet", "version": __version__},
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
    )
    _register_error_handlers(app)

    @app.before_request
    async def same_origin() -> None:
        if request.method not in SAFE_METHODS:
            check_same_origin()

    @app.after_request
    async def security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.register_blueprint(auth.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(rooms.blueprint)
    app.register_blueprint(sockets.blueprint)
    return app
