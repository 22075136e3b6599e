"""People a host rang in past a lock, for a few minutes: the ring's invitation."""

from __future__ import annotations

from meet.clock import Clock

# How long an accepted ring from the host lets the callee past the lock; entering uses it up
# (from then on the reconnect grace covers dropped connections).
INVITATION_TTL = 300.0


class Invitations:
    """People the host rang in past a lock: per room code, user id → when the invitation lapses.

    Entries go when used (the person entered), when they lapse (``INVITATION_TTL``), when the
    person is removed and when the meeting ends, so the map never outgrows the rings of the
    last few minutes.
    """

    def __init__(self, clock: Clock, ttl: float = INVITATION_TTL) -> None:
        self.clock, self.ttl = clock, ttl
        self.rooms: dict[str, dict[int, float]] = {}

    def add(self, code: str, user_id: int) -> None:
        self._prune()
        self.rooms.setdefault(code, {})[user_id] = self.clock.now() + self.ttl

    def holds(self, code: str, user_id: int) -> bool:
        self._prune()
        return user_id in self.rooms.get(code, {})

    def discard(self, code: str, user_id: int) -> None:
        people = self.rooms.get(code)
        if people is not None:
            people.pop(user_id, None)
            if not people:
                del self.rooms[code]

    def drop_room(self, code: str) -> None:
        self.rooms.pop(code, None)

    def __len__(self) -> int:
        return sum(len(people) for people in self.rooms.values())

    def _prune(self) -> None:
        now = self.clock.now()
        for code in list(self.rooms):
            people = {uid: until for uid, until in self.rooms[code].items() if until > now}
            if people:
                self.rooms[code] = people
            else:
                del self.rooms[code]
