"""WebSocket signaling benchmark for meet: join latency, chat fan-out, memory per connection.

Runs the real server (``python -m meet serve``) as a separate process with a throwaway data
folder, exactly like bench/http.py (whose helpers it imports), and drives it over loopback
with a minimal WebSocket client written on trio (trio-websocket costs too much CPU per frame
for hundreds of connections on a small machine). Each run uses a fresh server process:

1. **Memory**: server RSS (``VmRSS``) before and after opening ``--clients`` idle room
   connections (``--idle-room-size`` per room), divided by ``--clients``.
2. **Join latency**: with those connections still open (and answering the server's ``ping``
   frames), ``--joins`` extra connections join one after another, each into the next room;
   the time from starting the TCP connection to receiving the ``welcome`` frame is measured,
   then the connection leaves (close handshake).
3. **Chat fan-out**: ``--room-size`` connections in one room; ``--senders`` of them post
   ``chat`` messages at a steady total rate carrying their send time (same process, same
   clock), and every member's reception is timed. The rate is stepped up until p99 latency
   exceeds ``--max-p99-ms``, messages go missing, a connection drops or the senders fall
   behind; the highest step that passed is the sustainable rate.

The table at the end shows the median of every figure over ``--runs`` runs. Nothing here
asserts a timing; it only reports. See bench/README.md.

    python bench/signaling.py [--runs 3] [--clients 500] [--room-size 200] [--json out.json]
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder is sys.path[0], and bench/http.py would shadow the stdlib
# package ``http`` for everything imported afterwards (http.client, ...). Drop it first.
_HERE = os.path.dirname(os.path.realpath(__file__))
from _sibling import load_sibling  # before bench/ leaves sys.path

sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]

import argparse
import base64
import hashlib
import json
import math
import platform
import resource
import shlex
import shutil
import signal
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from meet import __version__ as meet_version
from meet.config import AuthConfig

hb = load_sibling("http.py")
HOST: str = hb.HOST
NCPU: int = hb.NCPU
CpuSnapshot = hb.CpuSnapshot
percentile = hb.percentile
_fmt = hb._fmt

# Settings written into the bench's [rooms] section so that meet's abuse limits don't cut in.
ROOM_SETTINGS = {
    "max_participants": 1000,  # the largest allowed (default 50): rooms of 200, 10 + joiners
    "message_rate": 1_000_000.0,  # default 20/s per connection: senders go well past that
    "message_burst": 1_000_000,  # default 200
    # Every client is 127.0.0.1 and shares a few users' tokens (defaults: 16 per user, 64 per address).
    "max_connections_per_user": 1_000_000,
    "max_connections_per_address": 1_000_000,
}
ROOM_CAPACITY = 1000
CLIENT_BUSY_WARN = 70.0  # % of one core
START_DELIVERIES = 800.0  # default first fan-out step, in deliveries/s (divided by the room size)
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
SERVER_PING = b'{"type":"ping"}'  # meet's application-level heartbeat (protocol.Ping)
PONG_TEXT = b'{"type":"pong"}'
WELCOME_PREFIX = b'{"type":"welcome"'
ERROR_PREFIX = b'{"type":"error"'
CHAT_PREFIX = b'{"type":"chat"'
MARK = b'"text":"bench:'  # chat text: bench:<step>:<seq>:<time.monotonic() at send>
CONNECT_TIMEOUT = 15.0
CLOSE_TIMEOUT = 2.0


# --------------------------------------------------------------------------- WebSocket client


class WsError(Exception):
    pass


def _mask(payload: bytes, key: bytes) -> bytes:
    """XOR with the 4-byte key, via one big integer (fast for small frames)."""
    n = len(payload)
    if not n:
        return payload
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + _mask(payload, key)


class WsClient:
    """A minimal RFC 6455 client on one trio TCP stream: no extensions, text frames.

    Much cheaper per frame than trio-websocket (no per-connection background task, no wsproto
    event objects), so hundreds of connections and tens of thousands of frames per second
    fit in one bench process next to the server.
    """

    def __init__(self, stream: trio.SocketStream, buf: bytearray) -> None:
        self.stream = stream
        self.buf = buf
        self.queue: list[tuple[int, bytes]] = []  # parsed messages not yet handed out
        self.fragments: tuple[int, bytearray] | None = None
        self.send_lock = trio.Lock()  # the reader's pongs and a sender may send at once
        self.closed = False
        self._parse()  # frames that came in with the handshake response

    @classmethod
    async def connect(cls, port: int, path: str, token: str) -> WsClient:
        stream = await trio.open_tcp_stream(HOST, port)  # sets TCP_NODELAY
        try:
            key = base64.b64encode(os.urandom(16))
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
                f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n"
                "User-Agent: meet-bench/1\r\n\r\n"
            )
            await stream.send_all(request.encode("latin-1"))
            buf = bytearray()
            while (end := buf.find(b"\r\n\r\n")) < 0:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    raise WsError("closed during the handshake")
                buf += chunk
                if len(buf) > 65536:
                    raise WsError("handshake response too large")
            head = bytes(buf[:end]).decode("latin-1")
            status = head.split(" ", 2)[1] if " " in head else "?"
            if status != "101":
                raise WsError(f"handshake answered HTTP {status}")
            accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
            if accept not in head:
                raise WsError("wrong Sec-WebSocket-Accept")
            del buf[: end + 4]
        except BaseException:
            stream.socket.close()
            raise
        return cls(stream, buf)

    def _parse(self) -> None:
        """Move every complete message in the buffer to the queue."""
        buf, pos, n = self.buf, 0, len(self.buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b1 & 0x80:
                raise WsError("masked frame from the server")
            length, head = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            end = pos + head + length
            if end > n:
                break
            opcode, fin = b0 & 0x0F, b0 & 0x80
            payload = bytes(buf[pos + head : end])
            pos = end
            if opcode >= OP_CLOSE:  # control frames are never fragmented
                self.queue.append((opcode, payload))
            elif opcode == OP_CONT:
                if self.fragments is None:
                    raise WsError("continuation without a first fragment")
                self.fragments[1].extend(payload)
                if fin:
                    self.queue.append((self.fragments[0], bytes(self.fragments[1])))
                    self.fragments = None
            elif fin:
                self.queue.append((opcode, payload))
            else:
                self.fragments = (opcode, bytearray(payload))
        if pos:
            del buf[:pos]

    async def receive(self) -> list[tuple[int, bytes]]:
        """The messages that have arrived (at least one), as (opcode, payload)."""
        while not self.queue:
            chunk = await self.stream.receive_some(262144)
            if not chunk:
                raise WsError("connection closed without a close frame")
            self.buf += chunk
            self._parse()
        out, self.queue = self.queue, []
        return out

    def unread(self, messages: list[tuple[int, bytes]]) -> None:
        self.queue[:0] = messages

    async def send_frame(self, opcode: int, payload: bytes) -> None:
        frame = client_frame(opcode, payload)
        async with self.send_lock:
            await self.stream.send_all(frame)

    async def send_text(self, text: str) -> None:
        await self.send_frame(OP_TEXT, text.encode())

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Close handshake (1000), waiting up to ``timeout`` for the server's close or EOF."""
        if self.closed:
            return
        try:
            with trio.move_on_after(timeout):
                await self.send_frame(OP_CLOSE, (1000).to_bytes(2, "big"))
                while True:
                    if any(op == OP_CLOSE for op, _ in await self.receive()):
                        break
        except (WsError, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.stream.socket.close()


def close_code(payload: bytes) -> str:
    if len(payload) >= 2:
        reason = payload[2:].decode(errors="replace")
        return f"close {int.from_bytes(payload[:2], 'big')}" + (f" ({reason})" if reason else "")
    return "close (no code)"


async def join_room(port: int, code: str, token: str) -> WsClient:
    """Connect to a room and wait for ``welcome``; frames after it stay queued."""
    ws = await WsClient.connect(port, f"/api/rooms/{code}/ws", token)
    try:
        while True:
            messages = await ws.receive()
            for i, (op, payload) in enumerate(messages):
                if op == OP_TEXT and payload.startswith(WELCOME_PREFIX):
                    ws.unread(messages[i + 1 :])
                    return ws
                if op == OP_TEXT and payload.startswith(ERROR_PREFIX):
                    raise WsError(f"refused: {payload[:200].decode(errors='replace')}")
                if op == OP_CLOSE:
                    raise WsError(f"closed before welcome: {close_code(payload)}")
    except BaseException:
        ws.abort()
        raise


# --------------------------------------------------------------------------- connection sets


TextHandler = Callable[[bytes, float], None]


class Crowd:
    """Room connections kept open in the background: each has a reader task that answers
    the server's ``ping`` frames with ``pong`` and hands other text frames to ``on_text``."""

    def __init__(self, port: int, on_text: TextHandler | None = None) -> None:
        self.port = port
        self.on_text = on_text
        self.clients: list[WsClient] = []
        self.lost: Counter[str] = Counter()  # connections the server closed, by reason
        self.errors: Counter[str] = Counter()  # error frames received
        self.pongs = 0
        self.scope = trio.CancelScope()

    @property
    def lost_total(self) -> int:
        return sum(self.lost.values())

    async def run(self, *, task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED) -> None:
        with self.scope:
            async with trio.open_nursery() as nursery:
                task_status.started(nursery)
                await trio.sleep_forever()

    async def open(self, nursery: trio.Nursery, specs: list[tuple[str, str]], concurrency: int) -> None:
        """Open one connection per (room code, token), ``concurrency`` handshakes at a time."""
        limiter = trio.CapacityLimiter(concurrency)

        async def one(code: str, token: str) -> None:
            async with limiter:
                with trio.fail_after(CONNECT_TIMEOUT):
                    ws = await join_room(self.port, code, token)
            self.clients.append(ws)
            nursery.start_soon(self._read, ws)

        async with trio.open_nursery() as opener:
            for code, token in specs:
                opener.start_soon(one, code, token)

    async def _read(self, ws: WsClient) -> None:
        on_text = self.on_text
        try:
            while True:
                messages = await ws.receive()
                now = time.monotonic()
                for op, payload in messages:
                    if op == OP_TEXT:
                        if payload == SERVER_PING:
                            self.pongs += 1
                            await ws.send_frame(OP_TEXT, PONG_TEXT)
                        elif payload.startswith(ERROR_PREFIX):
                            self.errors[payload[:120].decode(errors="replace")] += 1
                        elif on_text is not None:
                            on_text(payload, now)
                    elif op == OP_PING:
                        await ws.send_frame(OP_PONG, payload)
                    elif op == OP_CLOSE:
                        self.lost[close_code(payload)] += 1
                        return
        except (WsError, OSError, trio.BrokenResourceError) as exc:
            if not ws.closed:
                self.lost[type(exc).__name__ + (f": {exc}" if isinstance(exc, WsError) else "")] += 1
        except trio.ClosedResourceError:
            pass
        finally:
            ws.abort()

    def close_all(self) -> None:
        """Drop every connection at once (the server sees them disconnect)."""
        self.scope.cancel()
        for ws in self.clients:
            ws.abort()


# --------------------------------------------------------------------------- measurements


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_files_limit(pid: int | str = "self") -> str:
    try:
        with open(f"/proc/{pid}/limits") as fh:
            for line in fh:
                if line.startswith("Max open files"):
                    soft, hard = line.split()[3:5]
                    return f"{soft}/{hard}"
    except OSError:
        pass
    return "unknown"


def raise_nofile_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (children such as the server inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def cpu_window(a: Any, b: Any, count: int) -> dict[str, float | None]:
    """hb.cpu_figures plus server CPU per counted item in microseconds."""
    figures: dict[str, float | None] = hb.cpu_figures(a, b, count)
    per = figures.pop("server_cpu_ms_per_req")
    figures["server_cpu_us_per_item"] = None if per is None else per * 1000
    return figures


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


async def wait_settled(pid: int, quiet: float = 0.3, limit: float = 10.0) -> None:
    """Wait until the server has used < 5% of a core over ``quiet`` seconds (at most ``limit``)."""
    with trio.move_on_after(limit):
        while True:
            before = hb.proc_cpu_seconds(pid)
            await trio.sleep(quiet)
            if hb.proc_cpu_seconds(pid) - before < 0.05 * quiet + 1.5 / hb.CLK_TCK:
                return


@dataclass
class Setup:
    port: int
    pid: int
    tokens: list[str]
    idle_rooms: list[str]


async def http_json(conn: Any, method: str, path: str, token: str, body: dict[str, Any] | None = None) -> Any:
    headers = [("Authorization", f"Bearer {token}"), ("Accept", "application/json")]
    data = b""
    if body is not None:
        headers.append(("Content-Type", "application/json"))
        data = json.dumps(body).encode()
    wire = hb.Req(method, path, tuple(headers), data).wire(f"{HOST}:{conn.port}")
    with trio.fail_after(30):
        status, raw = await conn.request(wire)
    if status not in (200, 201):
        raise SystemExit(f"bench: {method} {path} failed: HTTP {status} {raw[:300]!r}")
    return json.loads(raw)


async def create_rooms(port: int, token: str, count: int, prefix: str) -> list[str]:
    conn = hb.RawConnection(HOST, port)
    try:
        codes = []
        for i in range(count):
            body = {"title": f"{prefix} {i}", "max_participants": ROOM_CAPACITY}
            codes.append((await http_json(conn, "POST", "/api/rooms", token, body))["room"]["code"])
        return codes
    finally:
        conn.close()


async def sign_in(port: int, users: list[str]) -> list[str]:
    conn = hb.RawConnection(HOST, port)
    try:
        tokens = []
        for name in users:
            with trio.fail_after(60):
                status, raw = await conn.request(hb.login_req(name).wire(f"{HOST}:{port}"))
            if status != 200:
                raise SystemExit(f"bench: login as {name} failed: HTTP {status} {raw[:300]!r}")
            tokens.append(json.loads(raw)["token"])
        return tokens
    finally:
        conn.close()


# -- 1 + 2: memory of idle connections, then join latency among them ----------------------


async def idle_and_joins(args: argparse.Namespace, s: Setup) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n, rooms = args.clients, s.idle_rooms

    # Warm-up: the first connections load code paths and allocate caches; not counted.
    for i in range(args.warmup_joins):
        ws = await join_room(s.port, rooms[i % len(rooms)], s.tokens[i % len(s.tokens)])
        await ws.close()
    await wait_settled(s.pid)

    crowd = Crowd(s.port)
    async with trio.open_nursery() as root:
        nursery = await root.start(crowd.run)
        rss0 = proc_rss_kib(s.pid)
        a = CpuSnapshot.take(s.pid)
        specs = [(rooms[i % len(rooms)], s.tokens[i % len(s.tokens)]) for i in range(n)]
        await crowd.open(nursery, specs, args.connect_concurrency)
        b = CpuSnapshot.take(s.pid)
        await wait_settled(s.pid)  # peer-joined broadcasts delivered
        rss1 = proc_rss_kib(s.pid)
        out.update(
            rss_before_mib=rss0 / 1024,
            rss_after_mib=rss1 / 1024,
            rss_per_conn_kib=(rss1 - rss0) / n,
            open_s=b.at - a.at,
            open_server_cpu_ms_per_conn=(b.server_s - a.server_s) * 1000 / n,
            open_client_cpu_pct=100 * (b.client_s - a.client_s) / max(b.at - a.at, 1e-9),
        )
        print(
            f"  idle: {n} connections in {len(rooms)} rooms opened in {out['open_s']:.1f} s; "
            f"server RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB = {out['rss_per_conn_kib']:.1f} KiB/connection",
            flush=True,
        )

        # Join series: one at a time, into the rooms in turn, each leaving again.
        latencies: list[float] = []
        failures: Counter[str] = Counter()
        a = CpuSnapshot.take(s.pid)
        for i in range(args.joins):
            code, token = rooms[i % len(rooms)], s.tokens[(n + i) % len(s.tokens)]
            t0 = time.monotonic()
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    ws = await join_room(s.port, code, token)
            except (WsError, OSError, trio.TooSlowError) as exc:
                failures[type(exc).__name__ + (f": {exc}" if isinstance(exc, WsError) else "")] += 1
                continue
            latencies.append(time.monotonic() - t0)
            await ws.close()
        b = CpuSnapshot.take(s.pid)
        await wait_settled(s.pid)  # the last leave's work counts too
        settled = CpuSnapshot.take(s.pid)
        latencies.sort()
        cpu = cpu_window(a, b, len(latencies))
        out.update(
            join_p50_ms=_ms(percentile(latencies, 0.50)),
            join_p99_ms=_ms(percentile(latencies, 0.99)),
            join_max_ms=_ms(latencies[-1] if latencies else None),
            joins_per_s=len(latencies) / max(b.at - a.at, 1e-9),
            join_server_cpu_ms=(settled.server_s - a.server_s) * 1000 / len(latencies) if latencies else None,
            join_server_cpu_pct=cpu["server_cpu_pct"],
            join_client_cpu_pct=cpu["client_cpu_pct"],
            join_other_cpu_pct=cpu["other_cpu_pct"],
            joins=len(latencies),
            join_failures=dict(failures),
            idle_lost=dict(crowd.lost),
            idle_still_open=n - crowd.lost_total,
            idle_pongs=crowd.pongs,
            idle_error_frames=dict(crowd.errors),
        )
        print(
            f"  joins: {len(latencies)} with {n - crowd.lost_total} others connected: "
            f"p50 {_fmt(out['join_p50_ms'])} ms, p99 {_fmt(out['join_p99_ms'])} ms, "
            f"max {_fmt(out['join_max_ms'])} ms, server CPU {_fmt(out['join_server_cpu_ms'], 2)} ms/join, "
            f"client CPU {cpu['client_cpu_pct']:.0f}%, pongs sent {crowd.pongs}"
            + (f", failures {dict(failures)}" if failures else "")
            + (f", idle connections lost {dict(crowd.lost)}" if crowd.lost else ""),
            flush=True,
        )
        crowd.close_all()
        root.cancel_scope.cancel()
    await wait_settled(s.pid)
    return out


# -- 3: chat fan-out ----------------------------------------------------------------------


@dataclass
class Step:
    id: int
    rate: float  # messages per second offered (all senders together)
    sent: int = 0
    received: int = 0
    latencies: list[float] = field(default_factory=list)
    max_lag: float = 0.0  # senders' worst delay behind schedule


class FanOut:
    """Counts and times the bench chat frames every member receives."""

    def __init__(self) -> None:
        self.steps: dict[int, Step] = {}
        self.other_chat = 0

    def on_text(self, payload: bytes, now: float) -> None:
        if not payload.startswith(CHAT_PREFIX):
            return  # peer-joined while the room fills, ...
        i = payload.find(MARK)
        if i < 0:
            self.other_chat += 1
            return
        i += len(MARK)
        step_id, _seq, sent_at = payload[i : payload.index(b'"', i)].split(b":")
        step = self.steps.get(int(step_id))
        if step is not None:
            step.received += 1
            step.latencies.append(now - float(sent_at))


async def send_chats(ws: WsClient, step: Step, rate: float, start: float, end: float, phase: float) -> None:
    """Open loop: message i is due at start + phase + i / rate (trio clock)."""
    i = 0
    while (due := start + phase + i / rate) < end:
        now = trio.current_time()
        if due > now:
            await trio.sleep_until(due)
        else:
            step.max_lag = max(step.max_lag, now - due)
        text = f"bench:{step.id}:{i}:{time.monotonic():.6f}"
        await ws.send_frame(OP_TEXT, json.dumps({"type": "chat", "text": text}).encode())
        step.sent += 1
        i += 1


async def fan_out(args: argparse.Namespace, s: Setup, run_index: int) -> dict[str, Any]:
    size = args.room_size
    code = (await create_rooms(s.port, s.tokens[0], 1, f"fan-out run {run_index + 1}"))[0]
    fan = FanOut()
    crowd = Crowd(s.port, fan.on_text)
    bound = args.max_p99_ms / 1000
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    first_fail: dict[str, Any] | None = None
    async with trio.open_nursery() as root:
        nursery = await root.start(crowd.run)
        t0 = trio.current_time()
        specs = [(code, s.tokens[i % len(s.tokens)]) for i in range(size)]
        await crowd.open(nursery, specs, args.connect_concurrency)
        fill_s = trio.current_time() - t0
        await wait_settled(s.pid)
        senders = crowd.clients[: args.senders]
        print(
            f"  fan-out: {size} members joined one room in {fill_s:.1f} s; {len(senders)} senders", flush=True
        )

        async def run_step(rate: float, retry: bool = False) -> dict[str, Any]:
            step = Step(id=len(fan.steps) + 1, rate=rate)
            fan.steps[step.id] = step
            lost_before = crowd.lost_total
            a = CpuSnapshot.take(s.pid)
            start = trio.current_time() + 0.02
            end = start + args.step_duration
            per_sender = rate / len(senders)
            async with trio.open_nursery() as n:
                for k, ws in enumerate(senders):
                    n.start_soon(send_chats, ws, step, per_sender, start, end, k / rate)
            sent_done = trio.current_time()
            expected = step.sent * size
            drain_deadline = sent_done + max(1.0, 2 * bound)
            while (
                step.received < expected
                and trio.current_time() < drain_deadline
                and crowd.lost_total == lost_before
            ):
                await trio.sleep(0.01)
            b = CpuSnapshot.take(s.pid)
            lat = sorted(step.latencies)
            cpu = cpu_window(a, b, step.received)
            r: dict[str, Any] = {
                "step": step.id,
                "rate_msgs_per_s": rate,
                "sent": step.sent,
                "expected": expected,
                "delivered": step.received,
                "deliveries_per_s": step.received / args.step_duration,
                "p50_ms": _ms(percentile(lat, 0.50)),
                "p99_ms": _ms(percentile(lat, 0.99)),
                "max_ms": _ms(lat[-1] if lat else None),
                "sender_max_lag_ms": step.max_lag * 1000,
                "drain_ms": (b.at - sent_done) * 1000,
                "lost": crowd.lost_total - lost_before,
                **cpu,
                "server_cpu_ms_per_message": (b.server_s - a.server_s) * 1000 / step.sent
                if step.sent
                else None,
            }
            problems = []
            if r["lost"]:
                problems.append(f"{r['lost']} connections dropped {dict(crowd.lost)}")
            if step.received < expected:
                problems.append(f"{expected - step.received} of {expected} not delivered after drain")
            if r["p99_ms"] is not None and r["p99_ms"] > args.max_p99_ms:
                problems.append(f"p99 {r['p99_ms']:.0f} ms > {args.max_p99_ms:g} ms")
            if step.max_lag > bound:
                problems.append(f"senders fell {step.max_lag * 1000:.0f} ms behind schedule")
            if expected == 0:
                problems.append("nothing sent")
            r["ok"] = not problems
            r["problems"] = problems
            r["client_bound"] = (r["client_cpu_pct"] or 0) >= 90
            step.latencies = []  # free the samples; the figures are kept
            print(
                f"  {'R' if retry else ' '} {rate:7.1f} msg/s -> {r['deliveries_per_s']:8.0f} deliveries/s  "
                f"p50 {_fmt(r['p50_ms']):>6} p99 {_fmt(r['p99_ms']):>7} ms  "
                f"server {_fmt(r['server_cpu_us_per_item'], 1):>5} us/delivery ({r['server_cpu_pct']:.0f}% of a core)  "
                f"client {r['client_cpu_pct']:.0f}%  other {_fmt(r['other_cpu_pct'], 0)}%  "
                + ("ok" if r["ok"] else "FAIL: " + "; ".join(problems)),
                flush=True,
            )
            # Before the next step, let a backlog drain so it doesn't count against it.
            with trio.move_on_after(10):
                while step.received < step.sent * size and crowd.lost_total == lost_before:
                    await trio.sleep(0.02)
            await wait_settled(s.pid, quiet=0.2, limit=3)
            return r

        # Ladder: multiply the rate until a step fails, then bisect (geometric mean) between
        # the best pass and the lowest failure up to --refine times.
        async def measure(rate: float) -> dict[str, Any]:
            """One step, repeated up to --retries times while it fails: one noisy step
            (another process taking the CPU) should not end the ladder."""
            r = await run_step(rate)
            steps.append(r)
            for _ in range(args.retries):
                if r["ok"] or r["lost"] or len(steps) >= args.max_steps:
                    break
                r = await run_step(rate, retry=True)
                r["retry"] = True
                steps.append(r)
            return r

        rate, refined = args.start_rate, 0
        while len(steps) < args.max_steps:
            r = await measure(rate)
            if r["ok"]:
                if best is None or rate > best["rate_msgs_per_s"]:
                    best = r
            elif first_fail is None or rate < first_fail["rate_msgs_per_s"]:
                first_fail = r
            if r["lost"]:
                break  # the room is no longer whole
            if first_fail is None:
                if r["client_bound"]:
                    break  # the bench client is the limit: higher steps would measure it
                rate *= args.step_factor
                continue
            if best is None or refined >= args.refine:
                break
            refined += 1
            rate = math.sqrt(best["rate_msgs_per_s"] * first_fail["rate_msgs_per_s"])
        print(
            f"  fan-out: {len(steps)} steps, pongs sent {crowd.pongs}, connections lost {crowd.lost_total}"
            + (f", error frames {dict(crowd.errors)}" if crowd.errors else ""),
            flush=True,
        )
        crowd.close_all()
        root.cancel_scope.cancel()

    out: dict[str, Any] = {
        "fill_s": fill_s,
        "steps": steps,
        "first_fail": first_fail,
        "best": best,
        "fan_pongs": crowd.pongs,
        "fan_lost": dict(crowd.lost),
        "fan_error_frames": dict(crowd.errors),
    }
    if best is not None:
        out.update(
            fan_rate_msgs_per_s=best["rate_msgs_per_s"],
            fan_deliveries_per_s=best["deliveries_per_s"],
            fan_p50_ms=best["p50_ms"],
            fan_p99_ms=best["p99_ms"],
            fan_server_cpu_us_per_delivery=best["server_cpu_us_per_item"],
            fan_server_cpu_ms_per_message=best["server_cpu_ms_per_message"],
            fan_server_cpu_pct=best["server_cpu_pct"],
            fan_client_cpu_pct=best["client_cpu_pct"],
            fan_other_cpu_pct=best["other_cpu_pct"],
        )
    if first_fail is not None:
        out["fan_fail_rate_msgs_per_s"] = first_fail["rate_msgs_per_s"]
    # Server CPU per delivery over every step that delivered everything: less noisy.
    complete = [x for x in steps if x["delivered"] and x["delivered"] == x["expected"]]
    if complete:
        out["fan_server_cpu_us_per_delivery_all"] = statistics.median(
            x["server_cpu_us_per_item"] for x in complete
        )
    return out


async def one_run(args: argparse.Namespace, s: Setup, run_index: int) -> dict[str, Any]:
    async def on_sigterm() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                raise KeyboardInterrupt

    async with trio.open_nursery() as nursery:
        nursery.start_soon(on_sigterm)
        if not s.tokens:
            s.tokens = await sign_in(s.port, args.user_names)
            s.idle_rooms = await create_rooms(
                s.port, s.tokens[0], math.ceil(args.clients / args.idle_room_size), "idle"
            )
        out = await idle_and_joins(args, s)
        out.update(await fan_out(args, s, run_index))
        nursery.cancel_scope.cancel()
    return out


# --------------------------------------------------------------------------- report

TABLES: list[tuple[str, list[tuple[str, str, int]]]] = [
    (
        "memory",
        [
            ("rss_before_mib", "server RSS before (MiB)", 1),
            ("rss_after_mib", "server RSS with the idle connections (MiB)", 1),
            ("rss_per_conn_kib", "RSS per idle connection (KiB)", 1),
            ("open_s", "time to open them all (s)", 2),
            ("open_server_cpu_ms_per_conn", "server CPU per connection opened (ms)", 2),
            ("open_client_cpu_pct", "bench client CPU while opening (%)", 0),
        ],
    ),
    (
        "join",
        [
            ("join_p50_ms", "join latency p50 (ms)", 2),
            ("join_p99_ms", "join latency p99 (ms)", 2),
            ("join_max_ms", "join latency max (ms)", 2),
            ("joins_per_s", "joins/s (one at a time, incl. leaving)", 1),
            ("join_server_cpu_ms", "server CPU per join + leave (ms)", 2),
            ("join_server_cpu_pct", "server CPU (% of one core)", 0),
            ("join_client_cpu_pct", "bench client CPU (% of one core)", 0),
            ("join_other_cpu_pct", "other processes CPU (% of one core)", 0),
        ],
    ),
    (
        "fan",
        [
            ("fan_rate_msgs_per_s", "highest sustainable chat rate (msg/s)", 1),
            ("fan_deliveries_per_s", "deliveries/s at that rate", 0),
            ("fan_p50_ms", "delivery latency p50 (ms)", 1),
            ("fan_p99_ms", "delivery latency p99 (ms)", 1),
            ("fan_server_cpu_us_per_delivery", "server CPU per delivery (us)", 1),
            ("fan_server_cpu_us_per_delivery_all", "  same, median over all passing steps (us)", 1),
            ("fan_server_cpu_ms_per_message", "server CPU per chat message sent (ms)", 2),
            ("fan_server_cpu_pct", "server CPU (% of one core)", 0),
            ("fan_client_cpu_pct", "bench client CPU (% of one core)", 0),
            ("fan_other_cpu_pct", "other processes CPU (% of one core)", 0),
            ("fan_fail_rate_msgs_per_s", "first failing rate (msg/s)", 1),
            ("fill_s", "time to fill the room (s)", 2),
        ],
    ),
]


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    summary = {}
    for _, rows in TABLES:
        for key, _, _ in rows:
            values = [r[key] for r in runs if r.get(key) is not None]
            if values:
                summary[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return summary


def render(
    rows: list[tuple[str, str, int]], runs: list[dict[str, Any]], summary: dict[str, Any]
) -> list[str]:
    lines = [f"  {'':<46}{'median':>10}{'min':>10}{'max':>10}   per run"]
    for key, label, decimals in rows:
        if key not in summary:
            continue
        s = summary[key]
        per_run = " / ".join(_fmt(r.get(key), decimals) for r in runs)
        lines.append(
            f"  {label:<46}{_fmt(s['median'], decimals):>10}{_fmt(s['min'], decimals):>10}"
            f"{_fmt(s['max'], decimals):>10}   {per_run}"
        )
    return lines


def report(
    args: argparse.Namespace, command: str, env: dict[str, Any], runs: list[dict[str, Any]]
) -> dict[str, Any]:
    summary = summarize(runs)
    rooms = math.ceil(args.clients / args.idle_room_size)
    lines = [
        "",
        "=" * 110,
        f"meet WebSocket signaling bench: medians over {len(runs)} runs (a fresh server process per run)",
        f"command: {command}",
        f"machine: {env['cpus']} CPUs, {env['platform']}, Python {env['python']}, load avg at start {env['loadavg']}",
        (
            f"server:  python -m meet serve (meet {env['meet_version']}), [rooms] {env['room_settings']}, "
            f"data in {env['tmp_fs']}"
        ),
        f"         open files soft/hard: server {env['server_nofile']}, bench {env['bench_nofile']}",
        f"client:  minimal WebSocket client on trio, one process; {args.users} users signed in, tokens shared by connections",
        "",
        f"Memory: {args.clients} idle room connections ({rooms} rooms x {args.idle_room_size}), server VmRSS after - before",
    ]
    lines += render(TABLES[0][1], runs, summary)
    lines += [
        "",
        (
            f"Join latency: connect -> 'welcome', {args.joins} joins one after another (each then leaves), "
            f"{args.clients} idle connections open"
        ),
    ]
    lines += render(TABLES[1][1], runs, summary)
    lines += [
        "",
        (
            f"Chat fan-out: {args.room_size} members in one room, {args.senders} senders, "
            f"{args.step_duration:g} s steps from {args.start_rate:g} msg/s x{args.step_factor:g}; "
            f"sustainable = all delivered, p99 <= {args.max_p99_ms:g} ms, no drops, senders on time"
        ),
        (
            "  (a delivery = one chat frame received by one member, the sender's own echo included; "
            "each message is one SQLite insert + FTS row)"
        ),
    ]
    lines += render(TABLES[2][1], runs, summary)

    notes = []
    for i, r in enumerate(runs):
        fail = r.get("first_fail")
        if fail is not None:
            notes.append(
                f"run {i + 1}: first failing step {fail['rate_msgs_per_s']:.1f} msg/s: {'; '.join(fail['problems'])}"
            )
        if r.get("best") is None:
            other = max((x.get("other_cpu_pct") or 0) for x in r.get("steps") or [{}])
            notes.append(
                f"run {i + 1}: no step passed"
                + (
                    f" (other processes used up to {other:.0f}% of a core during it: run again)"
                    if other >= 50
                    else " (lower --start-rate)"
                )
            )
        elif r["best"].get("client_bound"):
            notes.append(
                f"run {i + 1}: the bench client used >= 90% of a core: the fan-out figure is a lower bound"
            )
        if r.get("join_failures"):
            notes.append(f"run {i + 1}: failed joins {r['join_failures']}")
        if r.get("idle_lost"):
            notes.append(f"run {i + 1}: idle connections closed by the server {r['idle_lost']}")
        if r.get("idle_error_frames"):
            notes.append(f"run {i + 1}: error frames on idle connections {r['idle_error_frames']}")
        if r.get("fan_error_frames"):
            notes.append(f"run {i + 1}: error frames in the fan-out room {r['fan_error_frames']}")
    for key, name in (("fan_client_cpu_pct", "fan-out"), ("join_client_cpu_pct", "join")):
        top = summary.get(key, {}).get("max")
        if top is not None and top >= CLIENT_BUSY_WARN:
            notes.append(
                f"{name}: the bench client used up to {top:.0f}% of a core; it may have added latency "
                "(server CPU per delivery/join is still valid)."
            )
    others = max((r.get(k) or 0) for r in runs for k in ("join_other_cpu_pct", "fan_other_cpu_pct"))
    if others >= 30:
        notes.append(
            f"other processes used up to {others:.0f}% of a core during the measurements (see 'other processes "
            "CPU'): latencies and rates are disturbed; CPU per join/delivery and memory much less so."
        )
    if NCPU <= 2:
        notes.append(
            f"client and server share {NCPU} cores: the server's event loop is one thread, so ~100% of a core "
            "is its ceiling; server CPU per delivery/join is the figure to compare between versions."
        )
    if notes:
        lines += ["", "notes:"] + [f"  - {n}" for n in notes]
    lines.append("=" * 110)
    print("\n".join(lines), flush=True)
    return {
        "command": command,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "user_names")},
        "environment": env,
        "median": {k: v["median"] for k, v in summary.items()},
        "summary": summary,
        "runs": runs,
        "notes": notes,
    }


# --------------------------------------------------------------------------- main


def write_config(path: Path, data_dir: Path) -> None:
    hb.write_config(path, data_dir, AuthConfig())  # production argon2: only the few logins pay it
    extra = ["[rooms]"] + [f"{k} = {v!r}" for k, v in ROOM_SETTINGS.items()] + [""]
    path.write_text(path.read_text() + "\n".join(extra))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/signaling.py",
        description="Benchmark meet's WebSocket signaling (join latency, chat fan-out, memory) against a real server.",
    )
    p.add_argument(
        "--runs", type=int, default=3, help="repetitions, each on a fresh server; medians reported (3)"
    )
    p.add_argument("--clients", type=int, default=500, help="idle connections held open (500)")
    p.add_argument("--idle-room-size", type=int, default=10, help="idle connections per room (10)")
    p.add_argument("--joins", type=int, default=200, help="measured joins per run (200)")
    p.add_argument("--warmup-joins", type=int, default=20, help="uncounted joins before measuring (20)")
    p.add_argument("--room-size", type=int, default=200, help="members of the fan-out room (200)")
    p.add_argument("--senders", type=int, default=4, help="members posting chat in the fan-out room (4)")
    p.add_argument(
        "--start-rate",
        type=float,
        default=None,
        help=f"first fan-out step, messages/s in total (default {START_DELIVERIES:g} deliveries/s: 4 msg/s for 200 members)",
    )
    p.add_argument("--step-factor", type=float, default=1.5, help="rate multiplier between steps (1.5)")
    p.add_argument("--step-duration", type=float, default=3.0, help="seconds of sending per step (3)")
    p.add_argument("--max-steps", type=int, default=14, help="at most this many steps per run (14)")
    p.add_argument(
        "--refine", type=int, default=1, help="extra steps between the last pass and first failure (1)"
    )
    p.add_argument("--retries", type=int, default=1, help="repeats of a failing step before it counts (1)")
    p.add_argument(
        "--max-p99-ms", type=float, default=200.0, help="sustainable: p99 delivery latency bound (200)"
    )
    p.add_argument("--users", type=int, default=4, help="accounts created and shared by the connections (4)")
    p.add_argument(
        "--connect-concurrency", type=int, default=20, help="handshakes in flight while opening (20)"
    )
    p.add_argument("--json", metavar="FILE", help="also write all figures to FILE as JSON")
    args = p.parse_args(argv)
    for name in (
        "runs",
        "clients",
        "idle_room_size",
        "joins",
        "users",
        "connect_concurrency",
        "max_steps",
        "senders",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 2 <= args.room_size <= ROOM_CAPACITY or args.idle_room_size > ROOM_CAPACITY - 1:
        p.error(f"rooms hold at most {ROOM_CAPACITY} (meet's limit)")
    if args.senders > args.room_size:
        p.error("--senders cannot exceed --room-size")
    if args.start_rate is None:
        args.start_rate = START_DELIVERIES / args.room_size
    if args.start_rate <= 0 or args.step_factor <= 1 or args.step_duration <= 0 or args.max_p99_ms <= 0:
        p.error("--start-rate, --step-duration and --max-p99-ms must be positive, --step-factor above 1")
    if args.warmup_joins < 0 or args.refine < 0 or args.retries < 0:
        p.error("--warmup-joins, --refine and --retries cannot be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = (
        shlex.join(["python", *sys.argv])
        if argv is None
        else shlex.join(["python", "bench/signaling.py", *argv])
    )
    if not os.path.exists("/proc/self/stat"):
        print("bench: needs Linux /proc for CPU and memory accounting", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, hb._raise_interrupt)
    soft, hard = raise_nofile_limit()
    needed = args.clients + args.room_size + 100
    if soft != resource.RLIM_INFINITY and soft < needed:
        print(f"bench: open-files limit {soft} is below the ~{needed} sockets needed", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="meet-bench-ws-"))
    server: Any = None
    code = 0
    try:
        started = time.monotonic()
        config_path, data_dir = workdir / "meet.toml", workdir / "data"
        write_config(config_path, data_dir)
        print(f"setting up in {workdir}: {args.users} user(s) via `meet user add` ...", flush=True)
        args.user_names = hb.add_users(config_path, workdir, args.users)
        setup = Setup(port=0, pid=0, tokens=[], idle_rooms=[])
        env: dict[str, Any] = {
            "cpus": NCPU,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "meet_version": meet_version,
            "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "room_settings": ", ".join(f"{k}={v:g}" for k, v in ROOM_SETTINGS.items())
            + ", ping_interval/idle_timeout at their defaults (20/45 s; the client answers pings)",
            "tmp_fs": hb.fs_type(workdir),
            "bench_nofile": f"{soft}/{hard}",
        }
        runs = []
        for i in range(args.runs):
            # The raised RLIMIT_NOFILE is inherited by the server through fork/exec.
            server = hb.Server(config_path, workdir, hb.free_port())
            server.start()
            setup.port, setup.pid = server.port, server.pid
            env["server_nofile"] = open_files_limit(server.pid)
            print(
                f"run {i + 1}/{args.runs}: server pid {server.pid} on {HOST}:{server.port} "
                f"(open files {env['server_nofile']})",
                flush=True,
            )
            result = hb.run_trio(one_run, args, setup, i)
            if server.proc.poll() is not None:
                raise SystemExit(f"bench: the server died during the run:\n{server.log_tail()}")
            rc = server.stop()
            server = None
            if rc not in (0, None, -signal.SIGTERM):
                print(f"bench: server exited with {rc}", file=sys.stderr)
            runs.append(result)
        data = report(args, command, env, runs)
        data["elapsed_s"] = time.monotonic() - started
        print(f"elapsed {data['elapsed_s']:.0f} s")
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
            print(f"wrote {args.json}")
    except KeyboardInterrupt:
        print("\nbench: interrupted, cleaning up", file=sys.stderr)
        code = 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if server is not None:
            rc = server.stop()
            if rc not in (0, None, -signal.SIGTERM):
                print(f"bench: server exited with {rc}; log tail:\n{server.log_tail()}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
