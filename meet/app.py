"""The QuartTrio application: wiring, the same-origin check, security headers, and the one
place where errors become HTTP responses."""

from __future__ import annotations

import functools
import logging
from typing import Any

from pydantic import ValidationError
from quart import Response, has_websocket_context, jsonify, render_template, request, websocket
from quart_schema import QuartSchema, RequestSchemaValidationError
from quart_trio import QuartTrio
from quart_trio.wrappers import TrioRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from meet import __version__
from meet.errors import BadRequest, MeetError, Throttled
from meet.views import admin, auth, health, metrics, pages, rooms, sockets
from meet.views.context import Services, base_url, check_same_origin, services

log = logging.getLogger("meet.app")

MAX_BODY = 64 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
    "connect-src 'self' {websocket}; style-src 'self'; script-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HSTS = "max-age=31536000"
FIXED_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin"), ("X-Frame-Options", "DENY"))
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


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
    """Every error becomes the JSON error shape; on a WebSocket, an ``error`` frame and a close.

    The handlers run for HTTP requests and for WebSocket handlers alike, so they never touch
    ``request`` without checking which context they are in.
    """

    @app.errorhandler(MeetError)
    async def meet_error(error: MeetError) -> Any:
        if has_websocket_context():
            await sockets.refuse(error)  # counts a Throttled itself
            return None
        if isinstance(error, Throttled):
            services().metrics.throttle_hit(error.code)
        return _error_response(error)

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(error: RequestSchemaValidationError) -> Response:
        return _error_response(_validation_error(error))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Any:
        status = error.code or 500
        if has_websocket_context():
            await sockets.refuse(_http_meet_error(status, error.description or "Request failed."))
            return None
        if not request.path.startswith("/api/") and status in (404, 405):
            response = await _html_error(status)
        else:
            message = error.description or "Request failed."
            if status == 413:
                message = f"The request body is larger than {MAX_BODY // 1024} KiB."
            response = _error_response(_http_meet_error(status, message))
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)  # a 405 must name them
        return response

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Any:
        internal = MeetError("Something went wrong on the server.")
        if has_websocket_context():
            log.error("unhandled error on WebSocket %s", websocket.path, exc_info=error)
            await sockets.refuse(internal)
            return None
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=error)
        return _error_response(internal)


def _http_meet_error(status: int, message: str) -> MeetError:
    error = MeetError(message, code=HTTP_CODES.get(status, "http_error"))
    error.status = status
    return error


async def _html_error(status: int) -> Response:
    """A 404 or 405 for a browser: web/templates/error.html on the site layout, not JSON.

    The request path is shown (autoescaped, cut short) so people can spot a mistyped link.
    """
    html = await render_template("error.html", status=status, path=request.path[:200], method=request.method[:16])
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response


def _csp() -> str:
    """The policy, with WebSockets allowed to this server's own origin only.

    CSP3 lets 'self' cover same-origin ws(s): too (Chromium does); the explicit origin keeps
    older engines working without allowing any other host.
    """
    return _csp_for(base_url())


@functools.lru_cache(maxsize=64)
def _csp_for(origin: str) -> str:
    """The policy for one origin (a server has one or a few: kept, not formatted per request)."""
    websocket_origin = ("wss" if origin.startswith("https://") else "ws") + "://" + origin.split("://", 1)[1]
    return CSP.format(websocket=websocket_origin)


def _served_over_https() -> bool:
    """TLS here (tls_cert) or at the proxy in front (an https public_url)."""
    server = services().config.server
    return bool(server.tls_cert) or server.public_url.startswith("https://")


def create_app(svc: Services) -> QuartTrio:
    """Build the application around already-running services."""
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

    @app.after_serving
    async def close_session_cache() -> None:
        svc.accounts.close()  # its own SQLite connection, before the store's closes

    @app.before_request
    async def same_origin() -> None:
        if request.method not in SAFE_METHODS:
            check_same_origin()

    @app.after_request
    async def security_headers(response: Response) -> Response:
        headers = response.headers
        # One pass over what the view set, instead of a setdefault per header: werkzeug's
        # setdefault raises and catches a KeyError for every header not there yet.
        present = {name.lower() for name, _value in headers.items()}
        wanted = [
            ("Content-Security-Policy", _csp()),
            *([("Strict-Transport-Security", HSTS)] if _served_over_https() else []),
            *FIXED_HEADERS,
            *([("Cache-Control", "no-store")] if request.path.startswith("/api/") else []),
        ]
        for name, value in wanted:
            if name.lower() not in present:
                headers.add(name, value)
        return response

    app.register_blueprint(admin.blueprint)  # /api/admin/*
    app.register_blueprint(admin.page_blueprint)  # /admin
    app.register_blueprint(auth.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(metrics.blueprint)  # /metrics, and the timing of every HTTP request
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(rooms.blueprint)
    app.register_blueprint(sockets.blueprint)
    return app
