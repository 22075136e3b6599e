"""Janus VideoRoom side by side with meet's relay: server CPU per forwarded packet at the same load.

The load is bench/relay.py's, imported from it: one aiortc publisher (pre-encoded VP8 640x480
30 fps ~1.5 Mbps + Opus) and k aiortc subscribers that count packets in relay.py's hooks and never
decode. The servers take it one after the other, each alone on core 0 (clients on the others):
meet's relay worker (relay.py's ``Bench``), then ``/usr/bin/janus`` with a generated lean
configuration (VideoRoom + HTTP transport only), started under ``taskset -c 0`` and driven over
its HTTP API. At each k of relay.py's ladder, ``--runs`` windows per server; the figure compared
is server CPU (``/proc/<pid>/stat``, all threads) / packets received by the subscribers.
See bench/README.md, "Janus VideoRoom".

Needs Janus, which this script does not install: ``apt-get install -y janus`` (Debian: 1.1.2).
Run as root in a loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up && exec python bench/janus.py --runs 3'
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder is sys.path[0] and bench/http.py would shadow the stdlib ``http``.
_HERE = os.path.dirname(os.path.realpath(__file__))
from _sibling import load_sibling  # before bench/ leaves sys.path

sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]

import argparse
import asyncio
import contextlib
import json
import logging
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

from aiortc import MediaStreamTrack, RTCSessionDescription

relay = load_sibling("relay.py")
from meet.relay import ice  # relay.py put the repository on sys.path

JANUS = "/usr/bin/janus"
# Janus never gathers ICE candidates on a loopback interface (ice.c skips IFF_LOOPBACK), and libnice
# pins its sockets to their interface (IP_UNICAST_IF), so it cannot reach 127.0.0.1 either. Janus and
# the bench's peers of the Janus runs get two addresses on a veth made in this private namespace
# (TEST-NET-1, RFC 5737): local addresses, so packets between them go through lo like 127.0.0.1,
# and nothing leaves the namespace.
VETH, JANUS_IP, CLIENT_IP = ("janusbench0", "janusbench1"), "192.0.2.1", "192.0.2.2"
LIBDIR = "/usr/lib/x86_64-linux-gnu/janus"
ROOM_ID = 4242
# no bitrate cap (no REMB limit), no periodic FIR, no recording
ROOM = {"request": "create", "room": ROOM_ID, "publishers": 1, "bitrate": 0, "fir_freq": 0,
        "audiocodec": "opus", "videocodec": "vp8", "record": False, "is_private": True}  # fmt: skip
LAUNCHER = "import ctypes,os,sys; ctypes.CDLL(None).prctl(1, 15); os.execv(sys.argv[1], sys.argv[1:])"


# --------------------------------------------------------------------------- Janus process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def add_janus_address() -> None:
    """Put JANUS_IP and CLIENT_IP on a veth pair, only in a namespace whose one interface is ``lo``."""
    names = {name for _, name in socket.if_nameindex()}
    if names != {"lo"}:
        raise RuntimeError(
            f"interfaces {sorted(names)}: run in a loopback-only namespace, e.g."
            " unshare -n sh -c 'ip link set lo up && exec python bench/janus.py'"
        )
    for command in (
        f"link add {VETH[0]} type veth peer name {VETH[1]}",
        f"addr add {JANUS_IP}/32 dev {VETH[0]}",
        f"addr add {CLIENT_IP}/32 dev {VETH[0]}",
        f"link set {VETH[1]} up",
        f"link set {VETH[0]} up",
    ):
        subprocess.run(["ip", *command.split()], check=True)


JANUS_JCFG = """general: {{ configs_folder = "{folder}"  plugins_folder = "{folder}/plugins"
  transports_folder = "{folder}/transports"  events_folder = "{folder}/none"
  loggers_folder = "{folder}/none"  debug_level = 3  session_timeout = 0  {loops} }}
certificates: {{}}
media: {{ ipv6 = false  rtp_port_range = "{rtp_ports}" }}
nat: {{ nice_debug = false  full_trickle = false  ignore_mdns = true  ice_enforce_list = "{veth}" }}
plugins: {{}}
transports: {{}}
loggers: {{}}
events: {{ broadcast = false }}
"""
HTTP_JCFG = """general: {{ json = "plain"  base_path = "/janus"  http = true  port = {port}  ip = "127.0.0.1"
  https = false  events = false }}
admin: {{ admin_http = false  admin_https = false }}
"""


def write_config(folder: str, port: int, rtp_ports: str, event_loops: int) -> str:
    """A lean Janus configuration in ``folder``: VideoRoom + HTTP only, ICE on VETH[0] only."""
    for lib in ("plugins/libjanus_videoroom.so", "transports/libjanus_http.so"):
        os.makedirs(os.path.join(folder, os.path.dirname(lib)))  # only these two are found, so loaded
        os.symlink(os.path.join(LIBDIR, lib), os.path.join(folder, lib))
    os.makedirs(os.path.join(folder, "none"))  # no event handlers, no loggers
    loops = f"event_loops = {event_loops}" if event_loops else ""
    files = {
        "janus.jcfg": JANUS_JCFG.format(folder=folder, loops=loops, rtp_ports=rtp_ports, veth=VETH[0]),
        "janus.transport.http.jcfg": HTTP_JCFG.format(port=port),
        "janus.plugin.videoroom.jcfg": "general: { events = false }\n",
    }
    for name, text in files.items():
        with open(os.path.join(folder, name), "w") as fh:
            fh.write(text)
    return os.path.join(folder, "janus.jcfg")


def launch_janus(config: str, folder: str) -> subprocess.Popen[bytes]:
    """Janus under ``taskset -c 0`` (all its threads inherit core 0), killed if the bench dies.

    Its log goes to ``folder``/janus.log; GLib's own messages (stderr) to ``folder``/janus.out.
    """
    taskset = shutil.which("taskset")
    if taskset is None:
        raise RuntimeError("taskset (util-linux) not found")
    log = os.path.join(folder, "janus.log")
    argv = [taskset, "-c", "0", JANUS, "-C", config, "-F", os.path.dirname(config), "-L", log, "-N", "-o"]
    # Threads exist here, so no preexec_fn: a tiny launcher sets PR_SET_PDEATHSIG and execs.
    with open(os.path.join(folder, "janus.out"), "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, *argv], stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )


def stop_janus(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def thread_info(pid: int) -> tuple[int, bool]:
    """(number of threads, whether every thread is pinned to core 0 only)."""
    affinities = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
            affinities.append(os.sched_getaffinity(int(tid)))
    return len(affinities), all(a == {0} for a in affinities)


# --------------------------------------------------------------------------- HTTP API


class JanusApi:
    """The Janus HTTP API on plain asyncio: one connection per request, one long-poll loop.

    It also stands in for relay.py's ``Channel`` where ``Bench`` and ``Client`` use one: ``peers``
    (name -> client) and ``request("stats")``, which sums what the subscribers received.
    """

    def __init__(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.port, self.process, self.session = port, process, 0
        self.peers: dict[str, Any] = {}
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.ids = 0
        self.poller: asyncio.Task[None] | None = None

    async def http(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One request over HTTP/1.0: no chunked reply, the server closes after the body."""
        data = json.dumps(body).encode() if body is not None else b""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            request = f"{method} {path} HTTP/1.0\r\nContent-Type: application/json\r\n"
            writer.write(f"{request}Content-Length: {len(data)}\r\n\r\n".encode() + data)
            raw = await reader.read()  # to EOF
        finally:
            writer.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1] if head else b"-"
        if status != b"200":
            raise RuntimeError(f"janus {method} {path}: HTTP {status.decode()}")
        return json.loads(payload)

    async def start(self, timeout: float = 20) -> None:
        """Wait for the HTTP transport, create the session, start long-polling its events."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"janus exited with status {self.process.returncode}")
            try:
                await self.http("GET", "/janus/info")
                break
            except (OSError, RuntimeError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"janus did not answer on port {self.port} in {timeout} s") from None
                await asyncio.sleep(0.1)
        self.session = (await self.call("/janus", {"janus": "create"}))["data"]["id"]
        self.poller = asyncio.ensure_future(self._poll())

    def _transaction(self) -> str:
        self.ids += 1
        return f"t{self.ids}"

    async def call(self, path: str, message: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = await self.http("POST", path, {**message, "transaction": self._transaction()})
        if reply.get("janus") != "success":
            raise RuntimeError(f"janus refused {message.get('janus')}: {reply}")
        return reply

    async def attach(self) -> int:
        reply = await self.call(
            f"/janus/{self.session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"}
        )
        return int(reply["data"]["id"])

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """A VideoRoom request; an ``ack`` means the answer comes later, as an event."""
        tx = self._transaction()
        future = self.waiting[tx] = asyncio.get_running_loop().create_future()
        message = {"janus": "message", "transaction": tx, "body": body, **({"jsep": jsep} if jsep else {})}
        try:
            reply: dict[str, Any] = await self.http("POST", f"/janus/{self.session}/{handle}", message)
            if reply.get("janus") == "ack":
                reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise RuntimeError(f"no janus event for {body['request']!r} in {timeout:g} s") from None
        finally:
            self.waiting.pop(tx, None)
        data = reply.get("plugindata", {}).get("data", {})
        if reply.get("janus") == "error" or "error" in data:
            raise RuntimeError(f"janus videoroom refused {body['request']!r}: {reply}")
        return reply

    async def _poll(self) -> None:
        while True:
            try:
                events = await self.http("GET", f"/janus/{self.session}?maxev=20")
            except (OSError, RuntimeError, ValueError):
                if self.process.poll() is not None:
                    return
                await asyncio.sleep(0.2)
                continue
            for event in events if isinstance(events, list) else [events]:
                future = self.waiting.get(event.get("transaction", ""))
                if future is not None and not future.done() and event.get("janus") != "ack":
                    future.set_result(event)

    async def request(self, op: str, **_fields: Any) -> dict[str, Any]:
        """relay.py's ``Channel.request`` subset that ``Bench.measure`` uses: ``stats``."""
        if self.process.poll() is not None:
            raise ConnectionError(f"janus exited (status {self.process.returncode}) before {op!r}")
        received = sum(c.counts()[0] for name, c in self.peers.items() if name != "pub")
        return {"packets_forwarded": received, "packets_received": 0}

    def close(self) -> None:
        if self.poller is not None:
            self.poller.cancel()


# --------------------------------------------------------------------------- clients and bench


def jsep(description: RTCSessionDescription) -> dict[str, Any]:
    """aiortc's SDP carries every candidate: no trickle."""
    return {"type": description.type, "sdp": description.sdp, "trickle": False}


class JanusClient(relay.Client):  # type: ignore[name-defined,misc]
    """relay.py's Client (same hooks, same counting) signalled through the VideoRoom plugin."""

    def __init__(self, api: JanusApi, name: str, delays: list[float] | None = None) -> None:
        super().__init__(api, name, delays)
        self.api, self.handle = api, 0

    async def publish(
        self, tracks: tuple[MediaStreamTrack, MediaStreamTrack], sent_at: dict[bytes, float]
    ) -> int:
        """Join the room as publisher and publish; returns the feed id."""
        self.handle = await self.api.attach()
        body = {"request": "join", "ptype": "publisher", "room": ROOM_ID, "display": self.name}
        joined = await self.api.message(self.handle, body)
        for track in tracks:
            self.pc.addTransceiver(track, direction="sendonly")
        self._hook(self.pc.getTransceivers()[0].sender.transport, sent_at, publisher=True)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {"request": "publish", "audio": True, "video": True}
        reply = await self.api.message(self.handle, body, jsep(self.pc.localDescription))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=reply["jsep"]["sdp"], type="answer"))
        return int(joined["plugindata"]["data"]["id"])

    async def subscribe(self, feed: int, sent_at: dict[bytes, float]) -> None:
        """Join as subscriber to ``feed`` and answer Janus's offer (audio + video m-lines)."""
        self.handle = await self.api.attach()
        body = {"request": "join", "ptype": "subscriber", "room": ROOM_ID, "streams": [{"feed": feed}]}
        reply = await self.api.message(self.handle, body)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=reply["jsep"]["sdp"], type="offer"))
        self._hook(self.pc.getTransceivers()[0].sender.transport, sent_at, publisher=False)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        if self.delays is None:  # subscriber 0 keeps aiortc's receive path to measure the delay
            self._hook_socket(self.pc.getTransceivers()[0].sender.transport)
        await self.api.message(self.handle, {"request": "start"}, jsep(self.pc.localDescription))


class JanusBench(relay.Bench):  # type: ignore[name-defined,misc]
    """relay.py's Bench (same ``measure``) with Janus as the server process."""

    def __init__(self, frames: list[tuple[bytes, bool]], args: argparse.Namespace, loops: int) -> None:
        super().__init__("janus", frames)
        self.args, self.loops = args, loops
        self.folder = tempfile.mkdtemp(prefix="bench-janus-")
        self.feed = 0

    async def start(self) -> None:
        port = free_port()
        config = write_config(self.folder, port, self.args.rtp_ports, self.loops)
        self.process = launch_janus(config, self.folder)
        self.channel = self.api = JanusApi(port, self.process)
        await self.api.start()
        admin = await self.api.attach()
        await self.api.message(admin, ROOM)
        self.publisher = JanusClient(self.api, "pub")
        self.feed = await self.publisher.publish(
            (relay.SineAudio(), relay.ReplayVideo(self.frames)), self.sent_at
        )
        codecs = [c for t in self.publisher.pc.getTransceivers() if t.kind == "video" for c in t._codecs]
        self.publisher.video_pt[0] = next(c.payloadType for c in codecs if c.mimeType.lower() == "video/vp8")
        await self._until(lambda: self.publisher.sent > 0, 10, "publisher media flowing")

    async def grow(self, k: int) -> None:
        new = []
        while len(self.subscribers) < k:
            first = not self.subscribers
            sub = JanusClient(self.api, f"sub{len(self.subscribers)}", self.delays if first else None)
            self.subscribers.append(sub)
            new.append(sub)
        for i in range(0, len(new), 8):  # join in batches, as relay.py does
            await asyncio.gather(*(s.subscribe(self.feed, self.sent_at) for s in new[i : i + 8]))
        try:
            await self._until(lambda: all(len(s.streams) >= 2 for s in new), 45, "media at new subscribers")
        except RuntimeError:
            stuck = [s for s in new if len(s.streams) < 2]
            raise RuntimeError(f"{len(stuck)} of {len(new)} new subscribers got no media in 45 s") from None
        await asyncio.sleep(relay.SETTLE)

    async def measure(self, duration: float) -> dict[str, Any]:
        m: dict[str, Any] = await super().measure(duration)
        m["server_threads"], m["server_pinned"] = thread_info(self.process.pid)
        return m

    async def close(self) -> None:
        clients = [*self.subscribers, *([self.publisher] if hasattr(self, "publisher") else [])]
        await asyncio.gather(*(asyncio.wait_for(c.close(), 5) for c in clients), return_exceptions=True)
        if hasattr(self, "process"):
            self.api.close()
            await asyncio.get_running_loop().run_in_executor(None, stop_janus, self.process)
            if self.process.returncode not in (0, -15):
                print(f"janus exited with status {self.process.returncode}; log:", file=sys.stderr)
                print(self.log_tail(), file=sys.stderr)
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        tail = []
        for name in ("janus.log", "janus.out"):
            with contextlib.suppress(OSError), open(os.path.join(self.folder, name), errors="replace") as fh:
                tail += fh.readlines()[-lines:]
        return "".join(tail)


# --------------------------------------------------------------------------- scenario


async def run_ladder(bench: Any, args: argparse.Namespace, label: str) -> list[dict[str, Any]]:
    """Grow the room through relay.py's ladder; ``--runs`` windows at each k."""
    steps: list[dict[str, Any]] = []
    try:
        await bench.start()
        print(f"{label}: {args.runs} windows of {args.duration:g} s at each k", flush=True)
        for k in relay.ladder(args.max_subscribers):
            try:
                await bench.grow(k)
            except RuntimeError as exc:  # a busy box, or the server gave up: keep what was measured
                steps.append({"subscribers": k, "failed": str(exc)})
                print(f"  {label} stopped at k={k}: {exc}", flush=True)
                break
            runs = []
            for _ in range(args.runs):
                m = await bench.measure(args.duration)
                # the same denominator for both servers: packets the subscribers received
                m["us_per_received"] = (
                    1e4 * m["server_cpu_pct"] / m["received_pps"] if m["received_pps"] else None
                )
                runs.append(m)
                print(relay.step_line(label, m), flush=True)
                if m.get("server_pinned") is False:
                    print("  warning: a Janus thread is not pinned to core 0 alone", flush=True)
            steps.append({"subscribers": k, "runs": runs})
    except (ConnectionError, RuntimeError, OSError) as exc:
        steps.append({"aborted": str(exc)})
        print(f"  {label} aborted: {exc}", flush=True)
        if isinstance(bench, JanusBench):
            print(bench.log_tail(), flush=True)
    finally:
        await bench.close()
    return steps


def median(steps: list[dict[str, Any]], k: int, key: str) -> float | None:
    for step in steps:
        if step.get("subscribers") == k and "runs" in step:
            return relay.summary(step["runs"], key)["median"]  # type: ignore[no-any-return]
    return None


COLUMNS = (  # header, row key, format, unit
    ("  k", "k", "d", ""),
    ("meet µs/pkt", "meet_us_per_received", ".1f", ""),
    ("janus µs/pkt", "janus_us_per_received", ".1f", ""),
    ("meet/janus", "ratio", ".2f", "x"),
    ("meet pkt/s", "meet_received_pps", ".0f", ""),
    ("janus pkt/s", "janus_received_pps", ".0f", ""),
    ("meet loss", "meet_loss_pct", ".2f", "%"),
    ("janus loss", "janus_loss_pct", ".2f", "%"),
    ("meet CPU", "meet_server_cpu_pct", ".0f", "%"),
    ("janus CPU", "janus_server_cpu_pct", ".0f", "%"),
    ("janus thr", "janus_threads", ".0f", ""),
    ("others", "others_cpu_pct", ".0f", "%"),
)


def janus_label(loops: int) -> str:
    return "janus" if loops == 0 else f"janus-{loops}loop"


def table(report: dict[str, Any], janus: str) -> list[dict[str, Any]]:
    """One row of medians per k measured: meet and one Janus configuration (``janus`` columns)."""
    rows = []
    for k in relay.ladder(report["args"]["max_subscribers"]):
        row: dict[str, Any] = {"k": k}
        for side, source in (("meet", "meet"), ("janus", janus)):
            for key in ("us_per_received", "received_pps", "loss", "server_cpu_pct", "others_cpu_pct"):
                row[f"{side}_{key}"] = median(report.get(source, []), k, key)
            loss = row[f"{side}_loss"]
            row[f"{side}_loss_pct"] = None if loss is None else 100 * loss
        row["janus_threads"] = median(report.get(janus, []), k, "server_threads")
        a, b = row["meet_us_per_received"], row["janus_us_per_received"]
        row["ratio"] = a / b if a and b else None
        others = [v for v in (row["meet_others_cpu_pct"], row["janus_others_cpu_pct"]) if v is not None]
        row["others_cpu_pct"] = max(others, default=None)
        if a is not None or b is not None:
            rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace, loops: int) -> None:
    threads = "Janus's default: a thread per handle" if loops == 0 else f"event_loops = {loops}"
    print(
        f"\n=== meet vs Janus VideoRoom ({threads}): medians of {args.runs} windows of {args.duration:g} s ==="
    )
    print("µs/pkt = server CPU (core 0, all threads) / packets received by the subscribers;")
    print("others = other processes' CPU (the busier of the two servers' runs), % of one core")
    print(" | ".join(f"{header:>{len(header)}}" for header, *_ in COLUMNS))
    for row in rows:
        cells = [
            relay.fmt(row[key], spec) + (unit if row[key] is not None else "")
            for _, key, spec, unit in COLUMNS
        ]
        print(" | ".join(f"{cell:>{len(header)}}" for cell, (header, *_) in zip(cells, COLUMNS)))
    ratios = [r for r in rows if r["ratio"] is not None]
    if ratios:
        over = [f"k={r['k']} ({r['ratio']:.2f}x)" for r in ratios if r["ratio"] > 3]
        verdict = f"NOT met at {', '.join(over)}" if over else "met at every k measured"
        print(f"target meet <= 3x Janus CPU per packet: {verdict}")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    ice.configure_ice(relay.LOOPBACK, None)
    frames = relay.encode_vp8(relay.FPS * 4)
    total = sum(len(data) for data, _ in frames)
    print(
        f"publisher: {len(frames)} VP8 frames, {8 * total / (len(frames) / relay.FPS) / 1e6:.2f} Mbps",
        flush=True,
    )
    report: dict[str, Any] = {"args": vars(args), "loadavg_start": os.getloadavg()}
    started = time.monotonic()
    if not args.skip_meet:
        layers = None
        if args.meet_layers == 3:  # meet receives Chrome's simulcast camera; Janus the one stream
            layers = [relay.encode_vp8(relay.FPS * 4, w, h, rate) for _rid, w, h, rate in relay.SIMULCAST]
            print(f"meet's publisher: simulcast camera, {len(layers)} layers", flush=True)
        bench = relay.Bench("meet", frames, layers, args.transport_cc)
        report["meet"] = await run_ladder(bench, args, "meet")
    ice.configure_ice([CLIENT_IP], None)  # peer connections created from now on
    for loops in args.janus_event_loops:
        label = janus_label(loops)
        report[label] = await run_ladder(JanusBench(frames, args, loops), args, label)
    report["elapsed_s"] = time.monotonic() - started
    report["loadavg_end"] = os.getloadavg()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="windows per k and server (medians reported)")
    parser.add_argument("--max-subscribers", type=int, default=48, help="last k of relay.py's ladder")
    parser.add_argument("--duration", type=float, default=4.0, help="window (s)")
    parser.add_argument("--rtp-ports", default="30000-39999", help="Janus's RTP/ICE port range")
    parser.add_argument(
        "--janus-event-loops",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[0, 1],
        help="Janus configurations to measure, comma-separated: 0 = Janus's default (a thread per"
        " handle), N = event_loops N (N threads shared by all handles); default 0,1",
    )
    parser.add_argument("--skip-meet", action="store_true", help="measure Janus only")
    parser.add_argument(
        "--meet-layers",
        type=int,
        choices=(1, 3),
        default=1,
        help="meet's publisher camera as one stream (like Janus's) or as Chrome's three simulcast"
        " layers (bench/relay.py --layers 3): the receive cost of simulcast beside Janus's single stream",
    )
    parser.add_argument(
        "--transport-cc",
        action="store_true",
        help="with --meet-layers 3: number the camera's packets (relay.py)",
    )
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not os.access(JANUS, os.X_OK):
        print(f"bench: {JANUS} not found: apt-get install -y janus", file=sys.stderr)
        return 2
    cores = os.sched_getaffinity(0)
    if len(cores) < 2 or 0 not in cores:
        print("bench: needs at least 2 cores including core 0", file=sys.stderr)
        return 2
    try:
        add_janus_address()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, cores - {0})
    probe = subprocess.run([JANUS, "--version"], check=False, capture_output=True, text=True)
    version = probe.stdout.partition("\n")[0]
    print(
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores,"
        f" {version}; servers on core 0, clients on {sorted(cores - {0})};"
        f" load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        flush=True,
    )
    report = asyncio.run(main_async(args))
    report["tables"] = {}
    for loops in args.janus_event_loops:
        report["tables"][janus_label(loops)] = rows = table(report, janus_label(loops))
        print_table(rows, args, loops)
    loadavg = " ".join(f"{v:.2f}" for v in report["loadavg_end"])
    print(f"load average at the end {loadavg}; elapsed {report['elapsed_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
