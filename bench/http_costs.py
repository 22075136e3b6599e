"""What meet's own features cost per ``GET /api/auth/me``, measured in-process.

``bench/http.py`` compares meet with a bare quart-trio app end to end (Hypercorn, sockets,
a load generator); this script explains the difference. It calls the ASGI applications
directly — no Hypercorn, no sockets, one request at a time — and reads this process's CPU
time per request for the bare app (``bench/bare_app.py``), meet's whole stack (access log
and request id, body drain, the Quart app with metrics, security headers, the session), and
meet with one feature switched off at a time. Rounds are interleaved; medians are printed.
Nothing is asserted.

    python bench/http_costs.py [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]  # bench/http.py shadows http

import trio
from quart.signals import request_finished, request_started

from meet.app import MAX_BODY, create_app
from meet.asgi import BodyDrain
from meet.clock import SystemClock
from meet.config import config_from_mapping
from meet.logs import RequestLog, setup_logging
from meet.server import build_services
from meet.store import open_store
from meet.views import metrics as metrics_views

App = Callable[[Any, Any, Any], Awaitable[None]]
PASSWORD = "bench-password-xxxxxxxx"


def load_bare() -> App:
    spec = importlib.util.spec_from_file_location("bare_app", os.path.join(_HERE, "bare_app.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app  # type: ignore[no-any-return]


def scope_for(token: str) -> dict[str, Any]:
    """What Hypercorn hands the app for the bench's request."""
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": "/api/auth/me", "raw_path": b"/api/auth/me",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080),
        "headers": [
            (b"host", b"127.0.0.1:8080"), (b"user-agent", b"meet-bench/1"),
            (b"authorization", f"Bearer {token}".encode()), (b"accept", b"application/json"),
        ],
        "extensions": {},
    }  # fmt: skip


async def one(app: App, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def cpu_us(app: App, scope: dict[str, Any], n: int) -> float:
    for _ in range(100):
        await one(app, scope)
    started = time.process_time()
    for _ in range(n):
        await one(app, scope)
    return (time.process_time() - started) / n * 1e6


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="meet-costs-"))
    config = config_from_mapping(
        {"storage": {"data_dir": str(folder / "data")}, "mail": {"backend": "file"}, "rtc": {"relay": "off"}},
        base_dir=folder, env={},
    )
    with (folder / "log.txt").open("w") as log_file:  # a file, as the server's stderr in bench/http.py
        setup_logging(config.log, log_file)
        clock = SystemClock()
        async with open_store(config.database_path, clock.now()) as store:
            svc = build_services(config, store, clock, None)
            await svc.accounts.add_user("bench0", "bench0@example.org", PASSWORD, admin=False)
            _, token = await svc.accounts.login("bench0", PASSWORD, "127.0.0.1", "bench")
            app = create_app(svc)
            stack: App = RequestLog(BodyDrain(app, limit=MAX_BODY))
            scope = scope_for(token)
            assert (await one(stack, scope))[0]["status"] == 200
            access = logging.getLogger("meet.access")

            def access_log(off: bool) -> None:
                access.setLevel(logging.WARNING if off else logging.NOTSET)

            def metrics(off: bool) -> None:
                for signal, receiver in ((request_started, metrics_views._started), (request_finished, metrics_views._finished)):
                    signal.disconnect(receiver, app) if off else signal.connect(receiver, app)

            def session_cache(off: bool) -> None:
                svc.accounts.session_cache.max_entries = 0 if off else 10_000
                svc.accounts.session_cache.clear()

            variants: dict[str, tuple[App, Callable[[bool], None] | None]] = {
                "bare quart-trio app (bench/bare_app.py)": (load_bare(), None),
                "meet, whole stack": (stack, None),
                "meet, access log off": (stack, access_log),
                "meet, metrics signals off": (stack, metrics),
                "meet, no RequestLog and BodyDrain": (app, None),
                "meet, session cache off (a lookup per request)": (stack, session_cache),
            }
            results: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, (target, switch) in variants.items():
                    if switch is not None:
                        switch(True)
                    results[name].append(await cpu_us(target, scope, args.requests))
                    if switch is not None:
                        switch(False)
    whole = statistics.median(results["meet, whole stack"])
    print(f"CPU per GET /api/auth/me in-process, medians of {args.rounds} rounds x {args.requests} requests:")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:<48}{median:7.1f} µs   ({median - whole:+6.1f} vs whole)   runs {' '.join(f'{v:.0f}' for v in values)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per variant and round (2000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are printed (5)")
    trio.run(main, parser.parse_args())
