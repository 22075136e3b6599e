/*
 * The room socket's messages and the media engines' events, turned into the call view:
 * welcome (first and after reconnects), people coming and going, their state and roles, mute
 * requests, server errors, drops and the final close.
 */

import { CLOSED_TEXTS, DOOR_CAUSES } from "./guest.js";
import { hasHostPowers, myRoleNotice, roleNotice } from "./hostcontrols.js";
import { syncLocalMedia, sendState } from "./mine.js";
import { RELAY_PEER } from "./relay.js";
import {
  applyRoom,
  connectionText,
  dropPeer,
  initialStatus,
  onSoundBlocked,
  renderControls,
  renderHeader,
  renderPeople,
  showDominant,
  showPeerTile,
  showScreenTile,
  tickTimer,
} from "./render.js";
import { closeAtTheDoor, finish, showJoinError, showOnly, stopAll } from "./screens.js";
import { $, call, code, nameOf } from "./session.js";
import { toast } from "./toast.js";
import { navigate } from "../urls.js";

/** The room's media mode, from welcome.mode or a `mode` message. */
export function setMode(mode, { announce = false } = {}) {
  const before = call.mode;
  call.mode = mode;
  if (mode !== "mesh" && mode !== "relay") {
    toast("This meeting uses a way of sending media that this page does not know. Reload the page.", {
      kind: "warn",
      timeout: 0,
      action: { label: "Reload", onClick: () => window.location.reload() },
    });
    return;
  }
  if (mode === "relay" && before !== "relay" && call.view) call.view.resend(); // the relay forwards by it
  if (announce && mode !== before) {
    // The engines have already switched (they listen to the socket first); the tiles stay and
    // get their video back as the new connections deliver it.
    for (const id of call.roster.keys()) {
      const tile = call.grid.get(`cam:${id}`);
      if (tile) tile.setStatus("Connecting…");
    }
  }
}

export function onWelcome(welcome) {
  const first = call.joinedAt === 0;
  setMode(welcome.mode || "mesh");
  call.role = welcome.role;
  call.room = welcome.room;
  const next = new Map(welcome.peers.map((p) => [p.peer_id, { ...p }]));
  for (const id of call.roster.keys()) if (!next.has(id)) dropPeer(id);
  call.roster = next;
  for (const peer of next.values()) {
    showPeerTile(peer).setStatus(initialStatus());
    showScreenTile(peer, peer.screen);
  }
  showDominant(welcome.speaker || null);
  if (call.view) call.view.resend(); // a new connection: the relay knows nothing of this page yet
  call.chat.setHistory(welcome.messages || []);
  syncLocalMedia();
  sendState();
  renderHeader();
  renderPeople();
  call.settings.update(welcome.room);
  call.reactions.setEnabled(welcome.room.reactions !== false);
  if (!hasHostPowers(call.role)) call.settings.close();
  if (call.lobby.shown) {
    // Back from a drop long enough to wait in the lobby again, and let in.
    call.lobby.hide();
    showOnly("call");
  }
  $("reconnecting").hidden = true;
  if (first) {
    call.joinedAt = Date.now();
    tickTimer();
    call.timer = setInterval(tickTimer, 1000);
    call.netquality.start();
  } else {
    toast("Reconnected.");
  }
}

export function onPeerJoined({ peer }) {
  call.roster.set(peer.peer_id, { ...peer });
  showPeerTile(peer).setStatus(initialStatus());
  showScreenTile(peer, peer.screen);
  renderPeople();
  toast(`${nameOf(peer)} joined`);
}

export function onPeerLeft({ peer_id: peerId }) {
  const peer = call.roster.get(peerId);
  call.roster.delete(peerId);
  dropPeer(peerId);
  renderPeople();
  if (peer) toast(`${nameOf(peer)} left`);
}

export function onState(state) {
  if (state.peer_id === call.client.peerId) {
    // A host lowered my hand (lower-hand): the server tells me too.
    if (call.local.hand && !state.hand) {
      call.local.hand = false;
      renderControls();
      renderPeople();
      toast("A host lowered your hand.");
    }
    return;
  }
  const peer = call.roster.get(state.peer_id);
  if (!peer) return;
  const raised = state.hand && !peer.hand;
  Object.assign(peer, { audio: state.audio, video: state.video, screen: state.screen, hand: state.hand });
  const tile = call.grid.get(`cam:${peer.peer_id}`);
  if (tile) tile.setState(peer);
  showScreenTile(peer, peer.screen);
  renderPeople();
  if (raised) toast(`${nameOf(peer)} raised their hand`, { title: "Hand raised" });
}

export function onMuteRequest(request) {
  const by = request.by && request.by.username ? request.by.username : "The host";
  if (call.local.audio) {
    call.media.setMicEnabled(false).finally(() => {
      syncLocalMedia();
      sendState({ audio: call.local.audio });
      renderControls();
      renderPeople();
    });
  }
  const text = request.all ? `${by} asked everyone to mute. Your microphone is now off.` : `${by} asked you to mute. Your microphone is now off.`;
  toast(text, { kind: "warn", timeout: 7000 });
}

/** A `role` message: someone's role changed (possibly mine: host controls come or go). */
export function onRole({ peer_id: peerId, role }) {
  if (peerId === call.client.peerId) {
    const before = call.role;
    call.role = role;
    if (!hasHostPowers(role)) {
      call.knocks.clear();
      call.settings.close();
    }
    const notice = myRoleNotice(before, role);
    if (notice && before !== role) toast(notice);
  } else {
    const peer = call.roster.get(peerId);
    if (!peer || peer.role === role) return;
    peer.role = role;
    toast(roleNotice(nameOf(peer), role));
  }
  renderPeople();
}

// Handled by the relay engine (renegotiate / reconnect) or by the reconnect banner.
// unknown_knock: another host answered first (knock-ended follows); in_lobby: a frame sent while waiting.
export const QUIET_ERRORS = new Set(["unknown_peer", "not_in_room", "relay_error", "relay_failed", "relay_restart", "relay_unavailable", "unknown_knock", "in_lobby", "denied", "lobby_timeout"]);

export function onServerError({ code: errorCode, message }) {
  if (QUIET_ERRORS.has(errorCode)) return; // e.g. unknown_peer: a peer that just left
  if (errorCode === "invalid_message" || errorCode === "rate_limited") call.chat.showError(message);
  toast(message, { kind: "warn" });
}

export function onDisconnected() {
  if (call.finished || call.joinedAt === 0) return;
  $("reconnecting").hidden = false;
  for (const id of call.roster.keys()) {
    const tile = call.grid.get(`cam:${id}`);
    if (tile) tile.setStatus("Reconnecting…");
  }
}

export function onClosed({ cause, error, code: closeCode }) {
  if (call.finished) return;
  if (cause === "left") return;
  if (cause === "ended" || cause === "kicked") {
    finish(cause);
    return;
  }
  if (DOOR_CAUSES.has(cause) || (call.guest && (cause === "unauthorized" || CLOSED_TEXTS[error && error.code]))) {
    closeAtTheDoor(cause, error);
    return;
  }
  if (cause === "unauthorized") {
    stopAll();
    navigate(`/signin?next=${encodeURIComponent(`/r/${code}`)}`);
    return;
  }
  stopAll();
  const result = {
    ok: false,
    status: closeCode,
    error: error || { code: cause, message: "The server closed the connection to this meeting." },
  };
  showJoinError(result, { retry: true });
}

export function wireClient(client) {
  const on = (type, handler) => client.addEventListener(type, (event) => handler(event.detail));
  on("peer-joined", onPeerJoined);
  on("peer-left", onPeerLeft);
  on("state", onState);
  on("chat", (message) => call.chat.add(message.message));
  on("room-updated", (message) => applyRoom(message.room));
  on("room-ended", () => finish("ended"));
  on("kicked", () => finish("kicked"));
  on("mute-request", onMuteRequest);
  on("role", onRole);
  on("reaction", (message) => call.reactions.show(message));
  on("mode", (message) => setMode(message.mode, { announce: true }));
  on("speaker", (message) => showDominant(message.peer_id));
  on("error", onServerError);
  on("disconnected", onDisconnected);
}

const PAUSED_TEXT = "Video paused: your connection is too slow for it";

/** The notice of a video the relay paused for my bandwidth ("peerId:source"), else null. */
function pausedText(key) {
  return call.pausedVideos && call.pausedVideos.has(key) ? PAUSED_TEXT : null;
}

/** Relay mode: say on each tile whether the relay paused its video for my bandwidth. */
function showPausedVideos(paused) {
  call.pausedVideos = paused;
  if (!call.grid) return;
  for (const id of call.roster.keys()) {
    for (const [prefix, source] of [["cam", "camera"], ["screen", "screen"]]) {
      const tile = call.grid.get(`${prefix}:${id}`);
      if (tile) tile.setStatus(connectionText(call.relayState) || pausedText(`${id}:${source}`));
    }
  }
}

/** Remote streams into tiles, connection states into tile notices (mesh and relay alike). */
export function wireMedia(media) {
  media.addEventListener("paused-videos", ({ detail }) => showPausedVideos(detail.paused));
  media.addEventListener("stream", ({ detail }) => {
    const peer = call.roster.get(detail.peerId);
    if (!peer || !call.grid) return;
    if (detail.kind === "camera") {
      // Relay slots: the same stream again after a voice or a picture came or went.
      showPeerTile(peer).setStream(detail.stream, onSoundBlocked);
      const audio = detail.stream.getAudioTracks()[0];
      if (audio) call.speaking.watch(detail.peerId, audio);
      else call.speaking.unwatch(detail.peerId);
    } else {
      // Relay rooms send a screen because the view shows its tile (made from state.screen);
      // one still arriving after they stopped sharing makes no tile. Mesh: it may come first.
      const tile = showScreenTile(peer, peer.screen || call.mode !== "relay");
      if (tile) tile.setStream(detail.stream);
    }
  });
  media.addEventListener("stream-removed", ({ detail }) => {
    if (!call.grid) return;
    if (detail.kind === "screen") {
      // The tile stays while they share (state.screen): in relay rooms their screen comes
      // because the page's view shows that tile (and leaves a slot when it is scrolled away).
      const peer = call.roster.get(detail.peerId);
      const tile = call.grid.get(`screen:${detail.peerId}`);
      if (peer && peer.screen && tile) tile.setStream(null);
      else call.grid.remove(`screen:${detail.peerId}`);
      return;
    }
    // The person may still be here (a reconnect, a mode switch): keep the tile, drop the media.
    const tile = call.grid.get(`cam:${detail.peerId}`);
    if (tile) tile.setStream(null);
    if (call.speaking) call.speaking.unwatch(detail.peerId);
  });
  media.addEventListener("connection-state", ({ detail }) => {
    if (!call.grid) return;
    if (detail.peerId === RELAY_PEER) {
      // One connection carries everyone: its state is every remote tile's.
      call.relayState = detail.state;
      for (const id of call.roster.keys()) {
        const tile = call.grid.get(`cam:${id}`);
        if (tile) tile.setStatus(connectionText(detail.state) || pausedText(`${id}:camera`));
      }
      return;
    }
    const tile = call.grid.get(`cam:${detail.peerId}`);
    if (tile) tile.setStatus(connectionText(detail.state));
  });
}
