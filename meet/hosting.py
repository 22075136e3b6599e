"""Who hosts a meeting while it runs: the host role, co-hosts, and passing the role on.

The room's creator holds the host role whenever they are present. The host may hand it to a
signed-in participant; when the host's last connection leaves, it passes to the longest present
co-host, else to the longest present signed-in participant (never to a guest). Co-hosts have
host powers except ending the meeting for everyone and demoting the host (``meet.authz``).
Roles belong to people, so every tab of a person changes together, and everyone is told with
``role``. Pure live state: no store, no I/O.
"""

from __future__ import annotations

from meet import protocol as p
from meet.authz import Action, Facts, check
from meet.connection import UserRef
from meet.live import HOST, LiveRoom, Participant
from meet.lobby import Lobby


def facts_in(live: LiveRoom, user: UserRef) -> Facts:
    """The access facts of someone in the room, from the live roles (no I/O)."""
    return Facts.of(live.room, user.id, host_id=live.host_id, cohost=user.id in live.cohosts)


class Hosting:
    """Role changes in live rooms; the lobby is told when hosts come and go."""

    def __init__(self, lobby: Lobby) -> None:
        self.lobby = lobby

    def arrive(self, live: LiveRoom, peer: Participant) -> None:
        """A connection is entering: the creator coming back takes the host role back;
        ``peer.role`` is set."""
        user = peer.user
        returning = not live.tabs(user.id)  # a second tab of a creator who handed over changes nothing
        if user.id == live.room.host_id and live.host_id != user.id and returning:
            self._give_host(live, user.id)
        peer.role = live.role_of(user)

    def entered(self, live: LiveRoom, peer: Participant) -> None:
        """A connection is in (``welcome`` sent): hosts get the knocks waiting, waiters the news."""
        if peer.hosting:
            _hand_knocks(live, peer)
        self.lobby.refresh(live)

    def depart(self, live: LiveRoom, user: UserRef) -> None:
        """A person's last connection left: the host role passes on if it was theirs."""
        if user.id == live.host_id:
            successor = _successor(live)
            live.host_id = live.room.host_id if successor is None else successor
            if successor is not None:
                live.cohosts.discard(successor)
                self._apply(live, successor)
        self.lobby.refresh(live)

    def promote(self, live: LiveRoom, actor: Participant, target: Participant, role: str) -> None:
        """Make ``target`` a co-host, or (the host only) the host."""
        check(Action.HAND_OVER if role == HOST else Action.PROMOTE, facts_in(live, actor.user))
        if target.user.guest:
            raise p.ProtocolError("invalid_target", "guests cannot be hosts or co-hosts: they have no account")
        if target.role == HOST:
            raise p.ProtocolError("invalid_target", "that person is the host already")
        if role == HOST:
            self._give_host(live, target.user.id)
        else:
            live.cohosts.add(target.user.id)
            self._apply(live, target.user.id)

    def demote(self, live: LiveRoom, actor: Participant, target: Participant) -> None:
        """Make a co-host an ordinary participant again (never the host)."""
        check(Action.PROMOTE, facts_in(live, actor.user))
        if target.user.id in (live.host_id, live.room.host_id):
            raise p.ProtocolError("invalid_target", "the host cannot be demoted")
        live.cohosts.discard(target.user.id)
        self._apply(live, target.user.id)

    def _give_host(self, live: LiveRoom, user_id: int) -> None:
        previous = live.host_id
        live.host_id = user_id
        live.cohosts.discard(user_id)
        if previous != user_id and live.tabs(previous):
            live.cohosts.add(previous)  # the one handing over keeps host powers, as a co-host
        self._apply(live, previous)
        self._apply(live, user_id)

    def _apply(self, live: LiveRoom, user_id: int) -> None:
        """Bring every tab of one person to their current role, telling everyone of changes."""
        for peer in live.tabs(user_id):
            role = live.role_of(peer.user)
            if role == peer.role:
                continue
            was_hosting, peer.role = peer.hosting, role
            live.broadcast(p.RoleChanged(peer_id=peer.peer_id, role=role))
            if peer.hosting and not was_hosting:
                _hand_knocks(live, peer)
        self.lobby.refresh(live)


def _hand_knocks(live: LiveRoom, peer: Participant) -> None:
    """Someone who now has host powers gets every knock still waiting, to answer."""
    for knock in live.knocks.values():
        peer.conn.send(knock.message())


def _successor(live: LiveRoom) -> int | None:
    """Who takes the host role: the longest present co-host, else signed-in participant."""
    members = sorted((peer for peer in live.peers.values() if not peer.user.guest), key=lambda peer: peer.joined_at)
    cohost = next((peer for peer in members if peer.user.id in live.cohosts), None)
    pick = cohost or (members[0] if members else None)
    return pick.user.id if pick is not None else None
