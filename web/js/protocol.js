/*
 * meet's WebSocket signaling clients. Protocol only: no DOM access here.
 *
 *   RoomClient  GET /api/rooms/{code}/ws  one meeting: signaling, chat, media state, host actions
 *   UserClient  GET /api/ws               presence (who is online) and ringing
 *
 * Both authenticate with the session cookie (same origin) and are EventTargets. Every server
 * message is dispatched as a CustomEvent named after its `type`, with the message as `detail`.
 * Connection life cycle events:
 *   "open"          the socket is open (a room's admission is confirmed by "welcome")
 *   "disconnected"  detail {code, reason, attempt, delay}: the link dropped, retrying in `delay` ms
 *   "closed"        detail {code, reason, cause, error}: final, no more reconnects. `cause` is
 *                   "left" (close() was called), "ended", "kicked", "unauthorized", "forbidden",
 *                   "not_found", "policy", "denied", "lobby_timeout" or "too_many_connections";
 *                   `error` is the last {code, message} error the server sent (e.g.
 *                   room_locked), or null.
 * Closes not listed as final reconnect: 1001, 1006, 4408, 4429 with backoff; 1012 (the media relay
 * restarted: relay_restart) at once; 1013 (no relay available right now) with backoff. A close
 * after `error` `denied` (4403) or `lobby_timeout` (4408) is final: waiting in the lobby again is
 * the person's choice ("Ask again"), never an automatic reconnect. So is one after `error`
 * `too_many_connections` (4429): it would be refused again until a tab closes.
 *
 * Keep-alive: the server's {"type":"ping"} is answered with a pong, the client pings every 15 s,
 * and a link silent for 50 s (the server pings every 20 s) is treated as dropped.
 * Reconnects use exponential backoff with jitter: 0.5 s doubling up to an 8 s cap.
 */

/** WebSocket close codes used by the server (docs: meet/connection.py). */
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY: 1008,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  UNAUTHORIZED: 4401,
  FORBIDDEN: 4403,
  NOT_FOUND: 4404,
  TIMEOUT: 4408,
  ENDED: 4410,
  TOO_SLOW: 4429,
});

/**
 * Close codes after which reconnecting cannot help, mapped to the `cause` reported.
 * 1012 (relay_restart) and 1013 (relay_unavailable) are deliberately absent: they reconnect.
 */
const FINAL_CLOSES = new Map([
  [CLOSE.UNAUTHORIZED, "unauthorized"],
  [CLOSE.FORBIDDEN, "forbidden"],
  [CLOSE.NOT_FOUND, "not_found"],
  [CLOSE.ENDED, "ended"],
  [CLOSE.POLICY, "policy"],
]);

export const PING_INTERVAL_MS = 15000;
export const SILENCE_LIMIT_MS = 50000;
export const BACKOFF_MIN_MS = 500;
export const BACKOFF_MAX_MS = 8000;

/** Room `error` codes that make the close following them final, mapped to the `cause` reported. */
const FINAL_ERRORS = new Map([
  ["denied", "denied"],
  ["lobby_timeout", "lobby_timeout"],
  // Too many tabs open (4429): retrying cannot help until the person closes one; say so instead.
  ["too_many_connections", "too_many_connections"],
]);

/** ws(s)://host/path on the page's own origin. */
export function socketUrl(path, loc = globalThis.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}${path}`;
}

/**
 * Delay before reconnect attempt `attempt` (0-based): 0.5 s, 1 s, 2 s, 4 s, 8 s, 8 s, …
 * with "equal jitter" (between half and all of that step) so clients spread out.
 */
export function backoffDelay(attempt, random = Math.random) {
  const step = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt, 10));
  return Math.round(step / 2 + (random() * step) / 2);
}

/** Shared machinery: connect, keep alive, parse, dispatch, reconnect. */
class SocketClient extends EventTarget {
  constructor(path, { url, WebSocketImpl } = {}) {
    super();
    this.url = url || socketUrl(path);
    this.WebSocketImpl = WebSocketImpl || globalThis.WebSocket;
    this.ws = null;
    this.status = "idle"; // idle | connecting | open | reconnecting | closed
    this.attempt = 0;
    this.finalCause = null; // set by messages that make the coming close final
    this.lastError = null;
    this.lastHeard = 0;
    this.timers = { ping: null, watchdog: null, retry: null };
    this.onNetworkBack = () => {
      if (this.status === "reconnecting") this.retryNow();
    };
  }

  /** Open the socket (no-op when already connecting or open). */
  connect() {
    if (this.status === "connecting" || this.status === "open" || this.status === "closed") return;
    this.clearTimer("retry");
    this.status = "connecting";
    globalThis.addEventListener?.("online", this.onNetworkBack);
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (err) {
      this.handleDrop(ws, 1006, String(err && err.message ? err.message : err));
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.handleOpen(ws);
    ws.onmessage = (event) => this.handleFrame(ws, event.data);
    ws.onclose = (event) => this.handleDrop(ws, event.code, event.reason || "");
    ws.onerror = () => {}; // a close event always follows with the details
  }

  /** Reconnect at once instead of waiting for the backoff timer. */
  retryNow() {
    if (this.status !== "reconnecting") return;
    this.status = "idle";
    this.connect();
  }

  /**
   * Drop the current connection and reconnect (with backoff), e.g. when the media relay cannot
   * be recovered otherwise: the next admission is a fresh peer with a fresh relay connection.
   */
  reconnect(reason = "reconnecting") {
    if (this.status === "open" || this.status === "connecting") this.handleDrop(this.ws, 4000, reason);
  }

  /** Leave for good: closes the socket normally and never reconnects. */
  close(reason = "leaving") {
    if (this.status === "closed") return;
    const ws = this.ws;
    this.finish(CLOSE.NORMAL, reason, "left");
    if (ws) {
      detach(ws);
      try {
        ws.close(CLOSE.NORMAL, reason);
      } catch {
        /* already closing */
      }
    }
  }

  /** Send one message object; false when not connected (the message is dropped). */
  send(message) {
    if (this.status !== "open" || !this.ws || this.ws.readyState !== 1) return false;
    try {
      this.ws.send(JSON.stringify(message));
      return true;
    } catch {
      return false;
    }
  }

  get connected() {
    return this.status === "open";
  }

  /** Subclasses call this once the server has really admitted them (welcome / presence). */
  established() {
    this.attempt = 0;
  }

  // ---- internals -------------------------------------------------------------------

  handleOpen(ws) {
    if (ws !== this.ws) return;
    this.status = "open";
    this.lastHeard = Date.now();
    this.timers.ping = setInterval(() => this.send({ type: "ping" }), PING_INTERVAL_MS);
    this.timers.watchdog = setInterval(() => {
      if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) this.handleDrop(ws, CLOSE.TIMEOUT, "no message from the server");
    }, 5000);
    this.emit("open", {});
  }

  handleFrame(ws, raw) {
    if (ws !== this.ws) return;
    this.lastHeard = Date.now();
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return; // the server only sends JSON; ignore anything else
    }
    if (!message || typeof message.type !== "string") return;
    if (message.type === "ping") {
      this.send({ type: "pong" });
      return;
    }
    if (message.type === "pong") return;
    if (message.type === "error") this.lastError = { code: message.code, message: message.message };
    this.onMessage(message);
    this.emit(message.type, message);
    this.emit("message", message);
  }

  /** Hook for subclasses to update their own state before listeners run. */
  onMessage() {}

  handleDrop(ws, code, reason) {
    if (ws !== undefined && ws !== this.ws) return; // a socket we already gave up on
    if (this.status === "closed") return;
    if (ws) {
      detach(ws);
      if (ws.readyState === 0 || ws.readyState === 1) {
        try {
          ws.close(4000, "reconnecting");
        } catch {
          /* ignore */
        }
      }
    }
    this.stopKeepAlive();
    this.ws = null;
    const cause = this.finalCause || FINAL_CLOSES.get(code);
    if (cause) {
      this.finish(code, reason, cause);
      return;
    }
    // 1012: the media relay restarted and its successor is ready: come back at once (a little
    // jitter so a whole room does not arrive in the same millisecond).
    const delay =
      code === CLOSE.SERVICE_RESTART && this.attempt === 0 ? Math.round(Math.random() * 250) : backoffDelay(this.attempt);
    this.attempt += 1;
    this.status = "reconnecting";
    this.timers.retry = setTimeout(() => {
      this.status = "idle";
      this.connect();
    }, delay);
    this.emit("disconnected", { code, reason, attempt: this.attempt, delay });
  }

  finish(code, reason, cause) {
    this.stopKeepAlive();
    this.clearTimer("retry");
    globalThis.removeEventListener?.("online", this.onNetworkBack);
    this.ws = null;
    this.status = "closed";
    this.emit("closed", { code, reason, cause, error: this.lastError });
  }

  stopKeepAlive() {
    this.clearTimer("ping");
    this.clearTimer("watchdog");
  }

  clearTimer(name) {
    if (this.timers[name] !== null) {
      clearInterval(this.timers[name]);
      clearTimeout(this.timers[name]);
      this.timers[name] = null;
    }
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function detach(ws) {
  ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
}

/**
 * One meeting's signaling channel.
 * Events: welcome, peer-joined, peer-left, signal, chat, state, room-updated, mode, tracks, speaker,
 * room-ended, kicked, mute-request, role, lobby, knock, knock-ended, reaction, error (+ the life
 * cycle events above). Before `welcome` a connection may wait in the lobby (`lobby`, repeated
 * when a host comes or goes); `welcome` then follows on the same socket.
 * A "welcome" after a reconnect carries a new peer_id and the current peers.
 */
export class RoomClient extends SocketClient {
  constructor(code, options = {}) {
    super(`/api/rooms/${encodeURIComponent(code)}/ws`, options);
    this.code = code;
    this.peerId = null;
    this.welcome = null;
  }

  onMessage(message) {
    if (message.type === "welcome") {
      this.peerId = message.peer_id;
      this.welcome = message;
      this.lastError = null;
      this.established();
    } else if (message.type === "room-ended") {
      this.finalCause = "ended";
    } else if (message.type === "kicked") {
      this.finalCause = "kicked";
    } else if (message.type === "error" && FINAL_ERRORS.has(message.code)) {
      this.finalCause = FINAL_ERRORS.get(message.code); // its close (4403 / 4408) follows
    }
  }

  handleDrop(ws, code, reason) {
    if (ws === this.ws || ws === undefined) this.peerId = null;
    super.handleDrop(ws, code, reason);
  }

  /** Relay SDP / ICE to one peer: data is {description} or {candidate}. */
  signal(to, data) {
    return this.send({ type: "signal", to, data });
  }

  chat(text) {
    return this.send({ type: "chat", text });
  }

  /** My media state; only the keys given change ({audio, video, screen, hand}). */
  state(changes) {
    const body = { type: "state" };
    for (const key of ["audio", "video", "screen", "hand"]) {
      if (typeof changes[key] === "boolean") body[key] = changes[key];
    }
    return this.send(body);
  }

  /** Host only. */
  kick(peerId) {
    return this.send({ type: "kick", peer_id: peerId });
  }

  /** Host only: ask a participant to mute. */
  mute(peerId) {
    return this.send({ type: "mute", peer_id: peerId });
  }

  /** Host only: end the meeting for everyone. */
  end() {
    return this.send({ type: "end" });
  }

  /** Hosts and co-hosts: ask everyone but the hosts to mute. */
  muteAll() {
    return this.send({ type: "mute-all" });
  }

  /** Hosts and co-hosts: lower someone's raised hand. */
  lowerHand(peerId) {
    return this.send({ type: "lower-hand", peer_id: peerId });
  }

  /** Hosts and co-hosts: let someone waiting in the lobby in (the id from `knock`). */
  admit(knockId) {
    return this.send({ type: "admit", id: knockId });
  }

  /** Hosts and co-hosts: turn someone waiting in the lobby away. */
  deny(knockId) {
    return this.send({ type: "deny", id: knockId });
  }

  /** Hosts and co-hosts: make a signed-in participant a co-host ("cohost") or (the host only) the host. */
  promote(peerId, role = "cohost") {
    return this.send({ type: "promote", peer_id: peerId, role });
  }

  /** Hosts and co-hosts: make a co-host an ordinary participant again. */
  demote(peerId) {
    return this.send({ type: "demote", peer_id: peerId });
  }

  /** An emoji reaction (one of REACTIONS); everyone, me included, gets `reaction`. */
  react(emoji) {
    return this.send({ type: "react", emoji });
  }

  /** The video tiles this page shows: [{peer_id, source, width, height}] (relay rooms). */
  view(tiles) {
    return this.send({ type: "view", tiles });
  }
}

/** The reactions the server accepts, in the order a picker shows them. */
export const REACTIONS = Object.freeze(["👍", "👏", "❤️", "😂", "😮", "🎉", "🙏", "🤔"]);

/**
 * The signed-in user's presence and ringing channel.
 * Events: presence {online}, online {user}, offline {user_id}, ringing {ring_id, user_id, room},
 * incoming-call {ring_id, from, room}, ring-answer {ring_id, accepted, user_id},
 * ring-cancel {ring_id}, ring-timeout {ring_id, user_id}, error.
 * `online` is kept up to date as a Map of user id → user.
 */
export class UserClient extends SocketClient {
  constructor(options = {}) {
    super("/api/ws", options);
    this.online = new Map();
  }

  onMessage(message) {
    if (message.type === "presence") {
      this.online = new Map((message.online || []).map((user) => [user.id, user]));
      this.lastError = null;
      this.established();
    } else if (message.type === "online" && message.user) {
      this.online.set(message.user.id, message.user);
    } else if (message.type === "offline") {
      this.online.delete(message.user_id);
    }
  }

  /** Ring every open dashboard of `userId` with an invitation to room `roomCode`. */
  ring(userId, roomCode) {
    return this.send({ type: "ring", user_id: userId, room: roomCode });
  }

  answer(ringId, accepted) {
    return this.send({ type: "ring-answer", ring_id: ringId, accepted: Boolean(accepted) });
  }

  cancel(ringId) {
    return this.send({ type: "ring-cancel", ring_id: ringId });
  }
}
