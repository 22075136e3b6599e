"""The server's administration: users, rooms, the server's state, and the audit log.

Plain Python over the store and the other services (no Quart): the views of ``/api/admin``
call it with the signed-in :class:`~meet.store.accounts.User` as ``actor``. Who may do what is
decided by :mod:`meet.authz` (``ADMINISTER``, and ``ADMIN_REVOKE`` for taking admin rights
away, disabling and deleting, which never apply to the actor's own account). Every change is
written to the audit log with the admin's id and name at the time; never a password or token.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meet import __version__
from meet import protocol as p
from meet.accounts import Accounts, check_email, check_password, check_username
from meet.authz import Action, admin_facts, check
from meet.clock import Clock
from meet.config import Config
from meet.connection import CLOSE_FORBIDDEN, UserRef
from meet.errors import NotFound
from meet.live import LiveRoom
from meet.mail import mail_health
from meet.rooms import Rooms
from meet.sessions import SessionGuard
from meet.store import Store
from meet.store import accounts as account_queries
from meet.store import admin as q
from meet.store import rooms as room_queries
from meet.store.accounts import User
from meet.store.admin import AdminUser

StatsSource = Callable[[], Any]  # an awaitable of the relay workers' stats (RelayBridge.stats)


@dataclass
class Sample:
    """A relay worker's counters when last asked, to turn the next ones into rates."""

    at: float  # monotonic seconds
    pid: int | None
    packets: int
    cpu: float


def rates(previous: Sample | None, current: Sample) -> tuple[float | None, float | None]:
    """(packets forwarded per second, CPU %) between two samples of one worker; None for either
    when there is no earlier sample of the same process, no time passed or a counter went back."""
    if previous is None or previous.pid != current.pid:
        return None, None
    elapsed = current.at - previous.at
    if elapsed <= 0 or current.packets < previous.packets or current.cpu < previous.cpu:
        return None, None
    return (
        round((current.packets - previous.packets) / elapsed, 1),
        round(100 * (current.cpu - previous.cpu) / elapsed, 1),
    )


class Admin:
    """The administration service; one instance per server."""

    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        accounts: Accounts,
        rooms: Rooms,
        sessions: SessionGuard,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config, self.store, self.accounts = config, store, accounts
        self.rooms, self.sessions, self.clock = rooms, sessions, clock
        self.monotonic = monotonic
        self.started = monotonic()
        self._samples: dict[int, Sample] = {}  # the last sample of each relay worker, by index

    # -- access and the audit log ---------------------------------------------------------

    @staticmethod
    def allow(actor: User, target_id: int | None = None, *, revoking: bool = False) -> None:
        """Raise Forbidden unless ``actor`` may administer (and, ``revoking``, act on ``target_id``)."""
        action = Action.ADMIN_REVOKE if revoking else Action.ADMINISTER
        check(action, admin_facts(actor.is_admin, targets_self=target_id == actor.id))

    async def _audit(self, actor: User, action: str, target: str, **detail: Any) -> None:
        await self.store.run(q.add_audit, self.clock.now(), actor, action, target, detail)

    async def audit(self, limit: int, offset: int) -> dict[str, Any]:
        """The audit log, newest first."""
        total, entries = await self.store.run(q.audit_page, limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "entries": [e.public() for e in entries]}

    # -- users ------------------------------------------------------------------------------

    async def users(self, text: str, limit: int, offset: int) -> dict[str, Any]:
        """A page of users whose username or email contains ``text``, with the total."""
        total, users = await self.store.run(q.search_users, text.strip()[:254], limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "users": [u.public() for u in users]}

    async def user(self, user_id: int) -> AdminUser:
        return await self.store.run(q.admin_user, user_id)

    async def create_user(
        self, actor: User, username: str, email: str, password: str, *, admin: bool, verified: bool
    ) -> AdminUser:
        """Create an account directly (no mail); Conflict when the name or address is taken."""
        check_username(username)
        email = check_email(email)
        check_password(password)
        password_hash = await self.accounts.passwords.hash(password)
        user = await self.store.run(
            account_queries.add_user, username, email, password_hash, self.clock.now(), verified, admin
        )
        await self._audit(actor, "user.create", _user_target(user), admin=admin, verified=verified, email=email)
        return await self.user(user.id)

    async def invite(self, actor: User, email: str, base_url: str, *, send: bool) -> str:
        """A single-use sign-up link for ``email`` (mailed with ``send``); the link is not logged."""
        link = await self.accounts.invite(email, base_url, send=send)
        await self._audit(actor, "user.invite", f"email:{check_email(email)}", mailed=send)
        return link

    async def verify(self, actor: User, user_id: int) -> AdminUser:
        user = await self.store.run(q.set_flag, user_id, "verified", True)
        await self._audit(actor, "user.verify", _user_target(user.user))
        return user

    async def set_admin(self, actor: User, user_id: int, admin: bool) -> AdminUser:
        """Make someone an admin, or take it away (never from oneself)."""
        self.allow(actor, user_id, revoking=not admin)
        user = await self.store.run(q.set_flag, user_id, "is_admin", admin)
        await self._audit(actor, "user.admin" if admin else "user.unadmin", _user_target(user.user))
        return user

    async def set_disabled(self, actor: User, user_id: int, disabled: bool) -> AdminUser:
        """Disable an account (its sessions revoked, its open sockets closed at once) or enable it."""
        self.allow(actor, user_id, revoking=disabled)
        user = await self.store.run(q.set_disabled, user_id, self.clock.now() if disabled else None)
        if disabled:
            self.sessions.poke()  # the guard closes their sockets with signed_out / 4401 now
        await self._audit(actor, "user.disable" if disabled else "user.enable", _user_target(user.user))
        return user

    async def delete(self, actor: User, user_id: int) -> None:
        """Delete an account with everything that hangs off it (never one's own)."""
        self.allow(actor, user_id, revoking=True)
        user = await self.store.run(q.delete_user_by_id, user_id)
        self.sessions.poke()
        await self._audit(actor, "user.delete", _user_target(user), email=user.email)

    async def reset_throttles(self, actor: User, user_id: int) -> int:
        """Lift a user's sign-in lock-out; returns how many throttled (account, address) pairs it had."""
        user = await self.user(user_id)
        cleared = self.accounts.reset_throttles(user_id)
        await self._audit(actor, "user.reset_throttles", _user_target(user.user), cleared=cleared)
        return cleared

    # -- rooms ------------------------------------------------------------------------------

    def _live_info(self, live: LiveRoom | None) -> dict[str, Any]:
        if live is None:
            return {"live": False, "mode": None, "participants": []}
        return {"live": True, "mode": live.mode, "participants": [peer.public() for peer in live.peers.values()]}

    async def find_rooms(self, text: str, limit: int, offset: int) -> dict[str, Any]:
        """Rooms whose code, title or host contains ``text``: live ones first, with who is in
        them and how their media flows (mesh or relay), then the newest."""
        live = [code for code, room in self.rooms.live.items() if room.peers]
        total, found = await self.store.run(q.search_rooms, text.strip()[:120], live, limit, offset)
        rooms = [{**room.public(), **self._live_info(self.rooms.live.get(room.code))} for room in found]
        return {"total": total, "limit": limit, "offset": offset, "live": len(live), "rooms": rooms}

    async def end_room(self, actor: User, code: str) -> dict[str, Any]:
        """End a meeting as its host would: everyone gets ``room-ended`` and close 4410."""
        room = await self.rooms.get(code)
        present = len(self.rooms.participants(room.code))
        # The host's own path (Rooms.end), acting as the room's creator, who may always end it.
        ended = await self.rooms.end(room, UserRef(room.host_id, room.host_username))
        await self._audit(actor, "room.end", f"room:{room.code}", participants=present)
        return {**ended.public(), **self._live_info(None)}

    async def remove_participant(self, actor: User, code: str, peer_id: str) -> dict[str, Any]:
        """Remove a person from a live meeting as a host's ``kick`` does: every tab of theirs gets
        ``kicked`` and close 4403, and they are kept out of that room."""
        room = await self.rooms.get(code)
        live = self.rooms.live.get(room.code)
        target = live.peers.get(peer_id) if live is not None else None
        if live is None or target is None:
            raise NotFound("Nobody with that peer id is in this meeting.", code="peer_not_found", field="peer_id")
        await self.store.run(room_queries.ban, room.id, target.user.id, self.clock.now())
        self.rooms.invited.discard(room.code, target.user.id)
        for peer in live.tabs(target.user.id):
            peer.conn.send(p.Kicked())
            peer.conn.finish(CLOSE_FORBIDDEN, "removed by an administrator")
        await self._audit(
            actor, "room.remove", f"room:{room.code}", user=target.user.public(), peer_id=peer_id
        )
        return target.user.public()

    # -- the server -------------------------------------------------------------------------

    async def server(self) -> dict[str, Any]:
        """Version, uptime, relay workers, database size and the mail backend's health."""
        return {
            "version": __version__,
            "uptime_s": round(self.monotonic() - self.started, 1),
            "rooms_live": sum(1 for live in self.rooms.live.values() if live.peers),
            "participants": sum(len(live.peers) for live in self.rooms.live.values()),
            "relay": {"mode": self.config.rtc.relay, "workers": await self.relay_workers()},
            "database": await self.database(),
            "mail": await mail_health(self.accounts.mailer),
        }

    async def relay_workers(self) -> list[dict[str, Any]]:
        """Each running relay worker's figures; packets/s and CPU % since the previous call."""
        stats = getattr(self.rooms.media.relay, "stats", None)
        if stats is None:
            return []
        workers = await stats()
        now = self.monotonic()
        return [self._worker(entry, now) for entry in workers]

    def _worker(self, entry: dict[str, Any], now: float) -> dict[str, Any]:
        index = int(entry.get("index", 0))
        sample = Sample(
            now, entry.get("pid"), int(entry.get("packets_forwarded", 0)), float(entry.get("cpu_seconds", 0.0))
        )
        packets_per_s, cpu_percent = rates(self._samples.get(index), sample)
        self._samples[index] = sample
        return {
            "index": index,
            "pid": entry.get("pid"),
            "restarts": entry.get("restarts", 0),
            "rooms": entry.get("rooms", 0),
            "participants": entry.get("participants", 0),
            "packets_forwarded": sample.packets,
            "packets_per_s": packets_per_s,
            "cpu_seconds": sample.cpu,
            "cpu_percent": cpu_percent,
        }

    async def database(self) -> dict[str, Any]:
        """The database file's path and size, and its write-ahead log's."""
        size = await self.store.run(q.database_bytes)
        wal = 0
        if self.store.path:
            try:
                wal = os.stat(self.store.path + "-wal").st_size
            except OSError:
                wal = 0
        return {"path": self.store.path, "bytes": size, "wal_bytes": wal}


def _user_target(user: User) -> str:
    return f"user:{user.id} {user.username}"
