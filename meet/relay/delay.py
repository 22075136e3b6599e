"""The delay-based half of the bandwidth estimate (:mod:`meet.relay.bwe`): is a queue growing?

Packets are grouped in :data:`GROUP` 5 ms send bursts (:class:`Groups`; back-to-back arrivals
released by a queue join the group they queued with); between consecutive groups,
Δarrival − Δsend says how much the path's queue grew. :class:`Trendline` accumulates that,
smooths it and fits a line over the last :data:`WINDOW` groups; :class:`Detector` compares
the slope, weighted, with an adaptive threshold and says overuse, normal or underuse.
Constants are libwebrtc's (see the bwe module docstring for why).
"""

from __future__ import annotations

from collections import deque

GROUP = 0.005  # s: packets sent within this of a group's first are one group
BURST = 0.100  # s: the longest a burst of back-to-back arrivals stays one group
WINDOW = 20  # groups in the trendline regression
SMOOTHING = 0.9  # of the accumulated delay, before the regression
THRESHOLD_GAIN = 4.0  # the slope's weight against the threshold
OVERUSE_TIME = 0.010  # s above the threshold before calling it overuse


class Trendline:
    """Whether the path's queue grows: the slope of the smoothed accumulated delay (ms/ms)."""

    def __init__(self) -> None:
        self.points: deque[tuple[float, float]] = deque(maxlen=WINDOW)
        self.accumulated = self.smoothed = 0.0
        self.first: float | None = None
        self.groups = 0

    def update(self, delay_ms: float, arrival: float) -> float | None:
        """Add one group's delay variation; the slope once the window is full."""
        if self.first is None:
            self.first = arrival
        self.groups += 1
        self.accumulated += delay_ms
        self.smoothed = SMOOTHING * self.smoothed + (1 - SMOOTHING) * self.accumulated
        self.points.append(((arrival - self.first) * 1000, self.smoothed))
        return _slope(self.points) if len(self.points) == WINDOW else None


def _slope(points: deque[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``points`` (None when all x are equal)."""
    n = len(points)
    sum_x = sum_y = sum_xx = sum_xy = 0.0
    for x, y in points:
        sum_x += x
        sum_y += y
        sum_xx += x * x
        sum_xy += x * y
    denominator = n * sum_xx - sum_x * sum_x
    return (n * sum_xy - sum_x * sum_y) / denominator if denominator > 1e-9 else None


class Detector:
    """Overuse, normal or underuse, from the trend against an adaptive threshold."""

    def __init__(self) -> None:
        self.threshold = 12.5
        self.signal = "normal"
        self.over_time = -1.0  # s above the threshold (−1: not above)
        self.over_count = 0
        self.previous_trend = 0.0
        self.last: float | None = None  # arrival time of the last update

    def update(self, trend: float, groups: int, send_delta: float, arrival: float) -> str:
        modified = min(groups, 60) * trend * THRESHOLD_GAIN
        if modified > self.threshold:
            self.over_time = send_delta / 2 if self.over_time < 0 else self.over_time + send_delta
            self.over_count += 1
            if self.over_time > OVERUSE_TIME and self.over_count > 1 and trend >= self.previous_trend:
                self.over_time, self.over_count, self.signal = 0.0, 0, "overuse"
        elif modified < -self.threshold:
            self.over_time, self.over_count, self.signal = -1.0, 0, "underuse"
        else:
            self.over_time, self.over_count, self.signal = -1.0, 0, "normal"
        self.previous_trend = trend
        self._adapt(modified, arrival)
        return self.signal

    def _adapt(self, modified: float, arrival: float) -> None:
        """Follow |modified| slowly up, faster down; ignore spikes far above (a sudden queue)."""
        elapsed_ms = 0.0 if self.last is None else min((arrival - self.last) * 1000, 100.0)
        self.last = arrival
        if abs(modified) > self.threshold + 15:
            return
        k = 0.039 if abs(modified) < self.threshold else 0.0087
        self.threshold = min(
            max(self.threshold + k * (abs(modified) - self.threshold) * elapsed_ms, 6.0), 600.0
        )


class Groups:
    """Packet groups (5 ms send bursts) and the delay variation between consecutive ones."""

    def __init__(self) -> None:
        # first send, last send, first arrival, last arrival
        self.current: list[float] | None = None
        self.previous: list[float] | None = None

    def add(self, send: float, arrival: float) -> tuple[float, float] | None:
        """(send delta, arrival delta) in seconds when ``send`` closes a group, else None."""
        current = self.current
        if current is None:
            self.current = [send, send, arrival, arrival]
            return None
        if send < current[0]:
            return None  # reordered behind a newer group: no information for the trend
        if send - current[0] <= GROUP or _burst(current, send, arrival):
            if send > current[1]:  # noqa: PLR1730 - per packet: a compare is cheaper than max()
                current[1] = send
            if arrival > current[3]:  # noqa: PLR1730 - the same
                current[3] = arrival
            return None
        previous, self.previous, self.current = self.previous, current, [send, send, arrival, arrival]
        if previous is None:
            return None
        return current[1] - previous[1], current[3] - previous[3]


def _burst(group: list[float], send: float, arrival: float) -> bool:
    """Back-to-back arrivals (a queue releasing them) belong to the group they queued with."""
    arrival_delta = arrival - group[3]
    return arrival_delta < GROUP and arrival_delta - (send - group[1]) < 0 and arrival - group[2] < BURST
