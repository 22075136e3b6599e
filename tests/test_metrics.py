"""Operator metrics: ``GET /metrics`` (Prometheus text, parsed with prometheus-client's own
parser) off by default, behind a bearer token when on; the series moving after real HTTP
requests, room joins, leaves and chat over real WebSockets, mails and limits; the relay
workers' figures (stats with index, pid, restarts, CPU seconds, layer switches)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import PASSWORD, Outbox, User, make_config, make_room, make_user
from prometheus_client.parser import text_string_to_metric_families
from test_relay_layers import run, simulcast, subscriber
from wsclient import connect, join, room_ws_url

from meet.config import Config, config_from_mapping
from meet.errors import ConfigError
from meet.relay.bridge import RelayBridge
from meet.server import RunningServer, open_server

TOKEN = "s3cret-scrape-token-0123"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    # Small limits so that a test reaches them in a few requests (a FakeClock never lets a
    # sign-in delay pass): the second failed sign-in makes the third wait; 3 frames at once;
    # one socket per person.
    return make_config(
        tmp_path,
        metrics={"token": TOKEN},
        auth={"login_free_failures": 1},
        rooms={"message_burst": 3, "message_rate": 0.01, "max_connections_per_user": 1},
    )


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    """Every sample of ``/metrics``, parsed by prometheus-client: (name, labels) -> value."""
    r = await client.get("/metrics", headers=BEARER)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def routes(samples: Samples) -> set[str]:
    return {dict(labels)["route"] for name, labels in samples if name == "meet_http_requests_total"}


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """Poll state trio is not told about (a handler finishing after its client left)."""
    try:
        with trio.fail_after(timeout):
            while not predicate():
                await trio.sleep(0.02)
    except trio.TooSlowError:
        raise AssertionError(f"no {what} within {timeout} s") from None


def http(server: RunningServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, timeout=10, verify=False)


def room_sockets(server: RunningServer) -> float | None:
    return server.services.metrics.registry.get_sample_value("meet_websockets_open", {"kind": "room"})


# -- the endpoint ------------------------------------------------------------------------------


async def test_without_a_token_metrics_is_an_unknown_path(tmp_path: Path) -> None:
    async with open_server(make_config(tmp_path)) as server, http(server) as c:
        off = await c.get("/metrics", headers=BEARER)
        unknown = await c.get("/metricz", headers=BEARER)
        assert off.status_code == unknown.status_code == 404
        assert off.headers["content-type"] == unknown.headers["content-type"]
        assert off.text.replace("/metrics", "/metricz") == unknown.text  # the page names the path
        assert "/metrics" not in (await c.get("/api/openapi.json")).json()["paths"]


async def test_a_scrape_needs_the_token(client: httpx.AsyncClient) -> None:
    wrong = [{}, {"Authorization": "Bearer not-the-token-at-all"}, {"Authorization": f"Basic {TOKEN}"}]
    for headers in wrong:
        r = await client.get("/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = await client.get("/metrics", headers=BEARER)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    names = {family.name for family in text_string_to_metric_families(r.text)}
    assert {"meet_http_requests", "meet_websockets_open", "meet_rooms", "meet_relay_worker_up"} <= names


def test_the_token_is_checked_and_masked() -> None:
    with pytest.raises(ConfigError, match=r"\[metrics\] token: must be at least 16"):
        config_from_mapping({"metrics": {"token": "short"}}, env={})
    with pytest.raises(ConfigError, match=r"\[metrics\] token: must be printable ASCII"):
        config_from_mapping({"metrics": {"token": "with a space in it!!"}}, env={})
    from meet.config import render_toml

    shown = render_toml(config_from_mapping({"metrics": {"token": TOKEN}}, env={}))
    assert TOKEN not in shown and '[metrics]\ntoken = "********"' in shown


# -- the series --------------------------------------------------------------------------------


async def test_http_requests_are_counted_by_url_rule(client: httpx.AsyncClient, alice: User) -> None:
    code = await make_room(client, alice)
    before = await scrape(client)
    assert (await client.get(f"/api/rooms/{code}", headers=alice.auth)).status_code == 200
    assert (await client.get(f"/api/no/{code}")).status_code == 404
    after = await scrape(client)

    rule = {"route": "/api/rooms/<code>", "method": "GET"}
    for name, labels in [
        ("meet_http_requests_total", {**rule, "status": "200"}),
        ("meet_http_request_duration_seconds_count", rule),
        ("meet_http_requests_total", {"route": "unmatched", "method": "GET", "status": "404"}),
    ]:
        assert value(after, name, **labels) == value(before, name, **labels) + 1, (name, labels)
    assert not [route for route in routes(after) if code in route], "a raw path became a label"
    assert value(after, "meet_http_requests_total", route="/metrics", method="GET", status="200") >= 1
    # The sign-up of alice mailed her a code; the requests above read the database.
    assert value(after, "meet_mails_total", result="sent") >= 1
    assert value(after, "meet_mails_total", result="failed") == 0
    db = "meet_db_call_duration_seconds_count"
    assert value(after, db) > value(before, db)


async def test_joins_chat_leaves_and_open_sockets(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    code = await make_room(client, alice)
    before = await scrape(client)
    async with join(server.url, code, alice.token) as (a, _):
        async with join(server.url, code, bob.token) as (b, _):
            await a.expect("peer-joined")
            await b.send({"type": "chat", "text": "hello"})
            await a.until("chat")
            during = await scrape(client)
        await a.until("peer-left")
        after = await scrape(client)

    assert value(during, "meet_room_joins_total") == value(before, "meet_room_joins_total") + 2
    assert value(during, "meet_chat_messages_total") == value(before, "meet_chat_messages_total") + 1
    assert value(during, "meet_websockets_open", kind="room") == 2
    assert value(during, "meet_rooms", mode="mesh") == 1 and value(during, "meet_rooms", mode="relay") == 0
    assert value(during, "meet_participants", mode="mesh") == 2
    assert value(after, "meet_room_leaves_total") == value(before, "meet_room_leaves_total") + 1
    assert value(after, "meet_participants", mode="mesh") == 1
    await until(lambda: room_sockets(server) == 0, "both room sockets to be counted closed")


async def test_limits_count_as_throttle_hits(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox, alice: User
) -> None:
    code = await make_room(client, alice)
    before = await scrape(client)
    # HTTP: the second failed sign-in makes the next one wait (429).
    statuses = [
        (
            await client.post("/api/auth/login", json={"login": "alice", "password": PASSWORD + "x"})
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [401, 401, 429]
    # WebSocket: three frames at once, then the rest of a burst is refused; one socket each.
    async with join(server.url, code, alice.token) as (a, _):
        for _ in range(4):
            await a.send({"type": "ping"})
        assert (await a.until("error"))["code"] == "rate_limited"
        async with connect(room_ws_url(server.url, code), alice.token) as second:
            await second.expect_error("too_many_connections")
    after = await scrape(client)
    for code_, hits in [("too_many_requests", 1), ("rate_limited", 1), ("too_many_connections", 1)]:
        assert (
            value(after, "meet_throttled_total", code=code_)
            == value(before, "meet_throttled_total", code=code_) + hits
        ), code_


# -- the relay ---------------------------------------------------------------------------------


async def test_relay_workers_are_scraped_cached_and_survive_a_restart(tmp_path: Path) -> None:
    rtc = {"relay": "always", "host_addresses": ["127.0.0.1"], "relay_workers": 1}
    config = make_config(tmp_path, rtc=rtc, metrics={"token": TOKEN})
    async with open_server(config) as server, http(server) as client:
        bridge = server.services.rooms.media.relay
        assert isinstance(bridge, RelayBridge)
        (worker,) = bridge.workers
        collector = server.services.metrics.relay
        with trio.fail_after(30):
            await worker.ready.wait()
        alice = await make_user(client, Outbox(config.outbox_dir), "alice")
        code = await make_room(client, alice)
        async with join(server.url, code, alice.token):  # opened on the relay worker
            first = await scrape(client)
        assert value(first, "meet_rooms", mode="relay") == 1
        assert value(first, "meet_participants", mode="relay") == 1
        assert value(first, "meet_relay_worker_up", worker="0") == 1
        assert value(first, "meet_relay_participants", worker="0") == 1
        assert value(first, "meet_relay_cpu_seconds_total", worker="0") > 0
        for name in ("forwarded_packets", "forwarded_bytes", "nacks", "plis", "layer_switches", "restarts"):
            assert (f"meet_relay_{name}_total", frozenset({("worker", "0")})) in first, name
        assert value(first, "meet_relay_restarts_total", worker="0") == 0

        # Within the cache time, scrapes do not ask the worker again.
        asked: list[float] = []
        stats = collector.stats
        assert stats is not None

        async def counted(timeout: float) -> list[dict[str, Any]]:
            asked.append(timeout)
            return await stats(timeout)

        collector.stats, collector.cache = counted, 3600.0
        await scrape(client)
        await scrape(client)
        assert asked == []

        # A worker down: the scrape still answers, with what is known of it.
        collector.cache = 0.0
        await bridge.kill_worker(0)
        down = await scrape(client)
        assert value(down, "meet_relay_worker_up", worker="0") == 0
        assert value(down, "meet_relay_cpu_seconds_total", worker="0") == value(
            first, "meet_relay_cpu_seconds_total", worker="0"
        )
        await until(lambda: worker.restarts == 1, "the worker to be restarted")
        with trio.fail_after(30):
            await worker.ready.wait()
        back = await scrape(client)
        assert value(back, "meet_relay_worker_up", worker="0") == 1
        assert value(back, "meet_relay_restarts_total", worker="0") == 1
        assert len(asked) == 2


class Lost:
    def __init__(self) -> None:
        self.event = trio.Event()

    async def on_event(self, message: dict[str, Any]) -> None:
        pass

    async def on_lost(self, lost: dict[str, list[str]]) -> None:
        self.event.set()


async def test_bridge_stats_name_each_worker_and_count_its_restarts() -> None:
    rtc = config_from_mapping({"rtc": {"host_addresses": ["127.0.0.1"], "relay_workers": 1}}, env={}).rtc
    seen = Lost()
    bridge = RelayBridge(rtc, seen.on_event, seen.on_lost)
    (worker,) = bridge.workers
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(bridge.run)
            await bridge.request("open", "room-one", peer="a")
            (stats,) = await bridge.stats()
            assert worker.process is not None
            assert (stats["index"], stats["pid"], stats["restarts"]) == (0, worker.process.pid, 0)
            assert stats["cpu_seconds"] > 0 and stats["layer_switches"] == 0
            assert "id" not in stats
            await bridge.kill_worker(0)
            await seen.event.wait()  # it is down: the figures of the running workers (none)
            assert await bridge.stats() == []
            await worker.ready.wait()
            (stats,) = await bridge.stats()
            assert (stats["pid"], stats["restarts"]) == (worker.process.pid, 1)
            nursery.cancel_scope.cancel()


def test_a_completed_layer_switch_is_counted() -> None:
    def scenario() -> None:
        publication, (low, _mid, high) = simulcast([])
        out, _sent = subscriber(publication.counters)
        out.subscribe(publication, high.source)
        high.send_frame(keyframe=True)
        out.switch(low.source)
        low.send_frame()  # not a keyframe: the switch waits
        assert publication.counters.layer_switches == 0
        low.send_frame(keyframe=True)
        assert publication.counters.layer_switches == 1 and out.source is low.source

    run(scenario)
