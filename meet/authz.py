"""Who may do what with a room: every access rule in one place.

The rules are pure: they take :class:`Facts` (gathered by the services from the room record,
the store and the live state) and answer a :class:`Decision`; no I/O happens here. Each
action has an ordered list of denial rules; the first that applies decides, so the most
telling reason wins (an ended meeting says ``room_ended`` before ``room_locked``).

Use :func:`allowed` to ask, :func:`check` to raise the matching :class:`~meet.errors.Forbidden`
or :class:`~meet.errors.Gone` with a stable code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from meet.errors import Forbidden, Gone, MeetError
from meet.store.records import Room, Standing


class Action(StrEnum):
    VIEW = "view"  # the room record (title, host, lock, status)
    SEE_PARTICIPANTS = "see_participants"  # who is in it right now
    READ_CHAT = "read_chat"  # its chat history and search
    READ_ATTENDANCE = "read_attendance"
    JOIN = "join"  # be admitted (REST pre-check and the room WebSocket)
    SKIP_LOBBY = "skip_lobby"  # go straight in instead of waiting for a host to admit you
    GUEST_PASS = "guest_pass"  # get a guest pass for the room (anyone with the link)
    RING = "ring"  # ring someone into the room
    UPDATE = "update"  # change title, lock, capacity, guests, lobby, reactions
    END = "end"
    KICK = "kick"
    MUTE = "mute"  # ask someone (or everyone) to mute
    LOWER_HAND = "lower_hand"  # lower someone else's hand
    ADMIT = "admit"  # admit or deny someone waiting in the lobby
    PROMOTE = "promote"  # make someone a co-host, or take it back
    HAND_OVER = "hand_over"  # make someone else the host
    REACT = "react"  # send an emoji reaction
    # The server's administration (/admin, /api/admin/*): not about one room.
    ADMINISTER = "administer"  # see and change users, rooms and the server
    ADMIN_REVOKE = "admin_revoke"  # take admin rights away, disable or delete an account


@dataclass(frozen=True)
class Facts:
    """What the rules know about one person (the actor) and one room."""

    is_host: bool = False  # the room's creator, or whoever holds the host role in the meeting now
    is_cohost: bool = False  # made a co-host by a host (host powers but ending and demoting the host)
    is_guest: bool = False  # joined by the link with only a name (no account)
    banned: bool = False  # removed by the host
    recent: bool = False  # in the room now, or left it within the reconnect grace
    rung_in: bool = False  # accepted a ring from the host not long ago
    took_part: bool = False  # was ever in the room
    locked: bool = False
    ended: bool = False
    full: bool = False  # no seat left for one more connection
    guests: str = "lobby"  # the room's guests setting: "off", "lobby" or "open"
    lobby: bool = False  # the room's lobby setting: members who are not hosts wait too
    reactions: bool = True  # the room's reactions setting
    is_admin: bool = False  # the account's is_admin flag (administration actions)
    targets_self: bool = False  # an administration action aimed at the actor's own account

    @classmethod
    def of(
        cls,
        room: Room,
        user_id: int,
        standing: Standing | None = None,
        *,
        rung_in: bool = False,
        full: bool = False,
        host_id: int | None = None,
        cohost: bool = False,
    ) -> Facts:
        """Facts from the room record, the person's standing in the store and the live state
        (``host_id``: who holds the host role in the meeting now, when it is not the creator)."""
        known = standing or Standing(banned=False, recent=False, took_part=False)
        return cls(
            is_host=user_id in (room.host_id, host_id),
            is_cohost=cohost,
            is_guest=user_id < 0,
            banned=known.banned,
            recent=known.recent,
            rung_in=rung_in,
            took_part=known.took_part,
            locked=room.locked,
            ended=room.ended,
            full=full,
            guests=room.guests,
            lobby=room.lobby,
            reactions=room.reactions,
        )

    @classmethod
    def anyone(cls, room: Room) -> Facts:
        """Facts about someone with no account and no standing (asking for a guest pass)."""
        return cls(
            is_guest=True, locked=room.locked, ended=room.ended, guests=room.guests, lobby=room.lobby,
            reactions=room.reactions,
        )


@dataclass(frozen=True)
class Decision:
    """The answer: allowed, or denied with a stable code, a message and the error kind."""

    allowed: bool
    code: str = ""
    message: str = ""
    error: type[MeetError] = Forbidden

    def enforce(self) -> None:
        """Raise the denial (no-op when allowed)."""
        if not self.allowed:
            raise self.error(self.message, code=self.code)


ALLOW = Decision(True)


@dataclass(frozen=True)
class Rule:
    """Deny with ``decision`` when ``applies(facts)``."""

    applies: Callable[[Facts], bool]
    decision: Decision


def _deny(code: str, message: str, error: type[MeetError] = Forbidden) -> Decision:
    return Decision(False, code, message, error)


def _locked_out(f: Facts) -> bool:
    """A locked room keeps out (and hides its people from) all but its hosts and those it lets in."""
    return f.locked and not (f.is_host or f.is_cohost or f.rung_in or f.recent)


def _waits(f: Facts) -> bool:
    """Who waits in the lobby: guests when the room says so, members when its lobby is on;
    never hosts, co-hosts, people rung in by a host, or anyone back within the reconnect grace."""
    if f.is_host or f.is_cohost or f.rung_in or f.recent:
        return False
    return f.guests == "lobby" if f.is_guest else f.lobby


def _hosting(f: Facts) -> bool:
    return f.is_host or f.is_cohost


ENDED = Rule(lambda f: f.ended, _deny("room_ended", "This meeting has ended.", Gone))
REMOVED = Rule(lambda f: f.banned and not f.is_host, _deny("removed", "The host removed you from this meeting."))
LOCKED = Rule(_locked_out, _deny("room_locked", "The host has locked this meeting."))
FULL = Rule(lambda f: f.full, _deny("room_full", "This meeting is full."))
NOT_HOST = Rule(lambda f: not f.is_host, _deny("not_host", "Only the host can do that."))
NOT_HOSTING = Rule(lambda f: not _hosting(f), _deny("not_host", "Only the host or a co-host can do that."))
GUESTS_OFF = Rule(
    lambda f: f.is_guest and f.guests == "off", _deny("guests_off", "This meeting does not take guests.")
)
LOBBY = Rule(_waits, _deny("lobby", "Wait in the lobby until a host lets you in."))
REACTIONS_OFF = Rule(lambda f: not f.reactions, _deny("reactions_off", "The host has turned reactions off."))
GUEST_LOCKED = Rule(lambda f: f.locked, _deny("room_locked", "The host has locked this meeting."))
LOCKED_PARTICIPANTS = Rule(
    _locked_out,
    _deny("room_locked", "The host has locked this meeting: only people in it see who is there."),
)
NOT_PARTICIPANT = Rule(
    lambda f: not (f.is_host or f.took_part),
    _deny("not_a_participant", "Only people who took part can read this chat."),
)
NOT_HOST_ATTENDANCE = Rule(lambda f: not f.is_host, _deny("not_host", "Only the host can see attendance."))
NOT_MEMBER = Rule(lambda f: f.is_guest, _deny("guest", "Guests cannot do that; sign in first."))
RING_LOCKED = Rule(
    lambda f: f.locked and not f.is_host,
    _deny("room_locked", "Only the host can ring people into a locked meeting."),
)

NOT_ADMIN = Rule(lambda f: not f.is_admin, _deny("not_admin", "Only the server's administrators can do that."))
OWN_ACCOUNT = Rule(
    lambda f: f.targets_self,
    _deny(
        "own_account",
        "You cannot take your own admin rights away, disable or delete your own account: another "
        "admin must do it, so the server never loses its last admin.",
    ),
)

RULES: dict[Action, tuple[Rule, ...]] = {
    Action.VIEW: (),  # anyone signed in who has the code (as with a meeting link)
    Action.SEE_PARTICIPANTS: (REMOVED, LOCKED_PARTICIPANTS),
    Action.READ_CHAT: (REMOVED, NOT_PARTICIPANT),
    Action.READ_ATTENDANCE: (NOT_HOST_ATTENDANCE,),
    Action.JOIN: (ENDED, REMOVED, GUESTS_OFF, LOCKED, FULL),
    Action.SKIP_LOBBY: (LOBBY,),
    Action.GUEST_PASS: (ENDED, GUESTS_OFF, GUEST_LOCKED),
    Action.RING: (NOT_MEMBER, ENDED, REMOVED, RING_LOCKED),
    Action.UPDATE: (NOT_HOSTING, ENDED),
    Action.END: (NOT_HOST,),
    Action.KICK: (NOT_HOSTING,),
    Action.MUTE: (NOT_HOSTING,),
    Action.LOWER_HAND: (NOT_HOSTING,),
    Action.ADMIT: (NOT_HOSTING,),
    Action.PROMOTE: (NOT_HOSTING,),
    Action.HAND_OVER: (NOT_HOST,),
    Action.REACT: (REACTIONS_OFF,),
    Action.ADMINISTER: (NOT_ADMIN,),
    Action.ADMIN_REVOKE: (NOT_ADMIN, OWN_ACCOUNT),
}


def admin_facts(is_admin: bool, targets_self: bool = False) -> Facts:
    """Facts for an administration action (no room involved)."""
    return Facts(is_admin=is_admin, targets_self=targets_self)


def allowed(action: Action, facts: Facts) -> Decision:
    """Whether the actor described by ``facts`` may do ``action``: the first denial, or ALLOW."""
    for rule in RULES[action]:
        if rule.applies(facts):
            return rule.decision
    return ALLOW


def check(action: Action, facts: Facts) -> None:
    """Raise Forbidden/Gone (with the rule's code) unless ``action`` is allowed."""
    allowed(action, facts).enforce()
