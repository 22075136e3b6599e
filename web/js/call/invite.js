/*
 * The invite card on the stage while I am alone in the meeting: the meeting's link with a Copy
 * button and, for signed-in people, "Ring someone online" — the other users online on the
 * presence channel (UserClient, GET /api/ws), each with a Ring button that rings them into this
 * meeting. Guests have no presence channel: they get the link only.
 *
 * The card shows when I am alone, goes when someone joins, and comes back when I am alone
 * again (closing it with × keeps it away until then).
 *
 * Hooks: #invite-card, #invite-link, #invite-copy, #invite-close, #invite-online,
 *        #invite-people > .invite-person[data-user-id] .invite-ring, #invite-empty
 */

import { bindCopyButton } from "../clipboard.js";
import { UserClient } from "../protocol.js";

const $ = (id) => document.getElementById(id);
const initial = (name) => String(name || "?").charAt(0).toUpperCase();

/** What a person's row says about a ring to them, by its state. */
const RING_TEXT = {
  waiting: "Ringing…",
  ringing: "Ringing…",
  accepted: "Accepted, joining…",
  declined: "Declined",
  timeout: "No answer",
};

export class InviteCard {
  /**
   * @param {object} o
   * @param {string} o.link        the meeting's address
   * @param {string} o.code        the room code (rings invite into it)
   * @param {object|null} o.me     the signed-in user, or null for a guest (no ringing)
   * @param {(text: string) => void} o.onCopyFailed  show the link when copying is impossible
   */
  constructor({ link, code, me, onCopyFailed }) {
    this.code = code;
    this.me = me;
    this.card = $("invite-card");
    this.people = $("invite-people");
    this.empty = $("invite-empty");
    this.alone = false;
    this.dismissed = false;
    this.client = null;
    this.rings = new Map(); // user id → {state, ringId, error}
    this.awaiting = []; // user ids whose ring the server has not confirmed yet, oldest first
    $("invite-link").textContent = link;
    bindCopyButton($("invite-copy"), () => link, onCopyFailed);
    $("invite-close").addEventListener("click", () => {
      this.dismissed = true;
      this.render();
    });
    $("invite-online").hidden = !me;
  }

  /** Call whenever the roster changes: `alone` is true when no one else is in the meeting. */
  update(alone) {
    if (alone && !this.alone) this.dismissed = false; // alone again: the card comes back
    this.alone = alone;
    if (alone && this.me && !this.client) this.connect();
    this.render();
  }

  /** Leaving: close the presence channel. */
  close() {
    if (this.client) this.client.close();
    this.client = null;
    this.card.hidden = true;
  }

  // ---- internals -------------------------------------------------------------------

  connect() {
    const client = new UserClient();
    this.client = client;
    const on = (type, handler) => client.addEventListener(type, (event) => handler(event.detail));
    for (const type of ["presence", "online", "offline"]) on(type, () => this.renderPeople());
    on("ringing", ({ ring_id: ringId, user_id: userId }) => this.settle(userId, { state: "ringing", ringId }));
    on("ring-answer", ({ ring_id: ringId, accepted }) => this.answered(ringId, accepted ? "accepted" : "declined"));
    on("ring-timeout", ({ ring_id: ringId }) => this.answered(ringId, "timeout"));
    on("error", ({ message }) => {
      const userId = this.awaiting[0];
      if (userId !== undefined) this.settle(userId, { state: "failed", error: message });
    });
    on("disconnected", () => {
      // The server withdraws my rings when my channel drops.
      this.rings.clear();
      this.awaiting = [];
      this.renderPeople();
    });
    on("closed", () => this.renderPeople());
    client.connect();
  }

  render() {
    this.card.hidden = !this.alone || this.dismissed;
    if (!this.card.hidden) this.renderPeople();
  }

  /** The server confirmed (or refused) the oldest ring still waiting for it. */
  settle(userId, ring) {
    const i = this.awaiting.indexOf(userId);
    if (i >= 0) this.awaiting.splice(i, 1);
    this.rings.set(userId, ring);
    this.renderPeople();
  }

  answered(ringId, state) {
    for (const [userId, ring] of this.rings) {
      if (ring.ringId === ringId) this.rings.set(userId, { state, ringId });
    }
    this.renderPeople();
  }

  ring(user) {
    if (!this.client || !this.client.ring(user.id, this.code)) {
      this.rings.set(user.id, { state: "failed", error: "Not connected. Try again in a moment." });
    } else {
      this.awaiting.push(user.id);
      this.rings.set(user.id, { state: "waiting" });
    }
    this.renderPeople();
  }

  cancel(userId) {
    const ring = this.rings.get(userId);
    if (ring && ring.ringId && this.client) this.client.cancel(ring.ringId);
    this.rings.delete(userId);
    this.renderPeople();
  }

  renderPeople() {
    if (!this.me || !this.client || this.card.hidden) return;
    const people = [...this.client.online.values()]
      .filter((u) => u.id !== this.me.id)
      .sort((a, b) => a.username.localeCompare(b.username));
    const state = this.client.connected ? "open" : this.client.status === "closed" ? "closed" : "connecting";
    // Offline, the list would be stale and its Ring buttons could not work.
    this.people.replaceChildren(...(state === "open" ? people.map((u) => this.personItem(u)) : []));
    this.empty.hidden = state === "open" && people.length > 0;
    this.empty.textContent = {
      open: "No one else is online right now.",
      connecting: "Connecting…",
      closed: "Who is online cannot be shown right now.",
    }[state];
  }

  personItem(user) {
    const li = document.createElement("li");
    li.className = "invite-person";
    li.dataset.userId = String(user.id);
    const avatar = document.createElement("span");
    avatar.className = "invite-avatar";
    avatar.setAttribute("aria-hidden", "true");
    avatar.textContent = initial(user.username);
    const name = document.createElement("span");
    name.className = "invite-name";
    name.textContent = user.username;
    li.append(avatar, name, this.personAction(user));
    return li;
  }

  /** A Ring button, the state of a ring under way (with Cancel), or "in a meeting". */
  personAction(user) {
    const ring = this.rings.get(user.id);
    const status = document.createElement("span");
    status.className = "invite-status";
    if (ring && (ring.state === "waiting" || ring.state === "ringing")) {
      status.textContent = RING_TEXT[ring.state];
      const cancel = this.button("Cancel", `Stop ringing ${user.username}`, () => this.cancel(user.id));
      const wrap = document.createElement("span");
      wrap.className = "invite-actions";
      wrap.append(status, cancel);
      return wrap;
    }
    if (user.in_meeting && !ring) {
      status.textContent = "In a meeting";
      return status;
    }
    const again = ring && ring.state !== "accepted";
    const button = this.button(again ? "Ring again" : "Ring", `Ring ${user.username} into this meeting`, () => this.ring(user));
    button.classList.add("invite-ring");
    if (!ring) return button;
    status.textContent = ring.state === "failed" ? ring.error : RING_TEXT[ring.state];
    const wrap = document.createElement("span");
    wrap.className = "invite-actions";
    wrap.append(status);
    if (again) wrap.append(button);
    return wrap;
  }

  button(text, label, onClick) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-secondary btn-sm";
    button.textContent = text;
    button.setAttribute("aria-label", label);
    button.addEventListener("click", onClick);
    return button;
  }
}
