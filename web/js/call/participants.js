/*
 * The people panel: who is here with their role and mic / camera / hand state; for the host,
 * "Ask to mute" and "Remove" per person and the room's lock / end controls.
 *
 * Hooks: #participants-panel, .participant[data-peer-id], .ask-mute, .kick, #lock-room, #end-room
 */

import { icon } from "./icons.js";

function stateIcon(name, label) {
  const span = document.createElement("span");
  span.className = `participant-flag flag-${name}`;
  span.title = label;
  span.setAttribute("role", "img");
  span.setAttribute("aria-label", label);
  span.append(icon(name));
  return span;
}

export class ParticipantsPanel {
  /** Callbacks receive the participant's peer id (onMute, onKick) or nothing (onLock, onEnd). */
  constructor({ onMute, onKick, onLock, onEnd }) {
    this.list = document.getElementById("participant-list");
    this.count = document.getElementById("people-count");
    this.hostControls = document.getElementById("host-controls");
    this.lockButton = document.getElementById("lock-room");
    this.endButton = document.getElementById("end-room");
    this.list.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      const row = button && button.closest(".participant");
      if (!row) return;
      if (button.classList.contains("ask-mute")) onMute(row.dataset.peerId, row.dataset.name);
      if (button.classList.contains("kick")) onKick(row.dataset.peerId, row.dataset.name);
    });
    this.lockButton.addEventListener("click", () => onLock());
    this.endButton.addEventListener("click", () => onEnd());
  }

  /**
   * @param {Array<object>} people  participants (public shape) + {me: true} for my own row
   * @param {boolean} isHost        whether I host this meeting
   * @param {object} room           room_json (for the lock state)
   */
  render(people, isHost, room) {
    const focused = document.activeElement;
    const refocus =
      focused && this.list.contains(focused) && focused.closest(".participant")
        ? { peerId: focused.closest(".participant").dataset.peerId, cls: focused.className }
        : null;

    const sorted = [...people].sort(
      (a, b) =>
        Number(Boolean(b.me)) - Number(Boolean(a.me)) ||
        Number(b.role === "host") - Number(a.role === "host") ||
        a.joined_at - b.joined_at,
    );
    this.list.replaceChildren(...sorted.map((p) => this.row(p, isHost)));
    this.count.textContent = `(${people.length})`;

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

  row(p, isHost) {
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
    avatar.textContent = p.user.username.charAt(0).toUpperCase();

    const text = document.createElement("div");
    text.className = "participant-text";
    const name = document.createElement("span");
    name.className = "participant-name";
    name.textContent = p.me ? `${p.user.username} (You)` : p.user.username;
    const role = document.createElement("span");
    role.className = "participant-role";
    role.textContent = p.role === "host" ? "Host" : "Guest";
    text.append(name, role);

    const flags = document.createElement("div");
    flags.className = "participant-flags";
    if (p.hand) flags.append(stateIcon("hand", "Hand raised"));
    if (p.screen) flags.append(stateIcon("screen", "Presenting"));
    flags.append(p.video ? stateIcon("camera", "Camera on") : stateIcon("camera-off", "Camera off"));
    flags.append(p.audio ? stateIcon("mic", "Microphone on") : stateIcon("mic-off", "Microphone off"));

    li.append(avatar, text, flags);

    if (isHost && !p.me) {
      const actions = document.createElement("div");
      actions.className = "participant-actions";
      const mute = document.createElement("button");
      mute.type = "button";
      mute.className = "ask-mute btn btn-secondary btn-xs";
      mute.textContent = "Ask to mute";
      mute.setAttribute("aria-label", `Ask ${p.user.username} to mute`);
      const kick = document.createElement("button");
      kick.type = "button";
      kick.className = "kick btn btn-danger btn-xs";
      kick.textContent = "Remove";
      kick.setAttribute("aria-label", `Remove ${p.user.username} from the meeting`);
      actions.append(mute, kick);
      li.append(actions);
    }
    return li;
  }
}
