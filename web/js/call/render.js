/*
 * What the call view shows of the call state: tiles for the people in the room, the People
 * panel, the header and timer, the control bar, the side panels and the room's settings.
 */

import { hasHostPowers } from "./hostcontrols.js";
import { dismissToasts, toast } from "./toast.js";
import { $, call, code, nameOf } from "./session.js";

/** A remote tile's notice for a connection state (null: nothing to say). */
export function connectionText(state) {
  return { new: "Connecting…", connecting: "Connecting…", disconnected: "Connection unstable…", failed: "Connection lost. Retrying…" }[state] || null;
}

/** The notice a remote tile starts with: its own connection's in mesh, the relay's in relay mode. */
export function initialStatus() {
  return call.mode === "relay" ? connectionText((call.relay && call.relay.connectionState) || "new") : "Connecting…";
}

export function showPeerTile(peer) {
  // Guests chose their name themselves: the label says so, as the knock and the People panel do.
  const name = peer.guest ? `${peer.user.username} (guest)` : peer.user.username;
  const tile = call.grid.ensure(`cam:${peer.peer_id}`, { peerId: peer.peer_id, name, user: peer.user });
  tile.setState(peer);
  tile.setDominant(peer.peer_id === call.dominant);
  return tile;
}

/**
 * A person's screen tile while they share (`state.screen`), made before their screen arrives:
 * in relay rooms the relay forwards a screen only to a page whose view shows its tile. Returns
 * the tile, or null when they do not share.
 */
export function showScreenTile(peer, sharing) {
  const key = `screen:${peer.peer_id}`;
  if (!sharing) {
    call.grid.remove(key);
    return null;
  }
  return call.grid.ensure(key, { peerId: peer.peer_id, screen: true, name: `${nameOf(peer)}'s screen` });
}

export function dropPeer(peerId) {
  if (call.dominant === peerId) call.dominant = null;
  call.grid.remove(`cam:${peerId}`);
  call.grid.remove(`screen:${peerId}`);
  call.speaking.unwatch(peerId);
}

/** The room's dominant speaker changed (relay rooms): frame their camera tile, only theirs. */
export function showDominant(peerId) {
  call.dominant = peerId && call.roster.has(peerId) ? peerId : null;
  call.grid.setSpeaker(call.dominant ? `cam:${call.dominant}` : null);
  for (const id of call.roster.keys()) {
    const tile = call.grid.get(`cam:${id}`);
    if (tile) tile.setDominant(id === call.dominant);
  }
}

export function renderPeople() {
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

export function renderHeader() {
  $("room-title").textContent = call.room.title;
  $("lock-badge").hidden = !call.room.locked;
  $("room-code").textContent = code;
  document.title = `${call.room.title} · meet`;
}

export function renderControls() {
  call.controls.render({
    mic: call.local.audio,
    camera: call.local.video,
    screen: call.local.screen,
    speakerView: call.grid.view === "speaker",
    hand: call.local.hand,
    chat: call.panel === "chat",
    participants: call.panel === "participants",
  });
  const tile = call.grid.get("local");
  if (tile) tile.setState(call.local);
}

export function onSoundBlocked() {
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

export function setPanel(name) {
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

export function applyRoom(room) {
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

export function tickTimer() {
  const s = Math.floor((Date.now() - call.joinedAt) / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  $("call-timer").textContent = h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}
