"""Signed-in sessions kept in memory, so an authenticated request needs no database call.

:meth:`meet.accounts.Accounts.authenticate` asks this cache first. A hit costs one dict
lookup and one ``PRAGMA data_version`` on a connection owned by the event-loop thread
(:class:`meet.store.epoch.EpochWatch`, ~4.5 µs measured here) — no query through the store's
thread, whose hop alone costs ~120 µs of CPU. A miss does the ordinary lookup through the store
and keeps the answer.

**Invalidation.** Every change that ends a session or changes what a :class:`Session`
carries moves the *session epoch* on (a one-row counter, bumped by SQLite triggers in the
same transaction: migration 8): sign-out, password reset or change, an account disabled,
deleted, verified, made or unmade admin — by this server, by ``meet user …`` in another
process, or by hand in sqlite3. An entry is valid only while the epoch is the one read
*before* its session row was (``store.accounts.lookup_session``), so a revocation racing a
lookup never leaves a stale entry behind. The watch rereads the epoch only after another
connection committed (``data_version``), so every request notices a revocation committed
before it starts; writes that revoke nothing (chat, rooms, sign-ins, ``last_seen_at``)
cost one extra single-row read and keep the cache. When the epoch moves, the whole cache is
dropped: revocations are rare, and each live session costs one lookup to come back.

**Expiry and size.** An entry lasts until its session expires (the injected clock) and at
most :data:`REFRESH` seconds, after which one lookup refreshes it — which also records the
session's ``last_seen_at``, as before, at most once a minute. At most :data:`MAX_ENTRIES`
sessions are kept; the oldest entry makes room for a new one. Only live sessions are cached,
so invalid tokens cannot fill it. Entries are keyed by the whole signed token: the same
string was checked (signature, then database) when the entry was made.

When the epoch cannot be known (a database without a file, the watch closed at shutdown,
or SQLite answering busy) nothing is answered from memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S")

MAX_ENTRIES = 10_000  # ~10k live sign-ins per server; an entry is a few hundred bytes
REFRESH = 60.0  # seconds: an entry is looked up again at least this often (last_seen_at)


@dataclass(frozen=True, slots=True)
class _Entry(Generic[S]):
    session: S
    until: float  # clock time: the session's expiry, or the refresh, whichever comes first
    epoch: int


class SessionCache(Generic[S]):
    """Sessions by token, valid while the session epoch stays where it was."""

    def __init__(
        self,
        now: Callable[[], float],
        epoch: Callable[[], int | None],
        *,
        max_entries: int = MAX_ENTRIES,
        refresh: float = REFRESH,
    ) -> None:
        self.now = now
        self.epoch = epoch
        self.max_entries = max_entries
        self.refresh = refresh
        self._entries: dict[str, _Entry[S]] = {}
        self._epoch: int | None = None  # the epoch the entries were checked against
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> S | None:
        """The cached session for ``token`` when it is still valid; None means: look it up."""
        epoch = self.current()
        entry = self._entries.get(token)
        if entry is None or epoch is None:
            self.misses += 1
            return None
        if entry.epoch != epoch or self.now() >= entry.until:
            del self._entries[token]
            self.misses += 1
            return None
        self.hits += 1
        return entry.session

    def put(self, token: str, session: S, expires_at: float, epoch: int) -> None:
        """Keep ``session`` (read at ``epoch``) until it expires, unless the epoch moved on."""
        if epoch != self.current():
            return  # revoked or changed meanwhile (or not knowable): not worth keeping
        if token not in self._entries and len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]  # dicts keep insertion order: the oldest
        self._entries[token] = _Entry(session, min(expires_at, self.now() + self.refresh), epoch)

    def current(self) -> int | None:
        """The session epoch now; every entry goes when it moved (or cannot be known)."""
        epoch = self.epoch()
        if epoch != self._epoch:
            self._entries.clear()
            self._epoch = epoch
        return epoch

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
