"""The lobby: people who must be let in wait at the door until a host answers their knock.

Someone waiting holds their room WebSocket open: it receives ``lobby`` (again whenever a host
arrives or the last one leaves) and then either ``welcome`` on the same socket (admitted) or an
``error`` and close 4403 (denied) / 4408 (nobody answered within ``[rooms] lobby_timeout``).
Hosts and co-hosts present receive ``knock`` for each waiting person and ``knock-ended`` when
that knock is over, whoever answered it. Pure live state over trio: no store, no web framework.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from meet import protocol as p
from meet.clock import Clock
from meet.connection import Connection, UserRef
from meet.errors import Forbidden, Gone, MeetError, TimedOut
from meet.live import Knock, LiveRoom

FAILURES: dict[str, Callable[[], MeetError]] = {
    "denied": lambda: Forbidden("A host did not let you in.", code="denied"),
    "expired": lambda: TimedOut("Nobody let you in in time; try again later.", code="lobby_timeout"),
    "ended": lambda: Gone("This meeting has ended.", code="room_ended"),
}


class Lobby:
    """Knocks and their answers, for every live room."""

    def __init__(self, clock: Clock, timeout: float) -> None:
        self.clock, self.timeout = clock, timeout

    async def wait(self, live: LiveRoom, conn: Connection) -> None:
        """Knock and wait: returns once admitted; raises Forbidden (denied), TimedOut (no answer
        in time) or Gone (the meeting ended). Cancelled (the person left): the knock goes."""
        knock = Knock(conn, since=self.clock.now())
        live.knocks[conn.id] = knock
        self._tell(live, knock, bool(live.hosting()))
        live.tell_hosting(knock.message())
        unanswered = "left"  # unless the wait below ends on its own: then it timed out
        try:
            with trio.move_on_after(self.timeout):
                await knock.decided.wait()
            unanswered = "expired"
        finally:
            if live.knocks.pop(conn.id, None) is not None:  # answered knocks were taken out already
                knock.outcome = unanswered
                live.tell_hosting(p.KnockEnded(id=knock.id, outcome=unanswered))
        if knock.outcome != "admitted":
            raise FAILURES[knock.outcome]()

    def answer(self, live: LiveRoom, knock_id: str, admitted: bool, by: UserRef) -> Knock:
        """A host's answer; ProtocolError when nobody with that id is waiting (any more)."""
        knock = live.knocks.pop(knock_id, None)
        if knock is None:
            raise p.ProtocolError("unknown_knock", f"nobody '{knock_id[:40]}' is waiting in the lobby")
        knock.outcome = "admitted" if admitted else "denied"
        knock.decided.set()
        live.tell_hosting(p.KnockEnded(id=knock.id, outcome=knock.outcome, by=by.public()))
        return knock

    def admit_where(self, live: LiveRoom, may_skip: Callable[[UserRef], bool], by: UserRef) -> None:
        """Let in everyone waiting who would no longer have to (a host opened the room up)."""
        for knock in list(live.knocks.values()):
            if may_skip(knock.conn.user):
                self.answer(live, knock.id, True, by)

    @staticmethod
    def waiting(live: LiveRoom | None, conn: Connection) -> bool:
        """Whether ``conn`` is waiting in this room's lobby."""
        return live is not None and conn.id in live.knocks

    def close(self, live: LiveRoom) -> None:
        """The meeting ended: everyone waiting is told so."""
        for knock in list(live.knocks.values()):
            knock.outcome = "ended"
            knock.decided.set()
        live.knocks.clear()

    def refresh(self, live: LiveRoom) -> None:
        """Tell the people waiting whether a host is there to answer, when that changed."""
        present = bool(live.hosting())
        for knock in live.knocks.values():
            self._tell(live, knock, present)

    def _tell(self, live: LiveRoom, knock: Knock, present: bool) -> None:
        if knock.told_host_present is not present:
            knock.told_host_present = present
            left = max(0.0, round(knock.since + self.timeout - self.clock.now(), 1))
            knock.conn.send(p.Lobby(room=live.room.public(), host_present=present, timeout=left))
