/*
 * The call page's shared state: the page's room code, the `call` record every part of the page
 * reads and updates, and the media engine the room's mode uses. Holds no behaviour of its own;
 * the parts of the page (screens, render, mine, events, pages/call.js) import it.
 */

export const $ = (id) => document.getElementById(id);
export const code = decodeURIComponent(window.location.pathname.split("/")[2] || "").toLowerCase();
export const inviteUrl = `${window.location.origin}/r/${encodeURIComponent(code)}`;

/** Everything about the running call. */
export const call = {
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
  dominant: null, // relay rooms: the dominant speaker's peer id (the server's `speaker`)
  view: null, // ViewSender: the tiles this page shows, for the relay
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
export function engine() {
  if (call.mode === "relay") return call.relay;
  return call.mode === "mesh" ? call.mesh : null;
}

/** Both media engines, to keep the inactive one ready (tracks, screen) for a mode switch. */
export function engines() {
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

export const nameOf = (peer) => (peer && peer.user ? peer.user.username : "Someone");
