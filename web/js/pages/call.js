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
 *
 * This module gets the person in (admission or the guest form, the pre-join screen, the lobby)
 * and builds the call view. The call's state lives in call/session.js; call/screens.js switches
 * whole-page states, call/render.js draws the call state, call/mine.js holds my own media and
 * call/events.js turns socket and media events into the view (imports flow in that order).
 */


import { endRoom, joinRoom, me, updateRoom } from "../api.js";
import { readJson, writeJson } from "../storage.js";
import { ChatPanel } from "../call/chat.js";
import { Controls } from "../call/controls.js";
import { ViewSender } from "../call/view.js";
import { DevicesDialog, SpeakerOutput } from "../call/devices.js";
import { onClosed, onWelcome, wireClient, wireMedia } from "../call/events.js";
import { Grid } from "../call/grid.js";
import { CLOSED_TEXTS, GuestJoin, applyGuestChrome, closedReason, signInLink } from "../call/guest.js";
import { HostControls } from "../call/hostcontrols.js";
import { InviteCard } from "../call/invite.js";
import { SpeakingDetector, unlockAudio } from "../call/level.js";
import { Knocks, LobbyScreen, focusDoor, showDoor } from "../call/lobby.js";
import { LocalMedia } from "../call/media.js";
import { Mesh } from "../call/mesh.js";
import {
  sendState,
  stopScreen,
  syncLocalMedia,
  toggleCamera,
  toggleHand,
  toggleMic,
  toggleScreen,
  updateLocalTile,
} from "../call/mine.js";
import { NetQuality } from "../call/netquality.js";
import { ParticipantsPanel } from "../call/participants.js";
import { Prejoin } from "../call/prejoin.js";
import { Reactions } from "../call/reactions.js";
import { Relay } from "../call/relay.js";
import { applyRoom, renderControls, renderPeople, setPanel } from "../call/render.js";
import { JOIN_ERRORS, closeAtTheDoor, finish, leave, showJoinError, showOnly, stopAll } from "../call/screens.js";
import { $, call, code, engine, engines, inviteUrl, nameOf } from "../call/session.js";
import { MeetingSettings } from "../call/settings.js";
import { toast } from "../call/toast.js";
import { bindCopyButton } from "../clipboard.js";
import { errorText } from "../forms.js";
import { CLOSE, RoomClient } from "../protocol.js";

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

// ---- Layout -----------------------------------------------------------------------------

const VIEW_KEY = "meet.call.view"; // this browser's choice of grid or speaker view

function readView() {
  return readJson(window.localStorage, VIEW_KEY) === "speaker" ? "speaker" : "grid";
}

function toggleSpeakerView() {
  const view = call.grid.view === "speaker" ? "grid" : "speaker";
  call.grid.setView(view);
  writeJson(window.localStorage, VIEW_KEY, view);
  renderControls();
}

// ---- Start-up -------------------------------------------------------------------------

/** Build the call view's modules (once; reconnects reuse them). */
function setUpCallView() {
  call.view = new ViewSender({
    send: (tiles) => Boolean(call.client) && call.client.view(tiles),
    active: () => call.mode === "relay",
  });
  call.grid = new Grid({
    stage: $("stage"),
    screens: $("screens"),
    tiles: $("tiles"),
    onStopPresenting: stopScreen,
    onView: (tiles) => call.view.update(tiles),
  });
  call.grid.setView(readView());
  call.speaking = new SpeakingDetector((key, on) => {
    const tile = call.grid.get(key === "local" ? "local" : `cam:${key}`);
    if (tile) tile.setSpeaking(on);
    // Mesh rooms have no relay to judge the dominant speaker: the last person heard here.
    if (on && key !== "local" && call.mode === "mesh") call.grid.setSpeaker(`cam:${key}`);
  });
  call.controls = new Controls({
    mic: toggleMic,
    camera: toggleCamera,
    screen: toggleScreen,
    speakerView: toggleSpeakerView,
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
