"""RTCP reports on the relay's clock instead of a timer task per sender and receiver (aiortc 1.16.0).

Stock, ``RTCRtpSender.send`` and ``RTCRtpReceiver.receive`` each start ``_run_rtcp``: a task
that sleeps 0.5–1.5 s (RFC 3550's randomised interval), wakes up and sends one report — an SR
and an SDES for a sender, an RR for a receiver. A relay connection has a dozen receive slots
(each a sender, most of them idle) and a receiver per published track, so a worker woke up
about twelve times a second per participant for reports, and each wake-up costs far more than
the report: at one subscriber those timers were a sixth of the worker's CPU.

- :func:`take_over` replaces one sender's or receiver's ``_run_rtcp`` (on the instance, before
  aiortc starts it) with a task that keeps only stock's life cycle: the started/exited events
  that ``stop`` waits on and, for a sender, the RTCP BYE at the end. It never wakes up until
  it is cancelled.
- :func:`sender_report` and :func:`receiver_report` build what stock's loop would send at that
  moment, and update the fields stock keeps for the round-trip time (``__lsr``, ``__lsr_time``);
  the relay's pacer sends them when due (``meet.relay.peer``), every :func:`interval`.

What it relies on is verified by ``meet.relay.compat.check``, with the rest: the names in
:data:`RTCP_NAMES`, the instance fields in :data:`SENDER_FIELDS` and :data:`RECEIVER_FIELDS`,
and the stock ``send``/``receive`` that start ``_run_rtcp`` and ``stop`` that waits on it.
"""

from __future__ import annotations

import asyncio
import random
import time
import types

import aiortc.rtp as _rtp
from aiortc import RTCRtpReceiver, RTCRtpSender

_SENDER = "_RTCRtpSender__"
_RECEIVER = "_RTCRtpReceiver__"
#: What the functions below read or write on instances (checked by ``compat.check``).
SENDER_FIELDS = tuple(
    _SENDER + name
    for name in ("rtcp_task", "rtcp_started", "rtcp_exited", "cname", "lsr", "lsr_time", "ntp_timestamp",
                 "rtp_timestamp", "packet_count", "octet_count")
)  # fmt: skip
RECEIVER_FIELDS = tuple(
    _RECEIVER + name
    for name in ("rtcp_task", "rtcp_started", "rtcp_exited", "rtcp_ssrc", "remote_streams", "lsr", "lsr_time")
)
RTCP_NAMES = ("RtcpSrPacket", "RtcpSenderInfo", "RtcpSdesPacket", "RtcpSourceInfo", "RtcpRrPacket",
              "RtcpReceiverInfo", "RtcpByePacket")  # fmt: skip
SDES_CNAME = 1  # RFC 3550's CNAME item


def interval() -> float:
    """Seconds until the next report: RFC 3550's 0.5–1.5 × the interval, as stock randomises it."""
    return 0.5 + random.random()


def take_over(endpoint: RTCRtpSender | RTCRtpReceiver) -> None:
    """Give ``endpoint``'s reports to the relay: its own ``_run_rtcp`` will not loop on a timer.

    Call it before the endpoint starts (``send``/``receive``: aiortc's connect task, which
    ``setRemoteDescription``/``setLocalDescription`` only schedule). Raises RuntimeError after.
    """
    prefix = _SENDER if isinstance(endpoint, RTCRtpSender) else _RECEIVER
    if getattr(endpoint, prefix + "rtcp_task") is not None:
        raise RuntimeError(f"{type(endpoint).__name__}'s RTCP task is already running")
    endpoint._run_rtcp = types.MethodType(_quiet_sender if prefix == _SENDER else _quiet_receiver, endpoint)  # type: ignore[method-assign]


async def _quiet_sender(sender: RTCRtpSender) -> None:
    """Stock ``RTCRtpSender._run_rtcp`` without its reports: started, cancelled, BYE, exited."""
    getattr(sender, _SENDER + "rtcp_started").set()
    await _until_cancelled()
    await sender._send_rtcp([_rtp.RtcpByePacket(sources=[sender._ssrc])])
    getattr(sender, _SENDER + "rtcp_exited").set()


async def _quiet_receiver(receiver: RTCRtpReceiver) -> None:
    """Stock ``RTCRtpReceiver._run_rtcp`` without its reports: started, cancelled, exited."""
    getattr(receiver, _RECEIVER + "rtcp_started").set()
    await _until_cancelled()
    getattr(receiver, _RECEIVER + "rtcp_exited").set()


async def _until_cancelled() -> None:
    try:
        await asyncio.get_running_loop().create_future()
    except asyncio.CancelledError:
        pass  # as stock: stop() cancels the task and waits for "exited"


def sender_report(sender: RTCRtpSender, info: tuple[int, int, int, int]) -> bytes:
    """The SR (and SDES CNAME) stock would send now, from ``info``: (ntp, rtp timestamp, packets, octets).

    ``info`` describes what the relay forwarded on this sender, so the SR matches the stream
    (stock's own counters only see what aiortc's encoder path sent: nothing).
    """
    ntp, rtp_timestamp, packets, octets = info
    setattr(sender, _SENDER + "ntp_timestamp", ntp)
    setattr(sender, _SENDER + "rtp_timestamp", rtp_timestamp)
    setattr(sender, _SENDER + "packet_count", packets)
    setattr(sender, _SENDER + "octet_count", octets)
    # stock's RTT from the subscriber's receiver reports compares their LSR with these
    setattr(sender, _SENDER + "lsr", (ntp >> 16) & 0xFFFFFFFF)
    setattr(sender, _SENDER + "lsr_time", time.time())
    ssrc = sender._ssrc
    report = _rtp.RtcpSrPacket(
        ssrc=ssrc,
        sender_info=_rtp.RtcpSenderInfo(
            ntp_timestamp=ntp,
            rtp_timestamp=rtp_timestamp,
            packet_count=packets & 0xFFFFFFFF,
            octet_count=octets & 0xFFFFFFFF,
        ),
    )
    data = bytes(report)
    cname = getattr(sender, _SENDER + "cname")
    if cname is not None:
        item = (SDES_CNAME, cname.encode("utf8"))
        data += bytes(_rtp.RtcpSdesPacket(chunks=[_rtp.RtcpSourceInfo(ssrc=ssrc, items=[item])]))
    return data


def receiver_report(receiver: RTCRtpReceiver) -> bytes | None:
    """The RR stock would send now about every stream ``receiver`` gets; None before any."""
    rtcp_ssrc = getattr(receiver, _RECEIVER + "rtcp_ssrc")
    streams = getattr(receiver, _RECEIVER + "remote_streams")
    if rtcp_ssrc is None or not streams:
        return None
    last_sr, last_sr_time = getattr(receiver, _RECEIVER + "lsr"), getattr(receiver, _RECEIVER + "lsr_time")
    now = time.time()
    reports = []
    for ssrc, stream in streams.items():
        lsr = dlsr = 0
        if ssrc in last_sr:
            lsr = last_sr[ssrc]
            delay = now - last_sr_time[ssrc]
            if 0 < delay < 65536:
                dlsr = int(delay * 65536)
        reports.append(
            _rtp.RtcpReceiverInfo(
                ssrc=ssrc,
                fraction_lost=stream.fraction_lost,
                packets_lost=stream.packets_lost,
                highest_sequence=stream.max_seq,
                jitter=stream.jitter,
                lsr=lsr,
                dlsr=dlsr,
            )
        )
    return bytes(_rtp.RtcpRrPacket(ssrc=rtcp_ssrc, reports=reports))
