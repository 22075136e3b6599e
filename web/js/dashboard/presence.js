/*
 * Presence and ringing on the dashboard (UserClient over GET /api/ws):
 *  - "Online now": who else is signed in with a dashboard open, each with a Call button, and
 *    who is in a meeting (on the call page or with a dashboard open too), shown as "In a
 *    meeting" instead: a ring would only disturb them (and may have no page to reach);
 *  - the call chooser: ring them into one of my open meetings or a new one, then follow the
 *    answer (accepted → go to the meeting; declined / no answer → say so);
 *  - incoming calls: "{from} is calling you to {room}" with Accept / Decline, closed again
 *    when the caller hangs up or the ring times out.
 *
 * Hooks: #online-users > .online-user[data-user-id] .call-user | .online-busy,
 *        #incoming-call #accept-call #decline-call
 */

import { createRoom } from "../api.js";
import { errorText } from "../forms.js";
import { UserClient } from "../protocol.js";
import { navigate } from "../urls.js";
import { startRingtone } from "./ringtone.js";

const $ = (id) => document.getElementById(id);
const initial = (name) => String(name || "?").charAt(0).toUpperCase();
const roomPath = (code) => `/r/${encodeURIComponent(code)}`;

export class PresencePanel {
  /**
   * @param {object} o
   * @param {object} o.me                  the signed-in user
   * @param {() => Array} o.openRooms     my rooms that can be joined now
   * @param {() => void} o.roomsChanged   a room was created here (refresh "My meetings")
   */
  constructor({ me, openRooms, roomsChanged }) {
    this.me = me;
    this.openRooms = openRooms;
    this.roomsChanged = roomsChanged;
    this.client = new UserClient();
    this.list = $("online-users");
    this.empty = $("online-empty");
    this.status = $("presence-status");
    this.outgoing = null; // {user, code, ringId, state}
    this.lastRoom = new Map(); // user id → the room I last rang them into (preselected next time)
    this.incoming = new Map(); // ring id → {ring_id, from, room}
    this.stopRing = null;
    this.wireClient();
    this.wireCallDialog();
    this.wireIncoming();
  }

  start() {
    this.client.connect();
    window.addEventListener("pagehide", () => this.client.close());
    // Back from the back/forward cache: the old socket was closed on the way out.
    window.addEventListener("pageshow", (event) => {
      if (!event.persisted) return;
      this.client = new UserClient();
      this.wireClient();
      this.status.textContent = "Connecting…";
      this.client.connect();
    });
  }

  // ---- online list ---------------------------------------------------------------------

  wireClient() {
    const on = (type, handler) => this.client.addEventListener(type, (e) => handler(e.detail));
    on("presence", () => {
      this.status.textContent = "";
      this.renderOnline();
    });
    on("online", () => this.renderOnline());
    on("offline", ({ user_id: userId }) => {
      this.renderOnline();
      if (this.outgoing && this.outgoing.user.id === userId && this.outgoing.state === "ringing") {
        this.finishOutgoing(`${this.outgoing.user.username} went offline.`);
      }
    });
    on("disconnected", () => {
      this.status.textContent = "Reconnecting…";
      // The server withdraws my rings when my channel drops.
      if (this.outgoing && this.outgoing.state === "ringing") {
        this.finishOutgoing("The connection dropped, so the call was cancelled. Try again in a moment.");
      }
    });
    on("closed", ({ cause }) => {
      this.status.textContent = cause === "unauthorized" ? "Signed out" : "Offline";
    });
    on("ringing", (m) => this.onRinging(m));
    on("ring-answer", (m) => this.onAnswer(m));
    on("ring-timeout", (m) => this.onTimeout(m));
    on("ring-cancel", (m) => this.dropIncoming(m.ring_id));
    on("incoming-call", (m) => this.onIncoming(m));
    on("error", (m) => this.onError(m));
  }

  renderOnline() {
    const people = [...this.client.online.values()]
      .filter((u) => u.id !== this.me.id)
      .sort((a, b) => a.username.localeCompare(b.username));
    this.list.replaceChildren(...people.map((u) => this.onlineItem(u)));
    this.empty.hidden = people.length > 0;
  }

  onlineItem(user) {
    const li = document.createElement("li");
    li.className = "online-user";
    li.dataset.userId = String(user.id);
    const avatar = document.createElement("span");
    avatar.className = "avatar";
    avatar.setAttribute("aria-hidden", "true");
    avatar.textContent = initial(user.username);
    const name = document.createElement("span");
    name.className = "online-name";
    name.textContent = user.username;
    if (user.in_meeting) {
      li.classList.add("in-meeting");
      const busy = document.createElement("span");
      busy.className = "online-busy";
      busy.textContent = "In a meeting";
      li.append(avatar, name, busy);
      return li;
    }
    const call = document.createElement("button");
    call.type = "button";
    call.className = "btn btn-secondary btn-sm call-user";
    call.textContent = "Call";
    call.setAttribute("aria-label", `Call ${user.username}`);
    call.addEventListener("click", () => this.openCallDialog(user));
    li.append(avatar, name, call);
    return li;
  }

  // ---- calling someone -------------------------------------------------------------------

  wireCallDialog() {
    this.dialog = $("call-dialog");
    this.form = $("call-form");
    this.choices = $("call-choices");
    this.formError = $("call-form-error");
    this.progress = $("call-progress");
    this.ringButton = $("call-ring");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.ring();
    });
    $("call-dialog-close").addEventListener("click", () => this.dialog.close());
    $("call-cancel").addEventListener("click", () => this.cancelOutgoing());
    // Escape or closing while ringing hangs up.
    this.dialog.addEventListener("close", () => {
      if (this.outgoing && this.outgoing.state === "ringing") this.cancelOutgoing();
      this.outgoing = null;
    });
  }

  openCallDialog(user) {
    if (this.outgoing && this.outgoing.state === "ringing") return;
    this.outgoing = null;
    $("call-dialog-title").textContent = `Call ${user.username}`;
    $("call-dialog-lede").textContent = `${user.username} will get a ring on their dashboard.`;
    this.formError.textContent = "";
    this.form.hidden = false;
    this.progress.hidden = true;
    this.ringButton.disabled = false;
    this.ringButton.removeAttribute("aria-busy");

    const open = this.openRooms();
    const previous = this.lastRoom.get(user.id);
    const selected = open.some((r) => r.code === previous) ? previous : "new";
    const options = [{ value: "new", title: "A new meeting", meta: "Created for this call" }];
    for (const room of open) {
      const n = room.participants || 0;
      options.push({
        value: room.code,
        title: room.title,
        meta: `${room.code}${n ? ` · ${n} in the call` : ""}`,
      });
    }
    const legend = this.choices.querySelector("legend");
    this.choices.replaceChildren(
      legend,
      ...options.map((o) => {
        const label = document.createElement("label");
        label.className = "choice";
        const input = document.createElement("input");
        input.type = "radio";
        input.name = "room";
        input.value = o.value;
        input.checked = o.value === selected;
        const text = document.createElement("span");
        text.className = "choice-text";
        const title = document.createElement("span");
        title.className = "choice-title";
        title.textContent = o.title;
        const meta = document.createElement("span");
        meta.className = "choice-meta";
        meta.textContent = o.meta;
        text.append(title, meta);
        label.append(input, text);
        return label;
      }),
    );
    this.pendingUser = user;
    this.dialog.showModal();
    this.ringButton.focus();
  }

  async ring() {
    const user = this.pendingUser;
    if (!user) return;
    const choice = this.form.querySelector("input[name=room]:checked");
    let code = choice ? choice.value : "new";
    this.formError.textContent = "";
    this.ringButton.disabled = true;
    this.ringButton.setAttribute("aria-busy", "true");
    if (code === "new") {
      const created = await createRoom({ title: `Call with ${user.username}` });
      if (!created.ok) {
        this.formError.textContent = errorText(created);
        this.ringButton.disabled = false;
        this.ringButton.removeAttribute("aria-busy");
        return;
      }
      code = created.data.room.code;
      this.roomsChanged();
    }
    this.lastRoom.set(user.id, code);
    this.outgoing = { user, code, ringId: null, state: "ringing" };
    if (!this.client.ring(user.id, code)) {
      this.outgoing = null;
      this.formError.textContent = "You are offline right now. Try again in a moment.";
      this.ringButton.disabled = false;
      this.ringButton.removeAttribute("aria-busy");
      return;
    }
    this.form.hidden = true;
    this.progress.hidden = false;
    $("call-progress-avatar").textContent = initial(user.username);
    $("call-progress-avatar").classList.add("pulsing");
    $("call-progress-title").textContent = `Calling ${user.username}`;
    $("call-progress-text").textContent = "Ringing…";
    $("call-cancel").hidden = false;
    $("call-cancel").textContent = "Cancel call";
    $("call-go").hidden = true;
    $("call-cancel").focus();
  }

  onRinging({ ring_id: ringId, user_id: userId, room }) {
    const out = this.outgoing;
    if (out && out.state === "ringing" && out.user.id === userId && out.code === room && !out.ringId) {
      out.ringId = ringId;
    }
  }

  onAnswer({ ring_id: ringId, accepted }) {
    const out = this.outgoing;
    if (!out || out.ringId !== ringId) return;
    if (accepted) {
      out.state = "accepted";
      $("call-progress-avatar").classList.remove("pulsing");
      $("call-progress-text").textContent = `${out.user.username} accepted. Joining the meeting…`;
      navigate(roomPath(out.code));
    } else {
      this.finishOutgoing(`${out.user.username} declined the call.`);
    }
  }

  onTimeout({ ring_id: ringId }) {
    if (this.outgoing && this.outgoing.ringId === ringId) {
      this.finishOutgoing(`${this.outgoing.user.username} didn't answer.`);
      return;
    }
    this.dropIncoming(ringId);
  }

  onError({ message }) {
    const out = this.outgoing;
    if (out && out.state === "ringing" && !out.ringId) this.finishOutgoing(message);
  }

  /** The ring is over without an accept: show why, offer to go to the meeting anyway. */
  finishOutgoing(text) {
    const out = this.outgoing;
    if (!out) return;
    out.state = "done";
    $("call-progress-avatar").classList.remove("pulsing");
    $("call-progress-text").textContent = text;
    $("call-cancel").textContent = "Close";
    const go = $("call-go");
    go.href = roomPath(out.code);
    go.hidden = false;
  }

  cancelOutgoing() {
    const out = this.outgoing;
    if (out && out.state === "ringing") {
      out.state = "cancelled";
      if (out.ringId) this.client.cancel(out.ringId);
    }
    if (this.dialog.open) this.dialog.close();
  }

  // ---- being called ----------------------------------------------------------------------

  wireIncoming() {
    this.incomingDialog = $("incoming-call");
    $("accept-call").addEventListener("click", () => this.answer(true));
    $("decline-call").addEventListener("click", () => this.answer(false));
    this.incomingDialog.addEventListener("cancel", (event) => {
      event.preventDefault(); // Escape declines explicitly instead of leaving the ring open
      this.answer(false);
    });
  }

  onIncoming(message) {
    this.incoming.set(message.ring_id, message);
    this.showIncoming();
  }

  /** Show the newest waiting call, or close the prompt when none is left. */
  showIncoming() {
    const calls = [...this.incoming.values()];
    const current = calls[calls.length - 1];
    if (!current) {
      if (this.incomingDialog.open) this.incomingDialog.close();
      if (this.stopRing) this.stopRing();
      this.stopRing = null;
      document.title = "Dashboard · meet";
      return;
    }
    this.shownRing = current.ring_id;
    $("incoming-avatar").textContent = initial(current.from.username);
    $("incoming-title").textContent = "Incoming call";
    $("incoming-text").textContent = `${current.from.username} is calling you to ${current.room.title}`;
    document.title = `${current.from.username} is calling… · meet`;
    if (!this.incomingDialog.open) this.incomingDialog.showModal();
    $("accept-call").focus();
    if (!this.stopRing) this.stopRing = startRingtone();
  }

  dropIncoming(ringId) {
    if (!this.incoming.delete(ringId)) return;
    this.showIncoming();
  }

  answer(accepted) {
    const current = this.incoming.get(this.shownRing);
    if (!current) {
      this.showIncoming();
      return;
    }
    this.client.answer(current.ring_id, accepted);
    this.incoming.delete(current.ring_id);
    if (accepted) {
      // Other rings are moot once I'm going to a meeting.
      for (const other of this.incoming.values()) this.client.answer(other.ring_id, false);
      this.incoming.clear();
      this.showIncoming();
      navigate(roomPath(current.room.code));
      return;
    }
    this.showIncoming();
  }
}
