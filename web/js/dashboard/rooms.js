/*
 * "My meetings": rooms I host (GET /api/rooms) with their status, people in them now,
 * copy-link and open actions; refreshed every 30 s while the tab is visible.
 *
 * Hooks: #my-rooms > .room-item[data-code]
 */

import { attendanceUrl, listRooms } from "../api.js";
import { bindCopyButton } from "../clipboard.js";
import { errorText } from "../forms.js";
import { formatWhen, roomLink } from "../format.js";

const PAGE = 20;
const REFRESH_MS = 30000;

export class MyRooms {
  /** onChange(rooms), optional, runs after every load. */
  constructor({ onChange = () => {} } = {}) {
    this.onChange = onChange;
    this.rooms = [];
    this.list = document.getElementById("my-rooms");
    this.empty = document.getElementById("my-rooms-empty");
    this.error = document.getElementById("my-rooms-error");
    this.more = document.getElementById("my-rooms-more");
    this.note = document.getElementById("my-rooms-note");
    this.more.addEventListener("click", () => this.loadMore());
    setInterval(() => {
      if (document.visibilityState === "visible") this.refresh();
    }, REFRESH_MS);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.refresh();
    });
  }

  /** Rooms that can still be joined. */
  openRooms() {
    return this.rooms.filter((r) => r.status === "open");
  }

  /** Reload what is shown (first page, at least as many rooms as now). */
  async refresh() {
    const limit = Math.min(100, Math.max(PAGE, this.rooms.length));
    const result = await listRooms({ limit });
    this.list.setAttribute("aria-busy", "false");
    if (!result.ok) {
      this.error.textContent = errorText(result);
      return;
    }
    this.error.textContent = "";
    this.rooms = result.data.rooms;
    this.more.hidden = this.rooms.length < limit;
    this.render();
  }

  async loadMore() {
    const last = this.rooms[this.rooms.length - 1];
    if (!last) return;
    this.more.disabled = true;
    const result = await listRooms({ limit: PAGE, before: last.id });
    this.more.disabled = false;
    if (!result.ok) {
      this.error.textContent = errorText(result);
      return;
    }
    this.rooms = this.rooms.concat(result.data.rooms);
    this.more.hidden = result.data.rooms.length < PAGE;
    this.render();
  }

  render() {
    this.list.replaceChildren(...this.rooms.map((room) => this.item(room)));
    this.empty.hidden = this.rooms.length > 0;
    const live = this.rooms.filter((r) => r.participants > 0).length;
    this.note.textContent = live ? `${live} in progress` : "";
    this.onChange(this.rooms);
  }

  item(room) {
    const li = document.createElement("li");
    li.className = "room-item";
    li.dataset.code = room.code;
    li.dataset.status = room.status;

    const main = document.createElement("div");
    main.className = "item-main";
    const titleRow = document.createElement("div");
    titleRow.className = "item-title-row";
    const title = document.createElement(room.status === "open" ? "a" : "span");
    title.className = "item-title room-title";
    title.textContent = room.title;
    if (room.status === "open") title.href = `/r/${encodeURIComponent(room.code)}`;
    titleRow.append(title);
    if (room.status === "ended") titleRow.append(badge("Ended", "badge-muted room-status"));
    else if (room.participants > 0) titleRow.append(badge("Live", "badge-live room-status"));
    else titleRow.append(badge("Open", "badge-muted room-status"));
    if (room.locked && room.status === "open") titleRow.append(badge("Locked", "badge-muted"));

    const meta = document.createElement("p");
    meta.className = "item-meta";
    const code = document.createElement("span");
    code.className = "mono room-code";
    code.textContent = room.code;
    const parts = [` · Created ${formatWhen(room.created_at)}`];
    if (room.status === "open") {
      const n = room.participants || 0;
      parts.push(n ? ` · ${n} ${n === 1 ? "person" : "people"} in the call now` : " · No one in the call");
    }
    const count = document.createElement("span");
    count.className = "room-participants";
    count.textContent = parts.join("");
    meta.append(code, count);
    main.append(titleRow, meta);

    const actions = document.createElement("div");
    actions.className = "item-actions";
    if (room.status === "open") {
      const copy = document.createElement("button");
      copy.type = "button";
      copy.className = "btn btn-secondary btn-sm copy-link";
      const label = document.createElement("span");
      label.className = "btn-label";
      label.textContent = "Copy link";
      copy.append(label);
      copy.setAttribute("aria-label", `Copy the link to ${room.title}`);
      bindCopyButton(copy, () => roomLink(room.code), (text) => window.prompt("Copy this link:", text));
      const open = document.createElement("a");
      open.className = "btn btn-primary btn-sm open-room";
      open.href = `/r/${encodeURIComponent(room.code)}`;
      open.textContent = room.participants > 0 ? "Join" : "Open";
      actions.append(copy, open);
    } else {
      const report = document.createElement("a");
      report.className = "btn btn-secondary btn-sm attendance-link";
      report.href = attendanceUrl(room.code, "csv");
      report.setAttribute("download", `attendance-${room.code}.csv`);
      report.textContent = "Attendance CSV";
      actions.append(report);
    }
    li.append(main, actions);
    return li;
  }
}

function badge(text, extra) {
  const span = document.createElement("span");
  span.className = `badge ${extra}`;
  span.textContent = text;
  return span;
}
