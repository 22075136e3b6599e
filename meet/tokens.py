"""Signed tokens (itsdangerous) and keyed hashes for secrets kept in the database.

Each purpose gets its own salt, so a token made for one purpose never validates for another.
Expiry is not taken from the token: the database row carries it, checked against the
injected clock, and rows make every token revocable / single use.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

SESSION = "meet.session"
VERIFY_LINK = "meet.verify-link"
RESET = "meet.password-reset"
INVITE = "meet.invitation"
GUEST = "meet.guest-pass"


class Tokens:
    """Sign/unsign payloads per purpose and hash secrets with the server key."""

    def __init__(self, secret_key: bytes) -> None:
        self._secret = secret_key

    def sign(self, purpose: str, payload: Any) -> str:
        """A URL-safe token carrying ``payload``, signed for ``purpose``."""
        return URLSafeSerializer(self._secret, salt=purpose).dumps(payload)

    def unsign(self, purpose: str, token: str) -> Any | None:
        """The payload of a token signed for ``purpose``; None when forged or malformed."""
        try:
            return URLSafeSerializer(self._secret, salt=purpose).loads(token)
        except (BadSignature, UnicodeError, ValueError):
            return None

    def digest(self, purpose: str, value: str) -> str:
        """A keyed hash: a leaked database alone does not reveal or let one guess codes."""
        key = hmac.new(self._secret, purpose.encode(), hashlib.sha256).digest()
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def new_nonce() -> str:
    """A random, unguessable identifier."""
    return secrets.token_urlsafe(24)


def new_code() -> str:
    """A random 6-digit verification code."""
    return f"{secrets.randbelow(1_000_000):06d}"
