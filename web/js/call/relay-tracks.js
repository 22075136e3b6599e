/*
 * Whose track is it, on the one connection with the relay (docs/protocol.md, "Relay negotiation
 * contract"). Pure functions over RTCPeerConnection state and SDP; no DOM.
 *
 * - The relay's `tracks` message maps each mid of my connection to {publisher, source}, or to
 *   nulls for an empty receive slot (it carries nothing). It may come before or after the
 *   negotiation that it describes. With receive slots the msid stream ids are not publishers.
 * - An m-line the latest `tracks` does not mention, but which did not exist yet when it came,
 *   falls back to its msid stream id (= the publisher's peer_id; the first video m-line of a
 *   publisher is its camera, further ones its screen). An m-line that existed when `tracks` came
 *   and is not listed carries nothing.
 * - A remote stream exists while its m-line is negotiated as receiving (currentDirection
 *   sendrecv/recvonly), is mapped, and its publisher is in the room. A publisher's microphone and
 *   camera make one "camera" stream; a screen is a "screen" stream.
 */

const RECEIVING = new Set(["sendrecv", "recvonly"]);
const SOURCES = new Set(["audio", "camera", "screen"]);

/**
 * The m-sections of an SDP: mid → {kind, msid, direction, index}. `msid` is the stream id of the
 * first a=msid line (or of an a=ssrc … msid: line), null when none or "-".
 */
export function sdpSections(sdp) {
  const out = new Map();
  if (typeof sdp !== "string") return out;
  const sections = sdp.split(/\r?\n(?=m=)/).slice(1);
  sections.forEach((section, index) => {
    const kind = (/^m=(\w+)/.exec(section) || [])[1] || "";
    const mid = (/(?:^|\n)a=mid:(\S+)/.exec(section) || [])[1];
    const msid = (/(?:^|\n)a=msid:(\S+)/.exec(section) || /(?:^|\n)a=ssrc:\d+ msid:(\S+)/.exec(section) || [])[1];
    const direction = (/(?:^|\n)a=(sendrecv|sendonly|recvonly|inactive)\b/.exec(section) || [])[1] || "sendrecv";
    if (mid !== undefined) out.set(mid, { kind, msid: msid && msid !== "-" ? msid : null, direction, index });
  });
  return out;
}

/** A transceiver that exists and is not stopped. */
export function isLive(tx) {
  return Boolean(tx) && !tx.stopped && tx.currentDirection !== "stopped" && tx.direction !== "stopped";
}

/** The same tracks, in any order. */
export function sameTracks(a, b) {
  return a.length === b.length && a.every((track) => b.includes(track));
}

/**
 * The videos the relay paused for my connection's bandwidth (`tracks[].paused`), as
 * "peerId:source" keys ("source": camera | screen); malformed items are skipped.
 */
export function pausedVideos(list) {
  const keys = new Set();
  for (const item of list) {
    if (!item || item.paused !== true || typeof item.publisher !== "string") continue;
    if (item.source === "camera" || item.source === "screen") keys.add(`${item.publisher}:${item.source}`);
  }
  return keys;
}

/** A `tracks` message's list → Map mid → {publisher, source}; malformed items are skipped. */
export function parseTracks(list) {
  const map = new Map();
  for (const item of list) {
    if (!item || typeof item.mid !== "string" || typeof item.publisher !== "string" || !SOURCES.has(item.source)) continue;
    map.set(item.mid, { publisher: item.publisher, source: item.source });
  }
  return map;
}

/** {publisher, source} of an m-line `tracks` has not described yet, from its msid stream id. */
function fromMsid(tx, track, sections, msidByMid, videosSeen) {
  const publisher = (sections.get(tx.mid) || {}).msid || msidByMid.get(tx.mid) || null;
  if (!publisher) return null;
  if (track.kind !== "video") return { publisher, source: "audio" };
  const seen = videosSeen.get(publisher) || 0;
  videosSeen.set(publisher, seen + 1);
  return { publisher, source: seen === 0 ? "camera" : "screen" };
}

/**
 * Who publishes what on each receiving m-line: "kind:peerId" → {peerId, kind, tracks}.
 * `mine`: my own transceivers; `trackMap`, `tracksSeen`, `midsAtTracks`: the latest `tracks`
 * (and the mids negotiated when it came); `msidByMid`: stream ids given by ontrack; `roster`:
 * the peer ids in the room.
 */
export function attributeStreams({ pc, mine, trackMap, tracksSeen, midsAtTracks, msidByMid, roster }) {
  const sections = sdpSections(pc.currentRemoteDescription ? pc.currentRemoteDescription.sdp : "");
  const videosSeen = new Map(); // publisher → video m-lines met so far (msid fallback)
  const wanted = new Map();
  const transceivers = pc
    .getTransceivers()
    .filter((t) => t.mid !== null && isLive(t) && RECEIVING.has(t.currentDirection))
    .sort((a, b) => ((sections.get(a.mid) || {}).index ?? 1e9) - ((sections.get(b.mid) || {}).index ?? 1e9));
  for (const tx of transceivers) {
    const track = tx.receiver.track;
    if (!track) continue;
    let info = trackMap.get(tx.mid) || null;
    if (!info && !mine.has(tx) && !(tracksSeen && midsAtTracks.has(tx.mid))) {
      info = fromMsid(tx, track, sections, msidByMid, videosSeen);
    }
    if (!info || !roster.has(info.publisher)) continue;
    if ((info.source === "audio") !== (track.kind === "audio")) continue; // inconsistent: skip
    const kind = info.source === "screen" ? "screen" : "camera";
    const key = `${kind}:${info.publisher}`;
    let entry = wanted.get(key);
    if (!entry) {
      entry = { peerId: info.publisher, kind, tracks: [] };
      wanted.set(key, entry);
    }
    if (!entry.tracks.some((t) => t.kind === track.kind)) entry.tracks.push(track);
  }
  return wanted;
}
