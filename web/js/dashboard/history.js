/*
 * "Recent calls": my stays in meetings (GET /api/calls), newest first, with the duration as
 * h:mm:ss and, for meetings I hosted, the attendance report as a CSV download.
 *
 * Hooks: #recent-calls > .call-item .call-duration
 */

import { attendanceUrl, calls } from "../api.js";
import { errorText } from "../forms.js";
import { formatDuration, formatWhen } from "../format.js";

const PAGE = 15;

export class RecentCalls {
  constructor() {
    this.items = [];
    this.next = null;
    this.list = document.getElementById("recent-calls");
    this.empty = document.getElementById("recent-calls-empty");
    this.error = document.getElementById("recent-calls-error");
    this.more = document.getElementById("recent-calls-more");
    this.more.addEventListener("click", () => this.load(true));
  }

  async load(more = false) {
    this.more.disabled = true;
    const result = await calls({ limit: PAGE, before: more ? this.next : undefined });
    this.more.disabled = false;
    this.list.setAttribute("aria-busy", "false");
    if (!result.ok) {
      this.error.textContent = errorText(result);
      return;
    }
    this.error.textContent = "";
    this.items = more ? this.items.concat(result.data.calls) : result.data.calls;
    this.next = result.data.next_before;
    this.more.hidden = this.next === null;
    this.list.replaceChildren(...this.items.map((c) => this.item(c)));
    this.empty.hidden = this.items.length > 0;
  }

  item(call) {
    const li = document.createElement("li");
    li.className = "call-item";
    li.dataset.code = call.room.code;

    const main = document.createElement("div");
    main.className = "item-main";
    const titleRow = document.createElement("div");
    titleRow.className = "item-title-row";
    const title = document.createElement("span");
    title.className = "item-title call-title";
    title.textContent = call.room.title;
    titleRow.append(title);
    if (call.room.hosted) {
      const host = document.createElement("span");
      host.className = "badge badge-muted";
      host.textContent = "Host";
      titleRow.append(host);
    }
    if (call.left_at === null) {
      const live = document.createElement("span");
      live.className = "badge badge-live";
      live.textContent = "In progress";
      titleRow.append(live);
    }

    const meta = document.createElement("p");
    meta.className = "item-meta";
    const when = document.createElement("time");
    when.dateTime = new Date(call.joined_at * 1000).toISOString();
    when.textContent = formatWhen(call.joined_at);
    const duration = document.createElement("span");
    duration.className = "call-duration";
    duration.textContent = formatDuration(call.duration_s);
    duration.setAttribute("aria-label", `Duration ${formatDuration(call.duration_s)}`);
    meta.append(when, " · ", duration);
    main.append(titleRow, meta);
    li.append(main);

    if (call.room.hosted) {
      const actions = document.createElement("div");
      actions.className = "item-actions";
      const report = document.createElement("a");
      report.className = "btn btn-secondary btn-sm attendance-link";
      report.href = attendanceUrl(call.room.code, "csv");
      report.setAttribute("download", `attendance-${call.room.code}.csv`);
      report.textContent = "Attendance CSV";
      actions.append(report);
      li.append(actions);
    }
    return li;
  }
}
