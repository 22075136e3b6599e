"""The network-quality indicator on each camera tile (netstats.js figures and levels,
netquality.js bars): real calls in headless Chromium (mesh and relay), the levels on synthetic
getStats() sequences, and a real degradation: the namespace's UDP squeezed through a tiny
`htb` class on lo (the tests run in a loopback-only namespace; `netem` is not available)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from browser import poll, run_scenario
from conftest import Outbox
from test_browser_call import join, make_users, open_page

from meet.config import Config
from meet.server import RunningServer

pytestmark = pytest.mark.browser

# person → {level, figures} of the page's latest poll ("local": my own).
NETWORK_JS = """() => Object.fromEntries([...window.meetCall.network()].map(([k, v]) =>
  [k, {level: v.level, raw: v.raw, figures: v.figures}]))"""

TILE_NET_JS = """(key) => {
  const tile = key === 'local' ? document.querySelector('.tile.local:not(.screen)')
    : document.querySelector(`.tile:not(.screen)[data-peer-id="${key}"]`);
  const net = tile && tile.querySelector('.tile-net');
  if (!net || net.hidden) return null;
  const button = net.querySelector('button');
  return {level: net.dataset.level, label: button.getAttribute('aria-label'),
          pop: net.querySelector('.net-pop').textContent,
          described: document.getElementById(button.getAttribute('aria-describedby')) !== null};
}"""

# Synthetic getStats() sequences through the real module: `steps` (one per 2 s poll) each add
# packets received / lost on person "p"'s audio, and set the pair's RTT and the connection's
# state; `grow` false keeps the pair's bytesReceived still (nothing arrives). Returns each
# poll's {level, raw, loss}.
SYNTHETIC_JS = """async (steps) => {
  const m = await import('/static/js/call/netstats.js');
  const tracker = new m.QualityTracker();
  let recv = 0, lost = 0, bytes = 0, t = 0;
  const out = [];
  for (const step of steps) {
    recv += step.recv ?? 100; lost += step.lost ?? 0; t += 2000;
    if (step.grow !== false) bytes += 5000;
    const stats = [
      {type: 'transport', id: 'T', selectedCandidatePairId: 'CP'},
      {type: 'candidate-pair', id: 'CP', currentRoundTripTime: step.rtt ?? 0.01, bytesReceived: bytes},
      {type: 'inbound-rtp', id: 'A', kind: 'audio', packetsReceived: recv, packetsLost: lost,
       bytesReceived: recv * 100, jitter: step.jitter ?? 0.004},
    ];
    const r = tracker.update({t, connections: [{id: 'p', person: 'p', state: step.state ?? 'connected', stats}]});
    const p = r.get('p');
    out.push(p ? {level: p.level, raw: p.raw, loss: p.figures.loss} : null);
  }
  return out;
}"""


# My own side's raw level: encoder limits and the bitrate available to send video.
RAW_SELF_JS = """async () => {
  const m = await import('/static/js/call/netstats.js');
  const base = {state: 'connected', loss: 0, rtt: 0.01, jitter: null, sendingVideo: true, available: 2e6};
  return [
    m.rawLevel({...base, limitation: 'bandwidth', available: 400000}),
    m.rawLevel({...base, limitation: 'cpu'}),
    m.rawLevel({...base, available: 200000}),
    m.rawLevel({...base, available: 100000}),
    m.rawLevel({...base, available: 100000, sendingVideo: false}),
    m.rawLevel({...base, loss: 0.1}),
  ];
}"""


# One relay connection carrying two publishers (mids 0/1 → p1, 2 → p2; mid 3 unmapped): each
# publisher gets their own streams' loss, and the connection's round trip.
RELAY_SYNTHETIC_JS = """async () => {
  const m = await import('/static/js/call/netstats.js');
  const map = new Map([['0', {publisher: 'p1', source: 'audio'}], ['1', {publisher: 'p1', source: 'camera'}],
                       ['2', {publisher: 'p2', source: 'audio'}]]);
  const attribute = (connId, s) => { const i = map.get(s.mid); return i && {person: i.publisher, source: i.source}; };
  const tracker = new m.QualityTracker();
  let r;
  for (const n of [1, 2]) {
    const rtp = (mid, kind, lost) => ({type: 'inbound-rtp', id: 'IT' + mid, mid, kind,
      packetsReceived: 100 * n, packetsLost: lost * n, bytesReceived: 1e4 * n});
    const stats = [{type: 'candidate-pair', id: 'CP', nominated: true, state: 'succeeded',
                    currentRoundTripTime: 0.42, bytesReceived: 1e5 * n},
                   rtp('0', 'audio', 0), rtp('1', 'video', 0), rtp('2', 'audio', 25), rtp('3', 'video', 90)];
    r = tracker.update({t: 2000 * n, connections: [{id: 'relay', person: null, state: 'connected', stats}]}, attribute);
  }
  return Object.fromEntries([...r].map(([k, v]) => [k, {level: v.level, conn: v.figures.conn, loss: v.figures.loss,
    rtt: v.figures.rtt}]));
}"""


@pytest.fixture
def config(tmp_path: Any, request: Any) -> Config:
    from conftest import make_config

    relay = getattr(request, "param", None)  # "always": media through the relay (relay.js)
    rtc = {"relay": relay, "host_addresses": ["127.0.0.1"]} if relay else {}
    return make_config(tmp_path, auth={"mail_max_per_window": 50}, rtc=rtc)


def network(page: Any) -> dict[str, Any]:
    return page.evaluate(NETWORK_JS)  # type: ignore[no-any-return]


def level_of(page: Any, person: str) -> str | None:
    tile = page.evaluate(TILE_NET_JS, person)
    return tile["level"] if tile else None


def wait_level(page: Any, person: str, levels: set[str], timeout: float = 30) -> dict[str, Any]:
    """Wait until the tile of `person` shows one of `levels` with their video measured (a level
    can come from the audio before the first frames); returns what the tile shows."""

    def shown() -> bool:
        reading = network(page).get(person)
        video = bool(reading and reading["figures"]["width"] and reading["figures"]["fps"])
        return video and level_of(page, person) in levels

    poll(shown, timeout=timeout, what=f"{person}'s tile showing {levels} with video figures")
    return page.evaluate(TILE_NET_JS, person)  # type: ignore[no-any-return]


@contextlib.contextmanager
def squeezed_udp(rate: str = "100kbit") -> Iterator[None]:
    """All UDP on lo (every WebRTC packet here) through an `htb` class of `rate` with a 10-packet
    queue: real loss, delay and freezes. Only inside a loopback-only namespace (never the host's)."""
    names = {name for _, name in socket.if_nameindex()}
    if names != {"lo"}:
        pytest.fail(
            f"interfaces {sorted(names)}: run the browser tests in a loopback-only namespace (README)"
        )
    commands = [
        "qdisc add dev lo root handle 1: htb default 10",
        "class add dev lo parent 1: classid 1:10 htb rate 10gbit",
        f"class add dev lo parent 1: classid 1:20 htb rate {rate} ceil {rate}",
        "qdisc add dev lo parent 1:20 handle 20: pfifo limit 10",
        "filter add dev lo parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff flowid 1:20",
    ]
    try:
        for command in commands:
            subprocess.run(["tc", *command.split()], check=True, capture_output=True, timeout=10)
        yield
    finally:
        subprocess.run(
            ["tc", "qdisc", "del", "dev", "lo", "root"], check=False, capture_output=True, timeout=10
        )


async def test_levels_on_synthetic_stats_loss_thresholds_hysteresis_and_lost(server: RunningServer) -> None:
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        page = browser.new_page()
        page.goto(f"{base}/")

        def run(steps: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
            return page.evaluate(SYNTHETIC_JS, steps)  # type: ignore[no-any-return]

        settle = (
            """async ([shown, raws]) => (await import('/static/js/call/netstats.js')).settle(shown, raws)"""
        )
        return {
            "clean": run([{}] * 8),
            "loss_1": run([{"recv": 99, "lost": 1}] * 8),
            "loss_4": run([{"recv": 96, "lost": 4}] * 8),
            "loss_15": run([{"recv": 85, "lost": 15}] * 8),
            # one slow round trip among good ones, then two, then back
            "rtt": run([{}] * 3 + [{"rtt": 0.9}] + [{}] * 2 + [{"rtt": 0.9}] * 2 + [{}] * 4),
            # good ↔ fair every poll: never shown as fair
            "flicker": run([{}] * 3 + [{"rtt": 0.4}, {}] * 4),
            "disconnected": run([{}] * 3 + [{"state": "disconnected"}]),
            "silent": run([{}] * 3 + [{"recv": 0, "grow": False}] * 3),
            "mine": page.evaluate(RAW_SELF_JS),
            "relay": page.evaluate(RELAY_SYNTHETIC_JS),
            "settle": [
                page.evaluate(settle, ["good", ["good", "poor"]]),
                page.evaluate(settle, ["good", ["poor", "fair"]]),
                page.evaluate(settle, ["poor", ["good", "good"]]),
                page.evaluate(settle, ["poor", ["good", "fair", "good"]]),
                page.evaluate(settle, ["good", ["good", "lost"]]),
                page.evaluate(settle, [None, ["fair"]]),
            ],
        }

    r = await run_scenario(scenario)
    assert r["clean"][0] is None  # the first poll has nothing to compare with
    assert [x["level"] for x in r["clean"][1:]] == ["good"] * 7
    assert r["loss_1"][-1]["level"] == "good" and r["loss_1"][-1]["loss"] == pytest.approx(0.01)
    assert r["loss_4"][-1]["level"] == "fair" and r["loss_4"][-1]["loss"] == pytest.approx(0.04)
    assert r["loss_15"][-1]["level"] == "poor"
    rtt = [x["level"] for x in r["rtt"][1:]]
    # one slow poll changes nothing; two in a row show "poor"; it takes three good ones to go back
    assert rtt == ["good", "good", "good", "good", "good", "good", "poor", "poor", "poor", "good", "good"]
    assert {x["level"] for x in r["flicker"][1:]} == {"good"}
    assert {x["raw"] for x in r["flicker"][1:]} == {"good", "fair"}
    assert r["disconnected"][-1]["level"] == "lost"
    assert [x["level"] for x in r["silent"][-3:]] == ["good", "lost", "lost"]  # nothing for 4 s
    assert r["relay"] == {
        "p1": {"level": "fair", "conn": "relay", "loss": 0, "rtt": 0.42},  # the relay's round trip: fair
        "p2": {"level": "poor", "conn": "relay", "loss": 0.2, "rtt": 0.42},  # 25 lost of 125
    }
    assert r["mine"] == ["good", "fair", "fair", "poor", "good", "poor"]
    assert r["settle"] == ["good", "fair", "poor", "fair", "lost", "fair"]


async def test_two_people_in_a_mesh_call_see_good_then_a_squeezed_network_below_good(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    code = await make_users(client, outbox, "alice", "bob")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        alice, bob = open_page(browser, base, "alice"), open_page(browser, base, "bob")
        a, b = join(alice, base, code), join(bob, base, code)
        good = {
            "alice_sees_bob": wait_level(alice, b, {"good"}),
            "bob_sees_alice": wait_level(bob, a, {"good"}),
            "alice_self": wait_level(alice, "local", {"good"}),
            "figures": poll(
                lambda: (f := network(alice)[b]["figures"])["fps"] > 5 and f, what="5 fps or more"
            ),
        }
        with squeezed_udp():
            poll(lambda: level_of(alice, b) in {"fair", "poor", "lost"}, timeout=25, what="below good")
            bad = alice.evaluate(TILE_NET_JS, b)
            bad_figures = network(alice)[b]
        return {"good": good, "bad": bad, "bad_figures": bad_figures, "errors": alice.errors + bob.errors}

    r = await run_scenario(scenario)
    good = r["good"]
    assert good["alice_sees_bob"]["label"] == "Good connection"
    assert good["alice_sees_bob"]["described"]
    for text in ("Packet loss", "Round trip", "Receiving", "Resolution", "fps", "×"):
        assert text in good["alice_sees_bob"]["pop"], (text, good["alice_sees_bob"]["pop"])
    assert good["alice_self"]["label"] == "Your network: good connection"
    assert "Sending" in good["alice_self"]["pop"]
    f = good["figures"]
    assert f["loss"] < 0.02 and f["rtt"] < 0.3 and f["width"] > 0 and f["fps"] > 5 and f["bitrate"] > 50_000
    bad = r["bad"]
    assert bad["level"] in {"fair", "poor", "lost"} and bad["label"] != "Good connection", r["bad_figures"]
    assert r["errors"] == []


@pytest.mark.parametrize("config", ["always"], indirect=True)
async def test_relay_call_shows_each_publisher_with_the_relay_connection_figures(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox
) -> None:
    code = await make_users(client, outbox, "alice", "bob")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        alice, bob = open_page(browser, base, "alice"), open_page(browser, base, "bob")
        a, b = join(alice, base, code), join(bob, base, code)
        poll(lambda: alice.evaluate("window.meetCall.mode()") == "relay", what="relay mode")
        seen = {
            "alice_sees_bob": wait_level(alice, b, {"good", "fair"}),
            "bob_sees_alice": wait_level(bob, a, {"good", "fair"}),
            "alice_self": wait_level(alice, "local", {"good", "fair"}),
        }
        # Loss is a difference of two readings of the relay connection's streams: a level can
        # show (from the round trip) a reading before it. Wait for it rather than race it.
        for page, other in ((alice, b), (bob, a)):
            poll(
                lambda page=page, other=other: network(page)[other]["figures"]["loss"] is not None,
                timeout=20,
                what="a loss figure for the other publisher",
            )
        return {
            "seen": seen,
            "alice": network(alice),
            "bob": network(bob),
            "a": a,
            "b": b,
            "errors": alice.errors + bob.errors,
        }

    r = await run_scenario(scenario)
    for viewer, other in (("alice", r["b"]), ("bob", r["a"])):
        f = r[viewer][other]["figures"]
        assert f["conn"] == "relay", f
        assert f["rtt"] is not None and f["width"] > 0 and f["bitrate"] > 0 and f["loss"] is not None, f
    assert r["alice"]["local"]["figures"]["conn"] == "relay"
    assert "Round trip" in r["seen"]["alice_sees_bob"]["pop"]
    assert r["errors"] == []
