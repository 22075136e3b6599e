/*
 * DOM helpers shared by the admin panels: table rows, action buttons and a pager.
 * Text only goes in through textContent (never innerHTML).
 */

/** A <td> holding `content`: a string, a node, or a list of them. */
export function cell(content) {
  const td = document.createElement("td");
  for (const part of Array.isArray(content) ? content : [content]) {
    td.append(part instanceof Node ? part : String(part ?? ""));
  }
  return td;
}

/** A <tr> of cells, with data-* attributes. */
export function row(cells, data = {}) {
  const tr = document.createElement("tr");
  Object.assign(tr.dataset, data);
  tr.append(...cells.map(cell));
  return tr;
}

/** A small button running `action` (disabled while it runs). */
export function actionButton(label, action, { danger = false } = {}) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `btn btn-sm ${danger ? "btn-danger" : "btn-secondary"}`;
  button.textContent = label;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/** A tag such as "admin" or "disabled". */
export function tag(text, kind = "") {
  const span = document.createElement("span");
  span.className = `admin-tag ${kind}`.trim();
  span.textContent = text;
  return span;
}

/** Dates from epoch seconds, or "—". */
export function when(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return new Date(seconds * 1000).toLocaleString();
}

/** Fill `container` with "a–b of total" and previous/next buttons calling `go(offset)`. */
export function renderPager(container, { total, limit, offset }, go) {
  container.replaceChildren();
  const status = document.createElement("span");
  status.textContent = total ? `${offset + 1}–${Math.min(total, offset + limit)} of ${total}` : "None";
  container.append(status);
  if (offset > 0) container.append(actionButton("Previous", () => go(Math.max(0, offset - limit))));
  if (offset + limit < total) container.append(actionButton("Next", () => go(offset + limit)));
}
