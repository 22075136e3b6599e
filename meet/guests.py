"""Guest passes: people without an account join one meeting by its link with only a name.

A pass is a signed token (``meet.tokens.GUEST``) naming the room and a random nonce; the
database keeps the nonce's keyed hash with the room, the name, the client address and the
expiry, so a pass is bound to its room, expires (``[rooms] guest_ttl``) and can be revoked
(the host removed the guest, a host denied its knock, the meeting ended). It is a bearer
credential for that room's WebSocket only: every other API refuses it, as it is not a
session.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from meet import tokens as purposes
from meet.authz import Action, Facts, check
from meet.clock import Clock
from meet.config import RoomsConfig
from meet.connection import UserRef
from meet.errors import BadRequest, Forbidden, Gone, Throttled, Unauthorized
from meet.store import Store
from meet.store import guests as q
from meet.store.records import Guest, Room
from meet.throttle import Busy, Throttle
from meet.tokens import Tokens, new_nonce

NAME_MAX = 40
TOKEN_MAX = 512  # longer strings are not ours: refuse before any work


@dataclass(frozen=True)
class Pass:
    """A pass just issued: the token to present and its record."""

    token: str
    guest: Guest

    def user(self) -> UserRef:
        return UserRef(-self.guest.id, self.guest.name, guest=True)


def clean_name(raw: str) -> str:
    """A display name: trimmed, 1–40 characters, no control or formatting characters."""
    name = " ".join(raw.split())
    if not 1 <= len(name) <= NAME_MAX:
        raise BadRequest(f"Your name must be 1–{NAME_MAX} characters.", code="invalid_name", field="name")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs") for ch in name):
        raise BadRequest("Your name has characters that cannot be shown.", code="invalid_name", field="name")
    return name


class Guests:
    """Issues guest passes and turns presented tokens back into guests of one room."""

    def __init__(self, store: Store, tokens: Tokens, clock: Clock, settings: RoomsConfig) -> None:
        self.store, self.tokens, self.clock, self.settings = store, tokens, clock, settings
        self.throttle = Throttle(settings.guest_passes_per_address, settings.guest_window_s, clock)

    async def issue(self, room: Room, name: str, address: str) -> Pass:
        """A new pass for ``room``; refused when the room takes no guests (now), the address
        had a guest removed from it, or the address asked for too many passes."""
        name = clean_name(name)
        check(Action.GUEST_PASS, Facts.anyone(room))
        if await self.store.run(q.removed_from, room.id, address):
            raise Forbidden("The host removed you from this meeting.", code="removed")
        try:
            self.throttle.acquire([address])
        except Busy as busy:
            raise Throttled(
                "Too many guest passes from your network address; try again later.",
                retry_after=int(busy.retry_after) + 1,
                code="too_many_guests",
            ) from None
        nonce = new_nonce()
        now = self.clock.now()
        guest = await self.store.run(
            q.create_guest, room.id, name, self.tokens.digest(purposes.GUEST, nonce), address, now,
            now + self.settings.guest_ttl,
        )
        return Pass(self.tokens.sign(purposes.GUEST, {"room": room.code, "nonce": nonce}), guest)

    async def authenticate(self, token: str, room: Room) -> UserRef:
        """The guest a token lets into ``room``; Unauthorized (forged, expired, revoked) or
        Forbidden (a pass for another meeting)."""
        payload = self.tokens.unsign(purposes.GUEST, token) if len(token) <= TOKEN_MAX else None
        if not isinstance(payload, dict) or not isinstance(payload.get("nonce"), str):
            raise Unauthorized("That guest pass is not valid.", code="unauthorized")
        if payload.get("room") != room.code:
            raise Forbidden("That guest pass is for another meeting.", code="wrong_room")
        guest = await self.store.run(q.guest_by_token, self.tokens.digest(purposes.GUEST, payload["nonce"]))
        if guest is None or guest.room_id != room.id:
            raise Unauthorized("That guest pass is not valid.", code="unauthorized")
        if room.ended:  # its passes were withdrawn with it: say the more telling thing
            raise Gone("This meeting has ended.", code="room_ended")
        if guest.removed:
            raise Forbidden("The host removed you from this meeting.", code="removed")
        if not guest.valid(self.clock.now()):
            raise Unauthorized("That guest pass has expired or was withdrawn; ask for a new one.", code="guest_expired")
        return UserRef(-guest.id, guest.name, guest=True)
