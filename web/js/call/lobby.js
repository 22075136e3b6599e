/*
 * The lobby, from both sides of the door.
 *
 *   LobbyScreen  for the person waiting: "Waiting for the host to let you in", the meeting,
 *                whether a host is there to answer, the time left, the self preview and Leave.
 *                `welcome` then arrives on the same socket and the call starts.
 *   Knocks       for hosts and co-hosts: each `knock` is a prompt above the stage ("Ana (guest)
 *                wants to join — Admit / Deny") and a row in the People panel's "Waiting"
 *                section (with "Admit all"); `knock-ended` removes it, whoever answered.
 *   showDoor     the end states around the door (turned away, nobody answered in time, left,
 *                a meeting that takes no guests): a title, a text and buttons or links.
 *
 * Hooks: #lobby, #lobby-video, #lobby-heading, #lobby-host, #lobby-timeout, #lobby-leave,
 *        #knock-prompt, #knock-list .knock[data-knock-id] .knock-admit / .knock-deny,
 *        #knock-admit-all, #lobby-waiting, #waiting-list, #lobby-admit-all,
 *        #door-state, #door-title, #door-text, #door-actions
 */

const PROMPTS_SHOWN = 3; // knocks listed above the stage; the rest are counted ("See all")

const $ = (id) => document.getElementById(id);

/** "4:05" */
function minutes(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/**
 * Fill the door state: actions are {label, href} links or {label, onClick} buttons, the first
 * one primary; `quiet` drops the warning sign (leaving is not a failure). The caller shows the
 * #door-state section.
 */
export function showDoor({ title, text, actions = [], quiet = false }) {
  $("door-state").querySelector(".result-icon").hidden = quiet;
  $("door-title").textContent = title;
  $("door-text").textContent = text;
  document.title = `${title} · meet`;
  const nodes = actions.map((action, index) => {
    const el = document.createElement(action.href ? "a" : "button");
    el.className = `btn ${index === 0 ? "btn-primary" : "btn-secondary"}`;
    el.textContent = action.label;
    if (action.href) el.href = action.href;
    else {
      el.type = "button";
      el.addEventListener("click", action.onClick);
    }
    return el;
  });
  $("door-actions").replaceChildren(...nodes);
}

/** Focus the door's first action (after the section is shown). */
export function focusDoor() {
  const first = $("door-actions").querySelector("a, button");
  if (first) first.focus();
}

export class LobbyScreen {
  /** media: LocalMedia (the self preview); onLeave() when Leave is pressed. */
  constructor({ media, onLeave }) {
    this.media = media;
    this.video = $("lobby-video");
    this.deadline = 0;
    this.timer = 0;
    this.shown = false;
    this.onTrack = () => this.preview();
    $("lobby-leave").addEventListener("click", () => onLeave());
  }

  /** A `lobby` message: (re)render the waiting screen. `name` is mine, for the avatar. */
  show(message, name) {
    const room = message.room || {};
    $("lobby-room").textContent = room.title || "";
    $("lobby-avatar").textContent = (name || "?").charAt(0).toUpperCase();
    $("lobby-host").textContent = message.host_present
      ? "A host is here and has been told you're waiting."
      : "No host is here yet — you'll get in once one arrives and lets you in.";
    this.deadline = Date.now() + Math.max(0, Number(message.timeout) || 0) * 1000;
    this.tick();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), 1000);
    document.title = `Waiting to join · ${room.title || "meet"}`;
    if (!this.shown) {
      this.shown = true;
      this.media.addEventListener("track", this.onTrack);
      this.preview();
      $("lobby-leave").focus();
    }
  }

  /** The link dropped while waiting: say so until the next `lobby` (the knock starts again). */
  reconnecting() {
    if (!this.shown) return;
    clearInterval(this.timer);
    $("lobby-host").textContent = "Connection lost. Reconnecting… (the hosts will be asked again)";
    $("lobby-timeout").textContent = "";
  }

  /** Stop the countdown and the preview (let in, turned away, or left). */
  hide() {
    clearInterval(this.timer);
    if (!this.shown) return;
    this.shown = false;
    this.media.removeEventListener("track", this.onTrack);
    this.video.srcObject = null;
  }

  // ---- internals ---------------------------------------------------------------------

  tick() {
    const left = (this.deadline - Date.now()) / 1000;
    $("lobby-timeout").textContent =
      left > 0 ? `If nobody lets you in, this request ends in ${minutes(left)}.` : "Your request is about to end.";
  }

  preview() {
    const { video, camOn } = this.media;
    const on = Boolean(video) && camOn;
    const current = this.video.srcObject ? this.video.srcObject.getVideoTracks()[0] : null;
    if (on && video !== current) {
      this.video.srcObject = new MediaStream([video]);
      this.video.play().catch(() => {});
    }
    if (!on) this.video.srcObject = null;
    $("lobby-off").hidden = on;
  }
}

function knockLabel(knock) {
  return knock.guest ? `${knock.name} (guest)` : knock.name;
}

/** One knock: "Ana (guest) wants to join" + Admit / Deny. */
function knockRow(knock, tag, pending) {
  const li = document.createElement(tag);
  li.className = "knock";
  li.dataset.knockId = knock.id;
  const text = document.createElement("span");
  text.className = "knock-text";
  const name = document.createElement("strong");
  name.textContent = knockLabel(knock);
  text.append(name, " wants to join");
  const admit = document.createElement("button");
  admit.type = "button";
  admit.className = "btn btn-primary btn-sm knock-admit";
  admit.textContent = "Admit";
  admit.setAttribute("aria-label", `Admit ${knockLabel(knock)}`);
  const deny = document.createElement("button");
  deny.type = "button";
  deny.className = "btn btn-secondary btn-sm knock-deny";
  deny.textContent = "Deny";
  deny.setAttribute("aria-label", `Deny ${knockLabel(knock)}`);
  admit.disabled = deny.disabled = pending;
  const actions = document.createElement("span");
  actions.className = "knock-actions";
  actions.append(admit, deny);
  li.append(text, actions);
  return li;
}

export class Knocks {
  /** client(): the RoomClient now; onShowAll(): open the People panel. */
  constructor({ client, onShowAll }) {
    this.client = client;
    this.knocks = new Map(); // id → {id, name, guest}, oldest first
    this.pending = new Set(); // ids answered by me, waiting for knock-ended
    this.prompt = $("knock-prompt");
    this.list = $("knock-list");
    this.waiting = $("lobby-waiting");
    this.waitingList = $("waiting-list");
    for (const container of [this.list, this.waitingList]) {
      container.addEventListener("click", (event) => this.onClick(event));
    }
    $("knock-admit-all").addEventListener("click", () => this.admitAll());
    $("lobby-admit-all").addEventListener("click", () => this.admitAll());
    $("knock-show-all").addEventListener("click", () => onShowAll());
  }

  /** Listen to a (new) room connection: its welcome starts over (knocks are sent again). */
  bind(client) {
    client.addEventListener("welcome", () => this.clear());
    client.addEventListener("knock", (event) => this.add(event.detail));
    client.addEventListener("knock-ended", (event) => this.end(event.detail.id));
  }

  add({ id, name, guest }) {
    this.knocks.set(id, { id, name, guest: Boolean(guest) });
    this.render();
  }

  end(id) {
    const had = this.knocks.delete(id);
    this.pending.delete(id);
    if (had) this.render();
  }

  /** No host powers any more (or a new connection): nothing to answer. */
  clear() {
    this.knocks.clear();
    this.pending.clear();
    this.render();
  }

  // ---- internals ---------------------------------------------------------------------

  answer(id, admit) {
    const client = this.client();
    if (!client || !this.knocks.has(id)) return;
    const sent = admit ? client.admit(id) : client.deny(id);
    if (sent) this.pending.add(id); // until knock-ended (unknown_knock: someone else answered first)
    this.render();
  }

  admitAll() {
    for (const id of [...this.knocks.keys()]) if (!this.pending.has(id)) this.answer(id, true);
  }

  onClick(event) {
    const button = event.target.closest("button");
    const row = button && button.closest(".knock");
    if (!row) return;
    if (button.classList.contains("knock-admit")) this.answer(row.dataset.knockId, true);
    else if (button.classList.contains("knock-deny")) this.answer(row.dataset.knockId, false);
  }

  render() {
    const focusedId = this.focusedKnock();
    const all = [...this.knocks.values()];
    const row = (tag) => (knock) => knockRow(knock, tag, this.pending.has(knock.id));
    this.list.replaceChildren(...all.slice(0, PROMPTS_SHOWN).map(row("li")));
    this.prompt.hidden = all.length === 0;
    $("knock-more").hidden = all.length < 2;
    const extra = all.length - PROMPTS_SHOWN;
    $("knock-more-text").textContent = extra > 0 ? `and ${extra} more waiting` : `${all.length} people are waiting`;

    this.waitingList.replaceChildren(...all.map(row("li")));
    this.waiting.hidden = all.length === 0;
    $("lobby-waiting-title").textContent = `Waiting (${all.length})`;
    $("lobby-admit-all").hidden = all.length < 2;
    this.refocus(focusedId);
  }

  /** The knock a focused Admit / Deny belongs to (re-rendering must not lose the focus). */
  focusedKnock() {
    const el = document.activeElement;
    const row = el && el.closest && el.closest(".knock");
    return row ? { id: row.dataset.knockId, inPanel: this.waitingList.contains(row) } : null;
  }

  refocus(focused) {
    if (!focused) return;
    const container = focused.inPanel ? this.waitingList : this.list;
    const rows = [...container.querySelectorAll(".knock")];
    const target = rows.find((r) => r.dataset.knockId === focused.id) || rows[0];
    const button = target && target.querySelector("button:not(:disabled)");
    if (button) button.focus();
  }
}
