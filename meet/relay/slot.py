"""A subscriber's receive slot: one m-line of its connection that carries one other person's track.

The relay's sender on that m-line never encodes (:class:`ForwardTrack`); packets reach it from
the publisher through the slot's :class:`~meet.relay.forward.OutStream`, configured from what
the m-line negotiated (:meth:`Slot.configure`). Which publication a slot carries is the
participant's business (``peer.py``, ``slots.py``); a slot describes it for ``tracks``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from aiortc import MediaStreamTrack, RTCRtpTransceiver

from meet.relay.compat import feedback, forwarding, sending
from meet.relay.forward import Counters, Link, OutStream, Publication
from meet.relay.view import View

SENDING = ("sendonly", "sendrecv")  # directions in which the relay sends


class ForwardTrack(MediaStreamTrack):
    """The track of a forwarding sender: it never yields a frame, so aiortc never encodes.

    aiortc's sender task awaits ``recv()`` forever (instead of polling every 20 ms, as it does
    without a track); packets reach the subscriber through :class:`OutStream` instead.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.get_running_loop().create_future()


class Slot:
    """An m-line that can carry one other participant's track to this one."""

    __slots__ = ("kind", "out", "publication", "refused", "server_made", "transceiver")

    def __init__(self, transceiver: RTCRtpTransceiver, server_made: bool, counters: Counters) -> None:
        self.transceiver = transceiver
        self.kind = transceiver.kind
        self.server_made = server_made  # added by the relay (else offered recvonly by the client)
        self.out = OutStream(transceiver.kind, counters)
        self.publication: Publication | None = None  # assigned (negotiated or being negotiated)
        self.refused = False
        forwarding.hook_sender(
            transceiver.sender, self.out.on_nack, self.out.on_keyframe_request, self.out.sender_info
        )

    @property
    def usable(self) -> bool:
        """Negotiated as sending and not refused: it can carry any publication of its kind at once."""
        transceiver = self.transceiver
        return not self.refused and transceiver.mid is not None and transceiver.currentDirection in SENDING

    def configure(self, link_for: Callable[[Any], Link]) -> None:
        """Set the out stream up as the m-line just negotiated (codecs, SSRCs, extensions).

        ``link_for(dtls)``: the congestion control of the connection, used when the m-line
        negotiated transport-wide sequence numbers.
        """
        transceiver = self.transceiver
        codecs = forwarding.negotiated_codecs(transceiver)
        main = codecs[0]
        assert main.payloadType is not None  # negotiated codecs always carry one
        rtx = next(
            (c for c in codecs if forwarding.is_rtx(c) and c.parameters.get("apt") == main.payloadType), None
        )
        ssrc, rtx_ssrc = forwarding.sender_ssrcs(transceiver.sender)
        dtls = transceiver.sender.transport
        extensions = forwarding.negotiated_extensions(transceiver)
        self.out.configure(
            pt=main.payloadType,
            rtx_pt=rtx.payloadType if rtx else None,
            ssrc=ssrc,
            rtx_ssrc=rtx_ssrc,
            clock_rate=main.clockRate,
            extensions=extensions,
            mid=transceiver.mid,
            send=sending.transport_sender(dtls),
            ready=partial(sending.is_connected, dtls),
            link=link_for(dtls) if feedback.URI in extensions else None,
        )

    @property
    def carrying(self) -> bool:
        """Whether its out stream carries the publication assigned to it (negotiated, subscribed)."""
        return self.publication is not None and self.out.publication is self.publication

    def describe(self, view: View) -> dict[str, Any]:
        """This slot in ``tracks``: what it carries, or null publisher and source when empty.

        ``paused``: a video the link cannot carry; one the page does not show is not "paused".
        """
        publication = self.publication
        paused = publication is not None and self.carrying and self.out.paused and view.shows(publication)
        return {
            "mid": str(self.transceiver.mid),
            "publisher": publication.publisher if publication else None,
            "source": publication.label if publication else None,
            "paused": paused,
        }
