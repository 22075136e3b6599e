"""Logging for ``meet serve``: text or JSON lines, a request id per HTTP request and WebSocket,
and the HTTP access log.

JSON lines are formatted by python-json-logger (``pythonjsonlogger.json.JsonFormatter``), the
formatter most Python services use for this: it serialises ``extra={...}`` fields, exception
and stack text and values JSON does not know (``default=str``) correctly, so we keep only the
choice of fields here, not a JSON encoder of our own. One object per line::

    {"time": "2026-12-04T18:30:00.123Z", "level": "INFO", "logger": "meet.access",
     "message": "GET /api/rooms 200 4.1ms 512B", "request_id": "3f9c…", "method": "GET", …}

The request id lives in a :class:`contextvars.ContextVar` set by :class:`RequestLog` before the
application runs; trio tasks copy the context they are started from, so every line logged while
handling that request or socket (in Quart's tasks too) carries it. It is sent back as the
``X-Request-Id`` response header (also on a WebSocket's handshake answer). An incoming
``X-Request-Id`` is used only behind a trusted reverse proxy (``[server] proxy_hops`` > 0: the
proxy can set it, e.g. nginx's ``$request_id``, so one id follows the request through both
logs) and only when it looks like an id (1–64 letters, digits and ``-_.:``); otherwise, and
always without a proxy, meet makes one, so a client cannot forge lines into another's trail.

Secrets: the access log names the path without its query string (verification and reset links
carry their tokens there); no request or response body, cookie or Authorization header is
ever logged.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import IO, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from meet.asgi import ASGIApp, Message, Receive, Scope, Send
from meet.config.sections import LogConfig

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

access_log = logging.getLogger("meet.access")

REQUEST_ID_HEADER = b"x-request-id"
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"
JSON_FIELDS = ("asctime", "levelname", "name", "message")
JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger", "exc_info": "exception"}


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request id (``request_id``; None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        record.request_id = rid
        record.request_tag = f" [{rid}]" if rid else ""
        return True


class MeetJsonFormatter(JsonFormatter):
    """python-json-logger with meet's field names, UTC ISO-8601 times, and no empty request id."""

    def __init__(self) -> None:
        super().__init__(
            list(JSON_FIELDS),
            rename_fields=JSON_NAMES,
            json_default=str,
            json_ensure_ascii=False,
            reserved_attrs=[*RESERVED_ATTRS, "request_tag"],
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        if log_data.get("request_id") is None:
            log_data.pop("request_id", None)
        return log_data



class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, its local time formatted once per second rather than once per line."""

    _second: int | None = None
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, super().formatTime(record, datefmt)[:-4]
        return f"{self._stamp},{int(record.msecs):03d}"  # as logging.Formatter: ``…:SS,mmm``


def make_formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``[log] format``."""
    formatters: dict[str, Callable[[], logging.Formatter]] = {
        "json": MeetJsonFormatter,
        "text": lambda: TextFormatter(TEXT_FORMAT),
    }
    return formatters[fmt]()


def setup_logging(settings: LogConfig, stream: IO[str] | None = None) -> logging.Handler:
    """Send every logger's records to ``stream`` (standard error) in the configured format.

    Replaces a handler an earlier call installed, so calling it again (tests) does not double
    the lines; returns the handler.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "meet_handler", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.meet_handler = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(make_formatter(settings.format))
    root.addHandler(handler)
    root.setLevel(settings.level.upper())
    return handler


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class RequestLog:
    """ASGI middleware: a request id for each HTTP request and WebSocket, the ``X-Request-Id``
    response header, and one access log line per HTTP request (and per WebSocket, when it ends).

    Sits inside :class:`meet.asgi.ForwardedFor`, so the client address it logs is the one
    after ``proxy_hops``.
    """

    def __init__(self, app: ASGIApp, *, trust_incoming_id: bool = False) -> None:
        self.app = app
        self.trust_incoming_id = trust_incoming_id

    def _new_id(self, scope: Scope) -> str:
        incoming = _header(scope, REQUEST_ID_HEADER) if self.trust_incoming_id else None
        if incoming and SANE_ID.fullmatch(incoming):
            return incoming
        return secrets.token_hex(8)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = self._new_id(scope)
        token = request_id.set(rid)
        exchange = _Exchange(scope, send, rid)
        try:
            await self.app(scope, receive, exchange.send)
        finally:
            exchange.log()
            request_id.reset(token)


class _Exchange:
    """What went out for one request: status, bytes, and when it started."""

    def __init__(self, scope: Scope, send: Send, rid: str) -> None:
        self.scope = scope
        self._send = send
        self.header = (b"x-request-id", rid.encode())
        self.started = time.perf_counter()
        self.status: int | None = None
        self.bytes = 0
        self.logged = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind in ("http.response.start", "websocket.accept", "websocket.http.response.start"):
            message = {**message, "headers": [*message.get("headers", []), self.header]}
            self.status = 101 if kind == "websocket.accept" else int(message["status"])
        elif kind == "http.response.body":
            self.bytes += len(message.get("body", b""))
            if not message.get("more_body", False):
                # Written before the last chunk goes out: once a client has the whole answer,
                # its line is in the log (the duration leaves out that last write).
                self.log()
        elif kind == "websocket.close" and self.status is None:
            self.status = 403  # closed before the handshake: the server answers 403
        await self._send(message)

    def log(self) -> None:
        """Write the access line (once)."""
        if self.logged:
            return
        self.logged = True
        if not access_log.isEnabledFor(logging.INFO):
            return
        scope = self.scope
        method = scope.get("method", "GET") if scope["type"] == "http" else "WS"
        status = self.status if self.status is not None else 500  # the app failed before answering
        millis = (time.perf_counter() - self.started) * 1000
        client = scope.get("client") or ("", 0)
        # makeRecord + handle is what Logger.info does, without findCaller's walk up the stack
        # (the line names no source location): one line per request, so it counts.
        record = access_log.makeRecord(
            access_log.name, logging.INFO, __file__, 0,
            "%s %s %d %.1fms %dB %s",
            (method, scope.get("path", ""), status, millis, self.bytes, client[0]),
            None, "log",
            extra={
                "method": method,
                "path": scope.get("path", ""),  # never the query string: links carry tokens there
                "status": status,
                "duration_ms": round(millis, 2),
                "bytes": self.bytes,
                "client": client[0],
                "user_agent": _header(scope, b"user-agent") or "",
            },
        )
        access_log.handle(record)
