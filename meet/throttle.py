"""In-memory sliding-window rate limiting (per account, per client address, per email).

One process serves everything, so memory is the right place: nothing to clean in the
database, and a restart forgiving everyone is acceptable.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from meet.clock import Clock


class Throttle:
    """At most ``limit`` events per key within ``window`` seconds."""

    def __init__(self, limit: int, window: float, clock: Clock, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
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

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may act again, or None when it may act now."""
        events = self._live(key)
        if len(events) < self.limit:
            return None
        return events[0] + self.window - self._clock.now()

    def hit(self, key: str) -> None:
        """Record one event for ``key``."""
        events = self._live(key)
        if not events:
            self._events[key] = events
        events.append(self._clock.now())
        self._events.move_to_end(key)
        while len(self._events) > self._max_keys:
            # Bounded memory under a flood of distinct keys: forget the stalest.
            self._events.popitem(last=False)

    def reset(self, key: str) -> None:
        """Forget ``key`` (e.g. after a successful sign-in)."""
        self._events.pop(key, None)
