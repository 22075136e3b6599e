/*
 * Whole-page states of the call page: which section shows (pre-join, lobby, call, the end
 * states), the join errors, tearing the call down, and leaving.
 */

import { focusDoor, showDoor } from "./lobby.js";
import { doorAfterClose, forgetPass } from "./guest.js";
import { errorText } from "../forms.js";
import { navigate } from "../urls.js";
import { $, call, code } from "./session.js";

export const JOIN_ERRORS = {
  room_not_found: ["Meeting not found", "There is no meeting at this address. Check the link or the code and try again."],
  room_ended: ["This meeting has ended", "The host has ended this meeting. Start a new one from your dashboard."],
  room_locked: ["This meeting is locked", "The host has locked this meeting, so no one else can join. Ask them to unlock it, then try again."],
  room_full: ["This meeting is full", "The meeting has reached its participant limit. Try again when someone leaves."],
  unauthorized: ["Please sign in again", "Your session has ended. Sign in to join the meeting."],
  too_many_connections: ["Too many meetings open", "You have too many meeting or dashboard tabs open. Close one, then try again."],
};

export function showOnly(id) {
  for (const section of ["call-loading", "prejoin", "lobby", "call", "join-error", "ended", "kicked", "door-state"]) {
    $(section).hidden = section !== id;
  }
  document.body.classList.toggle("in-call", id === "call");
}

export function showJoinError(result, { retry = false } = {}) {
  const errorCode = result.error ? result.error.code : "";
  const [title, text] = JOIN_ERRORS[errorCode] || ["Can't join this meeting", errorText(result)];
  $("join-error-title").textContent = title;
  $("join-error-text").textContent = text;
  $("join-retry").hidden = !(retry || errorCode === "room_locked" || errorCode === "room_full" || result.status === 0);
  document.title = `${title} · meet`;
  showOnly("join-error");
  $("join-error").querySelector("a, button:not([hidden])").focus();
}

/** Tear everything down (devices off, sockets closed). */
export function stopAll() {
  call.finished = true;
  clearInterval(call.timer);
  if (call.netquality) call.netquality.stop();
  if (call.mesh) call.mesh.close();
  if (call.relay) call.relay.close();
  if (call.client) call.client.close();
  if (call.speaking) call.speaking.stop();
  if (call.invite) call.invite.close();
  if (call.screenStream) for (const t of call.screenStream.getTracks()) t.stop();
  if (call.media) call.media.stop();
  if (call.grid) for (const key of call.grid.keys()) call.grid.remove(key);
}

export function finish(kind) {
  if (call.finished) return;
  stopAll();
  const title = call.room ? call.room.title : "";
  if (kind === "ended") {
    $("ended-text").textContent = title ? `“${title}” was ended by the host for everyone.` : "The host ended the meeting for everyone.";
  } else if (kind === "kicked") {
    $("kicked-text").textContent = title ? `The host removed you from “${title}”.` : "The host removed you from the meeting.";
  }
  document.title = kind === "ended" ? "Meeting ended · meet" : "Removed from meeting · meet";
  showOnly(kind);
  $(kind).querySelector("a").focus();
}

export function leave() {
  stopAll();
  if (!call.guest) {
    navigate("/dashboard");
    return;
  }
  // A guest has no dashboard: say goodbye here, with the way back in.
  showDoor({
    title: "You left the meeting",
    text: call.room ? `You left “${call.room.title}”.` : "You left the meeting.",
    actions: [{ label: "Rejoin", onClick: () => window.location.reload() }],
    quiet: true,
  });
  showOnly("door-state");
  focusDoor();
}

/** Show why the socket was closed before (or while) getting in, and stop everything. */
export function closeAtTheDoor(cause, error) {
  stopAll();
  call.lobby?.hide();
  const errorCode = error ? error.code : "";
  if (call.guest && (cause === "denied" || cause === "unauthorized" || errorCode === "removed")) forgetPass(code);
  showDoor(doorAfterClose(cause, errorCode, { guest: call.guest, code }));
  showOnly("door-state");
  focusDoor();
}
