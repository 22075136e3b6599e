"""What the relay keeps per stream it receives: statistics for its receiver reports, and the gaps it NACKs.

The same bookkeeping as aiortc's ``StreamStatistics`` and ``NackGenerator`` (RFC 3550 A.1/A.3/A.8:
extended highest sequence number, packets expected and lost, interarrival jitter; sequence
numbers missing among the last :data:`HISTORY`), for the relay's per-packet path: slotted
objects, 16-bit arithmetic inline instead of a helper call per comparison, and the trimming of
old gaps only when there are gaps. Both keep aiortc's attribute names, so aiortc's
``getStats`` and the relay's reports (``compat.reports``) read them as they read aiortc's.
"""

from __future__ import annotations

HISTORY = 128  # sequence numbers behind the newest that a gap is still NACKed for (aiortc's)
LOST_MIN, LOST_MAX = -0x800000, 0x7FFFFF  # a receiver report's 24-bit signed cumulative loss


class Statistics:
    """Receive statistics of one SSRC."""

    __slots__ = ("_clock", "_expected_prior", "_jitter_q4", "_last_arrival", "_last_timestamp",
                 "_received_prior", "base_seq", "cycles", "max_seq", "packets_received")  # fmt: skip

    def __init__(self, clockrate: int) -> None:
        self._clock = clockrate
        self.base_seq: int | None = None
        self.max_seq: int | None = None
        self.cycles = 0  # sequence number wraps, × 65536
        self.packets_received = 0
        self._jitter_q4 = 0  # jitter × 16 (A.8's fixed point)
        self._last_arrival = 0
        self._last_timestamp: int | None = None
        self._expected_prior = self._received_prior = 0

    def add(self, seq: int, timestamp: int, now: float) -> None:
        """A packet numbered ``seq`` with RTP ``timestamp`` arrived at ``now`` (seconds)."""
        self.packets_received += 1
        max_seq = self.max_seq
        if max_seq is None:
            self.base_seq = seq
        elif not 0 < (seq - max_seq) & 0xFFFF < 0x8000:
            return  # a repeat or a late one: counted, not a new highest
        if max_seq is not None and seq < max_seq:
            self.cycles += 0x10000
        self.max_seq = seq
        arrival = int(now * self._clock)
        last = self._last_timestamp
        if last is not None and timestamp != last:
            diff = abs((arrival - self._last_arrival) - (timestamp - last))
            self._jitter_q4 += diff - ((self._jitter_q4 + 8) >> 4)
        self._last_arrival, self._last_timestamp = arrival, timestamp

    @property
    def packets_expected(self) -> int:
        if self.max_seq is None or self.base_seq is None:
            return 0
        return self.cycles + self.max_seq - self.base_seq + 1

    @property
    def packets_lost(self) -> int:
        """Cumulative loss as a receiver report carries it (negative with duplicates)."""
        return min(max(self.packets_expected - self.packets_received, LOST_MIN), LOST_MAX)

    @property
    def fraction_lost(self) -> int:
        """Loss since the last call, in 1/256 (each report asks once: A.3's interval)."""
        expected = self.packets_expected
        expected_interval, self._expected_prior = expected - self._expected_prior, expected
        received_interval = self.packets_received - self._received_prior
        self._received_prior = self.packets_received
        lost = expected_interval - received_interval
        return 0 if expected_interval == 0 or lost <= 0 else (lost << 8) // expected_interval

    @property
    def jitter(self) -> int:
        """Interarrival jitter in RTP timestamp units."""
        return self._jitter_q4 >> 4


class Gaps:
    """The sequence numbers of one SSRC still missing (the relay NACKs them upstream)."""

    __slots__ = ("max_seq", "missing")

    def __init__(self) -> None:
        self.max_seq: int | None = None
        self.missing: set[int] = set()

    def add(self, seq: int) -> bool:
        """``seq`` arrived; True when it revealed new gaps (a NACK is due)."""
        max_seq = self.max_seq
        if max_seq is None:
            self.max_seq = seq
            return False
        ahead = (seq - max_seq) & 0xFFFF
        missing = self.missing
        if 0 < ahead < 0x8000:
            self.max_seq = seq
            if ahead > 1:
                missing.update((seq - i) & 0xFFFF for i in range(1, min(ahead, HISTORY + 1)))
        elif missing:
            missing.discard(seq)
            return False
        else:
            return False
        if missing:  # forget what is too old to be worth asking for again
            oldest = (seq - HISTORY) & 0xFFFF
            stale = [s for s in missing if 0 < (oldest - s) & 0xFFFF < 0x8000]
            missing.difference_update(stale)
        return ahead > 1
