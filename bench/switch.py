"""Mesh -> relay switch: how long until every page sees every other camera again.

With ``[rtc] relay = "auto"`` and ``mesh_limit = 4`` a room runs peer-to-peer until a fifth person
joins; then every page gets ``mode {mode: "relay"}``, closes its mesh connections and connects to
the server's relay. This times that switch with real headless Chromium pages (fake cameras)
against the real server (``meet serve``; its relay worker announces 127.0.0.1 only).

Each run (fresh room, fresh browser): four pages join and run mesh until each decodes every other
camera (framesDecoded growing on every mesh connection), then ``--settle`` s, then every page gets
the watcher (WATCH_JS) and the fifth page clicks "Join". Times are taken in the pages with
``performance.timeOrigin + performance.now()`` (one clock for all pages on the machine):

- ``t0``: on the four mesh pages, when the RoomClient dispatches ``mode {mode: "relay"}`` (its
  ``dispatchEvent`` is wrapped: stamped before the mesh and relay handlers run; the end of those
  synchronous handlers is ``modeHandled``). On the fifth page, its "Join" click (capturing
  listener); ``shown`` is when its call view appears (its first ``welcome`` handled).
- ``confirmed``: the first in-page poll (``setInterval`` every ``--interval-ms``, 40 ms; never two
  at once), stamped when its ``getStats()`` of the relay connection resolved, at which for each of
  the 4 others in the room (``relay.roster``): (a) the relay connection's inbound video stream that
  the relay's ``tracks`` map gives as that person's camera has ``framesDecoded >= --min-frames``
  (the connection is created at the switch, so these frames were decoded after it), and (b) that
  person's tile ``<video>`` shows the relay's camera stream for them (``srcObject``) with
  ``videoWidth > 0``. ``decoded``: the first poll at which (a) held for all four.
- ``pictures`` (the headline): at that poll, the latest over the 4 tiles of when the tile's
  ``<video>`` first showed a picture of that stream: its first ``loadedmetadata`` or ``resize``
  event with ``videoWidth > 0`` while ``srcObject`` was that stream (capturing listeners on
  ``document``), or the poll itself if it saw that before the event was dispatched (a busy main
  thread runs both late). So it hardly depends on the poll period; ``confirmed`` bounds it.

- ``blank`` (the blackout users see): on a mesh page, the longest stretch between polls during
  which the tile of someone who had a picture at ``t0`` showed none (no ``srcObject``, or
  ``videoWidth`` 0), from ``t0`` to ``confirmed``. With the handover (the mesh keeps a person's
  picture until the relay's has packets) it should stay 0.

Per page: ``pictures - t0``; per run the max over the four mesh pages, and the fifth page's
click -> pictures. Afterwards every page must still decode every camera (framesDecoded grows
within 2 s) over the relay connection alone (mesh closed), or the run is marked INVALID.

    unshare -n sh -c 'ip link set lo up && exec python bench/switch.py --runs 3 [--json out.json]'
"""

from __future__ import annotations

import os
import sys

# As in bench/signaling.py: as a script this folder is sys.path[0], and bench/http.py would
# shadow the stdlib ``http`` package. Drop it, then load bench/http.py's helpers by file path.
_HERE = os.path.dirname(os.path.realpath(__file__))
from _sibling import load_sibling  # before bench/ leaves sys.path

sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]
_ROOT = os.path.dirname(_HERE)
# tests/ on sys.path only for tests/browser.py: the Chromium path and flags the browser tests use.
# The checkout itself goes first, for this process and (PYTHONPATH) for `python -m meet ...`
# children, so the bench measures this tree even without (or with a stale) `pip install -e .`.
sys.path[:0] = [_ROOT, os.path.join(_ROOT, "tests")]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

import argparse
import json
import platform
import secrets
import shlex
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy
from browser import CHROMIUM, CHROMIUM_ARGS
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

hb = load_sibling("http.py")
PAGES = 5  # mesh_limit + 1
WAIT_MS = 60_000  # Playwright waits (page loads, selectors) on a busy 2-core box

# In-page watcher; see the module docstring for the exact definitions.
WATCH_JS = """({expect, trigger, minFrames, intervalMs}) => {
  const now = () => performance.timeOrigin + performance.now();
  const B = (window.__switch = {t0: null, mode: null, modeHandled: null, click: null, shown: null,
    connected: null, decoded: null, pictures: null, confirmed: null, polls: 0, maxGapMs: 0, last: null,
    byPublisher: null, size: null, error: null, initial: [], blankSince: null, maxBlankMs: 0});
  const seen = new WeakMap(); // <video> -> {stream, t}: when its current srcObject got a picture
  const onPicture = (e) => {
    const v = e.target;
    if (!(v instanceof HTMLVideoElement) || !(v.videoWidth > 0)) return;
    const r = seen.get(v);
    if (!r || r.stream !== v.srcObject) seen.set(v, {stream: v.srcObject, t: now()});
  };
  for (const type of ["loadedmetadata", "resize"]) document.addEventListener(type, onPicture, true);
  if (trigger === "mode") {
    const client = window.meetCall.client;
    const dispatch = client.dispatchEvent.bind(client);
    client.dispatchEvent = (event) => {
      const relay = event.type === "mode" && event.detail && event.detail.mode === "relay";
      if (relay && B.mode === null) {
        B.mode = B.t0 = now();
        B.initial = [...document.querySelectorAll(".tile:not(.screen)[data-peer-id]")].map((t) => t.dataset.peerId);
      }
      return dispatch(event);
    };
    client.addEventListener("mode", () => { if (B.modeHandled === null) B.modeHandled = now(); });
  } else {
    document.querySelector("#join-button").addEventListener("click", () => {
      if (B.click === null) B.click = B.t0 = now();
    }, {capture: true});
    const view = document.querySelector("#call");
    new MutationObserver(() => { if (!view.hidden && B.shown === null) B.shown = now(); })
      .observe(view, {attributes: true, attributeFilter: ["hidden"]});
  }
  // When the tile of `peer` first showed a picture of the relay's camera stream (null: not yet).
  const pictureAt = (relay, peer, t) => {
    const s = relay.streams().find((x) => x.peerId === peer && x.kind === "camera");
    const v = document.querySelector(`.tile:not(.screen)[data-peer-id="${peer}"] video`);
    if (!s || !v || v.srcObject !== s.stream || !(v.videoWidth > 0)) return null;
    const r = seen.get(v);
    return r && r.stream === s.stream ? r.t : t; // t: the poll saw it before the event came
  };
  // Blackout: the longest stretch in which a tile that had a picture at the switch showed none.
  const blank = () => B.initial.some((p) => {
    const v = document.querySelector(`.tile:not(.screen)[data-peer-id="${p}"] video`);
    return !v || !v.srcObject || !(v.videoWidth > 0);
  });
  const trackBlank = (t, ending) => {
    const now_blank = !ending && blank();
    if (now_blank && B.blankSince === null) B.blankSince = t;
    if (!now_blank && B.blankSince !== null) {
      B.maxBlankMs = Math.max(B.maxBlankMs, t - B.blankSince);
      B.blankSince = null;
    }
  };
  const poll = async () => {
    const relay = window.meetCall.relay;
    const link = relay && relay.link;
    trackBlank(now(), false);
    if (!link) return;
    const stats = await link.pc.getStats();
    const t = now();
    if (B.last !== null) B.maxGapMs = Math.max(B.maxGapMs, t - B.last);
    B.last = t;
    B.polls += 1;
    if (B.connected === null && link.pc.connectionState === "connected") B.connected = t;
    const frames = {};
    stats.forEach((s) => {
      if (s.type !== "inbound-rtp" || s.kind !== "video") return;
      const info = link.trackMap.get(s.mid);
      if (info && info.source === "camera") frames[info.publisher] = s.framesDecoded || 0;
    });
    const others = [...relay.roster];
    if (others.length < expect || !others.every((p) => (frames[p] || 0) >= minFrames)) return;
    if (B.decoded === null) B.decoded = t;
    const shown = others.map((p) => pictureAt(relay, p, t));
    if (shown.includes(null)) return;
    B.pictures = Math.max(...shown);
    B.byPublisher = Object.fromEntries(others.map((p, i) => [p, shown[i]]));
    B.confirmed = t;
    trackBlank(t, true);
    const v = document.querySelector(`.tile:not(.screen)[data-peer-id="${others[0]}"] video`);
    B.size = `${v.videoWidth}x${v.videoHeight}`;
    clearInterval(timer);
  };
  let busy = false;
  const timer = setInterval(async () => {
    if (B.t0 === null || busy) return;
    busy = true;
    try { await poll(); } catch (err) { B.error = String(err); } finally { busy = false; }
  }, intervalMs);
}"""

# framesDecoded of every inbound camera per publisher, over whatever connections the page has.
FRAMES_JS = """async () => {
  const out = {};
  const link = window.meetCall.relay && window.meetCall.relay.link;
  for (const [peerId, pc] of window.meetCall.peers()) {
    (await pc.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
      const info = peerId === 'relay' ? link && link.trackMap.get(s.mid) : {publisher: peerId, source: 'camera'};
      if (info && info.source === 'camera') out[info.publisher] = Math.max(out[info.publisher] || 0, s.framesDecoded || 0);
    });
  }
  return out;
}"""


# --------------------------------------------------------------------------- server and room


def write_config(path: Path, data_dir: Path) -> None:
    """Loopback, throwaway data, cheap argon2 (sign-ins are not measured), relay "auto" at 4."""
    path.write_text(
        f'[server]\nhost = "{hb.HOST}"\ngraceful_timeout = 2.0\n\n'
        f"[storage]\ndata_dir = {hb.toml_str(str(data_dir))}\n\n"
        f"[auth]\nsecret_key = {hb.toml_str(secrets.token_urlsafe(48))}\n"
        "argon2_time_cost = 1\nargon2_memory_kib = 1024\nargon2_parallelism = 1\nmail_max_per_window = 50\n\n"
        '[mail]\nbackend = "file"\n\n'
        '[rtc]\nrelay = "auto"\nmesh_limit = 4\nhost_addresses = ["127.0.0.1"]\n'
    )


def create_room(pw: Any, base: str, host: str) -> str:
    """Sign the host in and create a fresh room over the REST API; returns its code."""
    request = pw.request.new_context(base_url=base)
    try:
        r = request.post("/api/auth/login", data={"login": host, "password": hb.PASSWORD})
        auth = {"Authorization": f"Bearer {r.json()['token']}"} if r.ok else {}
        r = request.post("/api/rooms", data={"title": "Switch bench"}, headers=auth)
        if r.status != 201:
            raise RuntimeError(f"creating a room failed: {r.status} {r.text()[:300]}")
        return str(r.json()["room"]["code"])
    finally:
        request.dispose()


# --------------------------------------------------------------------------- pages


def open_page(browser: Any, base: str, name: str, code: str) -> Any:
    """A signed-in page in its own browser context (own cookies) on the room's pre-join screen."""
    context = browser.new_context(viewport={"width": 1024, "height": 700})
    r = context.request.post(f"{base}/api/auth/login", data={"login": name, "password": hb.PASSWORD})
    if not r.ok:
        raise RuntimeError(f"sign-in failed: {r.status} {r.text()[:300]}")
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(f"{base}/r/{code}")
    page.wait_for_selector("#join-button:enabled")
    return page


def wait_for(check: Any, timeout: float, what: str) -> Any:
    """Re-evaluate ``check`` every 0.1 s until it is truthy; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)
    return value


def click_join(page: Any) -> str:
    """Join from the pre-join screen; returns my peer id."""
    page.click("#join-button")
    page.wait_for_selector("#call:not([hidden])")
    return str(wait_for(lambda: page.evaluate("window.meetCall.peerId()"), 30, "a peer id"))


def decoding_everyone(page: Any, others: list[str], timeout: float) -> None:
    """Every other camera decodes on this page: framesDecoded > 0, then 5 frames more."""

    def frames() -> dict[str, int]:
        return page.evaluate(FRAMES_JS)  # type: ignore[no-any-return]

    first = wait_for(
        lambda: (f := frames()) and all(f.get(p, 0) > 0 for p in others) and f,
        timeout,
        f"video from {others}",
    )
    wait_for(lambda: all(frames().get(p, 0) >= first[p] + 5 for p in others), timeout, f"{others} growing")


# --------------------------------------------------------------------------- CPU


def tree_cpu_s(*roots: int) -> list[float]:
    """utime + stime of the live processes under each root (a process counts for its nearest root)."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2 :].split()
        parent[int(entry)], cpu[int(entry)] = int(fields[1]), (int(fields[11]) + int(fields[12])) / hb.CLK_TCK
    totals = dict.fromkeys(roots, 0.0)
    for pid, seconds in cpu.items():
        while pid > 1 and pid not in totals:
            pid = parent.get(pid, 0)
        if pid in totals:
            totals[pid] += seconds
    return [totals[root] for root in roots]


def cpu_snapshot(server_pid: int) -> tuple[float, list[float], Any]:
    """(time, CPU s of [this bench + browser, server + relay worker], machine ticks)."""
    return time.monotonic(), tree_cpu_s(os.getpid(), server_pid), hb.MachineTicks.read()


def cpu_share(a: tuple[float, list[float], Any], b: tuple[float, list[float], Any]) -> dict[str, float]:
    """Between two snapshots, in % of all cores: machine busy, browsers, server, other processes."""
    busy = 100 * (b[2].busy - a[2].busy) / max(b[2].total - a[2].total, 1)
    ours = [100 * (y - x) / (max(b[0] - a[0], 1e-9) * hb.NCPU) for x, y in zip(a[1], b[1])]
    out = {
        "machine_busy_pct": busy,
        "browsers_pct": ours[0],
        "server_pct": ours[1],
        "others_pct": busy - sum(ours),
    }
    return {k: round(max(v, 0.0), 1) for k, v in out.items()}


# --------------------------------------------------------------------------- one run


# Per-page durations (ms): name -> (event, from event) in the watcher's record.
SPANS = {
    "to_pictures_ms": ("pictures", "t0"),
    "to_confirmed_ms": ("confirmed", "t0"),
    "to_decoded_ms": ("decoded", "t0"),
    "to_connected_ms": ("connected", "t0"),
    "mode_handlers_ms": ("modeHandled", "mode"),
    "shown_to_pictures_ms": ("pictures", "shown"),
}


def page_figures(b: dict[str, Any], number: dict[str, int]) -> dict[str, Any]:
    """Durations (ms) and poll facts from one page's watcher record (``number``: page of a peer)."""
    spans = {
        k: None if b[e] is None or b[f] is None else round(b[e] - b[f], 1) for k, (e, f) in SPANS.items()
    }
    poll = {"max_poll_gap_ms": round(b["maxGapMs"], 1), "polls": b["polls"], "size": b["size"],
            "max_blank_ms": round(b["maxBlankMs"], 1)}
    by = {f"page {number[p]}": round(t - b["t0"], 1) for p, t in (b["byPublisher"] or {}).items()}
    return {**spans, "pictures_by_publisher_ms": by, **poll, "error": b["error"]}


def run_once(
    pw: Any, base: str, users: list[str], server_pid: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One measurement: a fresh room and a fresh browser, four mesh pages, then the fifth."""
    stage = ["creating the room"]  # for the failure message
    camera = [f"--use-file-for-fake-video-capture={args.camera_file}"] if args.camera_file else []
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + camera, timeout=WAIT_MS)
    try:
        return switch(browser, base, create_room(pw, base, users[0]), users, server_pid, args, stage)
    except (TimeoutError, RuntimeError, PlaywrightError) as exc:
        raise RuntimeError(f"{stage[0]}: {str(exc).splitlines()[0]}") from exc
    finally:
        browser.close()


def switch(
    browser: Any,
    base: str,
    code: str,
    users: list[str],
    server_pid: int,
    args: argparse.Namespace,
    stage: list[str],
) -> dict[str, Any]:
    """Four pages in mesh, the watchers, the fifth page's join; returns the run's figures."""
    pages: dict[str, Any] = {}
    for name in users[:4]:
        stage[0] = f"joining as {name}"
        page = open_page(browser, base, name, code)
        pages[click_join(page)] = page
    for me, page in pages.items():
        stage[0] = "waiting for the mesh"
        if page.evaluate("window.meetCall.mode()") != "mesh":
            raise RuntimeError("the room is not in mesh mode with four pages")
        decoding_everyone(page, [p for p in pages if p != me], args.timeout)
    time.sleep(args.settle)
    watch = {"expect": PAGES - 1, "minFrames": args.min_frames, "intervalMs": args.interval_ms}
    for page in pages.values():
        page.evaluate(WATCH_JS, {**watch, "trigger": "mode"})
    stage[0] = f"joining as {users[4]}"
    fifth = open_page(browser, base, users[4], code)
    fifth.evaluate(WATCH_JS, {**watch, "trigger": "click"})
    load, before = os.getloadavg()[0], cpu_snapshot(server_pid)
    pages[click_join(fifth)] = fifth
    stage[0] = "waiting for the pictures after the switch"
    wait_for(
        lambda: all(p.evaluate("window.__switch.pictures") for p in pages.values()), args.timeout, "them"
    )
    cpu = cpu_share(before, cpu_snapshot(server_pid))
    records = [page.evaluate("window.__switch") for page in pages.values()]
    stage[0] = "checking that decoding goes on"
    return {
        "code": code,
        "load_at_switch": load,
        "cpu_during_switch": cpu,
        "valid": still_decoding(pages),
        "errors": [e for p in pages.values() for e in p.errors],
        "click_to_mode_ms": [round(r["mode"] - records[4]["click"], 1) for r in records[:4]],
        "pages": [page_figures(r, {p: i + 1 for i, p in enumerate(pages)}) for r in records],
    }


def still_decoding(pages: dict[str, Any]) -> bool:
    """After the switch: relay connection only, every camera keeps decoding (+1 within 2 s)."""
    before = {peer: page.evaluate(FRAMES_JS) for peer, page in pages.items()}
    time.sleep(2)
    for peer, page in pages.items():
        if page.evaluate("[...window.meetCall.peers().keys()]") != ["relay"]:
            return False
        after = page.evaluate(FRAMES_JS)
        if not all(after.get(p, 0) > before[peer].get(p, 0) for p in pages if p != peer):
            return False
    return True


# --------------------------------------------------------------------------- report

# Per-run figures (ms): key -> (column title, meaning).
COLUMNS = {
    "switch_max_ms": ("max(4)", "mode -> pictures, max of the 4 mesh pages"),
    "blank_max_ms": ("blank", "longest a mesh page's tile showed no picture (any of the 4)"),
    "confirmed_max_ms": ("confirmed", "the same, poll-confirmed"),
    "fifth_click_ms": ("5th click", "5th page: click -> pictures"),
    "fifth_welcome_ms": ("5th welcome", "5th page: welcome -> pictures"),
    "click_to_mode_ms": ("click->mode", "5th click -> mode at the others (median)"),
    "max_poll_gap_ms": ("poll gap", "largest gap between polls, any page"),
    "server_pct": ("server%", "server + relay worker CPU, 5th click -> pictures, % of all"),
    "others_pct": ("others%", "other processes' CPU, same window, % of all cores"),
}


def run_figures(run: dict[str, Any]) -> dict[str, float | None]:
    """The COLUMNS of one finished run."""
    fifth = run["pages"][4]
    return {
        "switch_max_ms": _mesh(run, "to_pictures_ms"),
        "blank_max_ms": _mesh(run, "max_blank_ms"),
        "confirmed_max_ms": _mesh(run, "to_confirmed_ms"),
        "fifth_click_ms": fifth["to_pictures_ms"],
        "fifth_welcome_ms": fifth["shown_to_pictures_ms"],
        "click_to_mode_ms": statistics.median(run["click_to_mode_ms"]),
        "max_poll_gap_ms": max(p["max_poll_gap_ms"] for p in run["pages"]),
        "server_pct": run["cpu_during_switch"]["server_pct"],
        "others_pct": run["cpu_during_switch"]["others_pct"],
    }


def _mesh(run: dict[str, Any], key: str) -> float | None:
    """The max of a figure over the four mesh pages (None if one of them lacks it)."""
    values = [p[key] for p in run["pages"][:4]]
    return None if None in values else max(values)


def _f(value: float | None, width: int = 0) -> str:
    return ("-" if value is None else f"{value:.0f}").rjust(width)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and max over the finished runs of every column, and of every mesh page's figure."""
    done = [r for r in runs if "pages" in r]
    series = {key: [r["figures"][key] for r in done] for key in COLUMNS}
    series["per_page_ms"] = [p["to_pictures_ms"] for r in done for p in r["pages"][:4]]
    out: dict[str, Any] = {"runs": len(runs), "finished": len(done)}
    for key, values in series.items():
        values = [v for v in values if v is not None]
        out[key] = {
            "median": round(statistics.median(values), 1) if values else None,
            "max": max(values, default=None),
        }
    return out


def print_header() -> None:
    print("\nms. mesh pages 1-4: mode -> all pictures back on each page")
    print("\n".join(f"{t}: {m}" for t, m in COLUMNS.values()))
    print(f"run  {'mesh pages 1-4':<23}" + "".join(f"  {t}" for t, _ in COLUMNS.values()) + "  load  check")


def print_run(i: int, run: dict[str, Any]) -> None:
    if "pages" not in run:
        print(f"{i + 1:>3}  FAILED: {run['failure']}")
        return
    mesh = " ".join(_f(p["to_pictures_ms"], 5) for p in run["pages"][:4])
    figures = "".join(_f(run["figures"][k], len(t) + 2) for k, (t, _) in COLUMNS.items())
    errors = f", {len(run['errors'])} page errors" if run["errors"] else ""
    print(
        f"{i + 1:>3}  {mesh}{figures}{run['load_at_switch']:>6.1f}  {'ok' if run['valid'] else 'INVALID'}{errors}"
    )


def print_summary(s: dict[str, Any]) -> None:
    print(f"\nover {s['finished']}/{s['runs']} runs (ms){'median':>44}{'max':>7}")
    rows = [("mode -> pictures, every mesh page", "per_page_ms")] + [(m, k) for k, (_, m) in COLUMNS.items()]
    for title, key in rows:
        print(f"  {title:<59}{_f(s[key]['median'], 7)}{_f(s[key]['max'], 7)}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs, each a fresh room and browser (default 3)")
    p.add_argument("--timeout", type=float, default=60.0, help="s to wait for mesh, then for the switch (60)")
    p.add_argument("--settle", type=float, default=2.0, help="s of steady mesh before the fifth joins (2)")
    p.add_argument("--interval-ms", type=int, default=40, help="in-page poll period (40)")
    p.add_argument("--min-frames", type=int, default=1, help="framesDecoded that counts as decoding (1)")
    p.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    p.add_argument(
        "--client-nice",
        type=int,
        default=10,
        metavar="N",
        help="niceness of this process and the browsers it starts, not of the server (default 10; 0: equal)",
    )
    p.add_argument(
        "--camera",
        metavar="WxH@FPS",
        help="fake camera from a generated Y4M clip of this size (e.g. 320x180@15) instead of Chromium's"
        " built-in one: five pages encoding less compete less for the cores, closer to five machines",
    )
    args = p.parse_args(argv)
    args.camera_file = None
    return args


def write_y4m(path: Path, spec: str, seconds: int = 2) -> Path:
    """A looping Y4M clip (I420, a moving gradient) for ``--use-file-for-fake-video-capture``."""
    size, _, fps = spec.partition("@")
    width, height = (int(v) for v in size.split("x"))
    rate = int(fps or 15)
    xs = numpy.arange(width, dtype=numpy.uint16)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{rate}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(rate * seconds):
            luma = ((xs[None, :] + numpy.arange(height)[:, None] + i * 8) % 256).astype(numpy.uint8)
            chroma = numpy.full((height // 2) * (width // 2), 128 + (i % 32), numpy.uint8)
            out.write(b"FRAME\n" + luma.tobytes() + chroma.tobytes() + chroma.tobytes())
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    load = os.getloadavg()
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"{platform.node()}: {os.cpu_count()} cores, load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="meet-switch-") as tmp:
        workdir = Path(tmp)
        config = workdir / "meet.toml"
        if args.camera:
            args.camera_file = str(write_y4m(workdir / "camera.y4m", args.camera))
        write_config(config, workdir / "data")
        users = hb.add_users(config, workdir, PAGES)
        port = hb.free_port()
        server = hb.Server(config, workdir, port)
        server.start()  # before Playwright starts threads (the server uses preexec_fn)
        # The five browsers stand in for five machines: niced (inherited by Chromium), they do
        # not starve the server and its relay worker, which would have their own machine.
        os.nice(args.client_nice)
        try:
            with sync_playwright() as pw:
                print_header()
                for i in range(args.runs):
                    try:
                        run = run_once(pw, f"http://{hb.HOST}:{port}", users, server.pid, args)
                        run["figures"] = run_figures(run)
                    except RuntimeError as exc:
                        run = {"failure": str(exc)}
                    runs.append(run)
                    print_run(i, run)
        finally:
            code = server.stop()
            if code not in (0, None):
                print(f"server exited with {code}:\n{server.log_tail()}")
    summary = summarize(runs)
    print_summary(summary)
    if args.json:
        out: dict[str, Any] = {"command": sys.argv, "cores": os.cpu_count(), "load_at_start": load}
        out.update(settings=vars(args), summary=summary, runs=runs)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0 if summary["finished"] == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
