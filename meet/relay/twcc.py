"""Transport-wide congestion control feedback: parse and build its FCI (no I/O, no aiortc).

The format is draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1: an RTCP
RTPFB message (PT 205) with FMT 15, whose FCI is::

    base sequence number (16) | packet status count (16)
    reference time (24, signed, × 64 ms) | feedback packet count (8)
    packet chunks (16 bits each), then one receive delta per received packet, padding to 32 bits

A packet chunk is either a run-length chunk (``0 SS LLLLLLLLLLLLL``: one status, 13-bit run)
or a status vector chunk (``1 0`` + fourteen 1-bit statuses, or ``1 1`` + seven 2-bit ones).
A status is 0 (not received), 1 (received, delta in one unsigned byte × 250 µs) or 2
(received, delta in two signed bytes × 250 µs); 3 is reserved. The first delta is relative to
the reference time, each next one to the previous received packet.

:func:`parse_feedback` turns an FCI into :class:`Feedback` (arrival times in seconds on the
receiver's clock); :func:`build_feedback` is its inverse (a receiver's side: the tests simulate
one with it, and the relay will send it to publishers). :func:`rtcp_packet` wraps an FCI into a
whole RTCP packet. Malformed input raises ``ValueError``; work is bounded by the input's length.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

RTPFB = 205  # RTCP packet type: transport layer feedback
FMT_TWCC = 15  # its format: transport-wide congestion control
TICK = 0.000250  # seconds per receive delta unit
REFERENCE_UNIT = 0.064  # seconds per reference time unit
MAX_RUN = 0x1FFF  # the longest run a run-length chunk holds

NOT_RECEIVED, SMALL, LARGE = 0, 1, 2
_HEAD = struct.Struct("!HHI")
_CHUNK = struct.Struct("!H")
_LARGE = struct.Struct("!h")


@dataclass(frozen=True)
class Feedback:
    """One feedback: the statuses of ``len(arrivals)`` packets from ``base_seq`` on."""

    base_seq: int
    reference: int  # × 64 ms, 24-bit signed as sent (the caller unwraps across feedbacks)
    count: int  # the feedback packet count (8 bits: tells duplicates and reordering apart)
    arrivals: tuple[float | None, ...]  # seconds since reference time 0, None when not received


# --- parsing ------------------------------------------------------------------------------------


def parse_feedback(fci: bytes) -> Feedback:
    """The packets one TWCC FCI reports; ``ValueError`` when it is malformed."""
    if len(fci) < 8:
        raise ValueError("transport-cc feedback shorter than its 8-byte header")
    base_seq, status_count, ref_and_count = _HEAD.unpack_from(fci)
    if status_count == 0:
        raise ValueError("transport-cc feedback reports no packets")
    reference = ref_and_count >> 8
    if reference & 0x800000:
        reference -= 0x1000000
    statuses, offset = _read_chunks(fci, 8, status_count)
    arrivals, offset = _read_deltas(fci, offset, statuses, reference * REFERENCE_UNIT)
    if len(fci) - offset > 3:
        raise ValueError("transport-cc feedback has bytes past its receive deltas")
    return Feedback(base_seq, reference, ref_and_count & 0xFF, arrivals)


def _read_chunks(fci: bytes, offset: int, count: int) -> tuple[list[int], int]:
    """``count`` statuses from the chunks at ``offset`` (one chunk per 2 bytes: bounded work)."""
    statuses: list[int] = []
    while len(statuses) < count:
        if offset + 2 > len(fci):
            raise ValueError("transport-cc feedback ends inside its packet chunks")
        (chunk,) = _CHUNK.unpack_from(fci, offset)
        offset += 2
        statuses += _chunk_statuses(chunk, count - len(statuses))
    return statuses, offset


def _chunk_statuses(chunk: int, left: int) -> list[int]:
    """The statuses one chunk holds (at most ``left`` of them: a vector's tail is padding)."""
    if not chunk & 0x8000:  # run length
        status, run = (chunk >> 13) & 3, chunk & MAX_RUN
        if status == 3:
            raise ValueError("transport-cc run-length chunk with the reserved status 3")
        return [status] * min(run, left)
    if not chunk & 0x4000:  # fourteen 1-bit statuses
        return [(chunk >> (13 - i)) & 1 for i in range(min(14, left))]
    statuses = [(chunk >> (12 - 2 * i)) & 3 for i in range(min(7, left))]
    if 3 in statuses:
        raise ValueError("transport-cc status vector with the reserved status 3")
    return statuses


def _read_deltas(
    fci: bytes, offset: int, statuses: list[int], start: float
) -> tuple[tuple[float | None, ...], int]:
    """Arrival times of the received packets, from their receive deltas after the chunks."""
    arrivals: list[float | None] = []
    ticks = 0
    for status in statuses:
        if status == NOT_RECEIVED:
            arrivals.append(None)
            continue
        size = 1 if status == SMALL else 2
        if offset + size > len(fci):
            raise ValueError("transport-cc feedback ends inside its receive deltas")
        ticks += fci[offset] if size == 1 else _LARGE.unpack_from(fci, offset)[0]
        offset += size
        arrivals.append(start + ticks * TICK)
    return tuple(arrivals), offset


# --- building -----------------------------------------------------------------------------------


def build_feedback(base_seq: int, arrivals: Sequence[float | None], count: int) -> bytes:
    """The FCI reporting ``arrivals`` (seconds on the receiver's clock, None: not received).

    ``arrivals[i]`` is packet ``base_seq + i`` (mod 2^16); ``count`` is the feedback packet
    count (mod 256). The reference time is the first arrival rounded down to 64 ms. A delta
    that does not fit two signed bytes (±8.2 s) raises ``ValueError``: split the feedback.
    """
    if not 0 < len(arrivals) <= 0xFFFF:
        raise ValueError("a transport-cc feedback reports 1 to 65535 packets")
    received = [a for a in arrivals if a is not None]
    reference = int(received[0] // REFERENCE_UNIT) if received else 0
    statuses, deltas = _deltas(arrivals, reference * REFERENCE_UNIT)
    body = bytearray(
        _HEAD.pack(base_seq & 0xFFFF, len(arrivals), ((reference & 0xFFFFFF) << 8) | (count & 0xFF))
    )
    for chunk in _chunks(statuses):
        body += _CHUNK.pack(chunk)
    body += deltas
    body += bytes(-len(body) % 4)
    return bytes(body)


def _deltas(arrivals: Sequence[float | None], start: float) -> tuple[list[int], bytes]:
    """Each packet's status and the receive deltas, quantized without drift."""
    statuses: list[int] = []
    deltas = bytearray()
    previous = round(start / TICK)
    for arrival in arrivals:
        if arrival is None:
            statuses.append(NOT_RECEIVED)
            continue
        ticks = round(arrival / TICK)
        delta, previous = ticks - previous, ticks
        if 0 <= delta <= 0xFF:
            statuses.append(SMALL)
            deltas.append(delta)
        elif -0x8000 <= delta <= 0x7FFF:
            statuses.append(LARGE)
            deltas += _LARGE.pack(delta)
        else:
            raise ValueError("a receive delta does not fit 16 bits: split the feedback")
    return statuses, bytes(deltas)


def _chunks(statuses: list[int]) -> list[int]:
    """Packet chunks for ``statuses``: runs where they repeat, status vectors elsewhere."""
    chunks: list[int] = []
    i, n = 0, len(statuses)
    while i < n:
        run = _run_length(statuses, i)
        if run >= 14 or i + run == n:
            chunks.append((statuses[i] << 13) | run)
            i += run
        elif LARGE not in statuses[i : i + 14]:
            bits = statuses[i : i + 14] + [0] * (14 - len(statuses[i : i + 14]))
            chunks.append(0x8000 | sum(b << (13 - k) for k, b in enumerate(bits)))
            i += 14
        else:
            pairs = statuses[i : i + 7] + [0] * (7 - len(statuses[i : i + 7]))
            chunks.append(0xC000 | sum(s << (12 - 2 * k) for k, s in enumerate(pairs)))
            i += 7
    return chunks


def _run_length(statuses: list[int], start: int) -> int:
    status, end = statuses[start], start
    while end < len(statuses) and statuses[end] == status and end - start < MAX_RUN:
        end += 1
    return end - start


def rtcp_packet(fci: bytes, sender_ssrc: int, media_ssrc: int) -> bytes:
    """A whole RTCP transport-cc feedback packet carrying ``fci`` (a multiple of 4 bytes)."""
    if len(fci) % 4:
        raise ValueError("a transport-cc FCI is padded to 32 bits")
    length = 2 + len(fci) // 4  # in 32-bit words, minus one
    return struct.pack("!BBHII", 0x80 | FMT_TWCC, RTPFB, length, sender_ssrc, media_ssrc) + fci
