/*
 * Mesh WebRTC: one RTCPeerConnection per remote participant, negotiated with the
 * "perfect negotiation" pattern (MDN). No DOM here beyond MediaStream objects.
 *
 * Rules both ends follow, so they always agree:
 * - Politeness: I am polite towards a peer when my peer_id < theirs (string comparison). On an
 *   offer collision the polite side rolls back its own offer; the impolite side ignores the
 *   incoming one and waits for the answer to its own.
 * - Who starts: the newcomer. On "welcome" I open a connection to every peer listed, with two
 *   camera transceivers (audio first, then video); negotiationneeded sends the offer. Peers
 *   already in the room open their side when that first signal arrives and, once the offer is
 *   applied, put their microphone and camera on the offered transceivers.
 * - Camera vs screen: the first audio and the first video transceiver of a connection carry the
 *   microphone and camera (the newcomer creates them first; the answerer's transceivers are
 *   created in m-line order). Any other video transceiver carries a screen share. A screen is
 *   sent by setting a track on such a transceiver with direction "sendrecv" and stopped with
 *   replaceTrack(null) + "recvonly", so toggling reuses it instead of piling up m-lines.
 *   The receiving side shows a screen while that transceiver's negotiated direction says the
 *   remote sends on it (checked whenever signaling returns to "stable").
 *
 * Signal payloads are exactly {description: {type, sdp}} or {candidate: {...} | null}.
 *
 * Modes: the mesh is only active while the room's mode is "mesh" (welcome.mode, then `mode`
 * messages). On `mode {mode: "relay"}` it closes every connection and ignores mesh signals; the
 * relay module (relay.js) takes over. Signals from the reserved peer id "relay" are never mine.
 *
 * Events (CustomEvent detail):
 *   "stream"            {peerId, kind: "camera" | "screen", stream}
 *   "stream-removed"    {peerId, kind}
 *   "connection-state"  {peerId, state}   RTCPeerConnection.connectionState
 *   "peer-closed"       {peerId}
 */

const RECEIVING = new Set(["sendrecv", "recvonly"]);

/** One connection to one remote participant. */
class Peer {
  constructor(mesh, id, initiator) {
    this.mesh = mesh;
    this.id = id;
    this.polite = mesh.selfId < id;
    this.pc = new RTCPeerConnection({ iceServers: mesh.iceServers });
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.isSettingRemoteAnswerPending = false;
    this.attached = false; // my microphone/camera are on the camera transceivers
    this.screenTx = null; // the transceiver my screen goes out on
    this.cameraStream = null;
    this.screenTrack = null;
    this.inbox = Promise.resolve(); // incoming signals are applied one at a time
    this.closed = false;
    this.wire();
    if (initiator) {
      const { audio, video } = mesh.tracks;
      this.pc.addTransceiver(audio || "audio", { direction: "sendrecv", streams: [mesh.msid] });
      this.pc.addTransceiver(video || "video", { direction: "sendrecv", streams: [mesh.msid] });
      this.attached = true;
      if (mesh.screen) this.updateScreen().catch((err) => mesh.warn(id, "screen share failed", err));
    }
  }

  wire() {
    const pc = this.pc;
    pc.onnegotiationneeded = async () => {
      try {
        this.makingOffer = true;
        await pc.setLocalDescription();
        this.send({ description: pc.localDescription.toJSON() });
      } catch (err) {
        this.mesh.warn(this.id, "offer failed", err);
      } finally {
        this.makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => this.send({ candidate: candidate ? candidate.toJSON() : null });
    pc.onsignalingstatechange = () => {
      if (pc.signalingState === "stable") this.syncRemote();
    };
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      if (state === "failed") pc.restartIce(); // renegotiates with fresh ICE credentials
      this.mesh.emit("connection-state", { peerId: this.id, state });
    };
  }

  send(data) {
    if (!this.closed) this.mesh.client.signal(this.id, data);
  }

  /** Queue a signal from this peer; each is fully applied before the next. */
  receive(data) {
    this.inbox = this.inbox
      .then(() => this.apply(data))
      .catch((err) => this.mesh.warn(this.id, "signal failed", err));
  }

  async apply({ description, candidate }) {
    if (this.closed) return;
    const pc = this.pc;
    if (description) {
      const readyForOffer =
        !this.makingOffer && (pc.signalingState === "stable" || this.isSettingRemoteAnswerPending);
      const offerCollision = description.type === "offer" && !readyForOffer;
      this.ignoreOffer = !this.polite && offerCollision;
      if (this.ignoreOffer) return;
      this.isSettingRemoteAnswerPending = description.type === "answer";
      await pc.setRemoteDescription(description); // the polite side rolls back implicitly
      this.isSettingRemoteAnswerPending = false;
      if (description.type === "offer") {
        if (!this.attached) await this.attachCamera();
        await pc.setLocalDescription();
        this.send({ description: pc.localDescription.toJSON() });
      }
    } else if (candidate !== undefined) {
      try {
        await pc.addIceCandidate(candidate || undefined); // null: end of candidates
      } catch (err) {
        if (!this.ignoreOffer) throw err; // candidates of an offer we ignored may fail
      }
    }
  }

  /** The microphone and camera transceivers: the first of each kind. */
  cameraTransceivers() {
    const live = this.pc.getTransceivers().filter((t) => t.currentDirection !== "stopped");
    return {
      audio: live.find((t) => t.receiver.track.kind === "audio") || null,
      video: live.find((t) => t.receiver.track.kind === "video") || null,
    };
  }

  /** Answerer side: put my tracks on the transceivers the newcomer offered. */
  async attachCamera() {
    this.attached = true;
    const cams = this.cameraTransceivers();
    for (const kind of ["audio", "video"]) {
      const tx = cams[kind];
      if (!tx) continue;
      tx.direction = "sendrecv";
      if (tx.sender.setStreams) tx.sender.setStreams(this.mesh.msid);
      await tx.sender.replaceTrack(this.mesh.tracks[kind]);
    }
    if (this.mesh.screen) await this.updateScreen();
  }

  /** Swap my microphone or camera track (no renegotiation). */
  async replaceTrack(kind, track) {
    if (!this.attached || this.closed) return;
    const tx = this.cameraTransceivers()[kind];
    if (tx) await tx.sender.replaceTrack(track);
  }

  /** Start, switch or stop sending my screen according to mesh.screen. */
  async updateScreen() {
    if (!this.attached || this.closed) return;
    const want = this.mesh.screen;
    if (!want) {
      if (this.screenTx && this.screenTx.currentDirection !== "stopped") {
        this.screenTx.direction = "recvonly"; // renegotiates; the remote drops the screen
        await this.screenTx.sender.replaceTrack(null);
      }
      return;
    }
    let tx = this.screenTx && this.screenTx.currentDirection !== "stopped" ? this.screenTx : null;
    if (!tx) {
      const camera = this.cameraTransceivers().video;
      tx =
        this.pc
          .getTransceivers()
          .find(
            (t) =>
              t !== camera &&
              t.receiver.track.kind === "video" &&
              t.currentDirection !== "stopped" &&
              !t.sender.track &&
              (t.direction === "recvonly" || t.direction === "inactive"),
          ) || null;
    }
    if (!tx) {
      this.screenTx = this.pc.addTransceiver(want.track, { direction: "sendrecv", streams: [want.stream] });
      return;
    }
    this.screenTx = tx;
    tx.direction = "sendrecv";
    if (tx.sender.setStreams) tx.sender.setStreams(want.stream);
    await tx.sender.replaceTrack(want.track);
  }

  /** After each negotiation: announce the remote camera stream and screen changes. */
  syncRemote() {
    if (this.closed || !this.pc.currentRemoteDescription) return;
    const cams = this.cameraTransceivers();
    if (!this.cameraStream && (cams.audio || cams.video)) {
      const tracks = [cams.audio, cams.video].filter(Boolean).map((t) => t.receiver.track);
      this.cameraStream = new MediaStream(tracks);
      this.mesh.emit("stream", { peerId: this.id, kind: "camera", stream: this.cameraStream });
    }
    const screenTx = this.pc
      .getTransceivers()
      .find((t) => t !== cams.video && t.receiver.track.kind === "video" && RECEIVING.has(t.currentDirection));
    const track = screenTx ? screenTx.receiver.track : null;
    if (track === this.screenTrack) return;
    if (this.screenTrack) this.mesh.emit("stream-removed", { peerId: this.id, kind: "screen" });
    this.screenTrack = track;
    if (track) this.mesh.emit("stream", { peerId: this.id, kind: "screen", stream: new MediaStream([track]) });
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.pc.onnegotiationneeded = this.pc.onicecandidate = null;
    this.pc.onsignalingstatechange = this.pc.onconnectionstatechange = null;
    this.pc.close();
    if (this.screenTrack) this.mesh.emit("stream-removed", { peerId: this.id, kind: "screen" });
    if (this.cameraStream) this.mesh.emit("stream-removed", { peerId: this.id, kind: "camera" });
    this.mesh.emit("peer-closed", { peerId: this.id });
  }
}

/**
 * All connections of one meeting, driven by a RoomClient (welcome, peer-joined, peer-left,
 * signal, disconnected, closed). `tracks` are my current microphone and camera tracks
 * (either may be null).
 */
export class Mesh extends EventTarget {
  constructor(client, { audio = null, video = null } = {}) {
    super();
    this.client = client;
    this.selfId = null;
    this.iceServers = [];
    this.tracks = { audio, video };
    this.screen = null; // {track, stream} while I share my screen
    this.msid = new MediaStream(); // labels my camera tracks on the wire
    this.roster = new Set(); // peer ids currently in the room (not me)
    this.connections = new Map(); // peer id → Peer
    this.active = false; // the room's media flows peer to peer (mode "mesh")

    this.handlers = {
      welcome: (e) => this.onWelcome(e.detail),
      "peer-joined": (e) => this.roster.add(e.detail.peer.peer_id),
      "peer-left": (e) => {
        this.roster.delete(e.detail.peer_id);
        this.closePeer(e.detail.peer_id);
      },
      signal: (e) => this.onSignal(e.detail),
      mode: (e) => this.onMode(e.detail.mode),
      disconnected: () => this.closeAll(),
      closed: () => this.closeAll(),
    };
    for (const [type, handler] of Object.entries(this.handlers)) client.addEventListener(type, handler);
  }

  /** A (re)admission: new peer id, so every connection is rebuilt from scratch. */
  onWelcome(welcome) {
    this.closeAll();
    this.selfId = welcome.peer_id;
    this.iceServers = Array.isArray(welcome.ice_servers) ? welcome.ice_servers : [];
    this.roster = new Set(welcome.peers.map((p) => p.peer_id));
    this.active = (welcome.mode || "mesh") === "mesh";
    if (!this.active) return; // relay (or a mode this page does not know): no peer connections
    for (const id of this.roster) this.connections.set(id, new Peer(this, id, true));
  }

  /** The room switched modes: to "relay" closes everything; back to "mesh" reconnects. */
  onMode(mode) {
    if (!this.selfId) return;
    if (mode !== "mesh") {
      this.active = false;
      this.closeAll();
      return;
    }
    if (this.active) return;
    this.active = true;
    // Nobody is a newcomer here: to avoid offering both ways, I start towards the peers I am
    // impolite to (a smaller peer_id than mine); the others start towards me.
    for (const id of this.roster) {
      if (id < this.selfId && !this.connections.has(id)) this.connections.set(id, new Peer(this, id, true));
    }
  }

  onSignal({ from, data }) {
    if (!this.active || !this.selfId || !this.roster.has(from) || !data || typeof data !== "object") return;
    let peer = this.connections.get(from);
    if (!peer) {
      peer = new Peer(this, from, false);
      this.connections.set(from, peer);
    }
    peer.receive(data);
  }

  /** Use a new microphone ("audio") or camera ("video") track, or null for none. */
  setTrack(kind, track) {
    this.tracks[kind] = track || null;
    for (const peer of this.connections.values()) {
      peer.replaceTrack(kind, this.tracks[kind]).catch((err) => this.warn(peer.id, "replaceTrack failed", err));
    }
  }

  /** Share a screen (a MediaStream with one video track) or stop sharing (null). */
  setScreen(stream) {
    const track = stream ? stream.getVideoTracks()[0] : null;
    this.screen = track ? { track, stream } : null;
    for (const peer of this.connections.values()) {
      peer.updateScreen().catch((err) => this.warn(peer.id, "screen share failed", err));
    }
  }

  /** peer id → RTCPeerConnection, e.g. for getStats(). */
  peers() {
    return new Map([...this.connections].map(([id, peer]) => [id, peer.pc]));
  }

  /** The remote streams known now: [{peerId, kind, stream}]. */
  streams() {
    const out = [];
    for (const peer of this.connections.values()) {
      if (peer.cameraStream) out.push({ peerId: peer.id, kind: "camera", stream: peer.cameraStream });
      if (peer.screenTrack) out.push({ peerId: peer.id, kind: "screen", stream: new MediaStream([peer.screenTrack]) });
    }
    return out;
  }

  closePeer(id) {
    const peer = this.connections.get(id);
    if (!peer) return;
    this.connections.delete(id);
    peer.close();
  }

  closeAll() {
    for (const id of [...this.connections.keys()]) this.closePeer(id);
  }

  /** Stop listening to the client and close every connection. */
  close() {
    for (const [type, handler] of Object.entries(this.handlers)) this.client.removeEventListener(type, handler);
    this.closeAll();
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  warn(peerId, what, err) {
    console.warn(`meet mesh: ${what} (peer ${peerId})`, err);
  }
}
