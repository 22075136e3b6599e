"""The few VP8 payload facts a forwarder needs (RFC 7741), without decoding anything.

A VP8 RTP payload starts with a payload descriptor: a first byte (X extension bit, N, S start of
partition, partition index), then when X is set an extension byte (I picture id, L TL0PICIDX,
T temporal layer index, K key index) followed by the fields it announces, in that order. The
VP8 payload header follows; its first byte's P bit is clear on key frames.

When a subscriber's stream changes source (another publisher, another simulcast layer), the
relay shifts the picture id and TL0PICIDX so that they continue where the previous source left
off: a receiver checks both for continuity when it finds frame references.
"""

from __future__ import annotations

from typing import NamedTuple


class Descriptor(NamedTuple):
    """Where the numbered fields of one payload descriptor are (offsets; -1 when absent)."""

    picture_at: int  # offset of the picture id
    picture_bits: int  # 7 or 15 (0 when absent)
    tl0_at: int  # offset of TL0PICIDX
    end: int  # offset of the VP8 payload header


def descriptor(payload: bytes) -> Descriptor:
    """Parse the descriptor's layout; ``IndexError`` if the payload is too short for it."""
    picture_at = tl0_at = -1
    bits = 0
    pos = 1
    if payload[0] & 0x80:
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # picture id: 7 or 15 bits
            picture_at = pos
            bits = 15 if payload[pos] & 0x80 else 7
            pos += 2 if bits == 15 else 1
        if ext & 0x40:  # TL0PICIDX
            tl0_at = pos
            pos += 1
        if ext & 0x30:  # TID/Y/KEYIDX
            pos += 1
    if pos > len(payload):
        raise IndexError("VP8 payload descriptor truncated")
    return Descriptor(picture_at, bits, tl0_at, pos)


def keyframe_start(payload: bytes) -> bool:
    """Whether a VP8 RTP payload is the first packet of a keyframe."""
    if len(payload) < 3 or payload[0] & 0x17 != 0x10:  # S set, partition id 0
        return False
    try:
        return not payload[descriptor(payload).end] & 0x01  # P bit clear: a key frame
    except IndexError:
        return False


def keyframe_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) of the picture a keyframe's first packet starts, or None.

    A key frame's VP8 payload header is the 3-byte frame tag, the start code 9d 01 2a, then the
    width and height as 14-bit little-endian numbers (RFC 6386 9.1; the top two bits scale).
    """
    if not keyframe_start(payload):
        return None
    at = descriptor(payload).end
    header = payload[at : at + 10]
    if len(header) < 10 or header[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(header[6:8], "little") & 0x3FFF, int.from_bytes(header[8:10], "little") & 0x3FFF


def picture_id(payload: bytes) -> tuple[int, int, int] | None:
    """(offset, bits, value) of the picture id in a VP8 payload descriptor, or None."""
    if len(payload) < 3 or not payload[0] & 0x80 or not payload[1] & 0x80:
        return None
    if payload[2] & 0x80:
        if len(payload) < 4:
            return None
        return 2, 15, ((payload[2] & 0x7F) << 8) | payload[3]
    return 2, 7, payload[2]


def numbering(payload: bytes) -> tuple[int | None, int | None, int]:
    """(picture id, TL0PICIDX, picture id bits) of a payload; None for absent fields."""
    try:
        found = descriptor(payload)
    except IndexError:
        return None, None, 0
    picture = None
    if found.picture_bits == 15:
        picture = ((payload[found.picture_at] & 0x7F) << 8) | payload[found.picture_at + 1]
    elif found.picture_bits == 7:
        picture = payload[found.picture_at]
    tl0 = payload[found.tl0_at] if found.tl0_at >= 0 else None
    return picture, tl0, found.picture_bits


def shift(payload: bytes, picture_offset: int, tl0_offset: int = 0) -> bytes:
    """The payload with its picture id and TL0PICIDX advanced by the offsets (same widths)."""
    try:
        found = descriptor(payload)
    except IndexError:
        return payload
    data = bytearray(payload)
    if picture_offset and found.picture_bits == 15:
        at = found.picture_at
        value = ((((data[at] & 0x7F) << 8) | data[at + 1]) + picture_offset) & 0x7FFF
        data[at], data[at + 1] = (value >> 8) | 0x80, value & 0xFF
    elif picture_offset and found.picture_bits == 7:
        data[found.picture_at] = (data[found.picture_at] + picture_offset) & 0x7F
    if tl0_offset and found.tl0_at >= 0:
        data[found.tl0_at] = (data[found.tl0_at] + tl0_offset) & 0xFF
    return bytes(data)


def shift_picture_id(payload: bytes, offset: int) -> bytes:
    """The payload with its VP8 picture id advanced by ``offset`` (same width)."""
    return shift(payload, offset)
