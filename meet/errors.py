"""The small exception tree shared by every layer.

Services raise :class:`MeetError` subclasses; ``meet.app`` translates them, in one place,
into the JSON error shape ``{"error": {"code", "message", "field"?}}`` with an HTTP status
(and, for WebSockets, a close code).
"""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration is unusable; the message names the key (and file)."""


class StoreError(Exception):
    """The database cannot be used (e.g. its schema is newer than this program)."""


class MeetError(Exception):
    """An error meant for the client: carries a status, a stable code and a message."""

    status = 500
    code = "internal_error"
    # The WebSocket close code after the ``error`` frame (the table in docs/protocol.md): the
    # 4xxx codes mirror the HTTP statuses they resemble.
    ws_close_code = 1011

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field

    def as_json(self) -> dict[str, object]:
        """The body of the error response."""
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return {"error": body}

    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. Retry-After)."""
        return {}


class BadRequest(MeetError):
    status, code, ws_close_code = 400, "bad_request", 1008


class Unauthorized(MeetError):
    status, code, ws_close_code = 401, "unauthorized", 4401


class Forbidden(MeetError):
    status, code, ws_close_code = 403, "forbidden", 4403


class NotFound(MeetError):
    status, code, ws_close_code = 404, "not_found", 4404


class TimedOut(MeetError):
    """Waited too long (a knock in the lobby that no host answered)."""

    status, code, ws_close_code = 408, "timeout", 4408


class Conflict(MeetError):
    status, code, ws_close_code = 409, "conflict", 1008


class Gone(MeetError):
    status, code, ws_close_code = 410, "gone", 4410


class PayloadTooLarge(MeetError):
    status, code, ws_close_code = 413, "payload_too_large", 1009


class Throttled(MeetError):
    status, code, ws_close_code = 429, "too_many_requests", 4429

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, int(retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unavailable(MeetError):
    status, code, ws_close_code = 503, "unavailable", 1013


class StorageFull(Unavailable):
    """The database cannot be written: the disk (or filesystem) holding it is full.

    Reads keep working; writes succeed again on their own once space is freed.
    """

    code = "storage_full"

    def __init__(self, message: str = "", **kwargs: str | None) -> None:
        super().__init__(
            message
            or "The server cannot save anything right now: the disk holding its database is full. "
            "Reading still works; try again once the administrator has freed space.",
            **kwargs,
        )

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "60"}  # freeing disk space takes a person
