"""Simulcast in the relay's session descriptions: ``a=rid`` and ``a=simulcast`` (RFC 8851, 8853).

aiortc's SDP code drops both attributes, so the relay reads them from the client's offer text
and writes them into the text of its own answers and offers:

- :func:`offered_rids` reads, per video m-line (by mid), the RIDs the client SENDS: the
  ``a=simulcast:send`` list, in its order, restricted to RIDs declared ``a=rid:<id> send``.
- :func:`with_simulcast` adds ``a=rid:<id> recv`` for each and ``a=simulcast:recv <id>;<id>``
  to those m-lines of a description the relay emits (its answer, and every later offer: an
  offer without them makes a browser fall back to a single encoding).

Malformed or excessive simulcast is never refused: the relay answers with the part it can
use, as JSEP lets an answerer do, and the browser then sends only those encodings. Ignored:
a RID in the list that no ``a=rid:<id> send`` line declares, a RID that is not 1–16 letters,
digits, ``-`` or ``_``, a repeated RID (its first place counts), RIDs beyond
:data:`MAX_LAYERS` (the first ones count; browsers list them low to high), alternatives after
the first usable one in a stream (``a;b,c``: ``c`` is an alternative of ``b``), the ``~``
"paused" prefix (the RID counts as present), a ``recv`` list (the relay never sends
simulcast), and ``a=simulcast`` on audio m-lines, on m-lines the client does not send on, or
lines it cannot parse. An m-line with
no usable RID is answered without simulcast (the client then sends one encoding).

The header extensions that name the layers in each packet (:data:`RID_URI`,
:data:`REPAIRED_RID_URI`) are negotiated for video with the client's ids
(``forwarding.accept_extensions``); ``forwarding.hook_receiver`` routes each packet to its
layer with them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

import aiortc.rtp
from aiortc import RTCRtpHeaderExtensionParameters, RTCRtpParameters

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
#: The header extensions simulcast needs, by media kind (negotiated in addition to aiortc's own).
EXTENSIONS = {"audio": (), "video": (RID_URI, REPAIRED_RID_URI)}
MAX_LAYERS = 3  # simulcast encodings the relay receives per m-line

_RID = re.compile(r"[A-Za-z0-9_-]{1,16}")


def offered_rids(sdp: str) -> dict[str, tuple[str, ...]]:
    """mid → the RIDs the client sends on that video m-line, for m-lines with simulcast."""
    found: dict[str, tuple[str, ...]] = {}
    for kind, lines in _media_sections(sdp):
        if kind != "video" or "a=recvonly" in lines or "a=inactive" in lines:
            continue  # the relay receives simulcast video only
        mid = next((line[6:] for line in lines if line.startswith("a=mid:")), None)
        rids = _sent_rids(lines)
        if mid is not None and rids:
            found[mid] = rids
    return found


def with_simulcast(sdp: str, rids_by_mid: Mapping[str, Sequence[str]]) -> str:
    """``sdp`` with ``a=rid:<id> recv`` and ``a=simulcast:recv`` on the m-lines of ``rids_by_mid``."""
    if not rids_by_mid:
        return sdp
    head, *sections = re.split(r"\r\n(?=m=)", sdp.rstrip("\r\n"))
    out = [head]
    for section in sections:
        lines = section.split("\r\n")
        mid = next((line[6:] for line in lines if line.startswith("a=mid:")), None)
        rids = rids_by_mid.get(mid) if mid is not None else None
        if rids:
            lines = [line for line in lines if not line.startswith(("a=rid:", "a=simulcast:"))]
            lines += [f"a=rid:{rid} recv" for rid in rids]
            lines.append("a=simulcast:recv " + ";".join(rids))
        out.append("\r\n".join(lines))
    return "\r\n".join(out) + "\r\n"


def problems() -> list[str]:
    """What ``compat.check`` reports if aiortc no longer parses the simulcast stream ids."""
    try:
        ids = aiortc.rtp.HeaderExtensionsMap()
        uris = ("urn:ietf:params:rtp-hdrext:sdes:mid", RID_URI, REPAIRED_RID_URI)
        ids.configure(
            RTCRtpParameters(
                headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in enumerate(uris, 9)]
            )
        )
        packet = aiortc.rtp.RtpPacket(payload_type=96, ssrc=1)
        packet.extensions.mid, packet.extensions.rtp_stream_id = "0", "h"
        packet.extensions.repaired_rtp_stream_id = "f"
        parsed = aiortc.rtp.RtpPacket.parse(packet.serialize(ids), ids).extensions
        seen = (parsed.mid, parsed.rtp_stream_id, parsed.repaired_rtp_stream_id)
    except Exception as exc:  # noqa: BLE001 - any surprise here is exactly what we report
        return [f"parsing the mid/rtp-stream-id header extensions failed: {exc!r}"]
    if seen != ("0", "h", "f"):
        return [
            f"aiortc.rtp.HeaderExtensionsMap no longer parses mid/rtp-stream-id/repaired-rtp-stream-id: {seen}"
        ]
    return []


def _media_sections(sdp: str) -> Iterator[tuple[str, list[str]]]:
    """(kind, attribute lines) of each m-line, in order."""
    kind: str | None = None
    lines: list[str] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            if kind is not None:
                yield kind, lines
            kind, lines = line[2:].split(" ", 1)[0], []
        elif kind is not None:
            lines.append(line.strip())
    if kind is not None:
        yield kind, lines


def _sent_rids(lines: list[str]) -> tuple[str, ...]:
    """The usable RIDs of one m-line's ``a=simulcast:send`` list (see the module docstring)."""
    declared = set()
    for line in lines:
        if line.startswith("a=rid:"):
            parts = line[6:].split()
            if len(parts) >= 2 and parts[1] == "send" and _RID.fullmatch(parts[0]):
                declared.add(parts[0])
    chosen: list[str] = []
    for streams in _simulcast_lists(lines, "send"):
        for stream in streams.split(";"):
            usable = (alt.removeprefix("~").removeprefix("rid=") for alt in stream.split(","))
            rid = next((alt for alt in usable if alt in declared and alt not in chosen), None)
            if rid is not None and len(chosen) < MAX_LAYERS:
                chosen.append(rid)
    return tuple(chosen)


def _simulcast_lists(lines: list[str], direction: str) -> Iterator[str]:
    """The stream lists of ``direction`` in the m-line's ``a=simulcast`` lines (the first counts)."""
    for line in lines:
        if not line.startswith("a=simulcast:"):
            continue
        tokens = line[12:].split()
        # "send <list> [recv <list>]": direction and list alternate
        for name, streams in zip(tokens[::2], tokens[1::2]):
            if name == direction:
                yield streams
        return
