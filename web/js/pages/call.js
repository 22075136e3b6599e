/*
 * The meeting page at /r/{code}: check admission, pre-join screen, then the call itself
 * (video grid, controls, chat, people) until leaving, being removed, or the meeting ending.
 *
 * Wiring only: the socket is a RoomClient (protocol.js), media goes through LocalMedia and
 * either the Mesh (mode "mesh": one connection per participant) or the Relay (mode "relay": one
 * connection with the server's media relay), and each panel is its own module under js/call/.
 * Both media engines listen to the RoomClient themselves and follow the room's mode
 * (welcome.mode, then `mode` messages); only the active one has connections. They share one
 * interface: setTrack(kind, track), setScreen(stream), peers(), streams(), close(), and the events
 * "stream", "stream-removed", "connection-state" and "peer-closed".
 */

import { endRoom, joinRoom, me, updateRoom } from "../api.js";
import { ChatPanel } from "../call/chat.js";
import { Controls } from "../call/controls.js";
import { DevicesDialog, SpeakerOutput } from "../call/devices.js";
import { Grid } from "../call/grid.js";
import {
  CLOSED_TEXTS,
  DOOR_CAUSES,
  GuestJoin,
  applyGuestChrome,
  closedReason,
  doorAfterClose,
  forgetPass,
  signInLink,
} from "../call/guest.js";
import { HostControls, hasHostPowers, myRoleNotice, roleNotice } from "../call/hostcontrols.js";
import { InviteCard } from "../call/invite.js";
import { SpeakingDetector, unlockAudio } from "../call/level.js";
import { LocalMedia, mediaErrorText } from "../call/media.js";
import { Mesh } from "../call/mesh.js";
import { NetQuality } from "../call/netquality.js";
import { ParticipantsPanel } from "../call/participants.js";
import { Knocks, LobbyScreen, focusDoor, showDoor } from "../call/lobby.js";
import { Prejoin } from "../call/prejoin.js";
import { Reactions } from "../call/reactions.js";
import { RELAY_PEER, Relay } from "../call/relay.js";
import { MeetingSettings } from "../call/settings.js";
import { dismissToasts, toast } from "../call/toast.js";
import { bindCopyButton } from "../clipboard.js";
import { errorText } from "../forms.js";
import { CLOSE, RoomClient } from "../protocol.js";
import { navigate } from "../urls.js";

const $ = (id) => document.getElementById(id);
const code = decodeURIComponent(window.location.pathname.split("/")[2] || "").toLowerCase();
const inviteUrl = `${window.location.origin}/r/${encodeURIComponent(code)}`;

/** Everything about the running call. */
const call = {
  user: null,
  room: null,
  role: "guest",
  client: null,
  mesh: null,
  relay: null,
  mode: "mesh", // how media flows now: "mesh" | "relay" (or a mode this page does not know)
  media: null,
  grid: null,
  chat: null,
  people: null,
  controls: null,
  speaking: null,
  invite: null, // the invite card shown while I am alone
  guest: false, // joined with a guest pass (no account): no dashboard, no ring, no history
  lobby: null, // LobbyScreen: waiting for a host to let me in
  knocks: null, // Knocks: people waiting in the lobby (hosts and co-hosts answer)
  host: null, // HostControls
  settings: null, // MeetingSettings (hosts and co-hosts)
  reactions: null,
  netquality: null, // NetQuality: the tiles' network indicators (one getStats loop)
  prejoin: null, // the pre-join screen until I am in (or waiting in the lobby)
  roster: new Map(), // peer id → participant (public shape, kept up to date)
  local: { audio: true, video: true, screen: false, hand: false },
  screenStream: null,
  panel: null, // "chat" | "participants" | null
  unread: 0,
  joinedAt: 0,
  timer: 0,
  finished: false,
  soundBlocked: false,
};

/** The media engine the room's mode uses now (null for an unknown mode). */
function engine() {
  if (call.mode === "relay") return call.relay;
  return call.mode === "mesh" ? call.mesh : null;
}

/** Both media engines, to keep the inactive one ready (tracks, screen) for a mode switch. */
function engines() {
  return [call.mesh, call.relay].filter(Boolean);
}

// Harmless hooks for automated tests (e.g. getStats() on every connection).
// peers(): mesh → peer id → RTCPeerConnection; relay → one entry, "relay" → RTCPeerConnection.
window.meetCall = {
  peerId: () => (call.client ? call.client.peerId : null),
  peers: () => (engine() ? engine().peers() : new Map()),
  mode: () => call.mode,
  get client() {
    return call.client;
  },
  get mesh() {
    return call.mesh;
  },
  get relay() {
    return call.relay;
  },
  get media() {
    return call.media;
  },
  // person (peer id, or "local" for me) → {level, raw, figures}, from the latest getStats poll
  network: () => (call.netquality ? call.netquality.latest : new Map()),
};

// ---- Full-page states -----------------------------------------------------------------

const JOIN_ERRORS = {
  room_not_found: ["Meeting not found", "There is no meeting at this address. Check the link or the code and try again."],
  room_ended: ["This meeting has ended", "The host has ended this meeting. Start a new one from your dashboard."],
  room_locked: ["This meeting is locked", "The host has locked this meeting, so no one else can join. Ask them to unlock it, then try again."],
  room_full: ["This meeting is full", "The meeting has reached its participant limit. Try again when someone leaves."],
  unauthorized: ["Please sign in again", "Your session has ended. Sign in to join the meeting."],
};

function showOnly(id) {
  for (const section of ["call-loading", "prejoin", "lobby", "call", "join-error", "ended", "kicked", "door-state"]) {
    $(section).hidden = section !== id;
  }
  document.body.classList.toggle("in-call", id === "call");
}

function showJoinError(result, { retry = false } = {}) {
  const errorCode = result.error ? result.error.code : "";
  const [title, text] = JOIN_ERRORS[errorCode] || ["Can't join this meeting", errorText(result)];
  $("join-error-title").textContent = title;
  $("join-error-text").textContent = text;
  $("join-retry").hidden = !(retry || errorCode === "room_locked" || errorCode === "room_full" || result.status === 0);
  document.title = `${title} · meet`;
  showOnly("join-error");
  $("join-error").querySelector("a, button:not([hidden])").focus();
}

/** Tear everything down (devices off, sockets closed). */
function stopAll() {
  call.finished = true;
  clearInterval(call.timer);
  if (call.netquality) call.netquality.stop();
  if (call.mesh) call.mesh.close();
  if (call.relay) call.relay.close();
  if (call.client) call.client.close();
  if (call.speaking) call.speaking.stop();
  if (call.invite) call.invite.close();
  if (call.screenStream) for (const t of call.screenStream.getTracks()) t.stop();
  if (call.media) call.media.stop();
  if (call.grid) for (const key of call.grid.keys()) call.grid.remove(key);
}

function finish(kind) {
  if (call.finished) return;
  stopAll();
  const title = call.room ? call.room.title : "";
  if (kind === "ended") {
    $("ended-text").textContent = title ? `“${title}” was ended by the host for everyone.` : "The host ended the meeting for everyone.";
  } else if (kind === "kicked") {
    $("kicked-text").textContent = title ? `The host removed you from “${title}”.` : "The host removed you from the meeting.";
  }
  document.title = kind === "ended" ? "Meeting ended · meet" : "Removed from meeting · meet";
  showOnly(kind);
  $(kind).querySelector("a").focus();
}

// ---- Roster and tiles -----------------------------------------------------------------

const nameOf = (peer) => (peer && peer.user ? peer.user.username : "Someone");

/** A remote tile's notice for a connection state (null: nothing to say). */
function connectionText(state) {
  return { new: "Connecting…", connecting: "Connecting…", disconnected: "Connection unstable…", failed: "Connection lost. Retrying…" }[state] || null;
}

/** The notice a remote tile starts with: its own connection's in mesh, the relay's in relay mode. */
function initialStatus() {
  return call.mode === "relay" ? connectionText((call.relay && call.relay.connectionState) || "new") : "Connecting…";
}

function showPeerTile(peer) {
  // Guests chose their name themselves: the label says so, as the knock and the People panel do.
  const name = peer.guest ? `${peer.user.username} (guest)` : peer.user.username;
  const tile = call.grid.ensure(`cam:${peer.peer_id}`, { peerId: peer.peer_id, name, user: peer.user });
  tile.setState(peer);
  return tile;
}

function dropPeer(peerId) {
  call.grid.remove(`cam:${peerId}`);
  call.grid.remove(`screen:${peerId}`);
  call.speaking.unwatch(peerId);
}

function renderPeople() {
  const self = {
    peer_id: call.client.peerId || "me",
    user: call.user,
    role: call.role,
    guest: call.guest,
    joined_at: 0,
    me: true,
    ...call.local,
  };
  const list = [self, ...call.roster.values()];
  call.people.render(list, hasHostPowers(call.role), call.room, call.role);
  call.host.render(call.role);
  call.controls.setPeople(list.length);
  call.invite.update(call.roster.size === 0);
}

function renderHeader() {
  $("room-title").textContent = call.room.title;
  $("lock-badge").hidden = !call.room.locked;
  $("room-code").textContent = code;
  document.title = `${call.room.title} · meet`;
}

function renderControls() {
  call.controls.render({
    mic: call.local.audio,
    camera: call.local.video,
    screen: call.local.screen,
    hand: call.local.hand,
    chat: call.panel === "chat",
    participants: call.panel === "participants",
  });
  const tile = call.grid.get("local");
  if (tile) tile.setState(call.local);
}

function onSoundBlocked() {
  if (call.soundBlocked) return;
  call.soundBlocked = true;
  toast("Your browser blocked the meeting's sound.", {
    kind: "warn",
    timeout: 0,
    action: {
      label: "Turn on sound",
      onClick: () => {
        call.soundBlocked = false;
        for (const video of document.querySelectorAll("#stage .tile:not(.local) video")) video.play().catch(() => {});
      },
    },
  });
}

// ---- My media -------------------------------------------------------------------------

/** Send my whole state (after each welcome: the server starts everyone at audio/video on). */
function sendState(changes = call.local) {
  if (call.client) call.client.state(changes);
}

function syncLocalMedia() {
  const { media } = call;
  call.local.audio = media.micOn && Boolean(media.audio);
  call.local.video = media.camOn && Boolean(media.video);
}

function updateLocalTile() {
  const tile = call.grid.get("local");
  if (!tile) return;
  const video = call.media.video;
  const current = tile.video.srcObject ? tile.video.srcObject.getVideoTracks()[0] : null;
  if (video !== current) tile.setStream(video ? new MediaStream([video]) : null);
  tile.setState(call.local);
}

async function toggleMic() {
  try {
    await call.media.setMicEnabled(!call.local.audio);
  } catch (err) {
    toast(mediaErrorText(err, "microphone"), { kind: "warn" });
  }
  syncLocalMedia();
  sendState({ audio: call.local.audio });
  renderControls();
  renderPeople();
}

async function toggleCamera() {
  try {
    await call.media.setCameraEnabled(!call.local.video);
  } catch (err) {
    toast(mediaErrorText(err, "camera"), { kind: "warn" });
  }
  syncLocalMedia();
  updateLocalTile();
  sendState({ video: call.local.video });
  renderControls();
  renderPeople();
}

async function toggleScreen() {
  if (call.screenStream) {
    stopScreen();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
  } catch (err) {
    if (err && err.name !== "NotAllowedError" && err.name !== "AbortError") {
      toast("Your screen could not be shared.", { kind: "warn" });
    }
    return;
  }
  if (call.finished) {
    for (const t of stream.getTracks()) t.stop();
    return;
  }
  const track = stream.getVideoTracks()[0];
  if ("contentHint" in track) track.contentHint = "detail";
  track.addEventListener("ended", () => {
    if (call.screenStream === stream) stopScreen();
  });
  call.screenStream = stream;
  for (const media of engines()) media.setScreen(stream);
  call.local.screen = true;
  sendState({ screen: true });
  call.grid.ensure("local-screen", { local: true, screen: true, name: "Your screen" }).setStream(stream);
  renderControls();
  renderPeople();
}

function stopScreen() {
  const stream = call.screenStream;
  if (!stream) return;
  call.screenStream = null;
  for (const t of stream.getTracks()) t.stop();
  for (const media of engines()) media.setScreen(null);
  call.local.screen = false;
  sendState({ screen: false });
  call.grid.remove("local-screen");
  renderControls();
  renderPeople();
}

function toggleHand() {
  call.local.hand = !call.local.hand;
  sendState({ hand: call.local.hand });
  renderControls();
  renderPeople();
}

// ---- Panels ---------------------------------------------------------------------------

function setPanel(name) {
  call.panel = call.panel === name ? null : name;
  $("chat-panel").hidden = call.panel !== "chat";
  $("participants-panel").hidden = call.panel !== "participants";
  document.body.classList.toggle("panel-open", call.panel !== null);
  if (call.panel === "chat") {
    dismissToasts("chat"); // what they said is in front of me now
    call.unread = 0;
    call.controls.setUnread(0);
    call.chat.focus();
  } else if (call.panel === "participants") {
    $("participants-panel").querySelector(".panel-close").focus();
  }
  renderControls();
}

function leave() {
  stopAll();
  if (!call.guest) {
    navigate("/dashboard");
    return;
  }
  // A guest has no dashboard: say goodbye here, with the way back in.
  showDoor({
    title: "You left the meeting",
    text: call.room ? `You left “${call.room.title}”.` : "You left the meeting.",
    actions: [{ label: "Rejoin", onClick: () => window.location.reload() }],
    quiet: true,
  });
  showOnly("door-state");
  focusDoor();
}

// ---- Host actions ---------------------------------------------------------------------

async function toggleLock() {
  const button = $("lock-room");
  button.disabled = true;
  const result = await updateRoom(code, { locked: !call.room.locked });
  button.disabled = false;
  if (!result.ok) {
    toast(errorText(result), { kind: "warn" });
    return;
  }
  applyRoom(result.data.room);
}

async function endForAll() {
  if (!window.confirm("End the meeting for everyone? Everyone will be disconnected.")) return;
  const button = $("end-room");
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  const result = await endRoom(code);
  button.disabled = false;
  button.setAttribute("aria-busy", "false");
  if (!result.ok) {
    toast(errorText(result), { kind: "warn" });
    return;
  }
  finish("ended"); // "room-ended" is on its way too; this makes it immediate for me
}

function applyRoom(room) {
  const before = call.room;
  call.room = room;
  renderHeader();
  renderPeople();
  call.settings.update(room);
  call.reactions.setEnabled(room.reactions !== false);
  if (before && before.reactions !== room.reactions && typeof room.reactions === "boolean") {
    toast(room.reactions ? "Reactions are on." : "A host turned reactions off.");
  }
  if (before && before.locked !== room.locked) {
    toast(room.locked ? "The meeting is locked: no one else can join." : "The meeting is unlocked.");
  }
}

// ---- Socket events --------------------------------------------------------------------

/** The room's media mode, from welcome.mode or a `mode` message. */
function setMode(mode, { announce = false } = {}) {
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
  if (announce && mode !== before) {
    // The engines have already switched (they listen to the socket first); the tiles stay and
    // get their video back as the new connections deliver it.
    for (const id of call.roster.keys()) {
      const tile = call.grid.get(`cam:${id}`);
      if (tile) tile.setStatus("Connecting…");
    }
  }
}

function onWelcome(welcome) {
  const first = call.joinedAt === 0;
  setMode(welcome.mode || "mesh");
  call.role = welcome.role;
  call.room = welcome.room;
  const next = new Map(welcome.peers.map((p) => [p.peer_id, { ...p }]));
  for (const id of call.roster.keys()) if (!next.has(id)) dropPeer(id);
  call.roster = next;
  for (const peer of next.values()) showPeerTile(peer).setStatus(initialStatus());
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

function onPeerJoined({ peer }) {
  call.roster.set(peer.peer_id, { ...peer });
  showPeerTile(peer).setStatus(initialStatus());
  renderPeople();
  toast(`${nameOf(peer)} joined`);
}

function onPeerLeft({ peer_id: peerId }) {
  const peer = call.roster.get(peerId);
  call.roster.delete(peerId);
  dropPeer(peerId);
  renderPeople();
  if (peer) toast(`${nameOf(peer)} left`);
}

function onState(state) {
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
  if (!state.screen) call.grid.remove(`screen:${peer.peer_id}`);
  renderPeople();
  if (raised) toast(`${nameOf(peer)} raised their hand`, { title: "Hand raised" });
}

function onMuteRequest(request) {
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
function onRole({ peer_id: peerId, role }) {
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
const QUIET_ERRORS = new Set(["unknown_peer", "not_in_room", "relay_error", "relay_failed", "relay_restart", "relay_unavailable", "unknown_knock", "in_lobby", "denied", "lobby_timeout"]);

function onServerError({ code: errorCode, message }) {
  if (QUIET_ERRORS.has(errorCode)) return; // e.g. unknown_peer: a peer that just left
  if (errorCode === "invalid_message" || errorCode === "rate_limited") call.chat.showError(message);
  toast(message, { kind: "warn" });
}

function onDisconnected() {
  if (call.finished || call.joinedAt === 0) return;
  $("reconnecting").hidden = false;
  for (const id of call.roster.keys()) {
    const tile = call.grid.get(`cam:${id}`);
    if (tile) tile.setStatus("Reconnecting…");
  }
}

function onClosed({ cause, error, code: closeCode }) {
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

/** Show why the socket was closed before (or while) getting in, and stop everything. */
function closeAtTheDoor(cause, error) {
  stopAll();
  call.lobby?.hide();
  const errorCode = error ? error.code : "";
  if (call.guest && (cause === "denied" || cause === "unauthorized" || errorCode === "removed")) forgetPass(code);
  showDoor(doorAfterClose(cause, errorCode, { guest: call.guest, code }));
  showOnly("door-state");
  focusDoor();
}

function tickTimer() {
  const s = Math.floor((Date.now() - call.joinedAt) / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  $("call-timer").textContent = h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

// ---- Start-up -------------------------------------------------------------------------

/** Build the call view's modules (once; reconnects reuse them). */
function setUpCallView() {
  call.grid = new Grid({ stage: $("stage"), screens: $("screens"), tiles: $("tiles"), onStopPresenting: stopScreen });
  call.speaking = new SpeakingDetector((key, on) => {
    const tile = call.grid.get(key === "local" ? "local" : `cam:${key}`);
    if (tile) tile.setSpeaking(on);
  });
  call.controls = new Controls({
    mic: toggleMic,
    camera: toggleCamera,
    screen: toggleScreen,
    hand: toggleHand,
    chat: () => setPanel("chat"),
    participants: () => setPanel("participants"),
    leave,
  });
  call.chat = new ChatPanel({
    code,
    me: call.user,
    send: (text) => call.client.chat(text),
    onIncoming: (message) => {
      if (call.panel === "chat") return;
      call.unread += 1;
      call.controls.setUnread(call.unread);
      const text = message.text.length > 140 ? `${message.text.slice(0, 140)}…` : message.text;
      toast(text, { kind: "chat", title: message.user.username, action: { label: "Reply", onClick: () => setPanel("chat") } });
    },
  });
  call.host = new HostControls({ client: () => call.client, notify: (text) => toast(text) });
  call.people = new ParticipantsPanel({
    onMute: (peerId, name) => {
      if (call.client.mute(peerId)) toast(`Asked ${name} to mute.`);
    },
    onKick: (peerId, name) => {
      if (call.client.kick(peerId)) toast(`${name} was removed from the meeting.`);
    },
    onLock: toggleLock,
    onEnd: endForAll,
    ...call.host.handlers(),
  });
  call.settings = new MeetingSettings({ code, onRoom: applyRoom });
  call.reactions = new Reactions({
    send: (emoji) => call.client.react(emoji),
    tileOf: (peerId) => {
      const tile = call.grid.get(peerId === call.client.peerId ? "local" : `cam:${peerId}`);
      return tile ? tile.el : null;
    },
    nameOf: (peerId) => (peerId === call.client.peerId ? "You" : nameOf(call.roster.get(peerId))),
  });
  for (const button of document.querySelectorAll(".panel-close")) {
    button.addEventListener("click", () => {
      setPanel(button.dataset.panel);
      $(button.dataset.panel === "chat" ? "toggle-chat" : "toggle-participants").focus();
    });
  }
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && call.panel) setPanel(call.panel);
  });
  bindCopyButton($("copy-link"), () => inviteUrl, (text) =>
    toast(`Copy this link to invite people: ${text}`, { timeout: 0, title: "Invite link" }),
  );

  // Guests (no account) have no presence channel: they get the link without "ring someone".
  const signedIn = Boolean(call.user && call.user.id > 0 && !call.user.guest);
  call.invite = new InviteCard({
    link: inviteUrl,
    code,
    me: signedIn ? call.user : null,
    onCopyFailed: (text) => toast(`Copy this link to invite people: ${text}`, { timeout: 0, title: "Invite link" }),
  });
  // In-call camera / microphone / speaker choice; switches arrive as media "track" events below.
  new DevicesDialog({ media: call.media, speaker: new SpeakerOutput($("call"), call.media.speakerId) });

  const local = call.grid.ensure("local", { local: true, name: `${call.user.username} (You)`, user: call.user });
  local.setState(call.local);
  updateLocalTile();
  call.speaking.watch("local", call.media.audio);
  call.netquality = new NetQuality({
    engine,
    slotOf: (person) => {
      const tile = call.grid.get(person === "local" ? "local" : `cam:${person}`);
      return tile ? tile.net : null;
    },
  });

  // Devices can change under the call (first grant after joining, switching, unplugging).
  call.media.addEventListener("track", ({ detail }) => {
    for (const media of engines()) media.setTrack(detail.kind, detail.track);
    if (detail.kind === "audio") call.speaking.watch("local", detail.track);
    syncLocalMedia();
    updateLocalTile();
    sendState({ audio: call.local.audio, video: call.local.video });
    renderControls();
    renderPeople();
  });
  // Tracks that arrived between "Join" and now.
  for (const media of engines()) {
    media.setTrack("audio", call.media.audio);
    media.setTrack("video", call.media.video);
  }
  call.media.addEventListener("lost", ({ detail }) => {
    syncLocalMedia();
    sendState();
    renderControls();
    renderPeople();
    updateLocalTile();
    toast(detail.kind === "audio" ? "Your microphone was disconnected." : "Your camera was disconnected.", { kind: "warn" });
  });
}

function wireClient(client) {
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
  on("error", onServerError);
  on("disconnected", onDisconnected);
}

/** Remote streams into tiles, connection states into tile notices (mesh and relay alike). */
function wireMedia(media) {
  media.addEventListener("stream", ({ detail }) => {
    const peer = call.roster.get(detail.peerId);
    if (!peer || !call.grid) return;
    if (detail.kind === "camera") {
      showPeerTile(peer).setStream(detail.stream, onSoundBlocked);
      const audio = detail.stream.getAudioTracks()[0];
      if (audio) call.speaking.watch(detail.peerId, audio);
    } else {
      const tile = call.grid.ensure(`screen:${detail.peerId}`, {
        peerId: detail.peerId,
        screen: true,
        name: `${nameOf(peer)}'s screen`,
      });
      tile.setStream(detail.stream);
    }
  });
  media.addEventListener("stream-removed", ({ detail }) => {
    if (!call.grid) return;
    if (detail.kind === "screen") {
      call.grid.remove(`screen:${detail.peerId}`);
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
      for (const id of call.roster.keys()) {
        const tile = call.grid.get(`cam:${id}`);
        if (tile) tile.setStatus(connectionText(detail.state));
      }
      return;
    }
    const tile = call.grid.get(`cam:${detail.peerId}`);
    if (tile) tile.setStatus(connectionText(detail.state));
  });
}

/** Connect; resolves with the first welcome, or rejects with the final close detail. */
function connect(onRetry) {
  // The room's own spelling of its code: a guest's pass cookie is sent to that path only.
  const client = new RoomClient((call.room && call.room.code) || code);
  call.client = client;
  call.knocks.bind(client);
  client.addEventListener("lobby", (event) => onLobby(event.detail));
  // Both engines listen to the client from the start; the room's mode decides which one works.
  call.mesh = new Mesh(client, { audio: call.media.audio, video: call.media.video });
  call.relay = new Relay(client, { audio: call.media.audio, video: call.media.video });
  for (const media of engines()) wireMedia(media);

  return new Promise((resolve, reject) => {
    const onEarlyDrop = (event) => onRetry(event.detail);
    const onFirstWelcome = (event) => {
      client.removeEventListener("closed", onEarlyClose);
      client.removeEventListener("disconnected", onEarlyDrop);
      resolve(event.detail);
    };
    const onEarlyClose = (event) => {
      client.removeEventListener("welcome", onFirstWelcome);
      client.removeEventListener("disconnected", onEarlyDrop);
      reject(event.detail);
    };
    client.addEventListener("welcome", onFirstWelcome, { once: true });
    client.addEventListener("closed", onEarlyClose, { once: true });
    client.addEventListener("disconnected", onEarlyDrop);
    client.connect();
  });
}

/** Signed in: the pre-flight admission; false (and the reason shown) when I cannot join. */
async function admitMember(user) {
  call.user = user;
  const admission = await joinRoom(code);
  if (!admission.ok) {
    showJoinError(admission);
    return null;
  }
  call.room = admission.data.room;
  return admission.data;
}

/** Signed out: the meeting's public preview; null (and the door shown) when guests cannot join. */
async function previewAsGuest() {
  call.guest = true;
  applyGuestChrome();
  const preview = await new GuestJoin({ code }).preview();
  if (!preview.ok && preview.status === 0) {
    showJoinError(preview, { retry: true });
    return null;
  }
  const room = preview.ok ? preview.data.room : null;
  const reason = room ? closedReason(room) : null;
  if (!room || reason) {
    const errorCode = preview.error ? preview.error.code : "";
    const [title, text] = room ? CLOSED_TEXTS[reason] : JOIN_ERRORS[errorCode] || ["Can't join this meeting", errorText(preview)];
    const actions = [{ label: "Sign in", href: signInLink(code) }];
    if (reason === "locked") actions.push({ label: "Try again", onClick: () => window.location.reload() });
    showDoor({ title, text, actions });
    showOnly("door-state");
    focusDoor();
    return null;
  }
  call.room = room;
  return room;
}

/** The waiting screen for a `lobby` message (again whenever a host comes or goes). */
function onLobby(message) {
  if (call.finished) return;
  closePrejoin();
  call.lobby.show(message, call.user.username);
  showOnly("lobby");
}

function closePrejoin() {
  if (call.prejoin) call.prejoin.close();
  call.prejoin = null;
}

/** Nobody let me in in time: offer to knock again (never automatic); resolves on "Ask again". */
function askAgain() {
  call.lobby.hide();
  for (const media of engines()) media.close();
  return new Promise((resolve) => {
    showDoor({
      title: "Nobody let you in in time",
      text: "Your request to join was not answered. You can ask again: the hosts will be told you are waiting.",
      actions: [
        { label: "Ask again", onClick: () => resolve() },
        { label: "Leave", onClick: leave },
      ],
    });
    showOnly("door-state");
    focusDoor();
  });
}

/** Connect (through the lobby if I must wait); the first welcome, or null when it ended there. */
async function getIn() {
  const onRetry = (drop) => {
    call.lobby.reconnecting();
    $("prejoin-error").textContent =
      drop && (drop.code === CLOSE.TRY_AGAIN_LATER || drop.code === CLOSE.SERVICE_RESTART)
        ? "The meeting's media server is busy. Retrying…"
        : "Can't reach the meeting server. Retrying…";
  };
  for (;;) {
    try {
      return await connect(onRetry);
    } catch (closed) {
      if (closed.cause === "lobby_timeout" && !call.finished) {
        await askAgain();
        showOnly("call-loading");
        continue;
      }
      closePrejoin();
      if (closed.cause === "ended" || closed.cause === "kicked") finish(closed.cause);
      else onClosed(closed);
      return null;
    }
  }
}

async function main() {
  if (!code) {
    showJoinError({ ok: false, status: 404, error: { code: "room_not_found", message: "" } });
    return;
  }
  const who = await me();
  let admission = null;
  if (who.status === 401) {
    if (!(await previewAsGuest())) return;
  } else if (!who.ok || !who.data || !who.data.user) {
    showJoinError(who, { retry: true });
    return;
  } else if (!(admission = await admitMember(who.data.user))) {
    return;
  }
  document.title = `${call.room.title} · meet`;
  showOnly("prejoin");

  call.media = new LocalMedia();
  const prejoin = new Prejoin({
    media: call.media, user: call.user || { username: "Guest" }, code, seeWho: !call.guest,
  });
  call.prejoin = prejoin;
  const ready = prejoin.run(call.room);
  if (call.guest) {
    const outcome = await new GuestJoin({ code }).run(call.room);
    if (outcome.closed) {
      closePrejoin();
      closeAtTheDoor(outcome.closed, { code: outcome.closed });
      return;
    }
    call.user = outcome.guest;
  } else {
    if (admission.lobby) $("join-button").textContent = "Ask to join";
    await ready;
  }
  unlockAudio();
  prejoin.setBusy(true);

  call.lobby = new LobbyScreen({ media: call.media, onLeave: leave });
  call.knocks = new Knocks({
    client: () => call.client,
    onShowAll: () => {
      if (call.panel !== "participants") setPanel("participants");
    },
  });
  const welcome = await getIn();
  if (!welcome) return;
  closePrejoin();
  call.lobby.hide();
  syncLocalMedia();
  showOnly("call");
  setUpCallView();
  wireClient(call.client);
  call.client.addEventListener("welcome", (event) => {
    if (event.detail !== welcome) onWelcome(event.detail);
  });
  call.client.addEventListener("closed", (event) => onClosed(event.detail));
  onWelcome(welcome);
  renderControls();
}

$("join-retry").addEventListener("click", () => window.location.reload());
window.addEventListener("pagehide", () => {
  if (!call.finished && call.client) stopAll();
});
// Restored from the back/forward cache after leaving: start over with a fresh page.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) window.location.reload();
});

main().catch((err) => {
  console.error(err);
  showJoinError({ ok: false, status: 0, error: { code: "client_error", message: "Something went wrong while opening the meeting." } }, { retry: true });
});
