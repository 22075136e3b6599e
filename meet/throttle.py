"""In-memory sliding-window rate limits (per account, per client address, per email).

One process serves everything, so memory is the right place: nothing to clean in the
database, and a restart forgiving everyone is acceptable.

Callers that guard an expensive check (a password hash) must *reserve* the attempt with
:meth:`Throttle.acquire` before the check and give it back with :meth:`Throttle.release` when
it turns out fine: checking first and counting after the check lets any number of concurrent
requests through the gate while the first ones are still hashing.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from meet.clock import Clock


class Busy(Exception):
    """A key is over its limit or within its delay: try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.1f} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Backoff:
    """Growing delays: after ``free`` events, each further one doubles the wait before the next.

    The wait after the n-th event (n > free) is ``base * 2 ** (n - free - 1)``, at most ``cap``,
    counted from that event.
    """

    free: int
    base: float = 1.0
    cap: float = 60.0

    def wait(self, count: int) -> float:
        if count <= self.free:
            return 0.0
        return float(min(self.cap, self.base * 2 ** min(count - self.free - 1, 62)))


class Throttle:
    """At most ``limit`` events per key within ``window`` seconds, optionally with growing delays."""

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Clock,
        max_keys: int = 100_000,
        backoff: Backoff | None = None,
    ) -> None:
        self.limit = limit
        self.window = window
        self.backoff = backoff
        self._clock = clock
        self._max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def _live(self, key: str) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            return deque()
        cutoff = self._clock.now() - self.window
        while events and events[0] <= cutoff:
            events.popleft()
        if not events:
            del self._events[key]
        return events

    def count(self, key: str) -> int:
        """Events of ``key`` within the window."""
        return len(self._live(key))

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may act again, or None when it may act now."""
        events = self._live(key)
        now = self._clock.now()
        if len(events) >= self.limit:
            return events[0] + self.window - now
        if self.backoff is not None and events:
            wait = events[-1] + self.backoff.wait(len(events)) - now
            if wait > 0:
                return wait
        return None

    def hit(self, key: str, at: float | None = None) -> float:
        """Record one event for ``key`` (now, or at ``at``); returns its timestamp."""
        events = self._live(key)
        if not events:
            self._events[key] = events
        stamp = self._clock.now() if at is None else at
        events.append(stamp)
        self._events.move_to_end(key)
        while len(self._events) > self._max_keys:
            # Bounded memory under a flood of distinct keys: forget the stalest.
            self._events.popitem(last=False)
        return stamp

    def acquire(self, keys: Sequence[str]) -> float:
        """Reserve one event on every key and return its timestamp, or raise :class:`Busy`.

        Check and record happen without yielding, so concurrent callers cannot all pass the
        same gate; give the reservation back with :meth:`release` if the attempt went well.
        """
        waits = [w for w in map(self.retry_after, keys) if w is not None]
        if waits:
            raise Busy(max(waits))
        stamp = self._clock.now()
        for key in keys:
            self.hit(key, stamp)
        return stamp

    def release(self, key: str, stamp: float) -> None:
        """Take back one reserved event of ``key`` (the guarded attempt turned out fine)."""
        events = self._events.get(key)
        if events is None:
            return
        try:
            events.remove(stamp)
        except ValueError:
            return  # already expired or forgotten
        if not events:
            del self._events[key]

    def reset(self, key: str) -> None:
        """Forget ``key`` (e.g. after a successful sign-in)."""
        self._events.pop(key, None)

    def reset_matching(self, wanted: Callable[[str], bool]) -> list[str]:
        """Forget every key ``wanted`` accepts (an admin lifting someone's lock-out); returns them."""
        keys = [key for key in self._events if wanted(key)]
        for key in keys:
            del self._events[key]
        return keys
