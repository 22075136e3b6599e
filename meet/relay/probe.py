"""Probe clusters for the bandwidth estimate (:mod:`meet.relay.bwe`): does a higher rate fit?

A probe is :data:`CLUSTERS` clusters sent one after the other at the target rate, each lasting
at least :data:`PROBE_DURATION` and :data:`PROBE_PACKETS` packets. Every packet sent while a
cluster is open belongs to it, media and padding alike; :meth:`Prober.padding` tops the media
up to the target rate. A cluster's result, once feedback covers its packets, is
min(send rate, receive rate): the receive rate is what the path delivered, the send rate
bounds it when the path is faster than the probe; a probe's result is the smallest of its
clusters' (a token bucket lets a first cluster through at line rate on its saved tokens,
the next one shows the bucket's rate). A packet is sent at an instant but arrives when its
last bit does: the send rate leaves out the last group sent, the receive rate the first
packet counted (their bytes are not inside the span measured). Pure: no I/O, times passed in.
"""

from __future__ import annotations

import logging
import math
from typing import Any

log = logging.getLogger("meet.relay.probe")

CLUSTERS = 2  # per probe
PROBE_DURATION = 0.040  # s a cluster lasts at least: several of the caller's 10 ms ticks
PROBE_PACKETS = 5  # packets a cluster holds at least
PROBE_GIVE_UP = 4 * PROBE_DURATION  # s after which a cluster closes even if short of packets
PROBE_TIMEOUT = 1.0  # s after a cluster closed without feedback covering it: failed
PROBE_SUCCESS = 0.9  # a probe succeeds when a cluster measured this fraction of its rate
PROBE_GAIN = 1.05  # a probe is worth it (and found something) above this × the estimate
PROBE_RECEIVED = 0.8  # of a cluster's packets that must arrive for it to measure anything
OVERSHOOT = 1.15  # clusters aim this far above the rate asked for: a measurement is a bit low
MAX_FACTOR = 2.0  # a probe never aims above this × the estimate
FIRST_BACKOFF, MAX_BACKOFF = 1.0, 8.0  # s before the next probe after failures, doubling
FALSE_SUCCESS = 2.0  # s: a decrease this soon after a successful probe fails it
PACE = 0.010  # s between the caller's padding() calls: each sends what is due by the next


class Cluster:
    """One cluster's packets: bytes and times on both sides."""

    __slots__ = (
        "arrivals", "closed", "first_send", "last_send", "last_seq", "packets", "rate", "sent_bytes",
        "start", "tail_sent",
    )  # fmt: skip

    def __init__(self, rate: float, start: float) -> None:
        self.rate, self.start = rate, start
        self.closed: float | None = None  # when it stopped taking packets
        self.last_seq = -1  # the last transport sequence number it holds (set by the link)
        self.packets = self.sent_bytes = self.tail_sent = 0
        self.first_send = self.last_send = start
        self.arrivals: list[tuple[float, int]] = []  # (arrival, size) as feedback reports them

    def on_sent(self, size: int, now: float) -> None:
        if self.packets == 0:
            self.first_send = self.last_send = now
        if now > self.last_send:
            self.last_send, self.tail_sent = now, 0
        self.tail_sent += size
        self.sent_bytes += size
        self.packets += 1

    def on_arrival(self, arrival: float, size: int) -> None:
        self.arrivals.append((arrival, size))

    def delivered(self) -> bool:
        """Whether enough of its packets arrived for its rates to mean anything: a cluster
        that a full queue mostly dropped failed, and says nothing of the path's capacity
        (the few packets that did arrive may have come back to back, at any rate)."""
        return len(self.arrivals) >= PROBE_RECEIVED * self.packets

    def due(self, now: float) -> int:
        """Bytes to send now so the cluster keeps to its rate until the next tick."""
        return max(0, int(self.rate / 8 * (now - self.start + PACE)) - self.sent_bytes)

    def complete(self, now: float) -> bool:
        elapsed = now - self.start
        return (elapsed >= PROBE_DURATION and self.packets >= PROBE_PACKETS) or elapsed >= PROBE_GIVE_UP

    def rates(self) -> tuple[float, float]:
        """bps (send rate, receive rate); 0 for one that cannot be measured."""
        send_span = self.last_send - self.first_send
        send = (self.sent_bytes - self.tail_sent) * 8 / send_span if send_span > 0.001 else 0.0
        return send, _receive_rate(sorted(self.arrivals))


def _saturated(rate: float, send: float, receive: float) -> bool:
    """Sent as planned, delivered slower: the path's capacity is the receive rate."""
    return send >= 0.8 * rate and 0 < receive < 0.9 * send


def _receive_rate(arrivals: list[tuple[float, int]]) -> float:
    """bps from the first arrival to the last (0: not measurable)."""
    span = arrivals[-1][0] - arrivals[0][0] if len(arrivals) >= 2 else 0.0
    return sum(size for _, size in arrivals[1:]) * 8 / span if span > 0 else 0.0


class Prober:
    """Runs one probe at a time, and backs off after probes that failed."""

    def __init__(self) -> None:
        self.target: float | None = None  # bps of the probe in progress
        self.base = 0.0  # bps: the estimate when it started
        self.queued = 0  # its clusters still to start
        self.active: Cluster | None = None
        self.waiting: list[Cluster] = []  # closed, their results not known yet
        # (rate, send, receive, delivered) per cluster: delivered, whether enough of it arrived
        self.measured: list[tuple[float, float, float, bool]] = []
        self.next_allowed = -math.inf
        self.backoff = FIRST_BACKOFF
        self.probes = self.failed = 0
        self.last_result: float | None = None
        self.succeeded = -math.inf  # when the last successful probe concluded

    def probe(self, target: float, estimate: float, maximum: float, now: float) -> bool:
        """Start probing for ``target`` bps unless busy, backing off or pointless."""
        if self.target is not None or now < self.next_allowed:
            return False
        if not min(target, maximum) > estimate * PROBE_GAIN:  # (NaN included)
            return False  # nothing the estimate does not already allow
        target = min(target * OVERSHOOT, MAX_FACTOR * estimate, maximum)
        self.target, self.queued, self.measured, self.base = target, CLUSTERS, [], estimate
        self.probes += 1
        return True

    def padding(self, now: float) -> int:
        """Bytes of padding the open cluster wants now (opening the next one when due)."""
        cluster = self.active
        if cluster is not None and cluster.complete(now):
            self._close(cluster, now)
            cluster = None
        if cluster is None:
            if not self.queued or self.target is None:
                return 0
            self.queued -= 1
            cluster = self.active = Cluster(self.target, now)
        return cluster.due(now)

    def on_sent(self, size: int, now: float) -> Cluster | None:
        """The open cluster a packet sent now belongs to, if any."""
        cluster = self.active
        if cluster is None:
            return None
        if cluster.complete(now):
            self._close(cluster, now)
            return None
        cluster.on_sent(size, now)
        return cluster

    def settle(self, reported: int, now: float) -> tuple[list[float], tuple[float, float | None] | None]:
        """Capacities measured now, and the probe's outcome once feedback covers all its clusters.

        A capacity is the receive rate of a cluster sent as planned that the path delivered
        slower, as soon as feedback covers it (up to seq ``reported``).

        (result, capacity): the result is the smallest min(send, receive) among its clusters
        — a token bucket lets the first cluster through at line rate, the next one shows its
        real rate; the capacity, a receive rate below what a cluster sent as planned (None if
        no cluster saturated the path). A cluster feedback has not covered
        :data:`PROBE_TIMEOUT` after it closed counts as nothing received. One of which less
        than :data:`PROBE_RECEIVED` arrived failed the probe (result 0): what did arrive came
        out of a full queue at the path's rate, a capacity, if at least two packets did (one
        alone measures no rate: it used to read as a capacity of 0 and cut to the floor).
        """
        capacities: list[float] = []
        for cluster in list(self.waiting):
            covered = cluster.last_seq <= reported
            if covered or (cluster.closed is not None and now - cluster.closed > PROBE_TIMEOUT):
                self.waiting.remove(cluster)
                send, receive = cluster.rates() if covered else (0.0, 0.0)
                self.measured.append((cluster.rate, send, receive, covered and cluster.delivered()))
                if _saturated(cluster.rate, send, receive):
                    capacities.append(receive)
        if self.target is None or self.queued or self.active is not None or self.waiting:
            return capacities, None
        return capacities, self._conclude(now)

    def on_decrease(self, now: float) -> None:
        """The estimate went down: soon after a successful probe, that probe misled (a burst
        the path absorbed, e.g. a token bucket's): treat it as failed."""
        if now - self.succeeded < FALSE_SUCCESS:
            self.succeeded = -math.inf
            self._back_off(now)

    def hold(self, now: float) -> None:
        """Heavy loss just cut the estimate: the path is full, and a probe would only add to
        its loss (a token bucket's queue is shallow). Wait as long as after repeated failures."""
        self.backoff = MAX_BACKOFF
        self.next_allowed = max(self.next_allowed, now + MAX_BACKOFF)

    def stats(self) -> dict[str, Any]:
        return {
            "probing": self.target is not None,
            "probe_target": None if self.target is None else round(self.target),
            "probes": self.probes,
            "probes_failed": self.failed,
            "last_probe_result": None if self.last_result is None else round(self.last_result),
            "probe_backoff_s": self.backoff,
        }

    def _close(self, cluster: Cluster, now: float) -> None:
        cluster.closed = now
        self.active = None
        if cluster.packets:
            self.waiting.append(cluster)

    def _conclude(self, now: float) -> tuple[float, float | None]:
        """The probe is over: allow the next at once after success, later after failure."""
        assert self.target is not None
        result = min(
            (min(send, receive) if ok else 0.0 for _, send, receive, ok in self.measured), default=0.0
        )
        saturated = [receive for rate, send, receive, _ in self.measured if _saturated(rate, send, receive)]
        self.last_result = result
        log.debug("probe for %.0f: clusters (rate, send, receive) %s", self.target, self.measured)
        # Success also when short of the target, if no cluster saturated the path and it
        # found more than the estimate: the path carried that much, the next probe starts there.
        if result >= PROBE_SUCCESS * self.target or (not saturated and result > PROBE_GAIN * self.base):
            self.backoff, self.next_allowed, self.succeeded = FIRST_BACKOFF, now, now
        else:
            self._back_off(now)
        self.target, self.measured = None, []
        return result, min(saturated, default=None)

    def _back_off(self, now: float) -> None:
        self.failed += 1
        self.next_allowed = now + self.backoff
        self.backoff = min(2 * self.backoff, MAX_BACKOFF)
