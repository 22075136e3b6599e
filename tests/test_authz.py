"""Who may do what with a room: the access rules of ``meet.authz`` as one table.

Each row is (who the actor is, the room's state, the action, the expected answer: ``ok`` or the
denial code). The rules are pure functions of the facts, so the table runs without a server;
tests/test_room_access.py checks the same rules end to end.
"""

from __future__ import annotations

import pytest

from meet.authz import RULES, Action, Facts, allowed, check
from meet.errors import Forbidden, Gone
from meet.store.records import Room, Standing

A = Action

# Who the actor is.
HOST = Facts(is_host=True, took_part=True)
STRANGER = Facts()  # has the code, never came in
PARTICIPANT = Facts(took_part=True)  # took part earlier, gone for longer than the grace
PRESENT = Facts(took_part=True, recent=True)  # in the room now (or just dropped)
RUNG_IN = Facts(rung_in=True)  # accepted the host's ring, not yet in
REMOVED = Facts(banned=True, took_part=True)
REMOVED_BUT_RUNG = Facts(banned=True, rung_in=True, took_part=True, recent=True)
COHOST = Facts(is_cohost=True, took_part=True, recent=True)  # made a co-host by a host
GUEST = Facts(is_guest=True)  # a name with a guest pass, not yet in
GUEST_BACK = Facts(is_guest=True, took_part=True, recent=True)  # a guest reconnecting within the grace
ADMIN = Facts(is_admin=True)  # the server's administrator, acting on someone else's account
ADMIN_SELF = Facts(is_admin=True, targets_self=True)  # … on their own account

ACTORS = {
    "host": HOST, "stranger": STRANGER, "participant": PARTICIPANT, "present": PRESENT,
    "rung_in": RUNG_IN, "removed": REMOVED, "removed_rung": REMOVED_BUT_RUNG, "cohost": COHOST,
    "guest": GUEST, "guest_back": GUEST_BACK, "admin": ADMIN, "admin_self": ADMIN_SELF,
}
ROOMS = {
    "open": {}, "locked": {"locked": True}, "ended": {"ended": True},
    "locked_ended": {"locked": True, "ended": True}, "full": {"full": True},
    # The room's guest settings (the default is guests "lobby", lobby off, reactions on).
    "guests_off": {"guests": "off"}, "guests_open": {"guests": "open"}, "lobby_on": {"lobby": True},
    "no_reactions": {"reactions": False},
}

OK = "ok"
HOSTING_POWERS = (A.UPDATE, A.KICK, A.MUTE, A.LOWER_HAND, A.ADMIT, A.PROMOTE)  # co-hosts too
HOST_ONLY = (A.END, A.HAND_OVER)

TABLE: list[tuple[str, str, Action, str]] = [
    # Anyone with the code may look at the room record, whatever its state.
    *[(who, room, A.VIEW, OK) for who in ACTORS for room in ROOMS],
    # Who is in it: open rooms show everyone (as a meeting link does), except to removed people.
    ("stranger", "open", A.SEE_PARTICIPANTS, OK),
    ("participant", "open", A.SEE_PARTICIPANTS, OK),
    ("removed", "open", A.SEE_PARTICIPANTS, "removed"),
    ("removed_rung", "open", A.SEE_PARTICIPANTS, "removed"),
    # A locked room hides them from everyone it would not let in.
    ("stranger", "locked", A.SEE_PARTICIPANTS, "room_locked"),
    ("participant", "locked", A.SEE_PARTICIPANTS, "room_locked"),
    ("removed", "locked", A.SEE_PARTICIPANTS, "removed"),
    ("host", "locked", A.SEE_PARTICIPANTS, OK),
    ("present", "locked", A.SEE_PARTICIPANTS, OK),
    ("rung_in", "locked", A.SEE_PARTICIPANTS, OK),
    # Chat: the host and people who took part, not removed ones; ended rooms keep their chat.
    ("host", "open", A.READ_CHAT, OK),
    ("host", "ended", A.READ_CHAT, OK),
    ("participant", "ended", A.READ_CHAT, OK),
    ("participant", "locked", A.READ_CHAT, OK),
    ("present", "open", A.READ_CHAT, OK),
    ("stranger", "open", A.READ_CHAT, "not_a_participant"),
    ("rung_in", "locked", A.READ_CHAT, "not_a_participant"),
    ("removed", "open", A.READ_CHAT, "removed"),
    ("removed", "ended", A.READ_CHAT, "removed"),
    # Attendance: the host only.
    ("host", "ended", A.READ_ATTENDANCE, OK),
    ("host", "open", A.READ_ATTENDANCE, OK),
    *[(who, "open", A.READ_ATTENDANCE, "not_host") for who in ACTORS if who != "host"],
    # Joining: ended first, then removed, then the lock, then the seats.
    ("stranger", "open", A.JOIN, OK),
    ("participant", "open", A.JOIN, OK),
    ("host", "ended", A.JOIN, "room_ended"),
    ("present", "ended", A.JOIN, "room_ended"),
    ("removed", "locked_ended", A.JOIN, "room_ended"),
    ("removed", "open", A.JOIN, "removed"),
    ("removed_rung", "locked", A.JOIN, "removed"),
    ("stranger", "locked", A.JOIN, "room_locked"),
    ("participant", "locked", A.JOIN, "room_locked"),
    ("host", "locked", A.JOIN, OK),
    ("present", "locked", A.JOIN, OK),  # reconnecting within the grace
    ("rung_in", "locked", A.JOIN, OK),
    ("stranger", "full", A.JOIN, "room_full"),
    ("host", "full", A.JOIN, "room_full"),  # seats are seats
    ("removed", "full", A.JOIN, "removed"),
    # Ringing someone in: not into an ended room, not by removed people, locked rooms by the host only.
    ("host", "open", A.RING, OK),
    ("stranger", "open", A.RING, OK),
    ("host", "locked", A.RING, OK),
    ("present", "locked", A.RING, "room_locked"),
    ("stranger", "locked", A.RING, "room_locked"),
    ("host", "ended", A.RING, "room_ended"),
    ("stranger", "locked_ended", A.RING, "room_ended"),
    ("removed", "open", A.RING, "removed"),
    # Host powers: co-hosts have them all but ending the meeting and handing the host role over.
    *[("host", room, action, OK) for room in ("open", "locked", "full") for action in HOSTING_POWERS + HOST_ONLY],
    *[("cohost", room, action, OK) for room in ("open", "locked", "full") for action in HOSTING_POWERS],
    *[("cohost", "open", action, "not_host") for action in HOST_ONLY],
    *[
        (who, "open", action, "not_host")
        for who in ACTORS
        if who not in ("host", "cohost")
        for action in HOSTING_POWERS + HOST_ONLY
    ],
    # Guests: the room's guests setting decides whether they may come in, and through the lobby.
    ("guest", "open", A.JOIN, OK),
    ("guest", "guests_off", A.JOIN, "guests_off"),
    ("guest_back", "guests_off", A.JOIN, "guests_off"),  # turning guests off sends them all away
    ("stranger", "guests_off", A.JOIN, OK),
    ("guest", "locked", A.JOIN, "room_locked"),
    ("guest_back", "locked", A.JOIN, OK),
    ("guest", "ended", A.JOIN, "room_ended"),
    ("guest", "open", A.GUEST_PASS, OK),
    ("guest", "guests_open", A.GUEST_PASS, OK),
    ("guest", "guests_off", A.GUEST_PASS, "guests_off"),
    ("guest", "locked", A.GUEST_PASS, "room_locked"),  # a lock keeps new guests out
    ("guest", "ended", A.GUEST_PASS, "room_ended"),
    ("guest", "open", A.RING, "guest"),
    # The lobby: guests wait unless the room is open to them; members only when its lobby is on;
    # hosts, co-hosts, people rung in and people back within the grace never.
    ("guest", "open", A.SKIP_LOBBY, "lobby"),
    ("guest", "guests_open", A.SKIP_LOBBY, OK),
    ("guest_back", "open", A.SKIP_LOBBY, OK),
    ("guest", "lobby_on", A.SKIP_LOBBY, "lobby"),
    ("stranger", "open", A.SKIP_LOBBY, OK),
    ("participant", "open", A.SKIP_LOBBY, OK),
    ("stranger", "lobby_on", A.SKIP_LOBBY, "lobby"),
    ("participant", "lobby_on", A.SKIP_LOBBY, "lobby"),
    ("present", "lobby_on", A.SKIP_LOBBY, OK),
    ("rung_in", "lobby_on", A.SKIP_LOBBY, OK),
    ("host", "lobby_on", A.SKIP_LOBBY, OK),
    ("cohost", "lobby_on", A.SKIP_LOBBY, OK),
    # Reactions: anyone present, unless a host turned them off.
    *[(who, "open", A.REACT, OK) for who in ("host", "present", "guest_back")],
    *[(who, "no_reactions", A.REACT, "reactions_off") for who in ("host", "present", "guest_back")],
    ("host", "ended", A.UPDATE, "room_ended"),
    ("host", "ended", A.END, OK),  # ending twice answers the ended room
    ("present", "ended", A.UPDATE, "not_host"),
    ("present", "ended", A.END, "not_host"),
    # Administration: admins only, whatever else they are; never against their own account
    # (the server must not lose its last admin).
    ("admin", "open", A.ADMINISTER, OK),
    ("admin_self", "open", A.ADMINISTER, OK),  # e.g. reading their own entry, making themselves admin again
    ("admin", "open", A.ADMIN_REVOKE, OK),
    ("admin_self", "open", A.ADMIN_REVOKE, "own_account"),
    *[(who, "open", A.ADMINISTER, "not_admin") for who in ACTORS if not who.startswith("admin")],
    *[(who, "open", A.ADMIN_REVOKE, "not_admin") for who in ACTORS if not who.startswith("admin")],
]


def facts(who: str, room: str) -> Facts:
    return Facts(**{**ACTORS[who].__dict__, **ROOMS[room]})


@pytest.mark.parametrize(("who", "room", "action", "expected"), TABLE, ids=lambda v: str(v))
def test_who_may_do_what(who: str, room: str, action: Action, expected: str) -> None:
    decision = allowed(action, facts(who, room))
    assert (OK if decision.allowed else decision.code) == expected
    if expected == OK:
        check(action, facts(who, room))
    else:
        assert decision.message  # a sentence for people, not only a code
        error = Gone if expected == "room_ended" else Forbidden
        with pytest.raises(error) as raised:
            check(action, facts(who, room))
        assert raised.value.code == expected
        assert raised.value.status == (410 if error is Gone else 403)


def test_the_table_covers_every_action() -> None:
    assert {action for _, _, action, _ in TABLE} == set(Action) == set(RULES)


def test_facts_of_a_room_record() -> None:
    room = Room(
        id=1, code="abc-defg-hij", title="t", host_id=7, host_username="ann", created_at=0.0,
        ended_at=None, locked=True, max_participants=5,
    )
    assert Facts.of(room, 7) == Facts(is_host=True, locked=True)
    assert Facts.of(room, 9, host_id=9).is_host  # the host role passed to them in the meeting
    assert Facts.of(room, 9, cohost=True) == Facts(is_cohost=True, locked=True)
    assert Facts.of(room, -3) == Facts(is_guest=True, locked=True)
    standing = Standing(banned=True, recent=False, took_part=True)
    assert Facts.of(room, 8, standing, rung_in=True, full=True) == Facts(
        banned=True, took_part=True, rung_in=True, locked=True, full=True
    )
    ended = Room(**{**room.__dict__, "ended_at": 5.0, "locked": 0})
    assert (ended.locked, Facts.of(ended, 8).ended) == (False, True)
