/*
 * Short notices on the call screen ("bob joined", "The host asked you to mute"). The container
 * is an aria-live region, so screen readers announce each one as it comes.
 *
 * They never cover the video: on wide screens they sit in the control bar's free left part
 * (dockToasts measures it), on narrow ones in a row of their own above the control bar. And they
 * never pile up: one slot for passing notices (join / leave / hand / chat: the newest replaces
 * the one before and says how many it replaced, "+2 more") and one for notices that wait for
 * the user (warnings, notices with no timeout).
 */

const DOCK_MIN = 280; // px: below this the bar's free part is too narrow for a notice

/** The slot a notice goes into. */
function slotOf(kind, timeout) {
  return kind === "warn" || !timeout ? "sticky" : "passing";
}

/** Remove every notice of `kind` ("chat" when the chat opens), or all of them. */
export function dismissToasts(kind = "") {
  const container = document.getElementById("toasts");
  if (!container) return;
  for (const el of [...container.children]) if (!kind || el.dataset.kind === kind) el.remove();
}

function build(text, { kind, title, action, replaced }, remove) {
  const el = document.createElement("div");
  el.className = `toast toast-${kind}`;
  el.dataset.kind = kind;
  el.setAttribute("role", kind === "warn" ? "alert" : "status");
  const body = document.createElement("div");
  body.className = "toast-body";
  if (title) {
    const strong = document.createElement("strong");
    strong.className = "toast-title";
    strong.textContent = title;
    body.append(strong);
  }
  const p = document.createElement("p");
  p.className = "toast-text";
  p.textContent = text;
  body.append(p);
  if (replaced.length) {
    const more = document.createElement("span");
    more.className = "toast-more";
    more.textContent = `+${replaced.length} more`;
    more.title = replaced.join("\n");
    body.append(more);
  }
  el.append(body);
  if (action) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "toast-action";
    button.textContent = action.label;
    button.addEventListener("click", () => {
      remove();
      action.onClick();
    });
    el.append(button);
  }
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast-close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.addEventListener("click", remove);
  el.append(close);
  return el;
}

/**
 * Show a notice. Options: kind ("info" | "warn" | "chat"), timeout in ms (0 keeps it until
 * dismissed), action {label, onClick}, title. Returns a function that removes it.
 */
export function toast(text, { kind = "info", timeout = 4500, action = null, title = "" } = {}) {
  const container = document.getElementById("toasts");
  if (!container) return () => {};
  const slot = slotOf(kind, timeout);
  const before = [...container.children].filter((el) => el.dataset.slot === slot);
  const replaced = before.flatMap((el) => JSON.parse(el.dataset.texts || "[]"));
  for (const el of before) el.remove();

  let timer = 0;
  const remove = () => {
    clearTimeout(timer);
    el.remove();
  };
  const summary = title ? `${title}: ${text}` : text;
  const el = build(text, { kind, title, action, replaced }, remove);
  el.dataset.slot = slot;
  el.dataset.texts = JSON.stringify([...replaced, summary].slice(-20));
  if (slot === "sticky") container.prepend(el);
  else container.append(el);
  if (timeout) timer = setTimeout(remove, timeout);
  return remove;
}

/**
 * Keep the notices off the video: dock them in the free part of `bar` left of `main` (the
 * centred control group) when it is wide enough, else give them a row above the bar.
 */
export function dockToasts(bar, main) {
  const container = document.getElementById("toasts");
  if (!container || !bar || !main) return;
  const measure = () => {
    const barBox = bar.getBoundingClientRect();
    const padding = parseFloat(getComputedStyle(bar).paddingLeft) || 0;
    const room = Math.floor(main.getBoundingClientRect().left - barBox.left - 2 * padding);
    const docked = room >= DOCK_MIN && main.offsetParent !== null;
    container.classList.toggle("docked", docked);
    container.style.setProperty("--toast-room", `${Math.max(0, Math.min(room, 420))}px`);
    container.style.setProperty("--bar-height", `${Math.round(barBox.height)}px`);
  };
  new ResizeObserver(measure).observe(bar);
  measure();
}
