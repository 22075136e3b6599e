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
    RING = "ring"  # ring someone into the room
    UPDATE = "update"  # change title, lock, capacity
    END = "end"
    KICK = "kick"
    MUTE = "mute"  # ask someone to mute


@dataclass(frozen=True)
class Facts:
    """What the rules know about one person (the actor) and one room."""

    is_host: bool = False
    banned: bool = False  # removed by the host
    recent: bool = False  # in the room now, or left it within the reconnect grace
    rung_in: bool = False  # accepted a ring from the host not long ago
    took_part: bool = False  # was ever in the room
    locked: bool = False
    ended: bool = False
    full: bool = False  # no seat left for one more connection

    @classmethod
    def of(
        cls, room: Room, user_id: int, standing: Standing | None = None, *, rung_in: bool = False, full: bool = False
    ) -> Facts:
        """Facts from the room record, the person's standing in the store and the live state."""
        known = standing or Standing(banned=False, recent=False, took_part=False)
        return cls(
            is_host=room.host_id == user_id,
            banned=known.banned,
            recent=known.recent,
            rung_in=rung_in,
            took_part=known.took_part,
            locked=room.locked,
            ended=room.ended,
            full=full,
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
    """A locked room keeps out (and hides its people from) all but the host and those it lets in."""
    return f.locked and not (f.is_host or f.rung_in or f.recent)


ENDED = Rule(lambda f: f.ended, _deny("room_ended", "This meeting has ended.", Gone))
REMOVED = Rule(lambda f: f.banned and not f.is_host, _deny("removed", "The host removed you from this meeting."))
LOCKED = Rule(_locked_out, _deny("room_locked", "The host has locked this meeting."))
FULL = Rule(lambda f: f.full, _deny("room_full", "This meeting is full."))
NOT_HOST = Rule(lambda f: not f.is_host, _deny("not_host", "Only the host can do that."))
LOCKED_PARTICIPANTS = Rule(
    _locked_out,
    _deny("room_locked", "The host has locked this meeting: only people in it see who is there."),
)
NOT_PARTICIPANT = Rule(
    lambda f: not (f.is_host or f.took_part),
    _deny("not_a_participant", "Only people who took part can read this chat."),
)
NOT_HOST_ATTENDANCE = Rule(lambda f: not f.is_host, _deny("not_host", "Only the host can see attendance."))
RING_LOCKED = Rule(
    lambda f: f.locked and not f.is_host,
    _deny("room_locked", "Only the host can ring people into a locked meeting."),
)

RULES: dict[Action, tuple[Rule, ...]] = {
    Action.VIEW: (),  # anyone signed in who has the code (as with a meeting link)
    Action.SEE_PARTICIPANTS: (REMOVED, LOCKED_PARTICIPANTS),
    Action.READ_CHAT: (REMOVED, NOT_PARTICIPANT),
    Action.READ_ATTENDANCE: (NOT_HOST_ATTENDANCE,),
    Action.JOIN: (ENDED, REMOVED, LOCKED, FULL),
    Action.RING: (ENDED, REMOVED, RING_LOCKED),
    Action.UPDATE: (NOT_HOST, ENDED),
    Action.END: (NOT_HOST,),
    Action.KICK: (NOT_HOST,),
    Action.MUTE: (NOT_HOST,),
}


def allowed(action: Action, facts: Facts) -> Decision:
    """Whether the actor described by ``facts`` may do ``action``: the first denial, or ALLOW."""
    for rule in RULES[action]:
        if rule.applies(facts):
            return rule.decision
    return ALLOW


def check(action: Action, facts: Facts) -> None:
    """Raise Forbidden/Gone (with the rule's code) unless ``action`` is allowed."""
    allowed(action, facts).enforce()
