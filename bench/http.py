"""HTTP benchmark for meet: sign-in throughput and the cost of an authenticated request.

Runs the real server (``python -m meet serve``) in a separate process with a throwaway data
folder, the file mail backend and the production argon2id parameters, then drives it from
this process over loopback:

1. ``POST /api/auth/login`` from ``--login-clients`` concurrent clients (argon2 runs in the
   server's worker threads): logins/s and latency p50/p99.
2. ``GET /api/auth/me`` with a bearer token from ``--concurrency`` keep-alive connections:
   requests/s, latency p50/p99, and the server's CPU time per request (from
   ``/proc/<pid>/stat``, which is far less noisy than wall-clock figures on a shared box).
3. The same ``GET /api/auth/me`` load, by the same client, against ``bench/bare_app.py``: a
   bare quart-trio app on the same Hypercorn answering a fixed JSON (the framework's own
   floor), its runs interleaved with meet's; the report gives both and meet's share of the
   bare rate (skip with ``--no-bare``).

Each measurement is repeated ``--runs`` times (warm-up, then a fixed window) and the table
at the end shows the median of every figure with its min and max. Nothing here asserts a
timing; it only reports. See bench/README.md.

    python bench/http.py [--runs 3] [--duration 5] [--concurrency 50] [--login-clients 8] [--no-login]
                         [--no-bare] [--json out.json]
"""

from __future__ import annotations

import os
import sys

# This file is called http.py: when run as a script its folder is sys.path[0], and the
# stdlib package ``http`` (used by http.client, httpx, ...) would resolve to this file.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]

import argparse
import ctypes
import http.client
import json
import math
import platform
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from meet.config import AuthConfig

HOST = "127.0.0.1"  # all traffic stays on loopback
PASSWORD = "bench-password-" + "x" * 8
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLIENT_BUSY_WARN = 70.0  # % of one core: above this a single-threaded client may be the limit


# --------------------------------------------------------------------------- CPU accounting


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        data = fh.read()
    # The command name (field 2) may hold spaces or parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


def proc_peak_rss_mib(pid: int) -> float | None:
    """VmHWM (peak resident set) of a process in MiB, or None when unavailable."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@dataclass(frozen=True)
class MachineTicks:
    """The aggregate ``cpu`` line of /proc/stat, in ticks."""

    busy: int  # user + nice + system + irq + softirq
    steal: int
    total: int

    @classmethod
    def read(cls) -> MachineTicks:
        try:
            with open("/proc/stat") as fh:
                parts = [int(x) for x in fh.readline().split()[1:9]]
        except (OSError, ValueError):
            return cls(0, 0, 0)
        parts += [0] * (8 - len(parts))
        user, nice, system, idle, iowait, irq, softirq, steal = parts
        busy = user + nice + system + irq + softirq
        return cls(busy, steal, busy + idle + iowait + steal)


@dataclass(frozen=True)
class CpuSnapshot:
    server_s: float
    client_s: float
    machine: MachineTicks
    at: float  # trio.current_time()

    @classmethod
    def take(cls, server_pid: int) -> CpuSnapshot:
        return cls(
            proc_cpu_seconds(server_pid), time.process_time(), MachineTicks.read(), trio.current_time()
        )


def cpu_figures(a: CpuSnapshot, b: CpuSnapshot, completed: int) -> dict[str, float | None]:
    """CPU use between two snapshots, as % of one core, plus server CPU per completed request."""
    wall = max(b.at - a.at, 1e-9)
    server = b.server_s - a.server_s
    client = b.client_s - a.client_s
    ticks = b.machine.total - a.machine.total
    out: dict[str, float | None] = {
        "server_cpu_ms_per_req": server * 1000 / completed if completed else None,
        "server_cpu_pct": 100 * server / wall,
        "client_cpu_pct": 100 * client / wall,
        "machine_busy_pct": None,
        "other_cpu_pct": None,
        "steal_pct": None,
    }
    if ticks > 0:
        busy_s = (b.machine.busy - a.machine.busy) / CLK_TCK
        out["machine_busy_pct"] = 100 * (b.machine.busy - a.machine.busy) / ticks  # of all cores
        out["other_cpu_pct"] = max(0.0, 100 * (busy_s - server - client) / wall)  # of one core
        out["steal_pct"] = 100 * (b.machine.steal - a.machine.steal) / ticks
    return out


# --------------------------------------------------------------------------- HTTP clients


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def wire(self, hostport: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {hostport}", "User-Agent: meet-bench/1"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        if self.body or self.method not in ("GET", "HEAD"):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


class ProtocolError(Exception):
    pass


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client on one trio TCP stream.

    Much cheaper per request than a general-purpose client, so the load generator takes as
    little of the (shared) CPU as possible. It only handles what meet sends back here:
    responses framed by Content-Length.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.stream: trio.SocketStream | None = None
        self.buf = bytearray()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.socket.close()
            self.stream = None
        self.buf = bytearray()

    async def _fill(self) -> None:
        assert self.stream is not None
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise ProtocolError("server closed the connection")
        self.buf += chunk

    async def request(self, wire: bytes) -> tuple[int, bytes]:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream(self.host, self.port)  # sets TCP_NODELAY
        try:
            await self.stream.send_all(wire)
            while (end := self.buf.find(b"\r\n\r\n")) < 0:
                await self._fill()
            lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            del self.buf[: end + 4]
            status = int(lines[0].split(" ", 2)[1])
            length, close = None, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and "close" in value.lower():
                    close = True
                elif name == "transfer-encoding":
                    raise ProtocolError("chunked response (use --client httpx)")
            if length is None:
                raise ProtocolError("response without Content-Length (use --client httpx)")
            while len(self.buf) < length:
                await self._fill()
            body = bytes(self.buf[:length])
            del self.buf[:length]
        except BaseException:
            self.close()  # unknown state (error, timeout, cancel): reconnect next time
            raise
        if close:
            self.close()
        return status, body


Send = Callable[[Req], Awaitable[tuple[int, bytes]]]


class RawPool:
    """One RawConnection per worker."""

    errors: tuple[type[BaseException], ...] = (OSError, ProtocolError, ValueError, IndexError)

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.hostport = f"{HOST}:{port}"
        self.conns: list[RawConnection] = []

    def worker(self) -> Send:
        conn = RawConnection(HOST, self.port)
        self.conns.append(conn)
        wires: dict[Req, bytes] = {}

        async def send(req: Req) -> tuple[int, bytes]:
            wire = wires.get(req)
            if wire is None:
                wire = wires[req] = req.wire(self.hostport)
            return await conn.request(wire)

        return send

    async def aclose(self) -> None:
        for conn in self.conns:
            conn.close()


class HttpxPool:
    """One shared httpx.AsyncClient whose pool holds one connection per worker."""

    def __init__(self, port: int, size: int) -> None:
        import httpx

        self.errors: tuple[type[BaseException], ...] = (httpx.HTTPError, OSError)
        self.client = httpx.AsyncClient(
            base_url=f"http://{HOST}:{port}",
            trust_env=False,  # never route loopback traffic through a configured proxy
            timeout=None,  # the bench applies its own per-request deadline
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
            headers={"User-Agent": "meet-bench/1"},
        )

    def worker(self) -> Send:
        async def send(req: Req) -> tuple[int, bytes]:
            r = await self.client.request(
                req.method, req.path, headers=dict(req.headers), content=req.body or None
            )
            return r.status_code, r.content

        return send

    async def aclose(self) -> None:
        await self.client.aclose()


def make_pool(kind: str, port: int, size: int) -> RawPool | HttpxPool:
    return HttpxPool(port, size) if kind == "httpx" else RawPool(port, size)


# --------------------------------------------------------------------------- load runs


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


@dataclass
class RunResult:
    figures: dict[str, Any]
    errors: Counter[str] = field(default_factory=Counter)


async def load_run(
    *,
    kind: str,
    port: int,
    server_pid: int,
    requests: list[Req],
    workers: int,
    warmup: float,
    duration: float,
    timeout: float,
    check: Callable[[bytes], bool],
) -> RunResult:
    """``workers`` closed-loop clients for ``warmup + duration`` seconds.

    Counted: requests that complete inside the measurement window (throughput = count /
    window). Clients stop sending at the end of the window; requests still in flight then
    finish (bounded by ``timeout``) but are not counted.
    """
    pool = make_pool(kind, port, workers)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    start = trio.current_time()
    window_start = start + warmup
    window_end = window_start + duration
    snaps: dict[str, CpuSnapshot] = {}

    async def worker(i: int) -> None:
        send = pool.worker()
        req = requests[i % len(requests)]
        while trio.current_time() < window_end:
            t0 = trio.current_time()
            try:
                with trio.fail_after(timeout):
                    status, body = await send(req)
                problem = None if status == 200 and check(body) else f"HTTP {status}"
            except trio.TooSlowError:
                problem = f"timeout > {timeout:g}s"
            except pool.errors as exc:
                problem = type(exc).__name__
            t1 = trio.current_time()
            if window_start <= t1 <= window_end:
                if problem is None:
                    latencies.append(t1 - t0)
                else:
                    errors[problem] += 1
            elif problem is not None and t1 < window_start:
                errors[f"{problem} (warm-up)"] += 1
            if problem is not None and t1 < window_end:
                await trio.sleep(0.05)  # don't spin on a refusing server

    async def sampler() -> None:
        await trio.sleep_until(window_start)
        snaps["a"] = CpuSnapshot.take(server_pid)
        await trio.sleep_until(window_end)
        snaps["b"] = CpuSnapshot.take(server_pid)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sampler)
            for i in range(workers):
                nursery.start_soon(worker, i)
    finally:
        await pool.aclose()

    latencies.sort()
    completed = len(latencies)
    figures: dict[str, Any] = {
        "completed": completed,
        "errors": sum(errors.values()),
        "rate_per_s": completed / duration,
        "p50_ms": _ms(percentile(latencies, 0.50)),
        "p99_ms": _ms(percentile(latencies, 0.99)),
        "max_ms": _ms(latencies[-1] if latencies else None),
    }
    figures.update(cpu_figures(snaps["a"], snaps["b"], completed))
    return RunResult(figures, errors)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


# --------------------------------------------------------------------------- server process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string of printable text is a valid TOML basic string


def write_config(path: Path, data_dir: Path, auth: AuthConfig) -> None:
    path.write_text(
        "\n".join(
            [
                "[server]",
                f'host = "{HOST}"',
                "graceful_timeout = 2.0",
                "",
                "[storage]",
                f"data_dir = {toml_str(str(data_dir))}",
                "",
                "[auth]",
                f"secret_key = {toml_str(secrets.token_urlsafe(48))}",
                f"argon2_time_cost = {auth.argon2_time_cost}",
                f"argon2_memory_kib = {auth.argon2_memory_kib}",
                f"argon2_parallelism = {auth.argon2_parallelism}",
                "",
                "[mail]",
                'backend = "file"',
                "",
            ]
        )
    )


def child_env() -> dict[str, str]:
    """This environment minus MEET_* overrides (they would change the server's settings)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MEET_")}


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the bench dies without cleaning up (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: cleanup then relies on the bench's finally
        return


def meet_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "meet", *args]


def add_users(config_path: Path, workdir: Path, count: int) -> list[str]:
    """``meet user add`` (verified, no mail); the first alone so it creates the schema."""
    names = [f"bench{i}" for i in range(count)]

    def start(name: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            meet_cmd(
                "user", "add", name, f"{name}@example.org", "--password-stdin", "--config", str(config_path)
            ),
            cwd=workdir,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def finish(proc: subprocess.Popen[str], name: str) -> None:
        try:
            out, _ = proc.communicate(PASSWORD + "\n", timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise SystemExit(f"bench: `meet user add {name}` took over 60 s") from None
        if proc.returncode != 0:
            raise SystemExit(f"bench: `meet user add {name}` failed ({proc.returncode}):\n{out}")

    started: list[subprocess.Popen[str]] = []
    try:
        started.append(start(names[0]))
        finish(started[0], names[0])
        started += [start(n) for n in names[1:]]
        for proc, name in zip(started[1:], names[1:]):
            finish(proc, name)
    finally:
        # On Ctrl-C or a failure, don't leave a child writing into the folder being removed.
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return names


def stored_hash_params(db_path: Path) -> str:
    """The parameter part of a stored hash (proves which argon2 cost the users got)."""
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT password_hash FROM users LIMIT 1").fetchone()
    except sqlite3.Error as exc:
        return f"unknown ({exc})"
    parts = (row[0] if row else "").split("$")
    return "$".join(parts[1:4]) if len(parts) >= 4 else "unknown"


class Server:
    """``python -m meet serve`` (or ``command``, e.g. the bare app) as its own process."""

    def __init__(
        self, config_path: Path, workdir: Path, port: int, command: list[str] | None = None, name: str = "server"
    ) -> None:
        self.config_path, self.workdir, self.port = config_path, workdir, port
        self.command = command or meet_cmd("serve", "--config", str(config_path), "--port", str(port))
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            # No threads exist yet in this process, so preexec_fn is safe here.
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only the bench, which stops the server
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=1.0)
                try:
                    conn.request("GET", "/api/health")
                    if conn.getresponse().status == 200:
                        return
                finally:
                    conn.close()
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(
            f"bench: /api/health did not answer within {STARTUP_TIMEOUT:g} s:\n{self.log_tail()}"
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


# --------------------------------------------------------------------------- the benchmark


def login_req(name: str) -> Req:
    body = json.dumps({"login": name, "password": PASSWORD}).encode()
    return Req("POST", "/api/auth/login", (("Content-Type", "application/json"),), body)


def me_req(token: str) -> Req:
    return Req("GET", "/api/auth/me", (("Authorization", f"Bearer {token}"), ("Accept", "application/json")))


async def fetch_tokens(kind: str, port: int, users: list[str]) -> list[str]:
    """Sign each user in once and check the token works on /api/auth/me."""
    pool = make_pool(kind, port, 1)
    send = pool.worker()
    tokens = []
    try:
        with trio.fail_after(60):
            for name in users:
                status, body = await send(login_req(name))
                if status != 200:
                    raise SystemExit(f"bench: login as {name} failed: HTTP {status} {body[:300]!r}")
                token = json.loads(body)["token"]
                status, body = await send(me_req(token))
                if status != 200 or json.loads(body)["user"]["username"] != name:
                    raise SystemExit(f"bench: /api/auth/me failed: HTTP {status} {body[:300]!r}")
                tokens.append(token)
    finally:
        await pool.aclose()
    return tokens


def _progress(label: str, i: int, runs: int, result: RunResult, unit: str) -> None:
    f = result.figures
    per_req = f["server_cpu_ms_per_req"]
    print(
        f"  {label} run {i + 1}/{runs}: {f['rate_per_s']:.1f} {unit}/s, "
        f"p50 {_fmt(f['p50_ms'])} ms, p99 {_fmt(f['p99_ms'])} ms, "
        f"server CPU {_fmt(per_req, 2)} ms/req ({f['server_cpu_pct']:.0f}% of a core), "
        f"client CPU {f['client_cpu_pct']:.0f}%, errors {f['errors']}"
        + (f" {dict(result.errors)}" if result.errors else ""),
        flush=True,
    )


async def me_run(args: argparse.Namespace, server: Server, tokens: list[str]) -> RunResult:
    """One ``GET /api/auth/me`` run against ``server`` (meet or the bare app)."""
    return await load_run(
        kind=args.client,
        port=server.port,
        server_pid=server.pid,
        requests=[me_req(t) for t in tokens],
        workers=args.concurrency,
        warmup=args.warmup,
        duration=args.duration,
        timeout=args.timeout,
        check=lambda body: b'"username"' in body,
    )


async def bench(
    args: argparse.Namespace, server: Server, users: list[str], bare: Server | None = None
) -> dict[str, Any]:
    port, pid = server.port, server.pid
    out: dict[str, Any] = {"login": [], "bare": []}

    async def on_sigterm() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                raise KeyboardInterrupt

    async with trio.open_nursery() as nursery:
        nursery.start_soon(on_sigterm)
        tokens = await fetch_tokens(args.client, port, users)

        login_duration = args.login_duration or args.duration
        print(
            "login: skipped (--no-login)" if not args.login else f"login: POST /api/auth/login, {args.login_clients} clients, "
            f"{args.warmup:g} s warm-up + {login_duration:g} s x {args.runs} runs",
            flush=True,
        )
        runs = []
        for i in range(args.runs if args.login else 0):
            rss_before = proc_peak_rss_mib(pid)
            result = await load_run(
                kind=args.client,
                port=port,
                server_pid=pid,
                requests=[login_req(u) for u in users],
                workers=args.login_clients,
                warmup=args.warmup,
                duration=login_duration,
                timeout=args.timeout,
                check=lambda body: b'"token"' in body,
            )
            result.figures["server_peak_rss_mib"] = proc_peak_rss_mib(pid) or rss_before
            runs.append(result)
            _progress("login", i, args.runs, result, "logins")
            await trio.sleep(args.pause)
        out["login"] = runs

        print(
            f"me: GET /api/auth/me, {args.concurrency} keep-alive connections, "
            f"{args.warmup:g} s warm-up + {args.duration:g} s x {args.runs} runs"
            + (", each followed by the same run against the bare app" if bare is not None else ""),
            flush=True,
        )
        runs = []
        for i in range(args.runs):
            result = await me_run(args, server, tokens)
            runs.append(result)
            _progress("me", i, args.runs, result, "req")
            await trio.sleep(args.pause)
            if bare is not None:
                # Interleaved: both see the same background load, run for run.
                out["bare"].append(await me_run(args, bare, tokens))
                _progress("bare", i, args.runs, out["bare"][-1], "req")
                await trio.sleep(args.pause)
        out["me"] = runs
        nursery.cancel_scope.cancel()
    return out


# --------------------------------------------------------------------------- report

ROWS: list[tuple[str, str, int]] = [
    # (figure key, label, decimals)
    ("rate_per_s", "{rate}", 1),
    ("p50_ms", "latency p50 (ms)", 1),
    ("p99_ms", "latency p99 (ms)", 1),
    ("server_cpu_ms_per_req", "server CPU per request (ms)", 2),
    ("server_cpu_pct", "server CPU (% of one core)", 0),
    ("client_cpu_pct", "bench client CPU (% of one core)", 0),
    ("other_cpu_pct", "other processes CPU (% of one core)", 0),
    ("machine_busy_pct", f"machine busy (% of {NCPU} cores)", 0),
    ("steal_pct", "CPU steal (%)", 1),
    ("server_peak_rss_mib", "server peak RSS (MiB)", 0),
]


def _fmt(value: float | None, decimals: int = 1) -> str:
    return "-" if value is None else f"{value:.{decimals}f}"


def summarize(results: list[RunResult]) -> dict[str, Any]:
    keys = [k for k, _, _ in ROWS] + ["completed", "errors"]
    summary: dict[str, Any] = {}
    for key in keys:
        values = [r.figures[key] for r in results if r.figures.get(key) is not None]
        if values:
            summary[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r.errors)
    summary["error_kinds"] = dict(errors)
    summary["errors_total"] = sum(errors.values())
    return summary


def render_table(title: str, rate_label: str, results: list[RunResult], summary: dict[str, Any]) -> list[str]:
    lines = [title, f"  {'':<38}{'median':>10}{'min':>10}{'max':>10}   per run"]
    for key, label, decimals in ROWS:
        if key not in summary:
            continue
        s = summary[key]
        per_run = " / ".join(_fmt(r.figures.get(key), decimals) for r in results)
        lines.append(
            f"  {label.format(rate=rate_label):<38}{_fmt(s['median'], decimals):>10}"
            f"{_fmt(s['min'], decimals):>10}{_fmt(s['max'], decimals):>10}   {per_run}"
        )
    counted = " / ".join(str(r.figures["completed"]) for r in results)
    lines.append(f"  {'requests counted':<38}{'':>30}   {counted}")
    lines.append(
        f"  {'errors (all runs)':<38}{summary['errors_total']:>10}"
        + (f"   {summary['error_kinds']}" if summary["error_kinds"] else "")
    )
    return lines


def compare(me: dict[str, Any], bare: dict[str, Any]) -> dict[str, float | None]:
    """meet against the bare app, from the medians: rate ratio and CPU per request."""
    def median(summary: dict[str, Any], key: str) -> float | None:
        value = summary.get(key, {}).get("median")
        return None if value is None else float(value)

    rates = median(me, "rate_per_s"), median(bare, "rate_per_s")
    cpu = median(me, "server_cpu_ms_per_req"), median(bare, "server_cpu_ms_per_req")
    return {
        "meet_rate_per_s": rates[0],
        "bare_rate_per_s": rates[1],
        "rate_ratio": rates[0] / rates[1] if rates[0] is not None and rates[1] else None,
        "meet_cpu_ms_per_req": cpu[0],
        "bare_cpu_ms_per_req": cpu[1],
        "cpu_ratio": cpu[0] / cpu[1] if cpu[0] is not None and cpu[1] else None,
    }


def render_comparison(c: dict[str, float | None]) -> list[str]:
    ratio, cpu_ratio = c["rate_ratio"], c["cpu_ratio"]
    share = _fmt(None if ratio is None else 100 * ratio, 0)
    rate = f"{_fmt(c['meet_rate_per_s']):>10} vs {_fmt(c['bare_rate_per_s'])}   meet at {share}% of the bare rate"
    cpu = f"{_fmt(c['meet_cpu_ms_per_req'], 3):>10} vs {_fmt(c['bare_cpu_ms_per_req'], 3)}   x{_fmt(cpu_ratio, 2)}"
    return [
        "meet vs bare (medians)",
        f"  {'requests/s':<38}{rate}",
        f"  {'server CPU per request (ms)':<38}{cpu}",
    ]


def report(
    args: argparse.Namespace, command: str, env: dict[str, Any], out: dict[str, Any]
) -> dict[str, Any]:
    login_duration = args.login_duration or args.duration
    login_summary = summarize(out["login"])
    me_summary = summarize(out["me"])
    bare_summary = summarize(out["bare"])
    lines = [
        "",
        "=" * 100,
        f"meet HTTP bench: medians over {args.runs} runs",
        f"command: {command}",
        f"machine: {env['cpus']} CPUs, {env['platform']}, Python {env['python']}, load avg at start {env['loadavg']}",
        (
            f"server:  python -m meet serve (pid {env['server_pid']}), argon2id {env['argon2']} "
            f"(stored hashes: {env['stored_hash_params']}), data in {env['tmp_fs']}"
        ),
        f"client:  {args.client} client on trio, in this process",
        "",
    ]
    if out["login"]:
        lines += render_table(
            f"Login: POST /api/auth/login, {args.login_clients} concurrent clients, "
            f"{login_duration:g} s window after {args.warmup:g} s warm-up",
            "logins/s",
            out["login"],
            login_summary,
        )
        lines.append("")
    lines += render_table(
        f"Authenticated GET /api/auth/me (bearer token), {args.concurrency} keep-alive connections, "
        f"{args.duration:g} s window after {args.warmup:g} s warm-up",
        "requests/s",
        out["me"],
        me_summary,
    )
    comparison = compare(me_summary, bare_summary) if out["bare"] else {}
    if out["bare"]:
        lines.append("")
        lines += render_table(
            "The same GET /api/auth/me against bench/bare_app.py (bare quart-trio, same Hypercorn, fixed JSON), "
            "runs interleaved with meet's",
            "requests/s",
            out["bare"],
            bare_summary,
        )
        lines += ["", *render_comparison(comparison)]
    notes = []
    for name, summary in (("login", login_summary), ("me", me_summary), ("bare", bare_summary)):
        if not summary.get("completed"):
            continue
        client = summary.get("client_cpu_pct", {}).get("max")
        if client is not None and client >= CLIENT_BUSY_WARN:
            notes.append(
                f"{name}: the bench client used up to {client:.0f}% of a core; being single-threaded it may "
                "have limited the rate (server CPU per request is still valid)."
            )
        if summary["errors_total"]:
            notes.append(f"{name}: {summary['errors_total']} failed requests: {summary['error_kinds']}")
        steal = summary.get("steal_pct", {}).get("max")
        if steal is not None and steal >= 5:
            notes.append(f"{name}: up to {steal:.0f}% CPU steal: the host is oversubscribed, expect noise.")
    samples = login_summary.get("completed", {}).get("min", 0)
    if samples and samples < 100:
        notes.append(
            f"login: only {samples:.0f}+ logins per run, so p99 is close to the slowest one "
            "(use --login-duration for more samples)."
        )
    if NCPU <= 2:
        notes.append(
            f"client and server share {NCPU} cores: rates are lower than on a dedicated server; "
            "server CPU per request is the figure to compare between versions."
        )
    if notes:
        lines += ["", "notes:"] + [f"  - {n}" for n in notes]
    lines.append("=" * 100)
    print("\n".join(lines), flush=True)

    def runs_json(results: list[RunResult]) -> list[dict[str, Any]]:
        return [{**r.figures, "error_kinds": dict(r.errors)} for r in results]

    return {
        "command": command,
        "settings": {
            "runs": args.runs,
            "duration_s": args.duration,
            "login_duration_s": login_duration,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "login_clients": args.login_clients,
            "users": args.users,
            "client": args.client,
            "timeout_s": args.timeout,
        },
        "environment": env,
        "login": {
            "median": {
                k: v["median"] for k, v in login_summary.items() if isinstance(v, dict) and "median" in v
            },
            "summary": login_summary,
            "runs": runs_json(out["login"]),
        },
        "me": {
            "median": {
                k: v["median"] for k, v in me_summary.items() if isinstance(v, dict) and "median" in v
            },
            "summary": me_summary,
            "runs": runs_json(out["me"]),
        },
        "bare": {
            "median": {
                k: v["median"] for k, v in bare_summary.items() if isinstance(v, dict) and "median" in v
            },
            "summary": bare_summary,
            "runs": runs_json(out["bare"]),
        },
        "comparison": comparison,
        "notes": notes,
    }


def fs_type(path: Path) -> str:
    """The filesystem holding ``path`` (tmpfs vs disk changes SQLite write cost)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return f"{path} ({kind})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/http.py",
        description="Benchmark meet's login and authenticated-request throughput against a real server process.",
    )
    p.add_argument(
        "--runs", type=int, default=3, help="repetitions of each measurement; medians are reported (3)"
    )
    p.add_argument("--duration", type=float, default=5.0, help="measurement window per run, seconds (5)")
    p.add_argument(
        "--login-duration", type=float, default=None, help="window for the login runs (default: --duration)"
    )
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up before each window, seconds (1)")
    p.add_argument("--concurrency", type=int, default=50, help="keep-alive connections for /api/auth/me (50)")
    p.add_argument("--login-clients", type=int, default=8, help="concurrent login clients (8)")
    p.add_argument("--users", type=int, default=2, help="accounts to create and sign in as (2)")
    p.add_argument("--no-login", dest="login", action="store_false", help="skip the login runs")
    p.add_argument(
        "--no-bare", dest="bare", action="store_false",
        help="skip the runs against bench/bare_app.py (the framework's floor)",
    )
    p.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator: a minimal HTTP/1.1 client (raw, cheapest) or httpx.AsyncClient",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="per-request deadline, seconds (10)")
    p.add_argument("--pause", type=float, default=0.5, help="idle time between runs, seconds (0.5)")
    p.add_argument("--json", metavar="FILE", help="also write all figures to FILE as JSON")
    args = p.parse_args(argv)
    for name in ("runs", "concurrency", "login_clients", "users"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("duration", "warmup", "timeout", "pause", "login_duration"):
        value = getattr(args, name)
        if value is not None and (
            value < 0 or (value == 0 and name in ("duration", "timeout", "login_duration"))
        ):
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def run_trio(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """trio.run, but a Ctrl-C or a SystemExit from inside a nursery comes out unwrapped."""
    try:
        return trio.run(fn, *args)
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        for kind in (KeyboardInterrupt, SystemExit):
            for leaf in leaves:
                if isinstance(leaf, kind):
                    raise leaf from None
        if len(leaves) == 1:
            raise leaves[0] from group
        raise


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = (
        shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", "bench/http.py", *argv])
    )
    if not os.path.exists("/proc/self/stat"):
        print("bench: needs Linux /proc for CPU accounting", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up on kill too, like on Ctrl-C

    auth = AuthConfig()  # the production defaults
    workdir = Path(tempfile.mkdtemp(prefix="meet-bench-"))
    server: Server | None = None
    bare: Server | None = None
    code = 0
    try:
        config_path = workdir / "meet.toml"
        data_dir = workdir / "data"
        write_config(config_path, data_dir, auth)
        started = time.monotonic()
        print(f"setting up in {workdir}: {args.users} user(s) via `meet user add` ...", flush=True)
        users = add_users(config_path, workdir, args.users)
        port = free_port()
        server = Server(config_path, workdir, port)
        server.start()
        print(
            f"server pid {server.pid} on http://{HOST}:{port} (ready after {time.monotonic() - started:.1f} s)",
            flush=True,
        )
        if args.bare:
            bare_port = free_port()
            bare_command = [sys.executable, os.path.join(_HERE, "bare_app.py"), "--port", str(bare_port)]
            bare = Server(config_path, workdir, bare_port, bare_command, name="bare")
            bare.start()
            print(f"bare app pid {bare.pid} on http://{HOST}:{bare_port}", flush=True)
        env = {
            "cpus": NCPU,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "argon2": f"t={auth.argon2_time_cost} m={auth.argon2_memory_kib} KiB p={auth.argon2_parallelism}",
            "stored_hash_params": stored_hash_params(data_dir / "meet.db"),
            "server_pid": server.pid,
            "tmp_fs": fs_type(workdir),
        }
        out = run_trio(bench, args, server, users, bare)
        if server.proc is not None and server.proc.poll() is not None:
            raise SystemExit(f"bench: the server died during the run:\n{server.log_tail()}")
        data = report(args, command, env, out)
        data["elapsed_s"] = time.monotonic() - started
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
            print(f"wrote {args.json}")
    except KeyboardInterrupt:
        print("\nbench: interrupted, cleaning up", file=sys.stderr)
        code = 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # don't interrupt the cleanup itself
        if bare is not None:
            bare.stop()
        if server is not None:
            rc = server.stop()
            if rc not in (0, None, -signal.SIGTERM):
                print(f"bench: server exited with {rc}; log tail:\n{server.log_tail()}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
