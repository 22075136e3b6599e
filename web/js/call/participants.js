/*
 * The people panel: who is here with their role and mic / camera / hand state; for the host,
 * "Ask to mute" and "Remove" per person and the room's lock / end controls.
 *
 * Row actions come from one table (ROW_ACTIONS): each says when it shows, its label and which
 * handler it calls. They all look alike (quiet secondary buttons): "Remove" turns red only on
 * hover and focus, not at rest.
 *
 * Big rooms: from SEARCH_FROM people on, a search field filters the list as you type (by name,
 * ignoring case and accents); the order is me, the host, raised hands, then by arrival.
 *
 * Hooks: #participants-panel, .participant[data-peer-id], .ask-mute, .kick, #lock-room, #end-room,
 *        #people-search-form, #people-search, #people-none
 */

import { avatarHue, initialOf } from "./avatar.js";
import { roleLabel } from "./hostcontrols.js";
import { icon } from "./icons.js";

/**
 * Per-person actions, in display order. `show(p, ctx)` decides (ctx: {isHost, room, role}: isHost
 * means host powers (host or co-host), role is my own; p is the
 * participant, p.me for my own row); `handler` names
 * the constructor callback it calls with (peerId, name); `danger` marks actions that turn red on
 * hover. Add an entry here for a new action.
 */
export const ROW_ACTIONS = [
  {
    className: "ask-mute",
    handler: "onMute",
    label: () => "Ask to mute",
    aria: (name) => `Ask ${name} to mute`,
    show: (p, ctx) => ctx.isHost && !p.me,
  },
  // Host powers (helper: guests/hosts; handlers from hostcontrols.js).
  {
    className: "lower-hand",
    handler: "onLowerHand",
    label: () => "Lower hand",
    aria: (name) => `Lower ${name}'s hand`,
    show: (p, ctx) => ctx.isHost && !p.me && Boolean(p.hand),
  },
  {
    className: "make-cohost",
    handler: "onPromote",
    label: () => "Make co-host",
    aria: (name) => `Make ${name} a co-host`,
    show: (p, ctx) => ctx.isHost && !p.me && !p.guest && p.role === "guest",
  },
  {
    className: "remove-cohost",
    handler: "onDemote",
    label: () => "Remove co-host",
    aria: (name) => `Make ${name} an ordinary participant again`,
    show: (p, ctx) => ctx.isHost && !p.me && p.role === "cohost",
  },
  {
    className: "make-host",
    handler: "onMakeHost",
    label: () => "Make host",
    aria: (name) => `Make ${name} the host`,
    show: (p, ctx) => ctx.role === "host" && !p.me && !p.guest && p.role !== "host",
  },
  {
    className: "kick",
    handler: "onKick",
    label: () => "Remove",
    aria: (name) => `Remove ${name} from the meeting`,
    show: (p, ctx) => ctx.isHost && !p.me && p.role !== "host",
    danger: true,
  },
];

export const SEARCH_FROM = 6; // people in the room from which the search field shows

/** A name folded for matching: lower case, without accents. */
export function fold(text) {
  return text.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
}

function stateIcon(name, label) {
  const span = document.createElement("span");
  span.className = `participant-flag flag-${name}`;
  span.title = label;
  span.setAttribute("role", "img");
  span.setAttribute("aria-label", label);
  span.append(icon(name));
  return span;
}

function actionButton(action, p) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `${action.className} row-action btn btn-secondary btn-xs`;
  button.classList.toggle("row-action-danger", Boolean(action.danger));
  button.textContent = action.label(p);
  button.setAttribute("aria-label", action.aria(p.user.username, p));
  return button;
}

export class ParticipantsPanel {
  /**
   * Callbacks receive the participant's peer id and name (onMute, onKick and any other handler
   * named in ROW_ACTIONS) or nothing (onLock, onEnd).
   */
  constructor(handlers) {
    const { onLock, onEnd } = handlers;
    this.handlers = handlers;
    this.list = document.getElementById("participant-list");
    this.count = document.getElementById("people-count");
    this.hostControls = document.getElementById("host-controls");
    this.lockButton = document.getElementById("lock-room");
    this.endButton = document.getElementById("end-room");
    this.list.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      const row = button && button.closest(".participant");
      if (!row) return;
      const action = ROW_ACTIONS.find((a) => button.classList.contains(a.className));
      const handler = action && this.handlers[action.handler];
      if (handler) handler(row.dataset.peerId, row.dataset.name);
    });
    this.lockButton.addEventListener("click", () => onLock());
    this.endButton.addEventListener("click", () => onEnd());
    this.searchForm = document.getElementById("people-search-form");
    this.search = document.getElementById("people-search");
    this.none = document.getElementById("people-none");
    this.search.addEventListener("input", () => this.filter());
    this.searchForm.addEventListener("submit", (event) => event.preventDefault());
  }

  /** Show only the rows whose name holds what the search field holds. */
  filter() {
    const query = fold(this.search.value.trim());
    let shown = 0;
    for (const row of this.list.children) {
      row.hidden = Boolean(query) && !fold(row.dataset.name).includes(query);
      if (!row.hidden) shown += 1;
    }
    this.none.hidden = shown > 0;
    this.none.textContent = shown ? "" : `No one here matches “${this.search.value.trim()}”.`;
  }

  /**
   * @param {Array<object>} people  participants (public shape) + {me: true} for my own row
   * @param {boolean} isHost        whether I have host powers (host or co-host)
   * @param {object} room           room_json (for the lock state)
   * @param {string} role           my own role ("host", "cohost", "guest"), for host-only actions
   */
  render(people, isHost, room, role = isHost ? "host" : "guest") {
    const focused = document.activeElement;
    const refocus =
      focused && this.list.contains(focused) && focused.closest(".participant")
        ? { peerId: focused.closest(".participant").dataset.peerId, cls: focused.className }
        : null;

    const sorted = [...people].sort(
      (a, b) =>
        Number(Boolean(b.me)) - Number(Boolean(a.me)) ||
        Number(b.role === "host") - Number(a.role === "host") ||
        Number(Boolean(b.hand)) - Number(Boolean(a.hand)) ||
        a.joined_at - b.joined_at,
    );
    const ctx = { isHost, room, role };
    this.list.replaceChildren(...sorted.map((p) => this.row(p, ctx)));
    this.count.textContent = `(${people.length})`;
    this.searchForm.hidden = people.length < SEARCH_FROM && !this.search.value;
    this.filter();

    this.hostControls.hidden = !isHost;
    const locked = Boolean(room && room.locked);
    this.lockButton.setAttribute("aria-pressed", String(locked));
    this.lockButton.replaceChildren(icon(locked ? "unlock" : "lock"), locked ? "Unlock meeting" : "Lock meeting");

    if (refocus) {
      const row = this.list.querySelector(`.participant[data-peer-id="${CSS.escape(refocus.peerId)}"]`);
      const again = row && [...row.querySelectorAll("button")].find((b) => b.className === refocus.cls);
      if (again) again.focus();
    }
  }

  row(p, ctx) {
    const li = document.createElement("li");
    li.className = "participant";
    li.dataset.peerId = p.peer_id;
    li.dataset.name = p.user.username;
    li.classList.toggle("me", Boolean(p.me));
    li.classList.toggle("muted", !p.audio);
    li.classList.toggle("hand", Boolean(p.hand));

    const avatar = document.createElement("span");
    avatar.className = "avatar";
    avatar.setAttribute("aria-hidden", "true");
    avatar.textContent = initialOf(p.user.username);
    avatar.style.setProperty("--avatar-hue", String(avatarHue(p.user))); // same colour as the tile

    const text = document.createElement("div");
    text.className = "participant-text";
    const name = document.createElement("span");
    name.className = "participant-name";
    name.textContent = p.me ? `${p.user.username} (You)` : p.user.username;
    const role = document.createElement("span");
    role.className = "participant-role";
    role.textContent = roleLabel(p);
    role.dataset.role = p.guest ? "guest" : p.role;
    text.append(name, role);

    const flags = document.createElement("div");
    flags.className = "participant-flags";
    if (p.hand) flags.append(stateIcon("hand", "Hand raised"));
    if (p.screen) flags.append(stateIcon("screen", "Presenting"));
    flags.append(p.video ? stateIcon("camera", "Camera on") : stateIcon("camera-off", "Camera off"));
    flags.append(p.audio ? stateIcon("mic", "Microphone on") : stateIcon("mic-off", "Microphone off"));

    li.append(avatar, text, flags);

    const buttons = ROW_ACTIONS.filter((a) => a.show(p, ctx)).map((a) => actionButton(a, p));
    if (buttons.length) {
      const actions = document.createElement("div");
      actions.className = "participant-actions";
      actions.append(...buttons);
      li.append(actions);
    }
    return li;
  }
}
