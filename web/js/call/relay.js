/*
 * Relay WebRTC: one RTCPeerConnection with the server's media relay (an SFU), addressed as the
 * reserved peer id "relay". No DOM here beyond MediaStream objects.
 *
 * It has the same external interface as the mesh (mesh.js), so the call page drives both alike:
 *   new Relay(client, {audio, video})   listens to the RoomClient by itself
 *   setTrack(kind, track)  setScreen(stream|null)  peers()  streams()  close()
 *   events "stream" {peerId, kind, stream}, "stream-removed" {peerId, kind},
 *          "connection-state" {peerId: "relay", state}, "peer-closed" {peerId: "relay"}
 * `active` is true while the room's mode is "relay" (welcome.mode, then `mode` messages).
 *
 * Negotiation (docs/protocol.md, "Relay negotiation contract"):
 * - I make the first offer: my microphone, then my camera, then (while sharing) my screen, each
 *   on its own "sendonly" transceiver, so my first audio m-line is the microphone, my first video
 *   m-line the camera and a further video m-line the screen. The camera goes out as three
 *   simulcast layers (RIDs l, m, h), the screen as one layer (encodings.js). The relay's
 *   `layers` message pauses the camera encodings nobody uses (layers.js); a new connection
 *   starts again from all of them.
 * - The relay renegotiates with its own offers when tracks come and go, never before it answered
 *   my first offer, and its answers and offers reach me in the order it made them. It never
 *   rolls back: I am always the polite side (perfect negotiation with polite = true). On a
 *   collision the relay ignores my offer, and I roll back and answer its offer; my own change is
 *   offered again once signaling is stable (negotiationneeded fires again).
 * - Trickle ICE both ways: {candidate} and {candidate: null}.
 * - Whose track is it: the relay's `tracks` message, with the msid stream id as a fallback
 *   (relay-tracks.js). A publisher's microphone and camera make one "camera" stream (like the
 *   mesh); a screen is a "screen" stream. With receive slots the relay moves people in and
 *   out of my m-lines: a person's stream stays the same MediaStream while any slot carries
 *   them, its tracks added and removed in place ("stream" again with the same stream), so a
 *   voice entering or leaving an audio slot does not reload a tile's picture; a person no slot
 *   carries any more gets "stream-removed".
 * - Failures: `error relay_failed` (or my connection going "failed", or not coming up within
 *   CONNECT_MS of the first negotiation) restarts ICE, which offers
 *   again; if that does not bring the connection back within RECOVERY_MS, or the relay refuses
 *   offers twice in a row (`error relay_error` and no answer), the RoomClient reconnects: a fresh
 *   peer, a fresh welcome and a fresh relay connection. On a socket drop the connection is closed (my peer id
 *   changes, the relay forgets me); the next welcome in relay mode starts a new one.
 */

import { addScreenTransceiver, cameraInit } from "./encodings.js";
import { CameraLayers, cameraRids } from "./layers.js";
import { attributeStreams, isLive, parseTracks, pausedVideos, sameTracks, sdpSections } from "./relay-tracks.js";

export const RELAY_PEER = "relay";

const RECOVERY_MS = 15000; // after an ICE restart, how long the connection may take to come back
const CONNECT_MS = 20000; // after the first negotiation, how long the connection may take to come up
const RETRY_OFFER_MS = 1000; // after the relay refused an offer, wait this long before offering again
const REFUSAL_GRACE_MS = 2000; // an offer still unanswered this long after a relay_error was refused

/** One RTCPeerConnection with the relay (one per admission while in relay mode). */
class Link {
  constructor(relay) {
    this.relay = relay;
    this.pc = new RTCPeerConnection({ iceServers: relay.iceServers });
    this.makingOffer = false;
    this.inbox = Promise.resolve(); // signals (and my retries) are applied one at a time
    this.closed = false;
    this.micTx = null;
    this.camTx = null;
    this.screenTx = null; // the transceiver my screen goes out on (kept and reused)
    this.trackMap = new Map(); // mid → {publisher, source}, from the latest `tracks`
    this.tracksSeen = false;
    this.midsAtTracks = new Set(); // the mids negotiated when the latest `tracks` came
    this.msidByMid = new Map(); // mid → stream id given by ontrack (fallback of the fallback)
    this.remote = new Map(); // "kind:peerId" → {peerId, kind, tracks, stream}
    this.offerErrors = 0; // offers refused in a row
    this.holdOffersUntil = 0;
    this.retryTimer = 0;
    this.suspectOffer = null; // the offer a relay_error may be about (see refused())
    this.refusalTimer = 0;
    this.recovering = false;
    this.recoveryTimer = 0;
    this.connectTimer = 0;
    this.wire();
    this.addOwn();
  }

  /** My microphone, camera and (while sharing) screen transceivers, in that order. */
  addOwn() {
    const relay = this.relay;
    const { audio, video } = relay.tracks;
    this.micTx = this.pc.addTransceiver(audio || "audio", { direction: "sendonly", streams: [relay.msid] });
    // Simulcast (encodings.js): the encodings belong to the transceiver, so camera toggles and
    // device switches (replaceTrack) keep them, and a reconnect's new Link sets them again.
    this.camTx = this.pc.addTransceiver(video || "video", cameraInit([relay.msid], video));
    relay.layers.attach(this.camTx.sender); // the relay's `layers` pause encodings nobody uses
    if (relay.screen) this.updateScreen().catch((err) => relay.warn("screen share failed", err));
  }

  wire() {
    const pc = this.pc;
    pc.onnegotiationneeded = () => this.makeOffer();
    pc.onicecandidate = ({ candidate }) => this.send({ candidate: candidate ? candidate.toJSON() : null });
    pc.onsignalingstatechange = () => {
      if (pc.signalingState === "stable") this.syncRemote();
    };
    pc.ontrack = ({ transceiver, streams }) => {
      if (transceiver && transceiver.mid && streams && streams[0]) this.msidByMid.set(transceiver.mid, streams[0].id);
      this.syncRemote();
    };
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      if (state === "connected") {
        this.recovering = false;
        clearTimeout(this.recoveryTimer);
        clearTimeout(this.connectTimer);
      } else if (state === "failed") {
        this.recover("the connection with the relay failed");
      }
      this.relay.emit("connection-state", { peerId: RELAY_PEER, state });
    };
  }

  send(data) {
    if (!this.closed) this.relay.client.signal(RELAY_PEER, data);
  }

  /** Queue a job behind the signals already received. */
  queue(job, what) {
    this.inbox = this.inbox.then(() => (this.closed ? undefined : job())).catch((err) => this.relay.warn(what, err));
  }

  /** A signal from the relay: applied after those before it. */
  receive(data) {
    this.queue(() => this.apply(data), "signal failed");
  }

  async makeOffer() {
    const pc = this.pc;
    if (this.closed || this.makingOffer || pc.signalingState !== "stable") return;
    const wait = this.holdOffersUntil - Date.now();
    if (wait > 0) {
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.queue(() => this.makeOffer(), "offer failed"), wait);
      return;
    }
    try {
      this.makingOffer = true;
      await pc.setLocalDescription();
      // An offer from the relay may have been applied meanwhile: never send my answer as an offer.
      const local = pc.localDescription;
      if (!this.closed && local && local.type === "offer") this.send({ description: local.toJSON() });
    } catch (err) {
      if (!this.closed) this.relay.warn("offer failed", err);
    } finally {
      this.makingOffer = false;
    }
  }

  async apply({ description, candidate }) {
    const pc = this.pc;
    if (description && typeof description === "object") {
      if (description.type === "answer" && pc.signalingState !== "have-local-offer") return; // stale
      // Polite: a relay offer that collides with mine wins; setRemoteDescription rolls mine back
      // (the relay ignored it, and negotiationneeded offers my change again once stable).
      await pc.setRemoteDescription(description);
      if (this.closed) return;
      if (description.type === "offer") {
        await pc.setLocalDescription();
        const local = pc.localDescription;
        if (!this.closed && local && local.type === "answer") this.send({ description: local.toJSON() });
      } else {
        this.offerErrors = 0; // the relay took my offer
      }
      this.watchConnecting();
      this.syncRemote();
      if (this.relay.layers.rids) this.relay.layers.refit(); // keep paused what the relay said after renegotiating
    } else if (candidate !== undefined) {
      try {
        await pc.addIceCandidate(candidate || undefined); // null: end of candidates
      } catch (err) {
        this.relay.warn("remote candidate refused", err);
      }
    }
  }

  /**
   * `error relay_error`: the relay could not apply something of mine — my offer, or a candidate
   * (e.g. one of an offer it ignored in a collision, whose error may arrive while my next offer
   * waits for its answer). The error does not say which, so: if the offer I am waiting on is
   * still unanswered REFUSAL_GRACE_MS later (the relay answers promptly), it was refused: roll it
   * back and offer again, and after two refused offers in a row (or a refused first offer)
   * reconnect.
   */
  refused() {
    const pc = this.pc;
    if (pc.signalingState !== "have-local-offer" || !pc.localDescription) return; // a candidate: harmless
    const offer = pc.localDescription.sdp;
    if (this.suspectOffer === offer) return; // already being checked
    this.suspectOffer = offer;
    clearTimeout(this.refusalTimer);
    this.refusalTimer = setTimeout(() => {
      this.queue(async () => {
        this.suspectOffer = null;
        if (pc.signalingState !== "have-local-offer" || !pc.localDescription || pc.localDescription.sdp !== offer) return;
        this.offerErrors += 1;
        if (!pc.currentRemoteDescription) {
          // My very first offer: nothing to keep (and rolling back a first offer whose ICE
          // gathering has begun can leave Chromium gathering forever): start afresh.
          this.relay.reconnect("the relay refused the connection's first offer");
          return;
        }
        await pc.setLocalDescription({ type: "rollback" });
        if (this.offerErrors >= 2 || this.recovering) {
          this.relay.reconnect("the relay refused the connection's offers");
          return;
        }
        // More errors about the refused offer's candidates may be on their way: let them pass.
        this.holdOffersUntil = Date.now() + RETRY_OFFER_MS;
        this.queue(() => this.makeOffer(), "offer failed");
      }, "rollback failed");
    }, REFUSAL_GRACE_MS);
  }

  /** After the first negotiation: a connection that does not come up in time is recovered. */
  watchConnecting() {
    if (this.connectTimer || this.closed) return;
    this.connectTimer = setTimeout(() => {
      if (!this.closed && this.pc.connectionState !== "connected") this.recover("the connection with the relay did not come up");
    }, CONNECT_MS);
  }

  /** `error relay_failed` or a failed connection: restart ICE once, then reconnect. */
  recover(reason) {
    if (this.closed) return;
    if (this.recovering) {
      this.relay.reconnect(reason);
      return;
    }
    this.recovering = true;
    this.relay.warn("restarting ICE with the relay", reason);
    try {
      this.pc.restartIce(); // negotiationneeded: a new offer with fresh ICE credentials
    } catch (err) {
      this.relay.warn("restartIce failed", err);
    }
    clearTimeout(this.recoveryTimer);
    this.recoveryTimer = setTimeout(() => {
      if (this.closed) return;
      if (this.pc.connectionState === "connected") this.recovering = false;
      else this.relay.reconnect("the relay connection did not recover");
    }, RECOVERY_MS);
  }

  /** Swap my microphone or camera track (no renegotiation). */
  async replaceTrack(kind, track) {
    const tx = kind === "audio" ? this.micTx : this.camTx;
    if (this.closed || !isLive(tx)) return;
    await tx.sender.replaceTrack(track);
    if (kind === "video") await this.relay.layers.refit(); // the new camera's size, the latest `layers`
  }

  /** Start, switch or stop sending my screen according to relay.screen (renegotiates). */
  async updateScreen() {
    if (this.closed) return;
    const want = this.relay.screen;
    const tx = isLive(this.screenTx) ? this.screenTx : null;
    if (!want) {
      if (tx && tx.direction !== "inactive") {
        tx.direction = "inactive"; // renegotiates: the relay stops forwarding my screen
        await tx.sender.replaceTrack(null);
      }
      return;
    }
    if (!tx) {
      this.screenTx = addScreenTransceiver(this.pc, want.track, want.stream);
      return;
    }
    if (tx.sender.setStreams) tx.sender.setStreams(want.stream);
    await tx.sender.replaceTrack(want.track);
    tx.direction = "sendonly";
  }

  /** A new `tracks` map from the relay. */
  setTracks(map) {
    this.trackMap = map;
    this.tracksSeen = true;
    // The m-lines of the last completed negotiation: an offer being applied right now may add
    // m-lines this map could not know about yet.
    const remote = this.pc.currentRemoteDescription;
    this.midsAtTracks = new Set(sdpSections(remote ? remote.sdp : "").keys());
    this.syncRemote();
  }

  /** Announce the remote streams that appeared, changed or went away. */
  syncRemote() {
    if (this.closed) return;
    const wanted = attributeStreams({
      pc: this.pc,
      mine: new Set([this.micTx, this.camTx, this.screenTx]),
      trackMap: this.trackMap,
      tracksSeen: this.tracksSeen,
      midsAtTracks: this.midsAtTracks,
      msidByMid: this.msidByMid,
      roster: this.relay.roster,
    });
    for (const [key, current] of [...this.remote]) {
      if (wanted.has(key)) continue;
      this.remote.delete(key);
      this.relay.emit("stream-removed", { peerId: current.peerId, kind: current.kind });
    }
    for (const [key, entry] of wanted) {
      const current = this.remote.get(key);
      if (!current) {
        const stream = new MediaStream(entry.tracks);
        this.remote.set(key, { ...entry, stream });
        this.relay.emit("stream", { peerId: entry.peerId, kind: entry.kind, stream });
        continue;
      }
      if (sameTracks(current.tracks, entry.tracks)) continue;
      // The same MediaStream, its tracks changed in place: the tile's video element keeps
      // playing (a voice entering or leaving an audio slot does not reload the picture).
      retrack(current.stream, entry.tracks);
      current.tracks = entry.tracks;
      this.relay.emit("stream", { peerId: entry.peerId, kind: entry.kind, stream: current.stream });
    }
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.recoveryTimer);
    clearTimeout(this.refusalTimer);
    clearTimeout(this.connectTimer);
    const pc = this.pc;
    pc.onnegotiationneeded = pc.onicecandidate = pc.ontrack = null;
    pc.onsignalingstatechange = pc.onconnectionstatechange = null;
    pc.close();
    for (const { peerId, kind } of this.remote.values()) this.relay.emit("stream-removed", { peerId, kind });
    this.remote.clear();
    this.relay.emit("peer-closed", { peerId: RELAY_PEER });
  }
}

/**
 * The relay connection of one meeting, driven by a RoomClient (welcome, mode, peer-joined,
 * peer-left, signal, tracks, error, disconnected, closed). `tracks` are my current microphone
 * and camera tracks (either may be null).
 */
export class Relay extends EventTarget {
  constructor(client, { audio = null, video = null } = {}) {
    super();
    this.client = client;
    this.selfId = null;
    this.iceServers = [];
    this.tracks = { audio, video };
    this.screen = null; // {track, stream} while I share my screen
    this.msid = new MediaStream(); // labels my microphone and camera tracks on the wire
    this.roster = new Set(); // peer ids currently in the room (not me)
    this.active = false; // the room's media goes through the relay (mode "relay")
    this.link = null; // the Link while active
    this.pendingTracks = null; // a `tracks` map that came while there was no Link
    this.paused = new Set(); // "peerId:source" of the videos the relay paused for my bandwidth
    this.layers = new CameraLayers((what, err) => this.warn(what, err)); // my camera's encodings in use

    this.handlers = {
      welcome: (e) => this.onWelcome(e.detail),
      mode: (e) => this.onMode(e.detail.mode),
      "peer-joined": (e) => {
        this.roster.add(e.detail.peer.peer_id);
        // After the page's own peer-joined handler: it must know the person to show their media.
        const link = this.link;
        if (link) setTimeout(() => link.syncRemote(), 0);
      },
      "peer-left": (e) => {
        this.roster.delete(e.detail.peer_id);
        if (this.link) this.link.syncRemote();
      },
      signal: (e) => this.onSignal(e.detail),
      tracks: (e) => this.onTracks(e.detail.tracks),
      layers: (e) => this.onLayers(e.detail),
      error: (e) => this.onError(e.detail.code),
      disconnected: () => this.stop(),
      closed: () => this.stop(),
    };
    for (const [type, handler] of Object.entries(this.handlers)) client.addEventListener(type, handler);
  }

  /** A (re)admission: new peer id, so the relay connection is rebuilt from scratch. */
  onWelcome(welcome) {
    this.stop();
    this.selfId = welcome.peer_id;
    this.iceServers = Array.isArray(welcome.ice_servers) ? welcome.ice_servers : [];
    this.roster = new Set(welcome.peers.map((p) => p.peer_id));
    this.pendingTracks = null;
    if (welcome.mode === "relay") this.start();
  }

  onMode(mode) {
    if (!this.selfId) return;
    if (mode === "relay") {
      if (!this.link) this.start();
    } else {
      this.stop();
    }
  }

  start() {
    this.stop();
    this.active = true;
    this.link = new Link(this);
    if (this.pendingTracks) this.link.setTracks(this.pendingTracks);
    this.pendingTracks = null;
  }

  /** Close the relay connection (if any) and go inactive. */
  stop() {
    this.active = false;
    this.layers.reset(); // a new connection starts by sending every encoding
    const link = this.link;
    this.link = null;
    if (link) link.close();
  }

  onSignal({ from, data }) {
    if (from !== RELAY_PEER || !this.link || !data || typeof data !== "object") return;
    this.link.receive(data);
  }

  onTracks(list) {
    if (!this.selfId || !Array.isArray(list)) return;
    const map = parseTracks(list);
    if (this.link) this.link.setTracks(map);
    else this.pendingTracks = map;
    const paused = pausedVideos(list);
    if (!sameKeys(paused, this.paused)) {
      this.paused = paused;
      this.emit("paused-videos", { paused });
    }
  }

  /** `layers`: send only the camera encodings the relay says somebody uses (layers.js). */
  onLayers(message) {
    const rids = cameraRids(message);
    if (rids && this.link) this.layers.set(rids);
  }

  onError(code) {
    if (!this.link) return;
    if (code === "relay_failed") this.link.recover("the relay reported a failed connection");
    else if (code === "relay_error") this.link.refused();
  }

  /** Give up on this admission: the RoomClient reconnects and the next welcome starts over. */
  reconnect(reason) {
    this.warn("reconnecting", reason);
    this.stop();
    if (typeof this.client.reconnect === "function") this.client.reconnect(reason);
  }

  /** Use a new microphone ("audio") or camera ("video") track, or null for none. */
  setTrack(kind, track) {
    this.tracks[kind] = track || null;
    if (this.link) this.link.replaceTrack(kind, this.tracks[kind]).catch((err) => this.warn("replaceTrack failed", err));
  }

  /** Share a screen (a MediaStream with one video track) or stop sharing (null). */
  setScreen(stream) {
    const track = stream ? stream.getVideoTracks()[0] : null;
    this.screen = track ? { track, stream } : null;
    if (this.link) this.link.updateScreen().catch((err) => this.warn("screen share failed", err));
  }

  /** "relay" → RTCPeerConnection while connected through the relay (e.g. for getStats()). */
  peers() {
    return this.link ? new Map([[RELAY_PEER, this.link.pc]]) : new Map();
  }

  /** The remote streams known now: [{peerId, kind, stream}]. */
  streams() {
    if (!this.link) return [];
    return [...this.link.remote.values()].map(({ peerId, kind, stream }) => ({ peerId, kind, stream }));
  }

  /** The relay connection's RTCPeerConnection.connectionState, or null when there is none. */
  get connectionState() {
    return this.link ? this.link.pc.connectionState : null;
  }

  /** Stop listening to the client and close the connection. */
  close() {
    for (const [type, handler] of Object.entries(this.handlers)) this.client.removeEventListener(type, handler);
    this.stop();
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  warn(what, err) {
    console.warn(`meet relay: ${what}`, err);
  }
}

/** Make `stream` hold exactly `tracks` (removing and adding only what differs). */
function retrack(stream, tracks) {
  for (const track of stream.getTracks()) if (!tracks.includes(track)) stream.removeTrack(track);
  for (const track of tracks) if (!stream.getTrackById(track.id)) stream.addTrack(track);
}

function sameKeys(a, b) {
  return a.size === b.size && [...a].every((key) => b.has(key));
}
