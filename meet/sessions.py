"""Open WebSockets, as seen from the sign-ins behind them: limits and revocation.

Every room and presence connection registers here while it is open. That gives two things:

- **Limits.** At most ``max_connections_per_user`` open sockets per user and
  ``max_connections_per_address`` per client address; one more is refused with ``error``
  ``too_many_connections`` and close 4429.
- **Revocation.** A session revoked (sign-out, password reset or change, account deleted) or
  expired must not keep its sockets. :meth:`SessionGuard.run` checks every session that has an
  open socket against the database in one query per pass, and closes the sockets of the ones
  that are gone with ``error`` ``signed_out`` and close 4401. A pass runs every
  ``ping_interval`` (which catches revocations by another process, e.g. ``meet user
  set-password``) and at once when :meth:`SessionGuard.poke` is called (revocations in this
  process).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TypeVar

import trio

from meet import protocol as p
from meet.clock import Clock
from meet.config import RoomsConfig
from meet.connection import CLOSE_UNAUTHORIZED, Connection
from meet.errors import Throttled
from meet.store import Store
from meet.store.accounts import live_sessions

log = logging.getLogger("meet.sessions")

K = TypeVar("K", int, str)

SIGNED_OUT = "Your sign-in has ended (signed out, password changed or account removed). Sign in again."


class SessionGuard:
    """The open connections per session, user and address; closes those of ended sessions."""

    def __init__(self, store: Store, clock: Clock, settings: RoomsConfig) -> None:
        self.store, self.clock, self.settings = store, clock, settings
        self.by_session: dict[int, set[Connection]] = {}
        self.per_user: Counter[int] = Counter()
        self.per_address: Counter[str] = Counter()
        self._poked = trio.Event()
        self.passes = 0  # completed checks
        self.passed = trio.Event()  # set (and replaced) after each check: tests wait on it, not on time

    # -- registering connections ----------------------------------------------------------

    def admit(self, conn: Connection) -> None:
        """Register an opening connection, or raise :class:`Throttled` when over a limit."""
        if self.per_user[conn.user.id] >= self.settings.max_connections_per_user:
            raise Throttled(
                f"You have {self.settings.max_connections_per_user} connections open already; "
                "close a tab or window first.",
                retry_after=int(self.settings.ping_interval),
                code="too_many_connections",
            )
        if self.per_address[conn.address] >= self.settings.max_connections_per_address:
            raise Throttled(
                "Too many connections from your network address.",
                retry_after=int(self.settings.ping_interval),
                code="too_many_connections",
            )
        self.per_user[conn.user.id] += 1
        self.per_address[conn.address] += 1
        if conn.session_id is not None:
            self.by_session.setdefault(conn.session_id, set()).add(conn)

    def forget(self, conn: Connection) -> None:
        """Unregister a closed connection (only once per admitted connection)."""
        _decrement(self.per_user, conn.user.id)
        _decrement(self.per_address, conn.address)
        if conn.session_id is not None:
            conns = self.by_session.get(conn.session_id, set())
            conns.discard(conn)
            if not conns:
                self.by_session.pop(conn.session_id, None)

    # -- revocation -----------------------------------------------------------------------

    def poke(self) -> None:
        """A session was revoked in this process: check at once instead of at the next pass."""
        self._poked.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Check every ``ping_interval``, and whenever poked, until cancelled."""
        task_status.started()
        while True:
            with trio.move_on_after(self.settings.ping_interval):
                await self._poked.wait()
            self._poked = trio.Event()  # a poke during the check below starts another pass
            try:
                await self.check()
            except Exception:  # a locked or failing database must not stop the guard
                log.exception("could not check the sessions of open connections")
            self.passes += 1
            self.passed.set()
            self.passed = trio.Event()

    async def check(self) -> None:
        """One pass: one query for every session with an open connection."""
        ids = list(self.by_session)
        if not ids:
            return
        live = await self.store.run(live_sessions, ids, self.clock.now())
        for session_id in ids:
            if session_id not in live:
                for conn in list(self.by_session.get(session_id, ())):
                    conn.send(p.Error(code="signed_out", message=SIGNED_OUT))
                    conn.finish(CLOSE_UNAUTHORIZED, "signed out")


def _decrement(counter: Counter[K], key: K) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
