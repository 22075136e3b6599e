"""meet's signaling side by side with Socket.IO, driven by one Node load generator.

The generator and the reference server are in ``../shared/bench/fanout/`` (``load.js``,
``socketio-server.js``; see its README): ``load.js`` puts N members into one room over raw
WebSockets (no compression), S of them send M chats at R per second each, and every member
timestamps arrival. This script runs it, the same way, against a fresh ``meet serve`` and a
fresh ``node socketio-server.js``:

1. **Chat fan-out** at each ``--rates`` value (per sender): deliveries/s achieved, p50/p99
   latency, and the server's CPU over the whole load run (connecting included, as the
   reference's ``sweep.sh`` measures it).
2. **Join latency and idle memory**: ``JOIN_ONLY=1`` joins ``--joins`` members one after
   another (the latency of the joins made with at least half of them in), then the server's
   ``VmRSS`` growth per idle connection.

Each figure is the median over ``--runs`` runs, each on fresh servers. Nothing asserts a
timing. See bench/README.md.

    python bench/fanout.py [--runs 3] [--rates 2,5,10,20,50] [--joins 500] [--no-reference]
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.realpath(__file__))
from _sibling import load_sibling  # before bench/ leaves sys.path

sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]

import argparse
import contextlib
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sg = load_sibling("signaling.py")
hb = sg.hb

GENERATOR = Path(_HERE).parent.parent / "shared" / "bench" / "fanout"
RESULT = re.compile(r"delivered=(\d+)/(\d+) deliveries/s=(\d+) p50=(\d+)ms p99=(\d+)ms")
JOINS = re.compile(r"join latency with \S+ connected: p50=([\d.]+)ms p99=([\d.]+)ms")
LOAD_TIMEOUT = 240.0


def prepare_generator(source: Path, workdir: Path) -> Path:
    """A copy of the generator folder with its node modules (``npm install`` when missing)."""
    if not (source / "load.js").is_file():
        raise SystemExit(f"bench: no load generator at {source} (pass --generator)")
    target = workdir / "fanout"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("node_modules"))
    if (source / "node_modules").is_dir():
        shutil.copytree(source / "node_modules", target / "node_modules", symlinks=True)
    else:
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=target, check=True)
    return target


@contextlib.contextmanager
def profiled(pid: int, output: Path | None) -> Iterator[None]:
    """py-spy samples the server into ``output`` (raw stacks, for a flame graph) meanwhile."""
    if output is None:
        yield
        return
    spy = subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--nonblocking",
         "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        spy.wait(timeout=30)


def run_load(gen: Path, pid: int, args: list[str]) -> dict[str, float]:
    """One ``node load.js`` fan-out run: its figures and the server's CPU (cores) meanwhile."""
    cpu0, t0 = hb.proc_cpu_seconds(pid), time.monotonic()
    done = subprocess.run(
        ["node", "load.js", *args], check=False, cwd=gen, capture_output=True, text=True, timeout=LOAD_TIMEOUT
    )
    cpu1, t1 = hb.proc_cpu_seconds(pid), time.monotonic()
    found = RESULT.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"bench: load.js failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    delivered, expected, rate, p50, p99 = (int(v) for v in found.groups())
    return {
        "deliveries_per_s": rate, "p50_ms": p50, "p99_ms": p99,
        "delivered_share": delivered / expected, "server_cores": (cpu1 - cpu0) / (t1 - t0),
    }


def run_joins(gen: Path, pid: int, args: list[str]) -> dict[str, float]:
    """``JOIN_ONLY=1``: join latency, then the server's RSS growth per idle connection."""
    count = int(args[-1])
    time.sleep(1.0)  # let the server settle before the baseline (a bench, not a test)
    before = sg.proc_rss_kib(pid)
    proc = subprocess.Popen(
        ["node", "load.js", *args], cwd=gen, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "JOIN_ONLY": "1", "IDLE_MS": "3000"},
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("READY"):
            break
    time.sleep(1.0)  # the last joins' broadcasts are written
    after = sg.proc_rss_kib(pid)
    proc.wait(timeout=LOAD_TIMEOUT)
    found = JOINS.search("".join(lines))
    if found is None:
        raise SystemExit(f"bench: the join run printed no latency: {''.join(lines)[-500:]}")
    return {"join_p50_ms": float(found[1]), "join_p99_ms": float(found[2]), "rss_kib_per_conn": (after - before) / count}


def meet_run(args: argparse.Namespace, gen: Path, workdir: Path, config: Path, users: list[str]) -> dict[str, Any]:
    server = hb.Server(config, workdir, hb.free_port())
    server.start()
    try:
        tokens = hb.run_trio(sg.sign_in, server.port, users)
        rooms = hb.run_trio(sg.create_rooms, server.port, tokens[0], len(args.rates) + 1, "fanout")
        url = f"ws://{hb.HOST}:{server.port}/api/rooms/{{}}/ws"
        shape = [str(args.members), str(args.senders), str(args.messages)]
        out: dict[str, Any] = {}
        for rate, room in zip(args.rates, rooms):
            with profiled(server.pid, args.py_spy and args.py_spy / f"meet-rate-{rate}.txt"):
                out[f"rate {rate}"] = run_load(gen, server.pid, ["meet", url.format(room), ",".join(tokens), *shape, str(rate)])
            print(f"  meet R={rate}/s: {out[f'rate {rate}']}", flush=True)
        with profiled(server.pid, args.py_spy and args.py_spy / "meet-joins.txt"):
            out["joins"] = run_joins(gen, server.pid, ["meet", url.format(rooms[-1]), ",".join(tokens), str(args.joins)])
        print(f"  meet joins: {out['joins']}", flush=True)
        return out
    finally:
        server.stop()


def reference_run(args: argparse.Namespace, gen: Path) -> dict[str, Any]:
    port = hb.free_port()
    proc = subprocess.Popen(["node", "socketio-server.js", str(port)], cwd=gen, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if not proc.stdout.readline().startswith("listening"):
            raise SystemExit("bench: the Socket.IO reference did not start")
        url = f"ws://{hb.HOST}:{port}"
        shape = [str(args.members), str(args.senders), str(args.messages)]
        out: dict[str, Any] = {}
        for rate in args.rates:
            out[f"rate {rate}"] = run_load(gen, proc.pid, ["socketio", url, *shape, str(rate)])
            print(f"  socket.io R={rate}/s: {out[f'rate {rate}']}", flush=True)
        out["joins"] = run_joins(gen, proc.pid, ["socketio", url, str(args.joins)])
        print(f"  socket.io joins: {out['joins']}", flush=True)
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def median_of(runs: list[dict[str, Any]], section: str, key: str) -> float | None:
    values = [run[section][key] for run in runs if section in run]
    return statistics.median(values) if values else None


def report(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> None:
    names = list(results)
    print(f"\nmedians of {args.runs} run(s): {args.members} members, {args.senders} senders x {args.messages} chats")
    print("| offered | " + " | ".join(f"{n} deliveries/s, p50 / p99, server cores" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for rate in args.rates:
        cells = []
        for name in names:
            m = {k: median_of(results[name], f"rate {rate}", k) for k in ("deliveries_per_s", "p50_ms", "p99_ms", "server_cores")}
            cells.append(f"{m['deliveries_per_s']:,.0f}/s, {m['p50_ms']:.0f} / {m['p99_ms']:.0f} ms, {m['server_cores']:.2f}")
        offered = rate * args.senders * args.members
        print(f"| {offered:,}/s ({rate}/s per sender) | " + " | ".join(cells) + " |")
    for key, label in (("join_p50_ms", "join p50 ms"), ("join_p99_ms", "join p99 ms"), ("rss_kib_per_conn", "KiB per idle connection")):
        print(f"| {label} ({args.joins} joins) | " + " | ".join(f"{median_of(results[n], 'joins', key):.1f}" for n in names) + " |")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/fanout.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--rates", default="2,5,10,20,50", help="chats per second per sender, comma-separated")
    p.add_argument("--members", type=int, default=200)
    p.add_argument("--senders", type=int, default=10)
    p.add_argument("--messages", type=int, default=50, help="chats per sender per load run")
    p.add_argument("--joins", type=int, default=500, help="members joined one by one for join latency and memory")
    p.add_argument("--users", type=int, default=12, help="accounts whose tokens the members share")
    p.add_argument("--generator", type=Path, default=GENERATOR, help="folder of load.js and socketio-server.js")
    p.add_argument("--no-reference", action="store_true", help="measure meet only")
    p.add_argument("--py-spy", type=Path, help="folder: record meet's server with py-spy during each load run")
    args = p.parse_args(argv)
    args.rates = [int(r) for r in args.rates.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sg.raise_nofile_limit()
    workdir = Path(tempfile.mkdtemp(prefix="meet-bench-fanout-"))
    try:
        gen = prepare_generator(args.generator, workdir)
        config = workdir / "meet.toml"
        sg.write_config(config, workdir / "data")
        users = hb.add_users(config, workdir, args.users)
        results: dict[str, list[dict[str, Any]]] = {"meet": []}
        if not args.no_reference:
            results["socket.io"] = []
        for i in range(args.runs):
            print(f"run {i + 1}/{args.runs}", flush=True)
            results["meet"].append(meet_run(args, gen, workdir, config, users))
            if not args.no_reference:
                results["socket.io"].append(reference_run(args, gen))
        report(args, results)
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
