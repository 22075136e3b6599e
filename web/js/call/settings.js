/*
 * Meeting settings for hosts and co-hosts: guests (join straight in / wait in the lobby /
 * cannot join), the lobby for signed-in people, the lock and reactions. Each change is saved
 * at once (PATCH /api/rooms/{code} with that one field); a refused change goes back to the
 * room's value with the server's reason. `room-updated` keeps every open copy in step.
 *
 * Hooks: #settings-dialog (input[name=guests|lobby|locked|reactions]), #open-settings,
 *        #settings-error
 */

import { updateRoom } from "../api.js";
import { errorText } from "../forms.js";

export class MeetingSettings {
  /** onRoom(room): the room as saved (the page applies it as it does room-updated). */
  constructor({ code, onRoom }) {
    this.code = code;
    this.onRoom = onRoom;
    this.room = null;
    this.dialog = document.getElementById("settings-dialog");
    this.form = this.dialog.querySelector("form");
    this.error = document.getElementById("settings-error");
    this.opener = document.getElementById("open-settings");
    this.opener.addEventListener("click", () => this.open());
    this.form.addEventListener("change", (event) => this.save(event.target));
    this.dialog.addEventListener("close", () => {
      if (this.opener.getClientRects().length) this.opener.focus();
    });
    // Escape closes the dialog only, not the People panel behind it as well.
    this.dialog.addEventListener("keydown", (event) => {
      if (event.key === "Escape") event.stopPropagation();
    });
  }

  /** The room's current settings (welcome, room-updated, or my own save). */
  update(room) {
    this.room = room;
    const inputs = this.form.elements;
    for (const radio of this.form.querySelectorAll('input[name="guests"]')) radio.checked = radio.value === room.guests;
    inputs.namedItem("lobby").checked = Boolean(room.lobby);
    inputs.namedItem("locked").checked = Boolean(room.locked);
    inputs.namedItem("reactions").checked = room.reactions !== false;
  }

  open() {
    this.error.textContent = "";
    if (this.room) this.update(this.room);
    this.dialog.showModal();
  }

  /** No host powers any more: the dialog closes. */
  close() {
    if (this.dialog.open) this.dialog.close();
  }

  // ---- internals ---------------------------------------------------------------------

  async save(input) {
    const name = input.name;
    if (!["guests", "lobby", "locked", "reactions"].includes(name)) return;
    const value = input.type === "radio" ? input.value : input.checked;
    this.error.textContent = "";
    const group = [...this.form.querySelectorAll(`input[name="${name}"]`)];
    for (const el of group) el.disabled = true;
    const result = await updateRoom(this.code, { [name]: value });
    for (const el of group) el.disabled = false;
    if (!result.ok) {
      this.error.textContent = errorText(result);
      if (this.room) this.update(this.room); // back to what the room really has
      return;
    }
    this.onRoom(result.data.room);
  }
}
