"""The root nursery: the database, the services, Hypercorn and background jobs.

``open_server`` is what tests use (bind port 0, get the URLs back); ``serve`` is what
``meet serve`` runs: the same plus signal handling and a shutdown deadline.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import signal
import socket
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio import serve as hypercorn_serve

from meet import hypercorn_compat, hypercorn_ws
from meet.accounts import Accounts
from meet.admin import Admin
from meet.app import MAX_BODY, create_app
from meet.asgi import ASGIApp, BodyDrain, ForwardedFor
from meet.backup import data_lock
from meet.clock import Clock, SystemClock
from meet.config import Config, RoomsConfig, load_secret_key
from meet.errors import ConfigError, MeetError
from meet.guests import Guests
from meet.heartbeat import Heartbeat
from meet.history import History
from meet.logs import RequestLog
from meet.mail import CountingMailer, Mailer, make_mailer
from meet.metrics import Metrics
from meet.passwords import Passwords
from meet.presence import Presence, store_names
from meet.relay.bridge import RelayBridge
from meet.rooms import Rooms, close_stale_stays
from meet.sessions import SessionGuard
from meet.store import Store, open_store, retention
from meet.store import accounts as account_queries
from meet.tokens import Tokens
from meet.views.context import Services

log = logging.getLogger("meet.server")

PURGE_INTERVAL = 3600.0
RETENTION_INTERVAL = 86400.0
RETENTION_RETRY = 3600.0
SHUTDOWN_MARGIN = 5.0


@dataclass
class RunningServer:
    """A started server: its URLs, services, and the event that stops it."""

    urls: list[str]
    services: Services
    stop: trio.Event = field(default_factory=trio.Event)

    @property
    def url(self) -> str:
        """The first bound URL (e.g. ``http://127.0.0.1:8080``)."""
        return self.urls[0]


class _HypercornConfig(HypercornConfig):
    """Hypercorn settings whose listening sockets carry TCP_USER_TIMEOUT.

    Hypercorn writes to sockets inside a shielded scope, so a client that stops reading would
    hold its connection task (and shutdown) forever. With TCP_USER_TIMEOUT (inherited by
    accepted sockets) the kernel cuts such a connection, and the blocked write fails.
    """

    send_timeout_ms = 15_000

    def create_sockets(self) -> Sockets:
        sockets = super().create_sockets()
        option = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux only
        if option is not None:
            for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, option, self.send_timeout_ms)
        return sockets


def hypercorn_config(config: Config) -> HypercornConfig:
    """Translate ``[server]`` into Hypercorn's settings."""
    hc = _HypercornConfig()
    hc.send_timeout_ms = int(config.server.send_timeout * 1000)
    host = config.server.host
    hc.bind = [f"[{host}]:{config.server.port}" if ":" in host else f"{host}:{config.server.port}"]
    hc.graceful_timeout = config.server.graceful_timeout
    hc.include_server_header = False
    # Frames between 64 KiB and 1 MiB get a protocol error; larger ones a 1009 close.
    hc.websocket_max_message_size = 1024 * 1024
    # A client that sends nothing (not even heartbeat pongs) for this long is disconnected at
    # the TCP level; that also frees a writer stuck on a client that stopped reading.
    hc.read_timeout = int(config.rooms.idle_timeout + 15)
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.accesslog = None
    if config.server.tls_cert:
        hc.certfile = str(config.base_dir / config.server.tls_cert)
        hc.keyfile = str(config.base_dir / config.server.tls_key)
    return hc


def build_services(config: Config, store: Store, clock: Clock, mailer: Mailer | None) -> Services:
    """Wire the services around an open store."""
    auth = config.auth
    metrics = Metrics()
    store.observe = metrics.db_seconds.observe
    accounts = Accounts(
        store=store,
        passwords=Passwords(auth.argon2_time_cost, auth.argon2_memory_kib, auth.argon2_parallelism),
        tokens=Tokens(load_secret_key(config)),
        mailer=CountingMailer(mailer or make_mailer(config), metrics.mail_done),
        clock=clock,
        settings=auth,
        sender=config.mail.sender,
    )
    sessions = SessionGuard(store, clock, config.rooms)
    accounts.revoked = sessions.poke  # sign-out and password resets close sockets at once
    rooms = Rooms(store, clock, config.rooms, config.rtc)
    presence = Presence(config.rooms.ring_timeout, names=store_names(store))
    rooms.meeting_listener = presence.meeting_changed  # "Online now" shows who is in a meeting
    rooms.metrics = metrics
    metrics.live.source = rooms.modes
    admin = Admin(config=config, store=store, accounts=accounts, rooms=rooms, sessions=sessions, clock=clock)
    return Services(
        config=config,
        store=store,
        accounts=accounts,
        guests=Guests(store, accounts.tokens, clock, config.rooms),
        rooms=rooms,
        history=History(store, clock),
        presence=presence,
        clock=clock,
        sessions=sessions,
        heartbeat=Heartbeat(config.rooms),
        metrics=metrics,
        admin=admin,
    )


async def purge_job(store: Store, clock: Clock, interval: float = PURGE_INTERVAL) -> None:
    """Delete dead sessions, codes and reset tokens once an hour."""
    while True:
        removed = await store.run(account_queries.purge_expired, clock.now())
        if removed:
            log.info("purged %d expired sessions/codes/tokens", removed)
        await trio.sleep(interval)


async def retention_job(
    store: Store,
    clock: Clock,
    rooms: RoomsConfig,
    interval: float = RETENTION_INTERVAL,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Delete chat and call history past ``[rooms]`` retention once a day (the first run
    before start-up completes, so a lowered setting applies at once)."""
    started = False
    while True:
        wait = interval
        try:
            messages, stays = await store.run(
                retention.purge_old, clock.now(), rooms.chat_retention_days, rooms.history_retention_days
            )
        except (MeetError, sqlite3.Error) as exc:  # e.g. a full disk: the server runs on, the purge waits
            log.error("retention: the purge failed (%s); trying again in %d minutes", exc, RETENTION_RETRY // 60)
            wait = RETENTION_RETRY
        else:
            if messages or stays:
                log.info("retention: deleted %d chat messages and %d call history entries", messages, stays)
        if not started:
            started = True
            task_status.started()
        await trio.sleep(wait)


@asynccontextmanager
async def open_server(
    config: Config, *, clock: Clock | None = None, mailer: Mailer | None = None
) -> AsyncIterator[RunningServer]:
    """Start everything under one nursery; leaving the block shuts down gracefully."""
    check_startup(config)
    hypercorn_compat.install()
    hypercorn_ws.install()
    clock = clock or SystemClock()
    # The data folder's lock, held for the server's lifetime: `meet restore` and a second
    # server on the same data refuse to start while it is held.
    async with data_lock(config.data_dir), open_store(config.database_path, clock.now()) as store:
        store.clock = clock  # paces the "disk is full" log line
        await close_stale_stays(store, clock.now())
        svc = build_services(config, store, clock, mailer)
        app = create_app(svc)
        asgi: ASGIApp = BodyDrain(app, limit=MAX_BODY)
        # Inside ForwardedFor: the access log names the client address after proxy_hops.
        asgi = RequestLog(asgi, trust_incoming_id=config.server.proxy_hops > 0)
        if config.server.proxy_hops:
            asgi = ForwardedFor(asgi, config.server.proxy_hops)
        async with trio.open_nursery() as nursery:
            jobs = trio.CancelScope()
            await nursery.start(_run_jobs, jobs, svc)
            running = RunningServer(urls=[], services=svc)
            running.urls = await nursery.start(
                partial(hypercorn_serve, asgi, hypercorn_config(config), shutdown_trigger=running.stop.wait)
            )
            try:
                yield running
            finally:
                # WebSockets first, with 1001 so pages reconnect to the next run; then Hypercorn
                # drains HTTP requests up to graceful_timeout; background jobs stop at once.
                svc.rooms.shutdown()
                svc.presence.shutdown()
                running.stop.set()
                jobs.cancel()


def check_startup(config: Config) -> None:
    """Refuse settings that would take links or origins from request headers; warn about risky ones."""
    server = config.server
    if not server.public_url and config.mail.backend == "smtp":
        raise ConfigError(
            '[server] public_url: must be set when [mail] backend = "smtp" (mailed links never come from request headers)'
        )
    if not server.public_url and server.proxy_hops:
        raise ConfigError("[server] public_url: must be set when proxy_hops > 0 (the address people use)")
    if config.mail.backend == "console" and not _is_loopback(server.host):
        log.warning(
            "[mail] backend = \"console\" while listening on %s: verification codes and reset links "
            "are written to this log; use the file or smtp backend on a shared network",
            server.host,
        )
    elif not server.public_url:
        log.info("[server] public_url is not set: mail links use the address each client connected to")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _run_jobs(
    scope: trio.CancelScope, svc: Services, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """The background jobs, all cancelled together at shutdown."""
    with scope:
        async with trio.open_nursery() as nursery:
            # Chat's group commit; stopped, it writes what waits and chat goes on inline.
            await nursery.start(svc.rooms.chat_log.run)
            await nursery.start(svc.presence.run)
            await nursery.start(svc.sessions.run)
            await nursery.start(svc.heartbeat.run)
            if svc.config.rtc.relay != "off":
                bridge = RelayBridge(svc.config.rtc, svc.rooms.relay_event, svc.rooms.relay_lost)
                await nursery.start(bridge.run)
                svc.rooms.media.relay = bridge
                svc.metrics.relay.watch(bridge.stats, len(bridge.workers))
            nursery.start_soon(purge_job, svc.store, svc.clock)
            if svc.config.rooms.chat_retention_days or svc.config.rooms.history_retention_days:
                await nursery.start(retention_job, svc.store, svc.clock, svc.config.rooms)
            task_status.started()


def settle_garbage_collector() -> None:
    """Keep the collector's full passes shorter once the server is up.

    A full (oldest-generation) collection walks every tracked object and stalls every room's
    signaling meanwhile: with 500 WebSockets open, 60–200 ms here (bench/fanout.py's join
    p99). The ~46,000 objects made at startup (modules, services) live as long as the process,
    so they are moved out of the collector's sight (``gc.freeze``); what connections create
    afterwards is collected as usual.
    """
    gc.collect()
    gc.freeze()


async def serve(config: Config, *, task_status: trio.TaskStatus[RunningServer] = trio.TASK_STATUS_IGNORED) -> None:
    """Run until SIGINT/SIGTERM, then shut down within ``graceful_timeout`` plus a margin."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        deadline = trio.CancelScope()
        with deadline:
            async with open_server(config) as running:
                for url in running.urls:
                    log.info("meet is listening on %s", url)
                settle_garbage_collector()
                task_status.started(running)
                async for signum in signals:
                    log.info("received %s, shutting down", signal.Signals(signum).name)
                    break
                deadline.deadline = trio.current_time() + config.server.graceful_timeout + SHUTDOWN_MARGIN
        if deadline.cancelled_caught:
            log.warning("shutdown deadline passed; remaining connections were cut")
