/*
 * The server panel: version, uptime, live rooms, database, mail health, relay workers (packets/s
 * and CPU % are rates since the previous refresh, computed by the server).
 *
 * Hooks: #server-facts (dt/dd pairs), #workers tbody > tr[data-worker]
 */

import { errorText } from "../forms.js";
import { formatDuration } from "../format.js";
import { serverState } from "./api.js";
import { row } from "./table.js";

function bytes(n) {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${Math.ceil(n / 1024)} KiB`;
}

const rate = (value, unit) => (value === null || value === undefined ? "…" : `${value}${unit}`);

export class ServerPanel {
  constructor(message) {
    this.message = message;
    this.facts = document.getElementById("server-facts");
    this.workers = document.getElementById("workers");
    document.getElementById("server-refresh").addEventListener("click", () => this.load());
  }

  async load() {
    const result = await serverState();
    this.facts.setAttribute("aria-busy", "false");
    if (!result.ok) {
      this.message.textContent = errorText(result);
      return;
    }
    const s = result.data;
    const mail = s.mail.ok === null ? "not checked" : s.mail.ok ? "working" : "failing";
    this.renderFacts([
      ["Version", s.version],
      ["Up for", formatDuration(s.uptime_s)],
      ["Live rooms", `${s.rooms_live} (${s.participants} participants)`],
      ["Relay", s.relay.mode],
      ["Database", `${bytes(s.database.bytes)} + ${bytes(s.database.wal_bytes)} log`],
      ["Mail", `${s.mail.backend}: ${mail} — ${s.mail.detail}`],
    ]);
    const workers = s.relay.workers;
    this.workers.hidden = workers.length === 0;
    this.workers.querySelector("tbody").replaceChildren(...workers.map((w) => row(
      [w.index, w.pid ?? "—", w.rooms, w.participants, rate(w.packets_per_s, ""), rate(w.cpu_percent, " %"), w.restarts],
      { worker: String(w.index) },
    )));
  }

  renderFacts(pairs) {
    this.facts.replaceChildren(...pairs.flatMap(([name, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      return [dt, dd];
    }));
  }
}
