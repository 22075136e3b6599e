/*
 * Joining a meeting by its link without an account: the meeting's title and host (GET
 * /api/rooms/{code}/guest), a name field beside the pre-join preview, "Join as guest" (POST
 * /api/rooms/{code}/guest → a guest pass, also set as the meet_guest cookie that the room's
 * WebSocket accepts) and "Have an account? Sign in" keeping the link as ?next=.
 *
 * A meeting that takes no guests, is locked or has ended says so and offers sign-in instead.
 * The name is remembered in this browser (localStorage) for next time; the pass itself lives in
 * its cookie, and this tab remembers which guest it was (sessionStorage), so a reload rejoins as
 * the same guest (a locked meeting lets a guest back within the reconnect grace only with the
 * same pass) instead of asking for a new pass.
 *
 * Hooks: #guest-form, #guest-name, #guest-host, #guest-join, #guest-signin, body.guest-mode
 */

import { guestPass, guestPreview } from "../api.js";
import { bindForm } from "../forms.js";
import { readJson, writeJson } from "../storage.js";
import { withNext } from "../urls.js";

const NAME_KEY = "meet.guest-name";
const PASS_KEY = "meet.guest-pass."; // + room code: {guest, expires_at} of this tab's pass
const NAME_MAX = 40;

/** The sign-in page, coming back to this meeting afterwards. */
export const signInLink = (code) => withNext("/signin", `/r/${code}`);

/** The name this browser joined with last time ("" if none). */
export function rememberedName() {
  const name = readJson(localStorage, NAME_KEY);
  return typeof name === "string" ? name.slice(0, NAME_MAX) : "";
}

/** This tab's unexpired pass for `code` ({guest, expires_at}), or null. */
function storedPass(code) {
  const pass = readJson(sessionStorage, PASS_KEY + code);
  if (!pass || typeof pass.expires_at !== "number" || !pass.guest) return null;
  return pass.expires_at * 1000 > Date.now() + 60_000 ? pass : null;
}

/** Forget this tab's pass for `code` (expired or withdrawn: the next join asks for a new one). */
export function forgetPass(code) {
  writeJson(sessionStorage, PASS_KEY + code, null);
}

/**
 * Why a signed-out visitor cannot join (from the preview's room): "ended", "off", "locked"
 * or null when they may ask for a pass.
 */
export function closedReason(room) {
  if (room.status === "ended") return "ended";
  if (room.guests === "off") return "off";
  return room.locked ? "locked" : null;
}

/** What the door says for each reason a guest cannot come in: [title, text]. */
export const CLOSED_TEXTS = {
  ended: ["This meeting has ended", "The host has ended this meeting, so it cannot be joined any more."],
  off: ["This meeting is for signed-in people only", "The host does not let guests without an account join this meeting. Sign in to join it."],
  guests_off: ["This meeting is for signed-in people only", "The host does not let guests without an account join this meeting. Sign in to join it."],
  locked: ["This meeting is locked", "The host has locked this meeting, so no one new can join right now. Ask the host to unlock it and try again, or sign in."],
  room_locked: ["This meeting is locked", "The host has locked this meeting, so no one new can join right now. Ask the host to unlock it and try again, or sign in."],
  room_ended: ["This meeting has ended", "The host has ended this meeting, so it cannot be joined any more."],
  removed: ["You were removed from this meeting", "The host removed you from this meeting, so you cannot join it again as a guest."],
};

/** Closes that end at the lobby's door whoever I am (their `cause` in protocol.js). */
export const DOOR_CAUSES = new Set(["denied", "lobby_timeout"]);

/**
 * What the door says after a final close before (or while) getting in: turned away, nobody
 * answered, a meeting that no longer takes me, or a guest pass that ended. A spec for showDoor.
 */
export function doorAfterClose(cause, errorCode, { guest, code }) {
  const reload = () => window.location.reload();
  if (cause === "denied") {
    return {
      title: "The host didn't let you in",
      text: "A host of this meeting turned down your request to join.",
      actions: guest ? [] : [{ label: "Back to dashboard", href: "/dashboard" }],
    };
  }
  if (cause === "lobby_timeout") {
    return {
      title: "Nobody let you in in time",
      text: "Your request to join was not answered. You can ask again.",
      actions: [{ label: "Ask again", onClick: reload }],
    };
  }
  if (CLOSED_TEXTS[errorCode]) {
    const [title, text] = CLOSED_TEXTS[errorCode];
    return { title, text, actions: [{ label: "Sign in", href: signInLink(code) }] };
  }
  // A guest pass that expired or was withdrawn: a new one is a click away.
  return {
    title: "Your guest pass has ended",
    text: "It expired or was withdrawn. Join again with your name to get a new one.",
    actions: [{ label: "Join again", onClick: reload }, { label: "Sign in", href: signInLink(code) }],
  };
}

/** The guest version of the page: no dashboard anywhere (the brand goes to the start page). */
export function applyGuestChrome() {
  document.body.classList.add("guest-mode");
  for (const link of document.querySelectorAll('a[href="/dashboard"]')) {
    if (link.closest(".full-state-actions") || link.classList.contains("prejoin-back")) link.hidden = true;
    else link.href = "/";
  }
}

export class GuestJoin {
  constructor({ code }) {
    this.code = code;
    this.form = document.getElementById("guest-form");
    this.input = document.getElementById("guest-name");
  }

  /** GET the public preview: api result with data.room {code, title, host, status, locked, guests}. */
  preview() {
    return guestPreview(this.code);
  }

  /**
   * Show the name form in place of "Join meeting" and wait: resolves with {guest} (the guest
   * user, once this tab holds a pass) or {closed: code} (the meeting takes no guests now).
   */
  run(room) {
    document.getElementById("join-button").hidden = true;
    document.getElementById("prejoin-heading").textContent = "What's your name?";
    const wait = room.guests === "lobby" ? " A host will be asked to let you in." : "";
    document.getElementById("guest-host").textContent = `Hosted by ${room.host.username}.${wait}`;
    document.getElementById("guest-signin").href = signInLink(room.code || this.code);
    this.form.hidden = false;
    const stored = storedPass(this.code);
    this.input.value = stored ? stored.guest.username : rememberedName();
    const mirror = () => this.showName(this.input.value.trim());
    this.input.addEventListener("input", mirror);
    mirror();
    this.input.focus();

    return new Promise((resolve) => {
      bindForm(this.form, {
        validate: ({ name }) => ({ name: name ? "" : "Enter your name, so the others know who is asking to join." }),
        submit: (values) => this.getPass(values.name),
        onSuccess: (result) => {
          resolve({ guest: result.data.guest });
          return true; // stays busy: the socket opens next
        },
        onError: (result) => {
          const reason = result.error && result.error.code;
          if (!CLOSED_TEXTS[reason]) return false; // shown at the field or under it
          resolve({ closed: reason });
          return true;
        },
      });
    });
  }

  /** Hide the form (joined, or the door is shown instead). */
  close() {
    this.form.hidden = true;
  }

  // ---- internals ---------------------------------------------------------------------

  /** A pass for `name`: this tab's own when it still holds one under that name, else a new one. */
  async getPass(name) {
    const stored = storedPass(this.code);
    if (stored && stored.guest.username === name) return { ok: true, status: 200, data: { guest: stored.guest } };
    const result = await guestPass(this.code, name);
    if (result.ok) {
      writeJson(localStorage, NAME_KEY, result.data.guest.username);
      writeJson(sessionStorage, PASS_KEY + this.code, { guest: result.data.guest, expires_at: result.data.expires_at });
    }
    return result;
  }

  /** The name on the preview (as the others will see it). */
  showName(name) {
    document.getElementById("prejoin-user").textContent = name || "Guest";
    document.getElementById("prejoin-avatar").textContent = (name || "?").charAt(0).toUpperCase();
  }
}
