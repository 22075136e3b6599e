"""Prometheus metrics: one registry per server, the series it exposes, and the collectors that
read live state (rooms, relay workers) when ``/metrics`` is scraped.

Built on ``prometheus_client`` with a :class:`CollectorRegistry` of our own per server (tests
run many servers in one process; the library's global registry would mix them). Nothing here
imports the web framework or the relay: the modules that count are handed the instruments or
small callables (``Store.observe``, ``CountingMailer``), and the relay's figures come from an
``async`` callable (``RelayBridge.stats``) that :meth:`Metrics.refresh` calls — at most once a
second, so a fast scraper cannot keep the workers busy answering.

Names follow Prometheus conventions: ``meet_`` prefix, base units, ``_total`` for counters
(``prometheus_client`` appends it), ``_seconds`` and ``_bytes``. Labels are bounded: the HTTP
route is the URL rule (``/api/rooms/<code>``), never the raw path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from meet import __version__

# No ``*_created`` series next to every counter and histogram: they double the output and
# Prometheus does not need them (it detects counter resets itself). A process-wide switch of
# the library; meet is the only user of it in its process.
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "unmatched"  # the route label of requests no URL rule matched (404s, probes)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SOCKET_KINDS = ("room", "presence")
MODES = ("mesh", "relay")
RELAY_CACHE = 1.0  # seconds the relay workers' figures are reused before asking them again
RELAY_TIMEOUT = 2.0  # a worker that takes longer to answer is left out of that scrape
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Per relay worker: (series name without _total, key of the worker's stats reply, help).
RELAY_COUNTERS = (
    ("meet_relay_received_packets", "packets_received", "RTP packets received from publishers."),
    ("meet_relay_forwarded_packets", "packets_forwarded", "RTP packets forwarded to subscribers."),
    ("meet_relay_forwarded_bytes", "bytes_forwarded", "Bytes of RTP packets forwarded to subscribers."),
    ("meet_relay_nacks", "nacks_received", "Packets subscribers asked again for (NACKed sequence numbers)."),
    ("meet_relay_retransmitted_packets", "retransmitted", "Packets resent in answer to NACKs."),
    ("meet_relay_plis", "plis_sent", "Keyframe requests (PLI) sent to publishers."),
    ("meet_relay_layer_switches", "layer_switches", "Simulcast layer switches completed by subscribers."),
    ("meet_relay_piped_packets", "piped", "Packets sent on to another worker holding the same room."),
    ("meet_relay_cpu_seconds", "cpu_seconds", "CPU time (user + system) of the worker process."),
    ("meet_relay_restarts", "restarts", "Times the worker was restarted after it died."),
)
RELAY_GAUGES = (
    ("meet_relay_rooms", "rooms", "Rooms the worker holds."),
    ("meet_relay_participants", "participants", "Participants connected to the worker."),
)

RelayStats = Callable[[float], Awaitable[list[dict[str, Any]]]]  # timeout -> one dict per worker
LiveRooms = Callable[[], Iterable[tuple[str, int]]]  # (mode, participants) of each live room


class Metrics:
    """The instruments of one server, on its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._request_series: dict[tuple[str | None, str, int], tuple[Any, Any]] = {}
        r = self.registry
        self.http_requests = Counter(
            "meet_http_requests", "HTTP requests answered, by route (URL rule), method and status.",
            ["route", "method", "status"], registry=r,
        )  # fmt: skip
        self.http_seconds = Histogram(
            "meet_http_request_duration_seconds", "Time to answer an HTTP request, by route and method.",
            ["route", "method"], registry=r,
        )  # fmt: skip
        self.websockets = Gauge(
            "meet_websockets_open", "Open WebSockets, by kind (room, presence).", ["kind"], registry=r
        )
        self.joins = Counter("meet_room_joins", "Participants admitted into a room.", registry=r)
        self.leaves = Counter(
            "meet_room_leaves", "Participants who left a room (or whose meeting ended).", registry=r
        )
        self.chat = Counter("meet_chat_messages", "Chat messages posted in rooms.", registry=r)
        self.db_seconds = Histogram(
            "meet_db_call_duration_seconds", "Time of one database call (in the database thread).",
            buckets=DB_BUCKETS, registry=r,
        )  # fmt: skip
        self.mails = Counter(
            "meet_mails",
            "Mails handed to the mail backend, by result (sent, failed).",
            ["result"],
            registry=r,
        )
        self.throttled = Counter(
            "meet_throttled", "Requests, connections and messages refused by a rate or connection limit, by error code.",
            ["code"], registry=r,
        )  # fmt: skip
        Info("meet_build", "The running meet version.", registry=r).info({"version": __version__})
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, …
        self.live = LiveCollector()
        self.relay = RelayCollector()
        r.register(self.live)
        r.register(self.relay)
        for kind in SOCKET_KINDS:
            self.websockets.labels(kind)  # present (at 0) before the first socket opens
        for result in ("sent", "failed"):
            self.mails.labels(result)

    def request_done(self, rule: str | None, method: str, status: int, seconds: float) -> None:
        """Count one answered HTTP request (``rule``: the URL rule it matched, None if none)."""
        key = (rule, method, status)
        series = self._request_series.get(key)
        if series is None:
            # labels() validates and locks on every call; the series of a (rule, method,
            # status) never change, and there are few (rules are the app's, not the URLs).
            route = rule or UNMATCHED
            verb = method if method in METHODS else "other"
            series = (self.http_requests.labels(route, verb, str(status)), self.http_seconds.labels(route, verb))
            if len(self._request_series) < 4096:  # methods and statuses come from clients
                self._request_series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def mail_done(self, result: str) -> None:
        """One mail handed to the backend: ``result`` "sent" or "failed"."""
        self.mails.labels(result).inc()

    def throttle_hit(self, code: str) -> None:
        """A limit refused something (``code``: the error code the client got)."""
        self.throttled.labels(code).inc()

    async def render(self) -> bytes:
        """The text exposition of every series, the relay's figures refreshed (cached) first."""
        await self.relay.refresh()
        return generate_latest(self.registry)


class LiveCollector(Collector):
    """Rooms and participants by mode, read from the live rooms at scrape time."""

    def __init__(self) -> None:
        self.source: LiveRooms = lambda: ()

    def collect(self) -> Iterator[Metric]:
        rooms = GaugeMetricFamily("meet_rooms", "Live rooms, by media mode (mesh, relay).", labels=["mode"])
        people = GaugeMetricFamily(
            "meet_participants", "Participants in live rooms, by media mode (mesh, relay).", labels=["mode"]
        )
        counts = {mode: [0, 0] for mode in MODES}
        for mode, participants in self.source():
            entry = counts.setdefault(mode, [0, 0])
            entry[0] += 1
            entry[1] += participants
        for mode, (room_count, participant_count) in counts.items():
            rooms.add_metric([mode], room_count)
            people.add_metric([mode], participant_count)
        yield rooms
        yield people


class RelayCollector(Collector):
    """The relay workers' figures, per worker: what the last refresh learned.

    A worker that did not answer (restarting, or slow) keeps the figures it last reported and
    ``meet_relay_worker_up`` says 0 for it; a scrape never fails because of the relay.
    """

    def __init__(self) -> None:
        self.stats: RelayStats | None = None
        self.workers = 0
        self.figures: dict[int, dict[str, Any]] = {}  # worker index -> its latest stats reply
        self.up: set[int] = set()
        self.cache = RELAY_CACHE  # seconds a refresh's figures are reused
        self._fetched = float("-inf")  # trio time of the last refresh
        self._lock = trio.Lock()

    def watch(self, stats: RelayStats, workers: int) -> None:
        """Read the figures of ``workers`` relay workers through ``stats`` (the bridge's)."""
        self.stats, self.workers = stats, workers

    async def refresh(self) -> list[dict[str, Any]]:
        """Ask the workers unless that was done within ``cache`` seconds; the figures known.

        Concurrent scrapes wait for one refresh instead of each asking the workers.
        """
        if self.stats is not None:
            async with self._lock:
                if trio.current_time() - self._fetched >= self.cache:
                    answers = await self.stats(RELAY_TIMEOUT)
                    self._fetched = trio.current_time()
                    self.up = {int(answer["index"]) for answer in answers}
                    self.figures.update((int(answer["index"]), answer) for answer in answers)
        return [self.figures[index] for index in sorted(self.figures)]

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "meet_relay_worker_up", "1 if the relay worker answered the last scrape.", labels=["worker"]
        )
        for index in range(self.workers):
            up.add_metric([str(index)], 1 if index in self.up else 0)
        yield up
        for name, key, text in RELAY_COUNTERS:
            counter = CounterMetricFamily(name, text, labels=["worker"])
            for index, figures in sorted(self.figures.items()):
                counter.add_metric([str(index)], float(figures.get(key, 0)))
            yield counter
        for name, key, text in RELAY_GAUGES:
            gauge = GaugeMetricFamily(name, text, labels=["worker"])
            for index, figures in sorted(self.figures.items()):
                gauge.add_metric([str(index)], float(figures.get(key, 0)))
            yield gauge
