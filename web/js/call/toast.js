/*
 * Short notices at the bottom of the call screen ("bob joined", "The host asked you to mute").
 * The container is an aria-live region, so screen readers announce them too.
 */

const MAX_TOASTS = 4;

/**
 * Show a notice. Options: kind ("info" | "warn" | "chat"), timeout in ms (0 keeps it until
 * dismissed), action {label, onClick}. Returns a function that removes it.
 */
export function toast(text, { kind = "info", timeout = 4500, action = null, title = "" } = {}) {
  const container = document.getElementById("toasts");
  if (!container) return () => {};
  let timer = 0;
  const el = document.createElement("div");
  el.className = `toast toast-${kind}`;
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
  el.append(body);

  const remove = () => {
    clearTimeout(timer);
    el.remove();
  };
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

  container.append(el);
  while (container.children.length > MAX_TOASTS) container.firstElementChild.remove();
  if (timeout) timer = setTimeout(remove, timeout);
  return remove;
}
