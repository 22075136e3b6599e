"""Relay (SFU) clients of the real server: aiortc peer connections driven over trio WebSockets.

The WebSocket side runs on trio (:mod:`wsclient`); aiortc needs asyncio, so every
:class:`MediaPeer` lives on one background asyncio loop in a thread (:class:`AsyncioThread`)
and the trio side awaits its coroutines through :meth:`AsyncioThread.run` (cancellable: a
``trio.fail_after`` around it cancels the asyncio task too).

A :class:`RelayClient` behaves like the browser client of the relay contract
(``docs/protocol.md``, "Relay negotiation contract"):

- in relay mode (``welcome.mode``, or a later ``mode``) it adds its microphone and camera
  (``SineAudio`` / ``SyntheticVideo``, really encoded by aiortc) and sends the first offer;
- it applies the relay's answers and answers the relay's offers, one signal at a time, in order;
- it is the *polite* side on a collision. The relay ignores a colliding client offer without a
  reply, so the client learns it only from the order of frames: it sends ``ping`` right after
  each offer, and the server handles a client's frames in order (the answer to an offer is
  queued before the ``pong`` of a later ping), so a ``pong`` with the offer still unanswered
  means "ignored". It then rolls back (emulated: aiortc has none, see
  :meth:`MediaPeer.rollback`) and answers the relay's offer; its not yet negotiated microphone
  and camera may ride on the relay's new m-lines in that answer, as a browser's ``addTrack``
  transceivers would, else it offers again;
- it records every frame, the ``tracks`` map (mid → publisher, source) and how many video
  frames it decoded per mid.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio
from aiortc import (
    MediaStreamError,
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from relay_peers import SineAudio, SyntheticVideo
from wsclient import WS, connect, room_ws_url

T = TypeVar("T")
RELAY = "relay"
WELCOME_TIMEOUT = 20.0  # a relay join waits for the relay to open it (and for a worker to be running)


class AsyncioThread:
    """One asyncio event loop in a daemon thread, shared by every aiortc peer of a test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="aiortc-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the asyncio loop and await its result from trio."""
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: object) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        future.add_done_callback(wake)
        try:
            await done.wait()
        except BaseException:
            future.cancel()  # cancels the asyncio task
            raise
        return future.result()

    def close(self) -> None:
        """Cancel what is left on the loop, stop it and join the thread."""

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class MediaPeer:
    """The aiortc side of one client (used only on the asyncio thread).

    ``frames`` counts decoded video frames per mid of the current connection; reading an int
    from it in the trio thread is safe (the GIL makes each ``dict.get`` atomic).
    """

    def __init__(
        self, shade: int = 0, fps: int = 15, size: tuple[int, int] = (160, 120), loud: bool = True
    ) -> None:
        self.shade, self.fps, self.size = shade, fps, size
        self.voice = SineAudio(loud)  # the microphone of the current connection: set voice.loud
        self.pc: RTCPeerConnection | None = None
        self.frames: dict[str, int] = defaultdict(int)
        self.media_added = False
        self._before_offer: tuple[dict[Any, Any], set[str]] = ({}, set())
        self._tasks: set[asyncio.Task[Any]] = set()

    async def reset(self) -> None:
        """A fresh connection (the initial one, or a rollback before any negotiation completed)."""
        old = self.pc
        pc = self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        frames = self.frames = defaultdict(int)
        self.media_added = False

        def on_track(track: MediaStreamTrack) -> None:
            task = asyncio.ensure_future(self._consume(pc, track, frames))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        pc.on("track", on_track)
        if old is not None:
            await old.close()

    def negotiated(self) -> bool:
        return self.pc is not None and self.pc.remoteDescription is not None

    async def needs_offer(self) -> bool:
        """Add the microphone and camera (once); whether some m-line still needs our offer."""
        assert self.pc is not None
        if not self.media_added:
            self.media_added = True
            width, height = self.size
            self.voice = SineAudio(self.voice.loud)  # a fresh track per connection
            self.pc.addTransceiver(self.voice, direction="sendrecv")
            video = SyntheticVideo(fps=self.fps, width=width, height=height, shade=self.shade)
            self.pc.addTransceiver(video, direction="sendrecv")
        return any(t.mid is None for t in self.pc.getTransceivers())

    async def offer(self) -> str:
        assert self.pc is not None
        pc = self.pc
        self._before_offer = (
            {t: (t.mid, t._codecs, t._headerExtensions) for t in pc.getTransceivers()},
            set(pc._RTCPeerConnection__seenMids),
        )
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)

    async def rollback(self) -> None:
        """Undo our pending offer, as ``setLocalDescription({type: "rollback"})`` would.

        aiortc has no rollback. Before any negotiation completed, a fresh connection is the same
        thing. After one, the state our ``createOffer``/``setLocalDescription`` changed is put
        back by hand (aiortc 1.16 internals): the signaling state, the pending local description,
        the mids it gave new transceivers and the codecs it reset on every transceiver.
        """
        assert self.pc is not None
        if not self.negotiated():
            await self.reset()
            await self.needs_offer()
            return
        pc = self.pc
        assert pc.signalingState == "have-local-offer", pc.signalingState
        transceivers, seen = self._before_offer
        for transceiver, (mid, codecs, extensions) in transceivers.items():
            if mid is None and transceiver.mid is not None:
                transceiver._set_mid(None)
                transceiver._set_mline_index(None)
            transceiver._codecs, transceiver._headerExtensions = codecs, extensions
        pc._RTCPeerConnection__seenMids = seen
        pc._RTCPeerConnection__pendingLocalDescription = None
        pc._RTCPeerConnection__setSignalingState("stable")

    async def accept(self, sdp: str) -> None:
        assert self.pc is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def answer(self, sdp: str) -> str:
        assert self.pc is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    def directions(self) -> dict[str, str | None]:
        assert self.pc is not None
        return {str(t.mid): t.currentDirection for t in self.pc.getTransceivers() if t.mid is not None}

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _consume(self, pc: RTCPeerConnection, track: MediaStreamTrack, frames: dict[str, int]) -> None:
        """Decode everything a remote track delivers (audio too: undrained queues only grow)."""
        mid = next(str(t.mid) for t in pc.getTransceivers() if t.receiver.track is track)
        try:
            while True:
                await track.recv()
                if track.kind == "video":
                    frames[mid] += 1
        except MediaStreamError:
            pass


class RelayClient:
    """One participant over the real server: a room WebSocket plus (in relay mode) aiortc."""

    def __init__(self, name: str, ws: WS, welcome: dict[str, Any], aio: AsyncioThread, media: MediaPeer,
                 auto_start: bool) -> None:
        self.name, self.ws, self.welcome, self.aio, self.media = name, ws, welcome, aio, media
        self.auto_start = auto_start
        self.peer_id: str = welcome["peer_id"]
        self.mode: str = welcome["mode"]
        self.log: list[dict[str, Any]] = []  # every frame after welcome, in order
        self.tracks: dict[str, dict[str, str]] = {}  # the latest `tracks`: mid -> {publisher, source}
        self.tracks_log: list[tuple[int, dict[str, dict[str, str]]]] = []  # (log index, map)
        self.relay_offers: list[int] = []  # log indexes of the relay offers, answered
        self.answers = 0  # relay answers applied to our offers
        self.glares = 0  # our offers the relay ignored
        self.offers_before_answer = 0  # relay offers that arrived before the answer to our offer
        self.started = False
        self.pending_offer = False
        self.closed = False
        self._offer_ping = 0
        self._pings = self._pongs = 0
        self._queued: list[tuple[int, str]] = []  # (log index, sdp): relay offers waiting for ours to resolve
        self._changed = trio.Event()
        self._inbox_send, self._inbox = trio.open_memory_channel[tuple[str, Any]](math.inf)

    # --- what tests use ---------------------------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    async def start(self) -> None:
        """Negotiate with the relay now (for a client made with ``auto_start=False``)."""
        await self._inbox_send.send(("start", None))

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(frame)

    async def ping(self) -> int:
        """Send ``ping``; the number of the ``pong`` that will answer it (see :attr:`pongs`)."""
        self._pings += 1
        await self.ws.send({"type": "ping"})
        return self._pings

    @property
    def pongs(self) -> int:
        return self._pongs

    def mark(self) -> int:
        """Where the frame log is now: pass to :meth:`frame_after`."""
        return len(self.log)

    def frames_of(self, type_: str, since: int = 0) -> list[dict[str, Any]]:
        return [f for f in self.log[since:] if f["type"] == type_]

    async def frame_after(
        self, since: int, type_: str, predicate: Callable[[dict[str, Any]], bool] = lambda f: True,
        timeout: float = 10,
    ) -> dict[str, Any]:
        """The first frame of ``type_`` (matching ``predicate``) logged at or after ``since``."""

        def found() -> dict[str, Any] | None:
            return next((f for f in self.log[since:] if f["type"] == type_ and predicate(f)), None)

        await self.wait_for(lambda: found() is not None, timeout, f"a {type_!r} frame")
        frame = found()
        assert frame is not None
        return frame

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait (for frames, not time) until ``predicate()`` holds."""
        try:
            with trio.fail_after(timeout):
                while not predicate():
                    if self.closed:
                        raise AssertionError(f"{self.name}: closed ({self.close_code}) waiting for {what}")
                    changed = self._changed
                    await changed.wait()
        except trio.TooSlowError:
            raise AssertionError(f"{self.name}: no {what} within {timeout} s; {self.describe()}") from None

    async def wait_closed(self, timeout: float = 10) -> int | None:
        await self.wait_for(lambda: self.closed, timeout, "close")
        return self.close_code

    def publishers(self) -> dict[str, list[str]]:
        """publisher -> its sources, from the latest ``tracks``."""
        found: dict[str, list[str]] = defaultdict(list)
        for track in self.tracks.values():
            found[track["publisher"]].append(track["source"])
        return {publisher: sorted(sources) for publisher, sources in found.items()}

    def camera_mid(self, publisher: str) -> str | None:
        mids = [m for m, t in self.tracks.items() if t == {"publisher": publisher, "source": "camera"}]
        assert len(mids) <= 1, f"{self.name}: two camera m-lines for {publisher}: {self.tracks}"
        return mids[0] if mids else None

    def decoded(self, mid: str | None) -> int:
        return 0 if mid is None else self.media.frames.get(mid, 0)

    def describe(self) -> str:
        kinds = [f["type"] if f["type"] != "error" else f"error:{f['code']}" for f in self.log]
        return (
            f"mode={self.mode} started={self.started} pending_offer={self.pending_offer} "
            f"answers={self.answers} relay_offers={len(self.relay_offers)} glares={self.glares} "
            f"offers_before_answer={self.offers_before_answer} frames_received={len(self.log)} "
            f"tracks={self.tracks} frames={dict(self.media.frames)} frames_seen={kinds[-30:]}"
        )

    # --- the client loop --------------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._forward_frames)
            if self.mode == RELAY and self.auto_start:
                await self._start()
            async for kind, item in self._inbox:
                if kind == "frame":
                    self.log.append(item)
                    await self._on_frame(item)
                elif kind == "start":
                    await self._start()
                else:  # closed
                    self.closed = True
                    self._notify()
                    break
                self._notify()
            nursery.cancel_scope.cancel()

    async def _forward_frames(self) -> None:
        try:
            async for raw in self.ws._out:
                frame = json.loads(raw)
                assert isinstance(frame, dict), frame
                await self._inbox_send.send(("frame", frame))
        finally:
            with trio.CancelScope(shield=True):
                await self._inbox_send.send(("closed", None))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "signal" and frame["from"] == RELAY:
            description = frame["data"].get("description")
            if description is None:
                return  # a candidate: the relay's are in its SDP already
            if description["type"] == "answer":
                assert self.pending_offer, f"{self.name}: a relay answer without an offer of ours"
                if self._queued:
                    self.offers_before_answer += 1  # a relay offer overtook the answer to ours
                await self.aio.run(self.media.accept(description["sdp"]))
                self.pending_offer = False
                self.answers += 1
            else:
                assert description["type"] == "offer", frame
                self._queued.append((len(self.log) - 1, description["sdp"]))
            await self._settle()
        elif kind == "tracks":
            self.tracks = {  # empty receive slots left out: they carry nothing
                t["mid"]: {"publisher": t["publisher"], "source": t["source"]}
                for t in frame["tracks"]
                if t["publisher"] is not None
            }
            self.tracks_log.append((len(self.log) - 1, self.tracks))
        elif kind == "mode":
            self.mode = frame["mode"]
            if self.mode == RELAY and self.auto_start:
                await self._start()
        elif kind == "pong":
            self._pongs += 1
            if self.pending_offer and self._pongs >= self._offer_ping:
                await self._ignored()
        elif kind == "error" and self.pending_offer:
            raise AssertionError(f"{self.name}: error while our offer was out: {frame}; {self.describe()}")

    async def _start(self) -> None:
        if self.started:
            return
        assert self.mode == RELAY, f"{self.name}: cannot negotiate in {self.mode} mode"
        self.started = True
        await self._settle()

    async def _settle(self) -> None:
        """Answer the relay's queued offers (unless our own is out), then offer what is unsent."""
        while self._queued and not self.pending_offer:
            index, sdp = self._queued.pop(0)
            answer = await self.aio.run(self.media.answer(sdp))
            await self.ws.send({"type": "signal", "to": RELAY,
                                "data": {"description": {"type": "answer", "sdp": answer}}})
            self.relay_offers.append(index)
        if self.started and not self.pending_offer and await self.aio.run(self.media.needs_offer()):
            sdp = await self.aio.run(self.media.offer())
            await self.ws.send({"type": "signal", "to": RELAY,
                                "data": {"description": {"type": "offer", "sdp": sdp}}})
            self.pending_offer = True
            self._offer_ping = await self.ping()

    async def _ignored(self) -> None:
        """The relay ignored our offer (glare): roll back and answer its offer instead."""
        self.pending_offer = False
        self.glares += 1
        if not self._queued:
            # The relay keeps an offer of its own out (that is why it ignored ours), and the server
            # queues that offer before the `pong` that told us: it must be here by now.
            raise AssertionError(f"{self.name}: the relay ignored our offer but sent no offer of its own; "
                                 f"{self.describe()}")
        await self.aio.run(self.media.rollback())
        await self._settle()  # our unsent media may ride on the relay's new m-lines, else we offer again


@asynccontextmanager
async def relay_client(
    http_url: str, code: str, token: str, aio: AsyncioThread, *, name: str = "client", shade: int = 0,
    auto_start: bool = True, loud: bool = True,
) -> AsyncIterator[RelayClient]:
    """Join ``code`` and run a :class:`RelayClient` until the block ends (then leave)."""
    media = MediaPeer(shade=shade, loud=loud)
    await aio.run(media.reset())
    try:
        async with connect(room_ws_url(http_url, code), token) as ws, trio.open_nursery() as nursery:
            welcome = await ws.expect("welcome", timeout=WELCOME_TIMEOUT)
            client = RelayClient(name, ws, welcome, aio, media, auto_start)
            nursery.start_soon(client.run)
            yield client
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await aio.run(media.close())


async def until(predicate: Callable[[], bool], timeout: float, what: Callable[[], str] | str) -> None:
    """Poll ``predicate`` (for state trio is not told about, like decoded frames) with a deadline."""
    try:
        with trio.fail_after(timeout):
            while not predicate():
                await trio.sleep(0.05)
    except trio.TooSlowError:
        raise AssertionError(f"no {what if isinstance(what, str) else what()} within {timeout} s") from None
