"""Short-lived TURN credentials in coturn's shared-secret scheme (the "TURN REST API").

coturn, run with ``use-auth-secret`` and ``static-auth-secret=<secret>``, keeps no user list:
it accepts any ``username`` of the form ``<expiry>:<anything>`` whose password is
``base64(HMAC-SHA1(secret, username))``, as long as the Unix time ``<expiry>`` has not
passed. meet knows the same secret (``[rtc] turn_secret``), so it can mint such a pair for
each person as they join, and the browser hands it to the TURN server in the usual TURN
long-term-credential exchange. Nothing is stored, and nothing needs to be told to coturn.

Why the username carries the meet user id (``"1767265320:42"``, not just the expiry):

- **Attribution.** coturn names the username in its log lines about sessions and refused
  authentications (e.g. ``check_stun_auth: Cannot find credentials of user <1767265320:42>``),
  so an operator reading the TURN logs can tell whose relay it was, and match it to meet's
  call history.
- **Revocation is by expiry only.** coturn cannot revoke one credential in this scheme:
  whatever was handed out stays valid until its expiry (rotating the secret kills them all).
  Keeping ``[rtc] turn_ttl`` short bounds how long a removed or deleted account can open new
  relays, and the user id in the name shows in the logs whether it does. (The expiry is
  checked when a client first authenticates; coturn 4.6 keeps refreshing an allocation made
  in time, so a long call does not lose its relay when the credential runs out.)

The expiry is an absolute Unix time: meet's and coturn's clocks must agree (NTP).

Pure Python: no event loop, no media stack.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from meet.clock import Clock
from meet.config import RtcConfig


def turn_username(user_id: int | str, now: float, ttl: int) -> str:
    """``"<expiry>:<user id>"``, the expiry being ``now + ttl`` in whole Unix seconds."""
    return f"{int(now) + int(ttl)}:{user_id}"


def turn_password(secret: str, username: str) -> str:
    """coturn's password for ``username``: base64 of HMAC-SHA1 keyed with the shared secret."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def turn_server(
    urls: Sequence[str], secret: str, ttl: int, user_id: int | str, now: float
) -> dict[str, Any]:
    """The browser's ``RTCIceServer`` dictionary for ``urls`` with fresh credentials."""
    username = turn_username(user_id, now, ttl)
    return {"urls": list(urls), "username": username, "credential": turn_password(secret, username)}


class IceServers:
    """What each person gets as ``ice_servers``: the configured ones, plus (when
    ``[rtc] turn_urls`` is set) a TURN entry with credentials minted for them just now."""

    def __init__(self, rtc: RtcConfig, clock: Clock) -> None:
        self.rtc = rtc
        self.clock = clock

    def for_user(self, user_id: int) -> list[dict[str, Any]]:
        servers = [server.as_json() for server in self.rtc.ice_servers]
        if self.rtc.turn_urls:
            rtc = self.rtc
            servers.append(turn_server(rtc.turn_urls, rtc.turn_secret, rtc.turn_ttl, user_id, self.clock.now()))
        return servers
