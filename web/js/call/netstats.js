/*
 * Network quality from getStats(), with no DOM and no timers: successive snapshots in, per-person
 * figures and a level out (netquality.js polls and draws; tests feed synthetic snapshots).
 *
 * A snapshot is {t (ms), connections: [{id, person, state, stats}]}: `stats` is the list of one
 * RTCPeerConnection's getStats() entries, `person` the peer id the whole connection belongs to
 * (mesh) or null (relay: one connection carries everyone), and `attribute(connId, stat)` says
 * whose an inbound-rtp entry is: {person, source: "audio" | "camera" | "screen"} or null.
 *
 * Levels, worst first: "lost", "poor", "fair", "good" (null: not measured yet).
 * - Someone else: packet loss over the last WINDOW_MS, the connection's round-trip time, audio
 *   jitter, and their camera's freezes (Chromium's freezeCount / totalFreezesDuration) and frames
 *   decoded against frames received. "lost": their connection is down, or nothing at all came
 *   over it for LOST_MS.
 * - Me: what the far ends report of my streams (remote-inbound-rtp: loss, round-trip time),
 *   whether the processor holds my encoder back (qualityLimitationReason "cpu"), and whether too
 *   little outgoing bitrate is available while I send video.
 * - Each figure has a THRESHOLDS pair [fair from, poor from]; the level is the worst figure's.
 * - Hysteresis (settle): a worse level shows after DOWN_AFTER readings in a row below the one
 *   shown, a better one after UP_AFTER readings in a row above it; "lost" shows at once.
 */

export const LEVELS = ["lost", "poor", "fair", "good"]; // index = bars lit
export const SELF = "local"; // the person key of my own figures
export const POLL_MS = 2000;
export const WINDOW_MS = 10000;
export const LOST_MS = 4000;
export const DOWN_AFTER = 2;
export const UP_AFTER = 3;

// [fair from, poor from]; loss and decode ratios are fractions, times in seconds.
export const THRESHOLDS = {
  loss: [0.02, 0.08],
  rtt: [0.3, 0.6],
  jitter: [0.03, 0.08],
  freezeSeconds: [0.3, 1.0], // frozen time within the window
  available: [300000, 150000], // bits/s available to send (lower is worse)
  decodeRatio: [0.8, 0.5], // frames decoded / frames received (lower is worse)
};
const DOWN_STATES = new Set(["disconnected", "failed", "closed"]);
const STATE_RANK = { closed: 0, failed: 1, disconnected: 2, new: 3, connecting: 4, connected: 5 };
const MIN_PACKETS = 20; // fewer in a window says nothing about loss

const rank = (level) => LEVELS.indexOf(level);
const worst = (levels) => levels.reduce((a, b) => (rank(b) < rank(a) ? b : a), "good");

/** The level of one figure against its thresholds (higher = worse unless `lowIsBad`). */
export function gradeOf(value, [fair, poor], lowIsBad = false) {
  if (value === null || value === undefined || Number.isNaN(value)) return "good";
  if (lowIsBad) return value <= poor ? "poor" : value <= fair ? "fair" : "good";
  return value >= poor ? "poor" : value >= fair ? "fair" : "good";
}

/** The connection's selected candidate pair (the transport's, else the nominated one). */
function selectedPair(stats) {
  const byId = new Map(stats.map((s) => [s.id, s]));
  for (const s of stats) {
    if (s.type === "transport" && s.selectedCandidatePairId && byId.has(s.selectedCandidatePairId)) {
      return byId.get(s.selectedCandidatePairId);
    }
  }
  return stats.find((s) => s.type === "candidate-pair" && s.nominated && s.state === "succeeded") || null;
}

const INBOUND_KEYS = ["packetsReceived", "packetsLost", "bytesReceived", "jitter", "framesDecoded", "framesReceived",
  "freezeCount", "totalFreezesDuration", "frameWidth", "frameHeight", "framesPerSecond"];
const OUTBOUND_KEYS = ["packetsSent", "bytesSent", "frameWidth", "frameHeight", "framesPerSecond", "qualityLimitationReason"];

function pick(s, keys) {
  const out = {};
  for (const key of keys) if (s[key] !== undefined) out[key] = s[key];
  return out;
}

/** One connection's getStats() list → its pair figures, inbound streams by person, my outbound. */
function readConnection({ id, person, state, stats }, attribute) {
  const pair = selectedPair(stats);
  const conn = {
    state: state || "connected",
    rtt: pair && typeof pair.currentRoundTripTime === "number" ? pair.currentRoundTripTime : null,
    available: pair && typeof pair.availableOutgoingBitrate === "number" ? pair.availableOutgoingBitrate : null,
    bytesReceived: pair ? pair.bytesReceived || 0 : 0,
  };
  const inbound = new Map(); // person → Map streamKey → counters
  const outbound = new Map(); // streamKey → counters
  const remote = new Map(); // outbound streamKey → what the far end reports of it
  if (person) inbound.set(person, new Map());
  for (const s of stats) {
    if (s.type === "inbound-rtp") {
      const info = person ? { person, source: sourceOf(s, attribute, id) } : attribute(id, s);
      if (!info) continue;
      if (!inbound.has(info.person)) inbound.set(info.person, new Map());
      inbound.get(info.person).set(`${id}/${s.id}`, { kind: s.kind, source: info.source, ...pick(s, INBOUND_KEYS) });
    } else if (s.type === "outbound-rtp") {
      outbound.set(`${id}/${s.id}`, { kind: s.kind, ...pick(s, OUTBOUND_KEYS) });
    } else if (s.type === "remote-inbound-rtp" && s.localId) {
      remote.set(`${id}/${s.localId}`, pick(s, ["packetsLost", "fractionLost", "roundTripTime"]));
    }
  }
  return { conn, inbound, outbound, remote };
}

function sourceOf(s, attribute, connId) {
  if (s.kind === "audio") return "audio";
  const info = attribute ? attribute(connId, s) : null;
  return info && info.source ? info.source : "camera";
}

/** A snapshot's raw counters: {t, conns: Map id → pair figures, people: Map person → {conn,
 * streams}, self: {outbound, remote}}. */
export function readSnapshot({ t, connections }, attribute = () => null) {
  const out = { t, conns: new Map(), people: new Map(), self: { outbound: new Map(), remote: new Map() } };
  for (const c of connections) {
    const { conn, inbound, outbound, remote } = readConnection(c, attribute);
    out.conns.set(c.id, conn);
    for (const [person, streams] of inbound) {
      const entry = out.people.get(person) || { conn: c.id, streams: new Map() };
      for (const [key, value] of streams) entry.streams.set(key, value);
      out.people.set(person, entry);
    }
    for (const [key, value] of outbound) out.self.outbound.set(key, value);
    for (const [key, value] of remote) out.self.remote.set(key, value);
  }
  return out;
}

/** Σ over the streams in both maps of (now[field] − then[field]), never below 0 per stream. */
function grown(then, now, field, filter = () => true) {
  let sum = 0;
  for (const [key, b] of now) {
    const a = then.get(key);
    if (!a || !filter(b) || typeof b[field] !== "number") continue;
    sum += Math.max(0, b[field] - (a[field] || 0));
  }
  return sum;
}

const isCamera = (s) => s.kind === "video" && s.source === "camera";

/** The camera's current picture among these streams: the largest one's width, height, fps. */
function picture(streams, filter) {
  let best = null;
  for (const s of streams.values()) {
    if (!filter(s) || !s.frameWidth) continue;
    if (!best || s.frameWidth * s.frameHeight > best.frameWidth * best.frameHeight) best = s;
  }
  return best ? { width: best.frameWidth, height: best.frameHeight, fps: best.framesPerSecond ?? null } : null;
}

/** Whether a camera stream of these had frames decoded before and is still there. */
function cameraOn(then, now) {
  for (const [key, s] of now) {
    const before = then.get(key);
    if (isCamera(s) && before && before.framesDecoded > 0) return true;
  }
  return false;
}

/** Someone else's figures from three snapshots: the window's first, the previous and the latest. */
export function personFigures(person, first, prev, last) {
  const now = last.people.get(person);
  if (!now) return null;
  const conn = last.conns.get(now.conn) || { state: "connected", rtt: null };
  const seconds = Math.max(0.001, (last.t - prev.t) / 1000);
  const then = (prev.people.get(person) || { streams: new Map() }).streams;
  const start = (first.people.get(person) || { streams: new Map() }).streams;
  const received = grown(start, now.streams, "packetsReceived");
  const lost = grown(start, now.streams, "packetsLost");
  const audioJitters = [...now.streams.values()].filter((s) => s.kind === "audio" && typeof s.jitter === "number");
  const decoded = grown(then, now.streams, "framesDecoded", isCamera);
  const framesIn = grown(then, now.streams, "framesReceived", isCamera);
  const pic = picture(now.streams, isCamera);
  return {
    conn: now.conn,
    state: conn.state,
    loss: received + lost >= MIN_PACKETS ? lost / (received + lost) : null,
    rtt: conn.rtt,
    jitter: audioJitters.length ? Math.max(...audioJitters.map((s) => s.jitter)) : null,
    bitrate: (grown(then, now.streams, "bytesReceived") * 8) / seconds,
    width: pic ? pic.width : null,
    height: pic ? pic.height : null,
    fps: cameraOn(then, now.streams) ? decoded / seconds : null, // 0 when the picture stalled
    receivedFps: framesIn ? framesIn / seconds : null,
    freezes: grown(start, now.streams, "freezeCount", isCamera),
    freezeSeconds: grown(start, now.streams, "totalFreezesDuration", isCamera),
    silent: silentFor(now.conn, last, null),
  };
}

/** Whether nothing came over connection `connId` since the snapshot `ago` (or LOST_MS before). */
function silentFor(connId, last, ago) {
  const then = ago || last.lostRef;
  if (!then) return false;
  const a = then.conns.get(connId);
  const b = last.conns.get(connId);
  return Boolean(a && b && b.bytesReceived <= a.bytesReceived);
}

/** My own figures: what the far ends report of my streams, my encoder's limits, my bitrate. */
export function selfFigures(first, prev, last) {
  const out = last.self.outbound;
  if (!out.size) return null;
  const seconds = Math.max(0.001, (last.t - prev.t) / 1000);
  let lost = 0;
  let sent = 0;
  const fractions = [];
  const rtts = [];
  for (const [key, report] of last.self.remote) {
    const before = first.self.remote.get(key);
    const sentNow = out.get(key);
    const sentThen = first.self.outbound.get(key);
    if (before && sentNow && sentThen && typeof report.packetsLost === "number") {
      lost += Math.max(0, report.packetsLost - (before.packetsLost || 0));
      sent += Math.max(0, (sentNow.packetsSent || 0) - (sentThen.packetsSent || 0));
    }
    if (typeof report.fractionLost === "number") fractions.push(report.fractionLost);
    if (typeof report.roundTripTime === "number") rtts.push(report.roundTripTime);
  }
  const conns = [...last.conns.values()];
  const pairRtts = conns.map((c) => c.rtt).filter((x) => typeof x === "number");
  const available = conns.map((c) => c.available).filter((x) => typeof x === "number");
  const videos = [...out.values()].filter((s) => s.kind === "video");
  const limited = videos.map((s) => s.qualityLimitationReason).find((r) => r === "bandwidth" || r === "cpu");
  const pic = picture(out, (s) => s.kind === "video");
  const states = conns.map((c) => c.state).sort((a, b) => (STATE_RANK[b] ?? 3) - (STATE_RANK[a] ?? 3));
  return {
    conn: [...last.conns.keys()].join(","),
    state: states.length ? states[0] : "new", // the best: I am lost only when every link is down
    loss: sent >= MIN_PACKETS ? Math.min(1, lost / sent) : fractions.length ? Math.max(...fractions) : null,
    rtt: rtts.length ? Math.max(...rtts) : pairRtts.length ? Math.max(...pairRtts) : null,
    jitter: null,
    bitrate: (grown(prev.self.outbound, out, "bytesSent") * 8) / seconds,
    available: available.length ? Math.min(...available) : null,
    limitation: limited || null,
    sendingVideo: grown(prev.self.outbound, out, "packetsSent", (s) => s.kind === "video") > 0,
    width: pic ? pic.width : null,
    height: pic ? pic.height : null,
    fps: pic ? pic.fps : null,
    silent: false,
  };
}

/** The level these figures call for (before hysteresis). */
export function rawLevel(f) {
  if (!f) return null;
  if (DOWN_STATES.has(f.state) || f.silent) return "lost";
  const grades = [
    gradeOf(f.loss, THRESHOLDS.loss),
    gradeOf(f.rtt, THRESHOLDS.rtt),
    gradeOf(f.jitter, THRESHOLDS.jitter),
    gradeOf(f.freezeSeconds, THRESHOLDS.freezeSeconds),
  ];
  if (f.freezes > 0) grades.push("fair"); // any freeze in the window
  if (f.receivedFps >= 5) grades.push(gradeOf(f.fps / f.receivedFps, THRESHOLDS.decodeRatio, true));
  // "bandwidth" alone is the normal state of a sender probing or capped by a relay's estimate: it
  // counts through the available bitrate below; a busy processor is a problem of its own.
  if (f.limitation === "cpu") grades.push("fair");
  if (f.sendingVideo) grades.push(gradeOf(f.available, THRESHOLDS.available, true));
  return worst(grades);
}

/** The level to show given the one shown and the raw readings so far (latest last). */
export function settle(shown, raws) {
  const latest = raws[raws.length - 1];
  if (latest === null || latest === undefined) return shown ?? null;
  if (shown === null || shown === undefined || latest === "lost") return latest;
  const tail = (n) => (raws.length >= n ? raws.slice(-n) : null);
  const down = tail(DOWN_AFTER);
  if (down && down.every((r) => r !== null && rank(r) < rank(shown))) {
    return down.reduce((a, b) => (rank(b) > rank(a) ? b : a)); // the best of the worse readings
  }
  const up = tail(UP_AFTER);
  if (up && up.every((r) => r !== null && rank(r) > rank(shown))) return worst(up);
  return shown;
}

/** Keeps the recent snapshots and each person's readings; update() → Map person → {level, raw, figures}. */
export class QualityTracker {
  constructor({ windowMs = WINDOW_MS, lostMs = LOST_MS } = {}) {
    this.windowMs = windowMs;
    this.lostMs = lostMs;
    this.history = []; // read snapshots, oldest first, spanning just over the window
    this.people = new Map(); // person → {shown, raws}
  }

  /** Take a snapshot ({t, connections}) and return every person's figures and level. */
  update(snapshot, attribute) {
    const last = readSnapshot(snapshot, attribute);
    this.history.push(last);
    while (this.history.length > 2 && last.t - this.history[1].t >= this.windowMs) this.history.shift();
    const result = new Map();
    if (this.history.length < 2) return result;
    const first = this.history[0];
    const prev = this.history[this.history.length - 2];
    last.lostRef = [...this.history].reverse().find((s) => last.t - s.t >= this.lostMs) || null;
    const figures = new Map([...last.people.keys()].map((p) => [p, personFigures(p, first, prev, last)]));
    figures.set(SELF, selfFigures(first, prev, last));
    for (const [person, f] of figures) {
      if (!f) continue;
      const entry = this.people.get(person) || { shown: null, raws: [] };
      const raw = rawLevel(f);
      entry.raws = [...entry.raws, raw].slice(-Math.max(DOWN_AFTER, UP_AFTER));
      entry.shown = settle(entry.shown, entry.raws);
      this.people.set(person, entry);
      result.set(person, { level: entry.shown, raw, figures: f });
    }
    for (const person of [...this.people.keys()]) if (!figures.get(person)) this.people.delete(person);
    return result;
  }
}
