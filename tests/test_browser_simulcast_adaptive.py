"""The relay adapts each subscriber's layer to its link (issue 11, "Through the real server in
Chromium"): a publisher sends three layers; a subscriber on a shaped path (tests/netshape.py,
`tbf rate 400kbit burst 16kbit latency 50ms` on its downlink) drops to the low layer within 10 s
with < 2 % loss on that layer and no freeze over 1 s, and returns to the high layer within 20 s of the shaping
being removed; an unshaped subscriber keeps the high layer throughout; the shaped subscriber's
audio never stops for more than 200 ms.

Loss: the bucket holds 50 ms, so what the high layer sends beyond 400 kbit/s is lost until the
relay switches (~20-40 packets in the 0.6-0.8 s measured); the < 2 % is asserted from a second
after the switch to the unshaping ("settled"), and the whole shaped period's loss is printed.

Each subscriber page samples its own getStats() every 100 ms (SAMPLER_JS), so gaps and times are
measured in the browser, not through Playwright's round trips.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import poll, run_scenario
from conftest import Outbox
from netshape import DOWNLINK, ShapedPath, shaped_path
from test_browser_call import assert_audio_flowing, assert_video_flowing, join, make_users, open_page
from test_browser_simulcast import (
    RECEIVED_JS,
    launch_shaped,
    relay_camera_layers,
    secure_args,
    shaped_config,
    three_layers,
)

from meet.config import Config
from meet.relay.bridge import RelayBridge
from meet.server import RunningServer

pytestmark = pytest.mark.browser

DROP_S = 10  # shaped: on the low layer within this long
RECOVER_S = 20  # unshaped again: back on the high layer within this long
HOLD_S = 5  # on the low layer, the shaping stays this long more (a stable low, loss measured)

# Every 100 ms, one RECEIVED_JS sample of `peer`'s camera into window.meetSamples, with
# `audioIdle`: how long (ms) before the sample the last audio packet had arrived (the stats' own
# clocks: a late sample cannot make a gap look longer than it was).
SAMPLER_JS = (
    """(peer) => {
  const received = """
    + RECEIVED_JS
    + """;
  window.meetSamples = [];
  window.meetSampler = setInterval(async () => {
    const s = await received(peer);
    if (!s || !s.video) return;
    const link = window.meetCall.relay.link;
    const entry = window.meetCall.relay.streams().find((x) => x.peerId === peer && x.kind === 'camera');
    const audio = entry && entry.stream.getAudioTracks()[0];
    const video = entry && entry.stream.getVideoTracks()[0];
    (await link.pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && audio && r.trackIdentifier === audio.id && r.lastPacketReceivedTimestamp)
        s.audioIdle = r.timestamp - r.lastPacketReceivedTimestamp;
      if (r.type === 'inbound-rtp' && video && r.trackIdentifier === video.id)
        Object.assign(s.video, {received: r.framesReceived ?? 0, keys: r.keyFramesDecoded ?? 0,
          plis: r.pliCount ?? 0, nacks: r.nackCount ?? 0, rtx: r.retransmittedPacketsReceived ?? 0});
    });
    window.meetSamples.push(s);
  }, 100);
}"""
)

SAMPLES_JS = "(since) => (window.meetSamples || []).filter((s) => s.t >= since)"


@pytest.fixture
def path(tmp_path: Path) -> Iterator[ShapedPath]:
    with shaped_path(tmp_path) as shaped:
        yield shaped


@pytest.fixture
def config(tmp_path: Path, path: ShapedPath) -> Config:
    return shaped_config(tmp_path, path)


def now_ms(page: Any) -> float:
    return float(page.evaluate("performance.now()"))


def latest(page: Any) -> dict[str, Any]:
    samples = page.evaluate(SAMPLES_JS, 0)
    return samples[-1] if samples else {}


def width_now(page: Any) -> int:
    sample = latest(page)
    return int(sample["video"]["width"]) if sample else 0


def longest_stall(samples: list[dict[str, Any]], key: str, field: str) -> float:
    """The longest time (ms) ``samples[i][key][field]`` stayed unchanged."""
    longest, since, last = 0.0, None, None
    for s in samples:
        value = s[key][field] if s.get(key) else None
        if value is None:
            continue
        if value != last:
            if since is not None:
                longest = max(longest, s["t"] - since)
            since, last = s["t"], value
    if since is not None and samples:
        longest = max(longest, samples[-1]["t"] - since)
    return longest


def period(samples: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Loss, freezes and stalls of the video and audio between ``start`` and ``end`` (ms)."""
    inside = [s for s in samples if start <= s["t"] <= end]
    first, last = inside[0], inside[-1]
    received = last["video"]["packets"] - first["video"]["packets"]
    lost = last["video"]["lost"] - first["video"]["lost"]
    return {
        "loss": lost / max(1, received + lost),
        "freezes": last["video"]["freezes"] - first["video"]["freezes"],
        "frozen_s": last["video"]["frozen"] - first["video"]["frozen"],
        "video_stall_ms": longest_stall(inside, "video", "frames"),
        "audio_gap_ms": max((x.get("audioIdle", 0) for x in inside), default=0),
        "widths": sorted({s["video"]["width"] for s in inside}),
        "video_packets_per_s": round(received / max(0.001, (last["t"] - first["t"]) / 1000)),
        **{
            k: last["video"].get(k, 0) - first["video"].get(k, 0)
            for k in ("frames", "received", "keys", "plis", "nacks", "rtx")
        },
    }


def timeline(samples: list[dict[str, Any]], origin: float) -> list[tuple[float, int]]:
    """(seconds from ``origin``, width) at each change of the received width."""
    out: list[tuple[float, int]] = []
    for s in samples:
        if not out or out[-1][1] != s["video"]["width"]:
            out.append((round((s["t"] - origin) / 1000, 1), s["video"]["width"]))
    return out


def first_at(samples: list[dict[str, Any]], since: float, width: int) -> float | None:
    """The time (ms) of the first sample from ``since`` on that shows ``width``."""
    return next((s["t"] for s in samples if s["t"] >= since and s["video"]["width"] == width), None)


def seconds(start: float, end: float | None) -> float:
    return (end - start) / 1000 if end is not None else float("inf")


def relay_subscribers(server: RunningServer, names: dict[str, str], publisher: str) -> dict[str, Any]:
    """The relay's own view (its `stats` op) of each subscriber of ``publisher``'s camera: its
    estimate and the layer it gets, from the scenario's thread; for the report."""
    import trio

    bridge = server.services.rooms.media.relay
    assert isinstance(bridge, RelayBridge)
    stats = trio.from_thread.run(bridge.stats)
    out: dict[str, Any] = {}
    for sub in (sub for worker in stats for sub in worker.get("subscribers", [])):
        link = sub.get("link") or {}
        cams = [
            x for x in sub.get("subscriptions", []) if x["publisher"] == publisher and x["kind"] == "video"
        ]
        out[names.get(sub["peer"], sub["peer"])] = {
            "estimate": sub.get("estimate"),
            **{k: link.get(k) for k in ("loss", "rtt_ms", "signal", "probing", "probes", "probes_failed")},
            "camera": [
                {k: c.get(k) for k in ("layer", "target", "paused", "switches", "padding")}
                | {"rates": {x["rid"]: x["rate"] for x in c.get("layers", [])}}
                for c in cams
            ],
        }
    return out


def waited(check: Any, timeout: float, what: str, failures: list[str]) -> bool:
    """poll(), recording a timeout in ``failures`` instead of raising (the figures measured so
    far are still reported)."""
    try:
        poll(check, timeout, what)
        return True
    except AssertionError as err:
        failures.append(str(err))
        return False


# In the default run again (issue 11): with the steadier estimate and alice pinned large on the
# subscribers' pages (issue 12's view: a tile gets no more than its size needs, and the largest tile
# is served first), 5 of 5 runs passed in a row on this machine (drop 0.8-1.1 s, recover 3.5-5.4 s,
# longest stall 200-400 ms, audio gaps under 50 ms, 0 % loss settled on low). Two copies at once
# on 2 cores fail before shaping: Chrome then does not send three layers.
async def test_a_shaped_subscriber_drops_to_the_low_layer_and_comes_back(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox, path: ShapedPath
) -> None:
    code = await make_users(client, outbox, "alice", "bob", "carol")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        shaped_browser = launch_shaped(browser, path, base)
        try:
            alice = open_page(browser, base, "alice")
            carol = open_page(browser, base, "carol")
            bob = open_page(shaped_browser, base, "bob")
            a = join(alice, base, code)
            names = {a: "alice", join(carol, base, code): "carol", join(bob, base, code): "bob"}
            for page in (bob, carol):
                assert_video_flowing(page, [a], timeout=25)
                assert_audio_flowing(page, [a], timeout=25)
                # Alice pinned large (the relay sends a tile no more than its size needs: the
                # high layer needs a tile over 640 px wide), the other camera in the strip.
                page.evaluate("(peer) => document.querySelector(`.tile[data-peer-id='${peer}'] .tile-pin`).click()", a)
                page.evaluate(SAMPLER_JS, a)
            # After the pins: in the grid of three nobody needs alice's top layer, and the relay
            # has her pause it (`layers`) until a large tile asks for it again.
            layers = three_layers(alice, timeout=60)  # the relay's uplink estimate ramps up first
            low, high = layers["l"], layers["h"]
            failures: list[str] = []
            start = now_ms(bob)
            if not waited(
                lambda: width_now(bob) == high and width_now(carol) == high,
                30,
                "both subscribers on the high layer",
                failures,
            ):
                return {
                    "layers": layers,
                    "failures": failures,
                    "bob_widths": timeline(bob.evaluate(SAMPLES_JS, 0), start),
                    "carol_widths": timeline(carol.evaluate(SAMPLES_JS, 0), now_ms(carol)),
                    "sent": relay_camera_layers(alice),
                }
            carol_start = now_ms(carol)
            relay: list[tuple[str, Any]] = [("before shaping", relay_subscribers(server, names, a))]
            path.shape(DOWNLINK)
            shaped_at = now_ms(bob)
            try:
                waited(
                    lambda: width_now(bob) == low,
                    DROP_S + 10,
                    "the shaped subscriber on the low layer",
                    failures,
                )
                relay.append(("dropped", relay_subscribers(server, names, a)))
                time.sleep(HOLD_S)  # keep the link shaped a while on the low layer (loss, stability)
                relay.append(("shaped, at the end", relay_subscribers(server, names, a)))
                unshaped_at = now_ms(bob)
            finally:
                path.unshape()
            waited(
                lambda: width_now(bob) == high, RECOVER_S + 10, "the shaped subscriber back on high", failures
            )
            relay.append(("after unshaping", relay_subscribers(server, names, a)))
            recovered_at = now_ms(bob)
            # Samples past the switch (a sample every 100 ms): its audio and frames counted.
            poll(lambda: latest(bob).get("t", 0) > recovered_at + 500, 10, "samples past the switch")
            bob_samples = bob.evaluate(SAMPLES_JS, 0)
            carol_samples = carol.evaluate(SAMPLES_JS, carol_start)
            return {
                "layers": layers,
                "failures": failures,
                "drop_s": seconds(shaped_at, first_at(bob_samples, shaped_at, low)),
                "recover_s": seconds(unshaped_at, first_at(bob_samples, unshaped_at, high)),
                "shaped": period(bob_samples, shaped_at, unshaped_at),
                # the low layer's own loss: from a second after the switch to the unshaping
                "settled": period(
                    bob_samples, (first_at(bob_samples, shaped_at, low) or shaped_at) + 1000, unshaped_at
                ),
                "whole": period(bob_samples, shaped_at - 2000, bob_samples[-1]["t"]),
                "carol": period(carol_samples, carol_start, carol_samples[-1]["t"]),
                "bob_widths": timeline([x for x in bob_samples if x["t"] >= shaped_at - 2000], shaped_at),
                "carol_widths": timeline(carol_samples, shaped_at),
                "unshaped_after_s": (unshaped_at - shaped_at) / 1000,
                "relay": relay,
                "peers": names,  # the ids in the relay's log (MEET_RELAY_LOG=DEBUG)
                "errors": alice.errors + bob.errors + carol.errors,
            }
        finally:
            shaped_browser.close()

    r = await run_scenario(scenario, secure_args(base))
    if "drop_s" not in r:
        print(f"never both on the high layer: {r}")
        pytest.fail(f"{r['failures']}")
    print(f"layers {r['layers']}; time to drop {r['drop_s']:.1f} s, time to recover {r['recover_s']:.1f} s")
    print(
        f"shaped subscriber's width (s from shaping; unshaped at {r['unshaped_after_s']:.1f}): {r['bob_widths']}"
    )
    print(f"unshaped subscriber's width: {r['carol_widths']}")
    print(f"shaped period {r['shaped']}; settled on low {r['settled']}")
    print(f"whole {r['whole']}; unshaped subscriber {r['carol']}")
    print(f"peers {r['peers']}")
    for moment, subscribers in r["relay"]:
        print(f"relay stats, {moment}: {subscribers}")
    high, low = r["layers"]["h"], r["layers"]["l"]
    assert r["failures"] == [], r["failures"]
    assert r["drop_s"] <= DROP_S, r
    assert r["recover_s"] <= RECOVER_S, r
    assert r["settled"]["loss"] < 0.02, r["settled"]
    assert r["whole"]["video_stall_ms"] <= 1000, r["whole"]  # no freeze longer than 1 s
    assert r["whole"]["audio_gap_ms"] <= 200, r["whole"]
    assert low in r["shaped"]["widths"]
    assert r["carol"]["widths"] == [high], r["carol"]
    assert r["errors"] == []


UPLINK = "rate 500kbit burst 16kbit latency 50ms"  # under what three layers take (~1.2 Mbit/s)


async def test_a_publisher_on_a_weak_uplink_stops_its_top_layer_and_restores_it(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox, path: ShapedPath
) -> None:
    """Issue 11, item 5: the relay's transport-cc feedback is what the publisher's own congestion
    control goes by, so a narrow uplink makes it stop its top layer rather than lose packets;
    its subscriber gets the next layer down, then the top one again once the uplink widens."""
    code = await make_users(client, outbox, "alice", "bob")
    base = server.url

    def scenario(browser: Any) -> dict[str, Any]:
        shaped_browser = launch_shaped(browser, path, base)
        try:
            alice = open_page(shaped_browser, base, "alice")  # the publisher, on the shaped path
            bob = open_page(browser, base, "bob")
            a = join(alice, base, code)
            join(bob, base, code)
            layers = three_layers(alice, timeout=60)
            assert_video_flowing(bob, [a], timeout=25)
            bob.evaluate(SAMPLER_JS, a)
            poll(lambda: width_now(bob) == layers["h"], 30, "bob on alice's top layer")
            with path.uplink_shaped(UPLINK):
                shaped_at = now_ms(bob)
                poll(lambda: 0 < width_now(bob) < layers["h"], 20, "bob below the top layer")
                dropped_at = latest(bob)["t"]
                before = relay_camera_layers(alice)["h"]["frames"]
                limited = poll(
                    lambda: (sent := relay_camera_layers(alice))["h"]["frames"] == before and sent,
                    15,
                    "the publisher's top layer stopped",
                )
            unshaped_at = now_ms(bob)
            poll(lambda: width_now(bob) == layers["h"], 40, "bob back on the top layer")
            samples = bob.evaluate(SAMPLES_JS, shaped_at - 2000)
            return {
                "drop_s": (dropped_at - shaped_at) / 1000,
                "recover_s": (latest(bob)["t"] - unshaped_at) / 1000,
                "limited": limited,
                "whole": period(samples, shaped_at, samples[-1]["t"]),
                "widths": timeline(samples, shaped_at),
                "errors": alice.errors + bob.errors,
            }
        finally:
            shaped_browser.close()

    r = await run_scenario(scenario, secure_args(base))
    print(
        f"weak uplink: subscriber below the top layer after {r['drop_s']:.1f} s, back {r['recover_s']:.1f} s"
    )
    print(f"subscriber's width (s from shaping): {r['widths']}; whole {r['whole']}")
    print(f"the publisher's layers while limited: {r['limited']}")
    assert r["limited"]["h"]["limit"] == "bandwidth" or r["limited"]["m"]["limit"] == "bandwidth", r[
        "limited"
    ]
    # What the narrowed uplink dropped before the publisher's estimate caught up cannot be
    # repaired over that same uplink: the subscriber's video may hold until the next keyframe
    # of a layer that gets through (1.2 s measured), never longer than 2 s.
    assert r["whole"]["video_stall_ms"] <= 2000, r["whole"]
    assert r["whole"]["audio_gap_ms"] <= 200, r["whole"]
    assert r["errors"] == []
