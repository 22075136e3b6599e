"""Guests and the lobby: what a guest pass and a wait in the lobby cost, against a direct join.

Runs the real server (``python -m meet serve``) as its own process with a throwaway data folder
(bench/http.py's helpers: config, ``meet user add``, start/stop), signs the host in and opens the
host's room socket. Then, per run, ``--guests`` guests one after another, in two meetings:

- **lobby** (``guests: "lobby"``): ``POST /api/rooms/{code}/guest`` (``pass``), open the room socket
  with the pass as bearer token until ``lobby`` arrives (``knock``: connect → ``lobby``), the host's
  socket receives ``knock`` and answers ``admit`` at once; ``admit``: the host sending ``admit`` →
  the guest receiving ``welcome`` on the same socket. ``total``: from the pass request to
  ``welcome``.
- **direct** (``guests: "open"``, the same pass flow): connect → ``welcome`` (``join``).

Then a **burst**: ``--burst`` guests knock at once; the host admits each knock as it arrives;
``burst``: from the first connect to the last ``welcome``.

Figures are medians per run, then the median over ``--runs`` runs (the machine is noisy). All on
loopback; run inside an empty network namespace as CI does:

    unshare -n sh -c 'ip link set lo up && exec python bench/lobby.py --runs 5'
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.realpath(__file__))
from _sibling import load_sibling  # before bench/ leaves sys.path (bench/http.py shadows http)

sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from meet.config import AuthConfig

hb = load_sibling("http.py")
HOST, PASSWORD = hb.HOST, hb.PASSWORD
WAIT = 30.0


async def next_of(ws: WebSocketConnection, type_: str) -> dict[str, Any]:
    """The next frame of ``type_`` (answering server pings on the way)."""
    with trio.fail_after(WAIT):
        while True:
            frame = json.loads(await ws.get_message())
            if frame["type"] == "ping":
                await ws.send_message('{"type":"pong"}')
            elif frame["type"] == type_:
                return frame  # type: ignore[no-any-return]
            elif frame["type"] == "error":
                raise SystemExit(f"bench: server error while waiting for {type_}: {frame}")


class Bench:
    def __init__(self, http: httpx.AsyncClient, ws_base: str, host_token: str) -> None:
        self.http, self.ws_base, self.host_token = http, ws_base, host_token

    async def room(self, guests: str) -> str:
        auth = {"Authorization": f"Bearer {self.host_token}"}
        r = await self.http.post("/api/rooms", json={"title": f"bench {guests}"}, headers=auth)
        code = str(r.json()["room"]["code"])
        await self.http.patch(f"/api/rooms/{code}", json={"guests": guests}, headers=auth)
        return code

    async def guest_pass(self, code: str) -> tuple[str, float]:
        t0 = time.perf_counter()
        r = await self.http.post(f"/api/rooms/{code}/guest", json={"name": "Guest"})
        if r.status_code != 200:
            raise SystemExit(f"bench: guest pass refused: {r.status_code} {r.text[:300]}")
        return str(r.json()["token"]), time.perf_counter() - t0

    def url(self, code: str) -> str:
        return f"{self.ws_base}/api/rooms/{code}/ws"

    def socket(self, code: str, token: str) -> Any:
        return open_websocket_url(self.url(code), extra_headers=[("Authorization", f"Bearer {token}")])


async def through_lobby(b: Bench, code: str, host: WebSocketConnection) -> dict[str, float]:
    start = time.perf_counter()
    token, pass_s = await b.guest_pass(code)
    t_connect = time.perf_counter()
    async with b.socket(code, token) as guest:
        await next_of(guest, "lobby")
        t_lobby = time.perf_counter()
        knock = await next_of(host, "knock")
        t_admit = time.perf_counter()
        await host.send_message(json.dumps({"type": "admit", "id": knock["id"]}))
        await next_of(guest, "welcome")
        t_welcome = time.perf_counter()
    await next_of(host, "peer-left")
    return {
        "pass": pass_s, "knock": t_lobby - t_connect, "admit": t_welcome - t_admit, "total": t_welcome - start,
    }


async def direct(b: Bench, code: str, host: WebSocketConnection) -> dict[str, float]:
    token, _ = await b.guest_pass(code)
    t_connect = time.perf_counter()
    async with b.socket(code, token) as guest:
        await next_of(guest, "welcome")
        t_welcome = time.perf_counter()
    await next_of(host, "peer-left")
    return {"join": t_welcome - t_connect}


async def burst(b: Bench, code: str, host: WebSocketConnection, count: int) -> float:
    """``count`` guests knock at once; the host admits each knock as it comes."""
    tokens = [(await b.guest_pass(code))[0] for _ in range(count)]
    done = trio.Event()
    welcomed = 0
    start = time.perf_counter()

    async def guest(token: str) -> None:
        nonlocal welcomed
        async with b.socket(code, token) as ws:
            await next_of(ws, "welcome")
            welcomed += 1
            if welcomed == count:
                done.set()
            await done.wait()

    async def admit_all() -> None:
        for _ in range(count):
            knock = await next_of(host, "knock")
            await host.send_message(json.dumps({"type": "admit", "id": knock["id"]}))

    async with trio.open_nursery() as nursery:
        for token in tokens:
            nursery.start_soon(guest, token)
        nursery.start_soon(admit_all)
        await done.wait()
        elapsed = time.perf_counter() - start
    return elapsed


async def one_run(b: Bench, guests: int, burst_size: int) -> dict[str, float]:
    lobby_code, open_code = await b.room("lobby"), await b.room("open")
    figures: dict[str, list[float]] = {}
    async with b.socket(lobby_code, b.host_token) as host_lobby, b.socket(open_code, b.host_token) as host_open:
        await next_of(host_lobby, "welcome")
        await next_of(host_open, "welcome")
        for _ in range(guests):
            for key, value in {**await through_lobby(b, lobby_code, host_lobby),
                               **await direct(b, open_code, host_open)}.items():
                figures.setdefault(key, []).append(value)
        burst_s = await burst(b, lobby_code, host_lobby, burst_size)
    out = {key: statistics.median(values) * 1000 for key, values in figures.items()}
    out["burst"] = burst_s * 1000
    return out


async def measure(port: int, host_name: str, args: argparse.Namespace) -> list[dict[str, float]]:
    base = f"http://{HOST}:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=WAIT) as http:
        r = await http.post("/api/auth/login", json={"login": host_name, "password": PASSWORD})
        if r.status_code != 200:
            raise SystemExit(f"bench: host login failed: {r.status_code} {r.text[:300]}")
        b = Bench(http, f"ws://{HOST}:{port}", r.json()["token"])
        return [await one_run(b, args.guests, args.burst) for _ in range(args.runs)]


ROWS: list[tuple[str, str]] = [
    ("pass", "POST /api/rooms/{code}/guest"),
    ("knock", "lobby: connect -> lobby"),
    ("admit", "lobby: admit -> welcome"),
    ("total", "lobby: pass request -> welcome"),
    ("join", "open room: connect -> welcome"),
    ("burst", "burst: first connect -> last welcome"),
]


def report(runs: list[dict[str, float]], args: argparse.Namespace) -> dict[str, Any]:
    summary = {key: statistics.median(run[key] for run in runs) for key, _ in ROWS}
    print(f"{args.runs} runs x {args.guests} guests (medians per run, ms; burst = {args.burst} guests at once)")
    print(f"{'':38}" + "".join(f"{f'run {i + 1}':>9}" for i in range(len(runs))) + f"{'median':>9}")
    for key, label in ROWS:
        print(f"{label:38}" + "".join(f"{run[key]:9.2f}" for run in runs) + f"{summary[key]:9.2f}")
    ratio = summary["knock"] / summary["join"] if summary["join"] else float("nan")
    print(f"connect -> lobby vs connect -> welcome (open room): {ratio:.2f}x")
    return {"runs": runs, "median_ms": summary}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--guests", type=int, default=20, help="guests per run and meeting, one at a time")
    parser.add_argument("--burst", type=int, default=20, help="guests knocking at once at the end of a run")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meet-bench-lobby-") as tmp:
        work = Path(tmp)
        config_path = work / "meet.toml"
        hb.write_config(config_path, work / "data", AuthConfig())
        # Every pass comes from 127.0.0.1: lift the per-address limits for the bench only.
        with open(config_path, "a") as f:
            f.write("[rooms]\nguest_passes_per_address = 100000\nmax_connections_per_address = 100000\n")
        host_name = hb.add_users(config_path, work, 1)[0]
        server = hb.Server(config_path, work, hb.free_port())
        server.start()
        try:
            runs = trio.run(measure, server.port, host_name, args)
        finally:
            server.stop()
    result = report(runs, args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
