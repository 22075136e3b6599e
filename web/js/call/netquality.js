/*
 * The network-quality indicator in each camera tile's corner: signal bars (good 3, fair 2, poor 1,
 * lost 0 with a mark), an accessible label, and a popover with the numbers (loss, round trip,
 * bitrate, resolution, frame rate) on hover, focus or tap.
 *
 * One loop for the page: every POLL_MS it reads getStats() of every connection of the media engine
 * in use (mesh: one per person; relay: one, whose inbound streams are attributed to their
 * publishers by the relay's track map), hands the snapshot to a QualityTracker (netstats.js: the
 * figures, levels and hysteresis) and draws. start() / stop(); a poll never overlaps the last one.
 */

import { POLL_MS, QualityTracker, SELF } from "./netstats.js";

const LABELS = { good: "Good connection", fair: "Fair connection", poor: "Poor connection", lost: "Connection lost" };
let popoverIds = 0;

/** How a figure reads in the popover ("—" while unknown). */
const show = {
  loss: (f) => (f.loss === null ? "—" : `${(f.loss * 100).toFixed(f.loss < 0.1 ? 1 : 0)} %`),
  rtt: (f) => (f.rtt === null ? "—" : `${Math.round(f.rtt * 1000)} ms`),
  bitrate: (f) => (f.bitrate >= 1e6 ? `${(f.bitrate / 1e6).toFixed(1)} Mbit/s` : `${Math.round(f.bitrate / 1000)} kbit/s`),
  resolution: (f) => (f.width ? `${f.width}×${f.height}` : "—"),
  fps: (f) => (f.fps === null || f.fps === undefined ? "—" : `${Math.round(f.fps)} fps`),
};

/** The popover's rows for someone's figures (`mine`: my sending side). */
export function popoverRows(f, mine) {
  const rows = [
    ["Packet loss", show.loss(f)],
    ["Round trip", show.rtt(f)],
    [mine ? "Sending" : "Receiving", show.bitrate(f)],
    ["Resolution", show.resolution(f)],
    ["Frame rate", show.fps(f)],
  ];
  if (!mine && f.jitter !== null) rows.push(["Jitter", `${Math.round(f.jitter * 1000)} ms`]);
  if (!mine && f.freezes) rows.push(["Freezes (10 s)", `${f.freezes} (${f.freezeSeconds.toFixed(1)} s)`]);
  if (mine && f.limitation) rows.push(["Held back by", f.limitation === "cpu" ? "processor" : "bandwidth"]);
  if (mine && f.available !== null) rows.push(["Available", show.bitrate({ bitrate: f.available })]);
  return rows;
}

/** One tile's indicator, built in the tile's `.tile-net` slot. */
class Indicator {
  constructor(slot) {
    this.slot = slot;
    const id = `net-pop-${++popoverIds}`;
    this.button = document.createElement("button");
    this.button.type = "button";
    this.button.className = "net-bars";
    this.button.setAttribute("aria-describedby", id);
    this.button.setAttribute("aria-expanded", "false");
    for (let i = 1; i <= 3; i += 1) {
      const bar = document.createElement("span");
      bar.className = `net-bar net-bar-${i}`;
      this.button.append(bar);
    }
    this.pop = document.createElement("div");
    this.pop.className = "net-pop";
    this.pop.id = id;
    this.pop.setAttribute("role", "tooltip");
    this.button.addEventListener("click", () => this.toggle());
    this.button.addEventListener("keydown", (e) => {
      if (e.key === "Escape") this.toggle(false);
    });
    slot.replaceChildren(this.button, this.pop);
  }

  toggle(open = !this.slot.classList.contains("open")) {
    this.slot.classList.toggle("open", open);
    this.button.setAttribute("aria-expanded", String(open));
  }

  render({ level, figures }, mine) {
    this.slot.hidden = false;
    this.slot.dataset.level = level || "measuring";
    const label = level ? LABELS[level] : "Measuring connection";
    this.button.setAttribute("aria-label", mine ? `Your network: ${label.toLowerCase()}` : label);
    const title = document.createElement("p");
    title.className = "net-pop-title";
    title.textContent = label;
    const list = document.createElement("dl");
    for (const [name, value] of popoverRows(figures, mine)) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      list.append(dt, dd);
    }
    this.pop.replaceChildren(title, list);
  }
}

export class NetQuality {
  /**
   * `engine()`: the media engine in use (peers(), streams(), and for the relay its link's
   * trackMap), or null; `slotOf(person)`: the `.tile-net` element of that person's camera tile
   * (SELF: mine), or null.
   */
  constructor({ engine, slotOf }) {
    this.engine = engine;
    this.slotOf = slotOf;
    this.tracker = new QualityTracker();
    this.indicators = new WeakMap(); // slot → Indicator
    this.latest = new Map(); // person → {level, raw, figures}: the last poll's (for tests)
    this.drawn = new Set(); // persons whose indicator the last draw showed
    this.timer = 0;
    this.running = false;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.schedule();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
  }

  schedule() {
    if (this.running) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  async poll() {
    try {
      const snapshot = await this.snapshot();
      if (!this.running) return;
      this.latest = this.tracker.update(snapshot, this.attribution());
      this.draw();
    } catch (err) {
      console.warn("meet: network stats failed", err);
    } finally {
      this.schedule();
    }
  }

  /** Every connection's getStats() now, as netstats.js reads them. */
  async snapshot() {
    const engine = this.engine();
    const peers = engine ? [...engine.peers()] : [];
    const relay = Boolean(engine && engine.link);
    const connections = await Promise.all(
      peers.map(async ([id, pc]) => ({
        id,
        person: relay ? null : id,
        state: pc.connectionState,
        stats: [...(await pc.getStats()).values()],
      })),
    );
    return { t: performance.now(), connections };
  }

  /** Whose is an inbound stream: the relay's track map, or (mesh) screen vs camera by track id. */
  attribution() {
    const engine = this.engine();
    if (engine && engine.link) {
      const map = engine.link.trackMap;
      return (connId, s) => {
        const info = map.get(s.mid);
        return info ? { person: info.publisher, source: info.source } : null;
      };
    }
    const screens = new Set();
    for (const { kind, stream } of engine ? engine.streams() : []) {
      if (kind === "screen") for (const track of stream.getTracks()) screens.add(track.id);
    }
    return (connId, s) => ({ person: connId, source: screens.has(s.trackIdentifier) ? "screen" : "camera" });
  }

  draw() {
    for (const person of this.drawn) {
      const slot = this.latest.has(person) ? null : this.slotOf(person);
      if (slot) slot.hidden = true; // no figures any more (e.g. a mode switch): no stale bars
    }
    this.drawn = new Set(this.latest.keys());
    for (const [person, reading] of this.latest) {
      const slot = this.slotOf(person);
      if (!slot) continue;
      let indicator = this.indicators.get(slot);
      if (!indicator) {
        indicator = new Indicator(slot);
        this.indicators.set(slot, indicator);
      }
      indicator.render(reading, person === SELF);
    }
  }
}
