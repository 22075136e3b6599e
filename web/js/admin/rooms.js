/*
 * The rooms panel: search, live rooms first with who is in them and the media mode, end a
 * meeting, remove a participant.
 *
 * Hooks: #rooms tbody > tr[data-code]; .participant[data-peer-id]; #room-search, #rooms-pager
 */

import { errorText } from "../forms.js";
import { endRoom, removeParticipant, searchRooms } from "./api.js";
import { actionButton, renderPager, row, tag } from "./table.js";

const PAGE = 20;

export class RoomsPanel {
  constructor(changed) {
    this.changed = changed;
    this.query = { q: "", limit: PAGE, offset: 0 };
    this.body = document.querySelector("#rooms tbody");
    this.message = document.getElementById("rooms-message");
    this.pager = document.getElementById("rooms-pager");
    document.getElementById("room-search").addEventListener("submit", (event) => {
      event.preventDefault();
      this.load({ q: document.getElementById("room-q").value.trim(), offset: 0 });
    });
  }

  async load(changes = {}) {
    Object.assign(this.query, changes);
    const result = await searchRooms(this.query);
    if (!result.ok) {
      this.message.textContent = errorText(result);
      return;
    }
    this.message.textContent = "";
    this.body.replaceChildren(...result.data.rooms.map((room) => this.render(room)));
    renderPager(this.pager, result.data, (offset) => this.load({ offset }));
  }

  render(room) {
    const status = room.live ? [tag("live", "is-live"), ` ${room.mode}`] : room.status;
    const actions = room.status === "open"
      ? [actionButton("End meeting", () => this.act(() => endRoom(room.code)), { danger: true })]
      : [];
    return row([`${room.title} (${room.code})`, room.host.username, status, this.people(room), actions], { code: room.code });
  }

  people(room) {
    if (!room.participants.length) return "—";
    return room.participants.map((peer) => {
      const item = document.createElement("span");
      item.className = "participant";
      item.dataset.peerId = peer.peer_id;
      item.append(`${peer.user.username}${peer.guest ? " (guest)" : ""} `);
      item.append(actionButton("Remove", () => this.act(() => removeParticipant(room.code, peer.peer_id))));
      return item;
    });
  }

  async act(call) {
    const result = await call();
    if (!result.ok) {
      this.message.textContent = errorText(result);
      return;
    }
    await this.load();
    this.changed();
  }
}
