"""Server messages as ready WebSocket frames, built once per message (RFC 6455, section 5.2).

A server's frames are never masked and meet never compresses signaling (see
:mod:`meet.hypercorn_ws`), so the bytes of a frame are the same for every recipient: a
broadcast to a room of 200 encodes its JSON and its frame header once, and each member's
connection writes the same ``bytes`` object. Every frame is one final text frame (opcode 1,
FIN set), as a browser expects of a JSON message.
"""

from __future__ import annotations

import struct

from meet.protocol import Message, encode

_TEXT = 0x81  # FIN + opcode 1 (text)
_SHORT, _MEDIUM = 126, 1 << 16  # lengths below 126 fit in the second byte; below 2**16 in 16 bits


def text_frame(payload: str) -> bytes:
    """One unmasked, final text frame carrying ``payload`` (UTF-8)."""
    data = payload.encode("utf-8")
    size = len(data)
    if size < _SHORT:
        header = struct.pack("!BB", _TEXT, size)
    elif size < _MEDIUM:
        header = struct.pack("!BBH", _TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _TEXT, 127, size)
    return header + data


def frame(message: Message) -> bytes:
    """``message`` as JSON in one text frame."""
    return text_frame(encode(message))


def payloads(data: bytes) -> list[str]:
    """The texts of consecutive frames made by :func:`text_frame` (tests and diagnostics)."""
    texts, at = [], 0
    while at < len(data):
        if data[at] != _TEXT:
            raise ValueError(f"not a final text frame at byte {at}")
        size, at = data[at + 1], at + 2
        if size == 126:
            (size,), at = struct.unpack_from("!H", data, at), at + 2
        elif size == 127:
            (size,), at = struct.unpack_from("!Q", data, at), at + 8
        texts.append(data[at : at + size].decode("utf-8"))
        at += size
    return texts
