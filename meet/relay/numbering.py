"""A relay connection's payload types and header extension ids: the client's, kept in our offers.

Browsers require both to stay stable within a BUNDLE group, so every offer the relay makes to a
participant reuses the numbers that participant used first; what it never offered (a kind it only
receives, an extension it did not list) gets free numbers once, then keeps them. The room's codecs
are Opus and VP8 (with RTX); Opus is asked for with DTX (RFC 7587 ``usedtx=1``), so a browser's
silent or muted microphone sends one packet every 400 ms instead of fifty a second — in a big room
most people are silent, and each of their packets costs the relay a receive and a send per listener.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from functools import partial

from aiortc import RTCRtpCodecParameters, RTCRtpTransceiver

from meet.relay.compat import forwarding

ROOM_CODECS = {"audio": "audio/opus", "video": "video/vp8"}


class Numbering:
    """What one participant's descriptions numbered, and the codecs and ids our offers use."""

    def __init__(self) -> None:
        self.codec_book: dict[str, list[RTCRtpCodecParameters]] = {}  # kind -> codecs, as first negotiated
        self.payload_types: set[int] = set()  # used by the client in any description
        self.extension_ids: dict[str, int] = {}  # uri -> id, the client's first, then ours

    def learn(self, sdp: str) -> None:
        """Remember the client's payload types and extension ids, to keep them in our offers."""
        types, extensions = forwarding.describe_description(sdp)
        self.payload_types |= types
        for uri, ext_id in extensions.items():
            self.extension_ids.setdefault(uri, ext_id)

    def restrict(self, transceivers: Iterable[RTCRtpTransceiver]) -> None:
        """Narrow each negotiated m-line to the room's codec (+ RTX), with DTX asked for Opus.

        Raises ValueError naming the m-line when the client offered no codec the room uses.
        """
        for transceiver in transceivers:
            if transceiver.mid is None:
                continue  # not negotiated yet (an offer of ours that failed half-way)
            wanted = ROOM_CODECS[transceiver.kind]
            forwarding.restrict_codecs(transceiver, partial(_is_codec, wanted))
            codecs = forwarding.negotiated_codecs(transceiver)
            if not codecs:
                raise ValueError(f"m-line {transceiver.mid}: the relay needs {wanted}")
            _ask_dtx(codecs)
            self.codec_book.setdefault(transceiver.kind, copy.deepcopy(codecs))

    def codec_plan(self) -> dict[str, list[RTCRtpCodecParameters]]:
        """The codecs of our offers' m-lines, per kind (made once for a kind never negotiated)."""
        plan: dict[str, list[RTCRtpCodecParameters]] = {}
        taken = set(self.payload_types)
        for kind in ("audio", "video"):
            if kind not in self.codec_book:
                self.codec_book[kind] = _fresh_codecs(kind, taken)
            plan[kind] = self.codec_book[kind]
            taken |= {c.payloadType for c in plan[kind] if c.payloadType is not None}
        return plan

    def extension_plan(self) -> dict[str, list[tuple[int, str]]]:
        """The header extensions of our offers' m-lines, per kind: (id, uri)."""
        plan: dict[str, list[tuple[int, str]]] = {}
        for kind in ("audio", "video"):
            plan[kind] = []
            for default_id, uri in forwarding.SUPPORTED_EXTENSIONS[kind]:
                if uri not in self.extension_ids:
                    used = set(self.extension_ids.values())
                    self.extension_ids[uri] = (
                        default_id if default_id not in used else min(set(range(1, 15)) - used)
                    )
                plan[kind].append((self.extension_ids[uri], uri))
        return plan


def _is_codec(mime_type: str, codec: RTCRtpCodecParameters) -> bool:
    return codec.mimeType.lower() == mime_type


def _ask_dtx(codecs: list[RTCRtpCodecParameters]) -> None:
    for codec in codecs:
        if _is_codec("audio/opus", codec):
            codec.parameters["usedtx"] = 1


def _fresh_codecs(kind: str, taken: set[int]) -> list[RTCRtpCodecParameters]:
    """aiortc's room codec (+ RTX) for a kind the client never offered, on free payload types."""
    codecs = [c for c in forwarding.default_codecs(kind) if _is_codec(ROOM_CODECS[kind], c)]
    codecs += [
        c
        for c in forwarding.default_codecs(kind)
        if forwarding.is_rtx(c) and c.parameters.get("apt") in {m.payloadType for m in codecs}
    ]
    free = (pt for pt in range(96, 128) if pt not in taken and pt not in {c.payloadType for c in codecs})
    renumber = {c.payloadType: (next(free) if c.payloadType in taken else c.payloadType) for c in codecs}
    for codec in codecs:
        codec.payloadType = renumber[codec.payloadType]
        if forwarding.is_rtx(codec):
            codec.parameters["apt"] = renumber[int(str(codec.parameters["apt"]))]
    _ask_dtx(codecs)
    return codecs
