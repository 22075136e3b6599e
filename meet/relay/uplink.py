"""What the relay tells each publisher about its uplink: transport-wide congestion control feedback.

A browser that negotiated transport-cc with the relay numbers every packet it sends on the
connection (the transport-wide sequence number extension) and runs its own bandwidth estimate
(Google congestion control, send side) from the relay's reports of when each one arrived. That
estimate is what makes a publisher on a weak uplink stop its top simulcast layer instead of
losing packets, and raise it again when the link recovers: the relay only has to report
faithfully. Reporting costs one dictionary store per packet; the estimating is the browser's.

:class:`Uplink` collects arrivals by sequence number and, every :data:`INTERVAL`, hands out the
FCIs that report every packet from the first not yet reported to the newest arrived (those that
did not arrive as lost), each at most :data:`MAX_PER_FEEDBACK` packets. A packet arriving after
the report that called it lost is not reported again (libwebrtc does the same after its window).
"""

from __future__ import annotations

from meet.relay import twcc

INTERVAL = 0.05  # seconds between two feedbacks (libwebrtc's receivers send every 50-250 ms)
MAX_PER_FEEDBACK = 1000  # packets reported in one FCI (a ~2 KB RTCP packet at most)
MAX_GAP = 4000  # a jump of more than this many sequence numbers restarts the reporting there


class Uplink:
    """Arrival times of one connection's transport-wide numbered packets, and their reports."""

    __slots__ = ("_arrivals", "_count", "_due", "_high", "_next", "packets", "reported")

    def __init__(self) -> None:
        self._arrivals: dict[int, float] = {}  # unwrapped sequence number -> arrival (s)
        self._next: int | None = None  # the first sequence number not reported yet
        self._high = -1  # the highest unwrapped sequence number arrived
        self._count = 0  # feedback packet count (mod 256)
        self._due = 0.0
        self.packets = 0  # numbered packets seen
        self.reported = 0  # feedbacks handed out

    def arrived(self, seq: int, now: float) -> None:
        """A packet numbered ``seq`` (16 bits) arrived at ``now`` (seconds, any steady clock)."""
        self.packets += 1
        if self._next is None:
            self._next = self._high = seq
            self._arrivals[seq] = now
            return
        # Unwrap next to the highest seen: within half the space either way.
        full = self._high + ((seq - self._high + 0x8000) & 0xFFFF) - 0x8000
        if full < self._next:
            return  # already reported (as lost): too late
        if full - self._next > MAX_GAP:  # a restart or a wild jump: report from here on
            self._arrivals.clear()
            self._next = full
        self._arrivals[full] = now
        if full > self._high:  # noqa: PLR1730 - per packet: a compare is cheaper than max()
            self._high = full

    def feedback(self, now: float) -> list[bytes]:
        """The FCIs to send now (none before :data:`INTERVAL` has passed or when nothing arrived)."""
        if now < self._due or self._next is None or self._high < self._next:
            return []
        self._due = now + INTERVAL
        fcis = []
        while self._next <= self._high:
            end = min(self._high + 1, self._next + MAX_PER_FEEDBACK)
            arrivals = [self._arrivals.pop(seq, None) for seq in range(self._next, end)]
            if any(a is not None for a in arrivals):
                try:
                    fcis.append(twcc.build_feedback(self._next & 0xFFFF, arrivals, self._count))
                except ValueError:  # arrivals over 8 s apart (the pacer was held up): skip them
                    pass
                else:
                    self._count = (self._count + 1) & 0xFF
            self._next = end
        self.reported += len(fcis)
        return fcis
