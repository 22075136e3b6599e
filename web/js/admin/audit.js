/*
 * The audit log panel: every admin action, newest first, a page at a time.
 *
 * Hooks: #audit tbody > tr[data-action]; #audit-pager
 */

import { errorText } from "../forms.js";
import { auditLog } from "./api.js";
import { renderPager, row, when } from "./table.js";

const PAGE = 25;

export class AuditPanel {
  constructor() {
    this.offset = 0;
    this.body = document.querySelector("#audit tbody");
    this.message = document.getElementById("audit-message");
    this.pager = document.getElementById("audit-pager");
  }

  async load(offset = this.offset) {
    this.offset = offset;
    const result = await auditLog({ limit: PAGE, offset });
    if (!result.ok) {
      this.message.textContent = errorText(result);
      return;
    }
    this.message.textContent = "";
    this.body.replaceChildren(...result.data.entries.map((entry) => row(
      [when(entry.at), entry.admin.username, entry.action, entry.target, JSON.stringify(entry.detail)],
      { action: entry.action },
    )));
    renderPager(this.pager, result.data, (next) => this.load(next));
  }
}
